"""Settings > Model, as a person fills it in: Connect Model with the form's defaults, with JSON typed
into the extra-params box (and a typo first), with Basic auth; then Edit the connection.

The form sends ``extra_params`` as a string (``""`` when left empty); before, every backend's
/setup refused it with 400 and Label Studio showed "doesn't look like a valid ML backend".
"""

from __future__ import annotations

import pytest

from backends.core.journal import Journal
from backends.stack.processes import backend_process, free_port
from tests.browser import ui
from tests.browser.conftest import backend_env
from tests.conftest import RECT_CONFIG
from tests.harness import ARTIFACTS

pytestmark = pytest.mark.labelstudio

CLASSIFY_CONFIG = ('<View><Image name="image" value="$image"/><Choices name="label" toName="image">'
                   '<Choice value="Cat"/><Choice value="Dog"/></Choices></View>')
SEGMENT_CONFIG = ('<View><Image name="image" value="$image"/>'
                  '<KeyPointLabels name="click" toName="image" smart="true"><Label value="Cat"/></KeyPointLabels>'
                  '<BrushLabels name="mask" toName="image"><Label value="Cat"/></BrushLabels></View>')
CONFIGS = {"detector": RECT_CONFIG, "segmenter": SEGMENT_CONFIG, "active": CLASSIFY_CONFIG}


def stored_extra_params(served, backend: str, project: int) -> dict:
    """What the backend's /setup stored for the project (its journal), i.e. the settings it uses."""
    setup = Journal(served[backend].data_dir / "journal.sqlite3").get_setup(backend, project)
    assert setup is not None, f"{backend} never stored a /setup for project {project}"
    return setup.extra_params


def connection(label_studio, project: int) -> dict:
    (ml,) = label_studio.api("GET", f"/api/ml?project={project}")
    return ml


@pytest.mark.parametrize("backend", ["detector", "segmenter", "active"])
def test_connect_model_with_the_forms_defaults(label_studio, served, page, backend):
    project = label_studio.create_project(CONFIGS[backend], title=f"form defaults {backend}")
    sent = ui.connect_model(page, label_studio.url, project, backend, served[backend].url)
    assert sent["body"]["extra_params"] == "" and sent["body"]["auth_method"] == "NONE"  # what the form sends
    assert sent["body"]["_status"] == 201, sent["form"].inner_text()
    page.get_by_text("Connected", exact=True).wait_for()
    page.screenshot(path=str(ARTIFACTS / f"browser-connected-{backend}.png"))
    assert connection(label_studio, project)["state"] == "CO"
    assert stored_extra_params(served, backend, project) == {}


def test_extra_params_typed_into_the_form_a_typo_is_explained_then_the_json_is_used(label_studio, served, page):
    project = label_studio.create_project(RECT_CONFIG, title="form extra params")
    refused = ui.connect_model(page, label_studio.url, project, "detector", served["detector"].url,
                               extra_params="{epochs: 1}")
    assert refused["body"]["_status"] == 400
    page.get_by_text("is not valid JSON").first.wait_for()  # Label Studio prints our reason in its form
    shown = page.locator(".lsf-modal-ls").nth(1).inner_text()
    assert "'extra_params' is not valid JSON" in shown and "{epochs: 1}" in shown, shown
    page.screenshot(path=str(ARTIFACTS / "browser-extra-params-typo.png"))
    ui.close_error_dialog(page)

    form = refused["form"]
    ui.fill_connection(form, extra_params='{"epochs": 1, "imgsz": 64}')
    with page.expect_response(lambda r: r.url.endswith("/api/ml") and r.request.method == "POST") as sent:
        form.get_by_role("button", name=ui.SAVE_CONNECTION).click()
    assert sent.value.status == 201, sent.value.text()
    assert stored_extra_params(served, "detector", project) == {"epochs": 1, "imgsz": 64}


def test_connect_model_with_basic_auth(label_studio, page, tmp_path):
    env = {**backend_env(label_studio, tmp_path / "data"), "BASIC_AUTH_USER": "labelstudio",
           "BASIC_AUTH_PASS": "s3cret-pass"}
    port = free_port()
    proc = backend_process("backends.detector", port, env, tmp_path / "detector.log").start(timeout=120)
    try:
        project = label_studio.create_project(RECT_CONFIG, title="form basic auth")
        url = f"http://127.0.0.1:{port}"
        wrong = ui.connect_model(page, label_studio.url, project, "detector", url,
                                 basic_auth=("labelstudio", "wrong"))
        assert wrong["body"]["auth_method"] == "BASIC_AUTH" and wrong["body"]["_status"] == 400
        page.get_by_text("Basic auth required").first.wait_for()
        ui.close_error_dialog(page)
        right = ui.connect_model(page, label_studio.url, project, "detector", url,
                                 basic_auth=("labelstudio", "s3cret-pass"))
        assert right["body"]["_status"] == 201
        page.get_by_text("Connected", exact=True).wait_for()
        assert connection(label_studio, project)["state"] == "CO"
    finally:
        proc.stop()


def test_edit_the_connection_extra_params_and_interactive(label_studio, served, page):
    project = label_studio.create_project(SEGMENT_CONFIG, title="form edit")
    assert ui.connect_model(page, label_studio.url, project, "segmenter", served["segmenter"].url,
                            extra_params='{"note": "first"}')["body"]["_status"] == 201
    assert connection(label_studio, project)["is_interactive"] is False

    edited = ui.edit_connection(page, label_studio.url, project, extra_params='{"note": "second"}',
                                toggle_interactive=True)
    assert edited["shown_extra_params"] == '{"note": "first"}'
    assert edited["body"]["extra_params"] == '{"note": "second"}' and edited["body"]["is_interactive"] is True
    assert edited["body"]["_status"] == 200
    assert connection(label_studio, project)["is_interactive"] is True
    assert stored_extra_params(served, "segmenter", project) == {"note": "second"}
