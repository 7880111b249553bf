"""run_job: what a job's outcome does to the journal (retry, give up, lease lost); run_now: a job run by a
command in its own process, through the same journal slot as the server's workers."""

import time

import pytest

from backends.core.errors import Conflict, LabelLoopError
from backends.core.jobs import JobCancelled, run_job, run_now
from backends.core.journal import DONE, FAILED, PENDING, RUNNING, Journal


class Outcome:
    """A model whose job does what the test says: return, raise, or wait to be stopped."""

    def __init__(self, action):
        self.action = action

    def run_job(self, kind, events, ctx):
        return self.action(ctx)


def journal_with_a_job(tmp_path, **kw):
    j = Journal(tmp_path / "j.sqlite3", debounce_s=0.0, **kw)
    j.record("det", 4, "START_TRAINING", {}, kind="train")
    return j, j.claim("det", "w")


def fail(exc):
    def action(ctx):
        raise exc
    return action


@pytest.mark.parametrize("exc, expected", [
    (LabelLoopError("needs 4 annotated images"), FAILED),            # will not pass by itself
    (LabelLoopError("Label Studio unreachable", status=502), PENDING),  # may pass: retried
    (MemoryError(), PENDING),
])
def test_only_failures_that_may_pass_are_retried(tmp_path, exc, expected):
    j, job = journal_with_a_job(tmp_path, retry_s=30.0)
    assert run_job(j, job, lambda _: Outcome(fail(exc))) == expected
    assert j.get_job(job.id).state == expected


def test_a_runner_whose_lease_was_lost_stops_and_records_nothing(tmp_path):
    j, job = journal_with_a_job(tmp_path, lease_s=0.8)
    j.requeue_stale("det", now=time.time() + 5)  # as if this runner had been paused past its lease
    other = j.claim("det", "w2")

    def wait_to_be_stopped(ctx):
        deadline = time.time() + 10
        while time.time() < deadline:
            ctx.check_cancelled()
            time.sleep(0.05)
        return {"trained": True}

    state = run_job(j, job, lambda _: Outcome(wait_to_be_stopped))
    assert state == "cancelled"
    now = j.get_job(job.id)
    assert now.state == RUNNING and now.worker == "w2" and now.attempts == other.attempts
    assert j.finish(job.id, DONE, attempt=other.attempts) == DONE


def test_job_cancelled_is_not_retried(tmp_path):
    j, job = journal_with_a_job(tmp_path)
    assert run_job(j, job, lambda _: Outcome(fail(JobCancelled("stop")))) == "cancelled"
    assert j.get_job(job.id).state == "cancelled"


class ApiError(Exception):
    def __init__(self, status_code):
        self.status_code = status_code


@pytest.mark.parametrize("exc, retried", [(ApiError(401), False), (ApiError(404), False), (ApiError(503), True),
                                          (ApiError(429), True), (ConnectionError("refused"), True)])
def test_label_studio_errors_are_retried_only_when_they_may_pass(exc, retried):
    from backends.core.jobs import may_pass
    assert may_pass(exc) is retried


def test_run_now_runs_at_once_and_takes_over_the_pending_request_for_the_same_work(tmp_path):
    j = Journal(tmp_path / "j.sqlite3", debounce_s=3600.0)  # a worker would wait an hour for this one
    webhook = j.record("act", 7, "TASKS_CREATED", {}, kind="score")
    seen = {}

    def score(ctx):
        seen["events"] = [e.action for e in ctx.journal.events_for(ctx.id)]
        return {"scored": 3}

    job = run_now(j, "act", 7, "score", "CLI_SCORE", lambda _: Outcome(score))
    assert job.id == webhook.job_id and job.state == DONE and job.result == {"scored": 3}
    assert seen["events"] == ["TASKS_CREATED", "CLI_SCORE"]
    assert j.pending_jobs("act") == []


def test_run_now_never_runs_beside_a_running_job_of_its_kind(tmp_path):
    j = Journal(tmp_path / "j.sqlite3", debounce_s=0.0)
    j.record("act", 7, "VERSION_PUBLISHED", {}, kind="score")
    running = j.claim("act", "server-worker")
    j.record("act", 8, "TASKS_CREATED", {}, kind="score")  # another project is not in the way
    ran = []
    with pytest.raises(Conflict) as caught:
        run_now(j, "act", 7, "score", "CLI_SCORE", lambda _: Outcome(lambda ctx: ran.append(ctx.id)))
    assert ran == [] and caught.value.status == 409
    assert f"job {running.id} on server-worker" in caught.value.message
    queued = [job for job in j.pending_jobs("act") if job.project == 7]
    assert len(queued) == 1 and f"job {queued[0].id}" in caught.value.message  # kept for the server to run
    assert run_now(j, "act", 8, "score", "CLI_SCORE", lambda _: Outcome(lambda ctx: {"ok": 1})).state == DONE


