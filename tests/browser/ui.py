"""What a person clicks in Label Studio 1.23's screens, one function per action.

Selectors are the ones the screens carry (form ``action`` names, ``name`` attributes, aria labels,
visible texts), found by walking the UI in chromium; keep them in this one file so that a Label
Studio upgrade that moves a button breaks here, with the screenshot the test leaves behind.
"""

from __future__ import annotations

import json
from typing import Any

STORE_READY = "() => window.Htx && window.Htx.annotationStore && window.Htx.annotationStore.selected"
REGION_TYPES = "() => window.Htx.annotationStore.selected.regionStore.regions.map(r => r.type)"
DRAFT_RESULT = "() => window.Htx.annotationStore.selected.serializeAnnotation()"
REGION_COUNT = "window.Htx.annotationStore.selected.regionStore.regions.length"
SAVE_CONNECTION = "Save machine learning form"  # the form's "Validate and Save" button
MODEL_MENU = "Machine learning model options"  # the "..." on a connected model's card
ROWS = ".lsf-table__row-wrapper, .dm-table__row-wrapper"  # Data Manager table rows


def model_settings(page: Any, url: str, project: int) -> None:
    page.goto(f"{url}/projects/{project}/settings/ml")


def fill_connection(form: Any, *, title: str | None = None, url: str | None = None, extra_params: str | None = None,
                    basic_auth: tuple[str, str] | None = None, toggle_interactive: bool = False) -> None:
    """Fill the Connect Model / Edit form; fields left None keep what the form shows."""
    if title is not None:
        form.locator("input[name=title]").fill(title)
    if url is not None:
        form.locator("input[name=url]").fill(url)
    if basic_auth is not None:
        form.locator("button[data-name=auth_method]").click()
        form.page.get_by_role("option", name="Basic Authentication").click()
        form.locator("input[name=basic_auth_user]").fill(basic_auth[0])
        form.locator("input[name=basic_auth_pass]").fill(basic_auth[1])
    if extra_params is not None:
        _fill_until_kept(form.locator("textarea[name=extra_params]"), extra_params)
    if toggle_interactive:
        form.locator("input[name=is_interactive]").locator("..").click()


def _fill_until_kept(field: Any, value: str) -> None:
    """Fill, then wait until the field still holds ``value``: the Edit form can re-render with the
    backend's stored fields after it first appears, which silently undoes an early fill."""
    for _ in range(5):
        field.fill(value)
        field.page.wait_for_timeout(300)
        if field.input_value() == value:
            return
    raise AssertionError(f"the form kept overwriting {value!r}")


def connect_model(page: Any, url: str, project: int, title: str, backend_url: str, **fields: Any) -> dict[str, Any]:
    """Settings > Model > Connect Model, then "Validate and Save". Returns the body Label Studio's
    screen sent to ``POST /api/ml`` and the form, so a test can read an error left in it."""
    model_settings(page, url, project)
    page.get_by_text("Connect Model", exact=True).click()
    form = page.locator("form[action=addMLBackend]")
    fill_connection(form, title=title, url=backend_url, **fields)
    return {"body": _save(page, form, "POST"), "form": form}


def edit_connection(page: Any, url: str, project: int, **fields: Any) -> dict[str, Any]:
    """The model card's "..." > Edit, change fields, "Validate and Save"; returns the PATCH body."""
    model_settings(page, url, project)
    page.get_by_role("button", name=MODEL_MENU).click()
    page.get_by_text("Edit", exact=True).click()
    form = page.locator("form[action=updateMLBackend]")
    form.locator("textarea[name=extra_params]").wait_for()
    page.wait_for_load_state("networkidle")  # the form refills itself once the backend is fetched
    shown = form.locator("textarea[name=extra_params]").input_value()
    fill_connection(form, **fields)
    return {"body": _save(page, form, "PATCH"), "shown_extra_params": shown}


def _save(page: Any, form: Any, method: str) -> dict[str, Any]:
    with page.expect_response(lambda r: "/api/ml" in r.url and r.request.method == method) as sent:
        form.get_by_role("button", name=SAVE_CONNECTION).click()
    return json.loads(sent.value.request.post_data or "{}") | {"_status": sent.value.status}


def close_error_dialog(page: Any) -> None:
    """A refused connection opens a "Runtime error" dialog over the form; its x closes only it."""
    page.locator(".lsf-modal-ls").nth(1).locator("button").first.click()


