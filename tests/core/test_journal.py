import threading
import time

import pytest

from backends.core.journal import CANCELLED, DONE, FAILED, PENDING, RUNNING, Journal, LeaseLost


def make(tmp_path, **kw):
    return Journal(tmp_path / "j.sqlite3", **{"debounce_s": 0.0, **kw})


def test_events_coalesce_into_one_pending_job(tmp_path):
    j = make(tmp_path)
    recs = [j.record("det", 4, a, {"action": a}, kind="train") for a in ("ANNOTATION_CREATED", "START_TRAINING", "ANNOTATION_UPDATED")]
    assert [r.new_job for r in recs] == [True, False, False]
    assert len({r.job_id for r in recs}) == 1
    assert [e.action for e in j.events_for(recs[0].job_id)] == ["ANNOTATION_CREATED", "START_TRAINING", "ANNOTATION_UPDATED"]
    assert j.count_jobs("det") == {PENDING: 1}


def test_at_most_one_running_and_one_pending_per_project(tmp_path):
    j = make(tmp_path)
    first = j.record("det", 4, "START_TRAINING", {}, kind="train")
    job = j.claim("det", "w1")
    assert job.id == first.job_id and job.state == RUNNING
    second = j.record("det", 4, "ANNOTATION_CREATED", {}, kind="train")
    third = j.record("det", 4, "ANNOTATION_CREATED", {}, kind="train")
    assert second.new_job and second.job_id == third.job_id != first.job_id
    assert j.claim("det", "w2") is None, "a second job of the same project must wait for the running one"
    other = j.record("det", 5, "START_TRAINING", {}, kind="train")
    assert j.claim("det", "w2").id == other.job_id, "another project is independent"
    j.finish(first.job_id, DONE, result={"ok": 1})
    assert j.claim("det", "w1").id == second.job_id


def test_duplicate_webhook_is_dropped(tmp_path):
    j = make(tmp_path)
    a = j.record("det", 4, "ANNOTATION_CREATED", {}, kind="train", dedup_key="c:2:t")
    b = j.record("det", 4, "ANNOTATION_CREATED", {}, kind="train", dedup_key="c:2:t")
    assert b.event_id is None and b.job_id == a.job_id
    assert j.count_events("det") == 1


def test_debounce_holds_job_until_quiet(tmp_path):
    j = make(tmp_path, debounce_s=10.0)
    t0 = 1000.0
    rec = j.record("det", 4, "ANNOTATION_CREATED", {}, kind="train", now=t0)
    assert j.claim("det", "w", now=t0 + 5) is None
    j.record("det", 4, "START_TRAINING", {}, kind="train", now=t0 + 5)
    assert j.claim("det", "w", now=t0 + 12) is None, "the second event pushed the start back"
    assert j.claim("det", "w", now=t0 + 15.1).id == rec.job_id


def test_stale_running_job_is_requeued_with_its_events(tmp_path):
    j = make(tmp_path, lease_s=1.0)
    rec = j.record("det", 4, "START_TRAINING", {"n": 1}, kind="train")
    j.claim("det", "dead-worker")
    assert j.requeue_stale("det") == []
    assert j.requeue_stale("det", now=time.time() + 5) == [rec.job_id]
    job = j.claim("det", "new-worker")
    assert job.id == rec.job_id and job.attempts == 2
    assert [e.payload for e in j.events_for(job.id)] == [{"n": 1}]


def test_stale_job_merges_into_existing_pending(tmp_path):
    j = make(tmp_path, lease_s=1.0)
    first = j.record("det", 4, "START_TRAINING", {"n": 1}, kind="train")
    j.claim("det", "dead")
    second = j.record("det", 4, "ANNOTATION_CREATED", {"n": 2}, kind="train")
    assert j.requeue_stale("det", now=time.time() + 5) == [second.job_id]
    assert j.get_job(first.job_id).state == FAILED
    assert [e.payload["n"] for e in j.events_for(second.job_id)] == [1, 2]


def test_poison_job_fails_after_max_attempts(tmp_path):
    j = make(tmp_path, lease_s=1.0, max_attempts=2)
    rec = j.record("det", 4, "START_TRAINING", {}, kind="train")
    for _ in range(2):
        j.claim("det", "w")
        j.requeue_stale("det", now=time.time() + 5)
    assert j.get_job(rec.job_id).state == FAILED