def test_run_now_records_a_failure_like_any_job(tmp_path):
    j = Journal(tmp_path / "j.sqlite3", debounce_s=0.0)
    job = run_now(j, "act", 7, "score", "CLI_SCORE", lambda _: Outcome(fail(LabelLoopError("no <Choices>"))))
    assert job.state == FAILED and job.error == "no <Choices>"


def refused_connection():
    import httpx

    return httpx.ConnectError("[Errno 111] Connection refused")


@pytest.mark.parametrize("exc, outage", [(refused_connection(), True), (ApiError(503), True), (ApiError(502), True),
                                         (LabelLoopError("Label Studio unreachable", status=502), True),
                                         (ApiError(500), False), (ApiError(401), False), (MemoryError(), False)])
def test_an_outage_is_told_from_a_refusal(exc, outage):
    from backends.core.jobs import label_studio_unreachable
    assert label_studio_unreachable(exc) is outage


def test_a_job_waits_out_a_label_studio_outage_longer_than_its_tries_and_resumes(tmp_path):
    """Ten failed tries while Label Studio is down (three is all a job gets otherwise), then it
    answers: the job runs to done, and its record says what it waited through."""
    j, job = journal_with_a_job(tmp_path, retry_s=30.0, max_attempts=3)
    delays = []
    for _ in range(10):
        assert run_job(j, job, lambda _: Outcome(fail(refused_connection()))) == PENDING
        waiting = j.get_job(job.id)
        delays.append(round(waiting.not_before - time.time()))
        assert "Label Studio unreachable since" in waiting.error and waiting.attempts == 0
        job = j.claim("det", "w", now=time.time() + 3600)
    assert delays[:3] == [30, 60, 60] and max(delays) == 60  # resumes within a minute of Label Studio's return
    assert run_job(j, job, lambda _: Outcome(lambda ctx: {"published": "det-v1"})) == DONE
    done = j.get_job(job.id)
    assert done.result == {"published": "det-v1"} and done.error is None
    assert done.outage["tries"] == 10 and done.outage["ended_at"] >= done.outage["since"]
    assert "Connection refused" in done.outage["last_error"] and done.to_json()["outage"] == done.outage


def test_an_outage_longer_than_label_studio_outage_s_fails_the_job(tmp_path):
    j, job = journal_with_a_job(tmp_path, retry_s=30.0, outage_s=0.2)
    assert run_job(j, job, lambda _: Outcome(fail(refused_connection()))) == PENDING
    time.sleep(0.3)
    job = j.claim("det", "w", now=time.time() + 3600)
    assert run_job(j, job, lambda _: Outcome(fail(refused_connection()))) == FAILED
    failed = j.get_job(job.id)
    assert "given up" in failed.error and failed.outage["tries"] == 2


def test_a_journal_from_before_outages_gets_the_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    Journal(path).record("det", 4, "START_TRAINING", {}, kind="train")
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE jobs DROP COLUMN outage")
    reopened = Journal(path)
    assert reopened.list_jobs("det")[0].outage is None


def test_a_worker_that_saw_the_column_missing_rechecks_under_the_lock(tmp_path, monkeypatch):
    """Two gunicorn workers open an old journal together: both may see the column missing, the
    second to take the write lock must find it added ("duplicate column name" otherwise)."""
    import sqlite3

    path = tmp_path / "old.sqlite3"
    Journal(path).record("det", 4, "START_TRAINING", {}, kind="train")
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE jobs DROP COLUMN outage")
    Journal(path)  # the first worker adds it
    real, calls = Journal._job_columns, []

    def stale_first(db):
        calls.append(1)
        return real(db) - {"outage"} if len(calls) == 1 else real(db)  # checked before the first worker added it

    monkeypatch.setattr(Journal, "_job_columns", staticmethod(stale_first))
    assert Journal(path).list_jobs("det")[0].outage is None and len(calls) == 2
