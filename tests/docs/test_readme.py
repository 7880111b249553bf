"""The README's configuration tables cover every setting the code reads (docs are part of the feature)."""

import re
from pathlib import Path

import pytest
from pydantic_settings import BaseSettings

from backends.active.settings import ActiveSettings
from backends.core.settings import CoreSettings
from backends.detector.settings import DetectorSettings
from backends.segmenter.settings import SegmenterSettings

ROOT = Path(__file__).resolve().parents[2]
README = (ROOT / "README.md").read_text()
# Read with os.environ directly (server CLI, worker, watcher), not through a settings class.
DIRECT = ["HOST", "PORT", "WORKERS", "THREADS", "RQ_PRELOAD", "ACTIVE_WATCH_S", "LABEL_STUDIO_URL",
          "LABEL_STUDIO_API_KEY"]


def env_names(settings: type[BaseSettings]) -> list[str]:
    prefix = settings.model_config.get("env_prefix", "")
    names = []
    for name, field in settings.model_fields.items():
        alias = field.validation_alias if isinstance(field.validation_alias, str) else None
        names.append((alias or f"{prefix}{name}").upper())
    return names


@pytest.mark.parametrize("settings", [CoreSettings, DetectorSettings, SegmenterSettings, ActiveSettings],
                         ids=lambda s: s.__name__)
def test_every_setting_is_documented(settings):
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", README))
    missing = [name for name in env_names(settings) if name not in documented]
    assert not missing, f"README documents no {missing}"


def test_settings_read_directly_are_documented():
    documented = set(re.findall(r"`([A-Z][A-Z0-9_]+)`", README))
    assert not [name for name in DIRECT if name not in documented]


def test_the_readme_starts_with_the_two_commands():
    first = README.split("```", 2)[1]
    assert "make up" in first and "make test" in first
    assert "make test" in (ROOT / ".ci" / "run").read_text()
