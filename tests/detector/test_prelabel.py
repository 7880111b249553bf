"""Which tasks a prelabel job takes, from the events coalesced into it."""

from types import SimpleNamespace

from backends.detector.prelabel import asked_tasks, carries, score_of


def event(**payload):
    return SimpleNamespace(payload={"project": 1, **payload})


def test_named_tasks_add_up_and_any_request_for_all_wins():
    assert asked_tasks([event(tasks=[3, 1]), event(tasks=[1, 7])]) == {1, 3, 7}
    assert asked_tasks([event(tasks=[3]), event()]) is None, "a request without tasks (or a publish) asks for all"
    assert asked_tasks([event(version="detector-v2")]) is None and asked_tasks([]) is None


def test_a_task_carries_a_version_by_its_exact_name():
    task = {"predictions": [{"model_version": "detector-v2"}, {"model_version": "active-margin@detector-v3"}]}
    assert carries(task, "detector-v2") and not carries(task, "detector-v3") and not carries({}, "detector-v2")


def test_the_score_is_the_mean_region_confidence():
    assert score_of([{"score": 0.2}, {"score": 0.6}, {"value": {}}]) == 0.4 and score_of([]) == 0.0
