"""LabelStudioClient.iter_tasks' keyset paging against a stand-in for the SDK's task list, for what a
real Label Studio 1.23 does not do by default (the listing itself is tested against one in
test_labelstudio_e2e.py): a server-side page-size cap, a server that ignores the id filter; and id
ranges (``after`` / ``until``)."""

import json
from types import SimpleNamespace

import pytest

from backends.core.errors import LabelLoopError
from backends.core.labelstudio import LabelStudioClient, is_labeled

TASKS = [{"id": i, "data": {}, "annotations": []} for i in (3, 5, 8, 9, 12, 20, 21)]


def client_over(list_tasks) -> LabelStudioClient:
    client = LabelStudioClient("http://127.0.0.1:1", "a-token")
    client.__dict__["sdk"] = SimpleNamespace(tasks=SimpleNamespace(list=list_tasks))  # the cached_property
    client._refresh_if_due = lambda margin_s=0: None
    return client


def after_id(query: str) -> int:
    items = json.loads(query)["filters"]["items"]
    return items[0]["value"] if items else -1


def test_a_capped_page_size_does_not_end_the_listing():
    def capped(*, page_size, query, **_):  # TASK_API_PAGE_SIZE_MAX = 2 on this server
        return SimpleNamespace(items=[t for t in TASKS if t["id"] > after_id(query)][:min(page_size, 2)])

    assert [t["id"] for t in client_over(capped).iter_tasks(1, page_size=5)] == [t["id"] for t in TASKS]


def test_a_server_ignoring_the_id_filter_is_an_error_not_an_endless_loop():
    def ignoring(*, page_size, **_):
        return SimpleNamespace(items=TASKS[:page_size])

    listed = client_over(ignoring).iter_tasks(1, page_size=3)
    with pytest.raises(LabelLoopError, match="ignored the task list's id filter"):
        for _ in range(100):
            next(listed)


def id_bounds(query: str) -> tuple[int, int]:
    low, high = -1, 10**9
    for item in json.loads(query)["filters"]["items"]:
        if item["operator"] == "greater":
            low = item["value"]
        elif item["operator"] == "less_or_equal":
            high = item["value"]
    return low, high


def test_a_range_of_ids_is_listed_between_its_bounds():
    def bounded(*, page_size, query, **_):
        low, high = id_bounds(query)
        return SimpleNamespace(items=[t for t in TASKS if low < t["id"] <= high][:page_size])

    assert [t["id"] for t in client_over(bounded).iter_tasks(1, page_size=2, after=5, until=20)] == [8, 9, 12, 20]


def test_a_server_ignoring_the_upper_bound_is_an_error_not_a_read_of_the_whole_project():
    def lower_bound_only(*, page_size, query, **_):
        low, _ = id_bounds(query)
        return SimpleNamespace(items=[t for t in TASKS if t["id"] > low][:page_size])

    with pytest.raises(LabelLoopError, match="asked for ids up to 9"):
        list(client_over(lower_bound_only).iter_tasks(1, page_size=3, after=5, until=9))


def test_a_skipped_task_is_still_unlabeled():
    assert not is_labeled({"annotations": [{"was_cancelled": True}]})
    assert is_labeled({"annotations": [{"was_cancelled": True}, {"was_cancelled": False}]})
    assert not is_labeled({"annotations": []}) and not is_labeled({})
