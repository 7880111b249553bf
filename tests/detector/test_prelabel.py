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


def test_progress_reaches_the_job_every_batch_and_the_log_every_30_s(caplog, monkeypatch):
    from backends.detector import prelabel

    reported = []
    job = SimpleNamespace(progress=lambda **kw: reported.append(kw))
    labeler = prelabel.Prelabeler(SimpleNamespace(services=SimpleNamespace(ls=None), project_id=4), job)
    clock = iter([100.0, 110.0, 131.0, 140.0])
    monkeypatch.setattr(prelabel, "time", SimpleNamespace(time=lambda: next(clock)))  # (not logging's clock)
    caplog.set_level("INFO", logger=prelabel.__name__)
    for done in (10, 20, 30, 40):
        labeler._progress(40, done, started=90.0)
    assert [r["done"] for r in reported] == [10, 20, 30, 40]
    assert reported[0]["tasks_per_s"] == 1.0 and reported[0]["eta_s"] == 30.0
    lines = [r.getMessage() for r in caplog.records]
    assert lines == ["detector project 4: pre-labeling 10/40 task(s), 1.00/s, ETA 30.0 s",  # the first batch
                     "detector project 4: pre-labeling 30/40 task(s), 0.73/s, ETA 13.7 s",
                     "detector project 4: pre-labeling 40/40 task(s), 0.80/s, ETA 0.0 s"], lines