def test_cancel_pending_and_running(tmp_path):
    j = make(tmp_path)
    a = j.record("det", 4, "START_TRAINING", {}, kind="train")
    j.claim("det", "w")
    assert j.request_cancel(a.job_id).cancel_requested
    assert j.heartbeat(a.job_id) is True
    b = j.record("det", 4, "START_TRAINING", {}, kind="train")
    assert j.request_cancel(b.job_id).state == CANCELLED


def test_concurrent_writers_lose_nothing(tmp_path):
    j = make(tmp_path)
    errors = []

    def send(worker):
        try:
            for i in range(25):
                j.record("det", worker % 2, "ANNOTATION_CREATED", {"w": worker, "i": i}, kind="train")
        except Exception as exc:  # pragma: no cover - the assertion below reports it
            errors.append(exc)

    threads = [threading.Thread(target=send, args=(w,)) for w in range(8)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    assert j.count_events("det") == 200
    assert j.count_jobs("det") == {PENDING: 2}


def test_project_setup_roundtrip(tmp_path):
    j = make(tmp_path)
    assert j.get_setup("det", 4) is None
    j.save_setup("det", 4, "<View/>", {"epochs": 3}, "http://ls")
    j.save_setup("det", 4, "<View></View>", {"epochs": 5}, "http://ls")
    setup = j.get_setup("det", 4)
    assert (setup.label_config, setup.extra_params) == ("<View></View>", {"epochs": 5})
    assert list(j.projects("det")) == [4]


def test_a_late_runner_learns_its_job_went_elsewhere_and_records_nothing(tmp_path):
    j = make(tmp_path, lease_s=1.0)
    rec = j.record("det", 4, "START_TRAINING", {}, kind="train")
    late = j.claim("det", "paused-vm")
    j.requeue_stale("det", now=time.time() + 5)
    second = j.claim("det", "w2")
    assert second.attempts == late.attempts + 1
    with pytest.raises(LeaseLost):
        j.heartbeat(rec.job_id, attempt=late.attempts)
    assert j.finish(rec.job_id, DONE, attempt=late.attempts) is None
    assert j.get_job(rec.job_id).state == RUNNING and j.get_job(rec.job_id).worker == "w2"
    assert j.heartbeat(rec.job_id, attempt=second.attempts) is False
    assert j.finish(rec.job_id, DONE, attempt=second.attempts) == DONE


def test_attempts_follow_events_to_the_next_job_so_a_crash_loop_ends(tmp_path):
    j = make(tmp_path, lease_s=1.0, max_attempts=3)
    j.record("det", 4, "START_TRAINING", {"n": 0}, kind="train")
    for n in range(1, 6):
        j.claim("det", "w")
        j.record("det", 4, "ANNOTATION_CREATED", {"n": n}, kind="train")  # labelers keep submitting
        j.requeue_stale("det", now=time.time() + 5)
    attempts = [job.attempts for job in j.list_jobs("det")]
    assert FAILED in {job.state for job in j.list_jobs("det")}
    assert max(attempts) <= 3 and j.count_jobs("det").get(RUNNING, 0) == 0
    assert any(job.error == "worker died 3 times running this job" for job in j.list_jobs("det"))


def test_a_failure_that_may_pass_is_retried_with_back_off_then_fails(tmp_path):
    j = make(tmp_path, max_attempts=3, retry_s=10.0)
    rec = j.record("det", 4, "START_TRAINING", {}, kind="train")
    delays = []
    for _ in range(3):
        job = j.claim("det", "w", now=time.time() + 1000)
        started = time.time()
        ended = j.finish(job.id, FAILED, attempt=job.attempts, error="Label Studio unreachable", retry=True)
        if ended == PENDING:
            delays.append(round(j.get_job(rec.job_id).not_before - started))
    assert delays == [10, 20] and j.get_job(rec.job_id).state == FAILED
    assert [e.action for e in j.events_for(rec.job_id)] == ["START_TRAINING"]


def test_a_retry_hands_its_events_to_a_job_already_pending(tmp_path):
    j = make(tmp_path)
    first = j.record("det", 4, "START_TRAINING", {"n": 1}, kind="train")
    job = j.claim("det", "w")
    second = j.record("det", 4, "ANNOTATION_CREATED", {"n": 2}, kind="train")
    assert j.finish(job.id, FAILED, attempt=job.attempts, error="boom", retry=True) == FAILED
    assert [e.payload["n"] for e in j.events_for(second.job_id)] == [1, 2]
    assert j.get_job(second.job_id).attempts == 1 and "events moved" in j.get_job(first.job_id).error


def test_a_webhook_resent_after_its_job_failed_is_journaled_again(tmp_path):
    j = make(tmp_path)
    a = j.record("det", 4, "ANNOTATION_CREATED", {}, kind="train", dedup_key="c:2:t")
    job = j.claim("det", "w")
    j.finish(job.id, FAILED, attempt=job.attempts, error="needs more annotations")
    b = j.record("det", 4, "ANNOTATION_CREATED", {}, kind="train", dedup_key="c:2:t")
    assert b.event_id is not None and b.job_id != a.job_id and b.new_job


def test_a_cancelled_job_whose_worker_died_stays_cancelled(tmp_path):
    j = make(tmp_path, lease_s=1.0)
    rec = j.record("det", 4, "START_TRAINING", {}, kind="train")
    j.claim("det", "w")
    j.request_cancel(rec.job_id)
    assert j.requeue_stale("det", now=time.time() + 5) == []
    assert j.get_job(rec.job_id).state == CANCELLED


def test_jobs_that_ended_long_ago_are_pruned_with_their_events_never_live_ones(tmp_path):
    j = make(tmp_path, keep_s=100.0)
    old = j.record("det", 4, "START_TRAINING", {}, kind="train")
    job = j.claim("det", "w")
    j.finish(job.id, DONE, attempt=job.attempts)
    running = j.record("det", 5, "START_TRAINING", {}, kind="train")
    j.claim("det", "w", project=5)
    pending = j.record("det", 4, "ANNOTATION_CREATED", {}, kind="train")
    assert j.prune() == 0, "nothing ended long enough ago"
    assert j.prune(now=time.time() + 200) == 1
    assert j.get_job(old.job_id) is None and j.events_for(old.job_id) == []
    assert j.get_job(running.job_id).state == RUNNING and j.get_job(pending.job_id).state == PENDING
    assert j.count_events("det") == 2


def test_a_retried_job_keeps_every_run_with_its_times_and_error(tmp_path):
    j = make(tmp_path, retry_s=0.0)
    rec = j.record("det", 4, "START_TRAINING", {}, kind="train")
    first = j.claim("det", "w1")
    assert j.finish(first.id, FAILED, attempt=first.attempts, error="timed out", retry=True) == PENDING
    second = j.claim("det", "w2")
    j.finish(second.id, DONE, attempt=second.attempts, result={"ok": 1})
    tries = j.get_job(rec.job_id).tries
    assert [(t["attempt"], t["worker"], t["outcome"], t["error"]) for t in tries] == [
        (1, "w1", FAILED, "timed out"), (2, "w2", DONE, None)]
    assert all(t["finished_at"] >= t["started_at"] and t["seconds"] >= 0 for t in tries)
    assert j.get_job(rec.job_id).started_at == tries[-1]["started_at"]  # the last run's, as before


def test_a_run_whose_worker_died_ends_at_its_last_heartbeat_and_follows_its_events(tmp_path):
    j = make(tmp_path, lease_s=5.0)
    rec = j.record("det", 4, "START_TRAINING", {}, kind="train")
    job = j.claim("det", "w1")
    newer = j.record("det", 4, "ANNOTATION_CREATED", {}, kind="train")  # waits behind the running one
    assert j.requeue_stale("det", now=time.time() + 60) == [newer.job_id]
    (lost,) = j.get_job(newer.job_id).tries  # the pending job that took the events took the story too
    assert lost["outcome"] == "lost" and "worker died" in lost["error"]
    assert lost["finished_at"] == job.heartbeat_at and j.get_job(rec.job_id).tries == [lost]


def test_a_journal_from_before_tries_gets_the_column(tmp_path):
    import sqlite3

    path = tmp_path / "old.sqlite3"
    Journal(path).record("det", 4, "START_TRAINING", {}, kind="train")
    with sqlite3.connect(path) as db:
        db.execute("ALTER TABLE jobs DROP COLUMN tries")
        db.execute("ALTER TABLE jobs DROP COLUMN outage")
    reopened = Journal(path)
    assert reopened.list_jobs("det")[0].tries is None
    job = reopened.claim("det", "w", now=time.time() + 60)  # past the default debounce
    assert reopened.get_job(job.id).tries[0]["attempt"] == 1
