"""The active queue's bookkeeping around the prediction writer: generations of a queue version and
the tabs' filters."""

from backends.active.queue import generation, latest_generation, task_ids_filter


def test_an_empty_disagreement_list_shows_no_task_not_every_task():
    assert [item["value"] for item in task_ids_filter([])["items"]] == [-1]
    assert [item["value"] for item in task_ids_filter([3, 5])["items"]] == [3, 5]


def test_queue_generations():
    base = "active-margin@active-v3"
    assert generation(base, 1) == base and generation(base, 2) == base + "~2"
    assert latest_generation(base, []) == 1 and latest_generation(base, [base]) == 1
    others = ["active-margin@active-v3~7x", "active-margin@active-v31~9", "active-hybrid@active-v3~5"]
    assert latest_generation(base, [base, base + "~2", base + "~10", *others]) == 10