def turn_on_training_on_submit(page: Any, url: str, project: int) -> None:
    """Settings > Model > Configuration: "Start model training on annotation submission", Save."""
    model_settings(page, url, project)
    form = page.locator("form[action=updateProject]")
    form.locator("input[type=checkbox]").locator("..").click()
    with page.expect_response(lambda r: f"/api/projects/{project}" in r.url and r.request.method == "PATCH"):
        form.get_by_role("button", name="Save machine learning settings").click()


def start_training(page: Any, url: str, project: int) -> Any:
    """The model card's "..." > Start Training, and the dialog's own Start Training button."""
    model_settings(page, url, project)
    page.get_by_role("button", name=MODEL_MENU).click()
    page.get_by_text("Start Training", exact=True).click()
    with page.expect_response(lambda r: "/train" in r.url and r.request.method == "POST") as sent:
        page.locator(".lsf-modal-ls").get_by_role("button", name="Start Training").click()
    return sent.value


def open_task(page: Any, url: str, project: int, task: int) -> None:
    page.goto(f"{url}/projects/{project}/data?tab=&task={task}")
    page.wait_for_function(STORE_READY)


def draw_box_and_submit(page: Any, label: str) -> dict[str, Any]:
    """Pick ``label`` in the editor, drag a box over the image's centre, Submit; returns the
    annotation Label Studio created."""
    page.locator(".lsf-labels").get_by_text(label, exact=True).click()
    canvas = page.locator(".konvajs-content").first.bounding_box()
    page.mouse.move(canvas["x"] + canvas["width"] * 0.25, canvas["y"] + canvas["height"] * 0.25)
    page.mouse.down()
    page.mouse.move(canvas["x"] + canvas["width"] * 0.7, canvas["y"] + canvas["height"] * 0.75, steps=5)
    page.mouse.up()
    page.wait_for_function(f"() => {REGION_COUNT} > 0")
    with page.expect_response(lambda r: "/annotations" in r.url and r.request.method == "POST") as sent:
        page.get_by_role("button", name="Submit").click()
    assert sent.value.status == 201, sent.value.text()
    return sent.value.json()


def retrieve_predictions_for_all(page: Any, url: str, project: int, n_tasks: int) -> Any:
    """Data Manager: tick the header checkbox, Actions ("N Tasks") > Retrieve Predictions > OK."""
    page.goto(f"{url}/projects/{project}/data")
    page.locator(ROWS).first.wait_for()
    page.locator("input[type=checkbox]").first.check()
    page.get_by_text(f"{n_tasks} Tasks", exact=True).click()
    page.get_by_text("Retrieve Predictions", exact=True).click()
    with page.expect_response(lambda r: "retrieve_tasks_predictions" in r.url and r.request.method == "POST",
                              timeout=200_000) as sent:
        page.get_by_text("OK", exact=True).click()
    return sent.value


def label_all_tasks(page: Any, url: str, project: int) -> dict[str, Any]:
    """Data Manager: "Label All Tasks"; returns the task Label Studio served. The button asks
    ``POST /api/dm/actions?id=next_task``, which follows the project's sampling (the active
    backend's "Uncertainty sampling") while the tab has no filter, ordering or selection."""
    page.goto(f"{url}/projects/{project}/data")
    page.locator(ROWS).first.wait_for()
    with page.expect_response(lambda r: "id=next_task" in r.url and r.request.method == "POST") as served:
        page.get_by_text("Label All Tasks", exact=True).click()
    page.wait_for_function(STORE_READY)
    return served.value.json()


def prelabeling_choices(page: Any, url: str, project: int) -> list[str]:
    """Settings > Annotation > Prelabeling: the entries of "Select which predictions or which model
    you want to use" (connected backends by title, and each prediction version with its count)."""
    page.goto(f"{url}/projects/{project}/settings/annotation")
    page.locator("button[data-testid^=select-trigger-model_version]").click()
    page.get_by_role("option").first.wait_for()
    return page.get_by_role("option").all_inner_texts()


def choose_prelabeling(page: Any, project: int, version: str) -> Any:
    """Pick ``version`` in the open Prelabeling select (see :func:`prelabeling_choices`) and Save."""
    page.get_by_role("option").filter(has_text=version).first.click()
    with page.expect_response(lambda r: f"/api/projects/{project}" in r.url and r.request.method == "PATCH") as sent:
        page.get_by_role("button", name="Save").click()
    return sent.value
