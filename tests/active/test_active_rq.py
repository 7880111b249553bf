"""REDIS_URL set: a scoring job's chunks are shared with RQ workers asked to help, and the queue is the same."""

import pytest

from tests.active.test_active_e2e import CONFIG, choice, queue_scores, scored, shape_png
from tests.core.test_rq_mode import redis_url, start_worker  # noqa: F401 - redis_url is a fixture
from tests.harness import wait_until

pytestmark = pytest.mark.labelstudio


def test_scoring_chunks_are_shared_with_rq_helpers(label_studio, start_backend, tmp_path, redis_url):  # noqa: F811
    from redis import Redis
    from rq import Queue
    from rq.registry import FailedJobRegistry, FinishedJobRegistry

    env = {"DATA_DIR": tmp_path / "active", "LABEL_STUDIO_URL": label_studio.url, "REDIS_URL": redis_url,
           "LABEL_STUDIO_API_KEY": label_studio.token, "TRAIN_DEBOUNCE_S": 1, "ACTIVE_BACKBONE": "small_cnn",
           "ACTIVE_IMGSZ": 32, "ACTIVE_EPOCHS": 2, "ACTIVE_BATCH": 8, "ACTIVE_MIN_ANNOTATIONS": 4,
           "ACTIVE_STRATEGY": "margin", "ACTIVE_CHUNK": 2, "ACTIVE_SCORING_HELPERS": 3, "JOB_LEASE_S": 5}
    server, url = start_backend("backends.active", env)
    workers = [start_worker({**env, "RQ_PRELOAD": "backends.active.model"}, tmp_path / f"worker{i}.log")
               for i in range(2)]
    try:
        project = label_studio.create_project(CONFIG, title="active rq")
        images = [shape_png(i) for i in range(12)]
        tasks = label_studio.upload_images(project, {f"s{i}.png": png for i, (png, _) in enumerate(images)})
        label_studio.connect_backend(project, url, "active")
        for task_id, (_, label) in zip(tasks[:4], images[:4]):
            label_studio.annotate(task_id, choice(label))
        result = wait_until(lambda: scored(url, project, "active-margin@active-v1"), 240, "training and scoring",
                            interval=0.5)

        print("chunks:", result["chunks"])
        unlabeled = result["chunks"]["unlabeled"]
        assert unlabeled["chunks"] == 4 and unlabeled["helpers_asked"] == 3, unlabeled
        assert sum(unlabeled["by_worker"].values()) == 4
        assert not any(f":{server.pid}:" in w for w in unlabeled["by_worker"]), "chunks run on RQ workers"
        assert result["scored"] == 8 and result["predictions"]["created"] == 8
        scores = queue_scores(label_studio, tasks[4:], result["queue_version"])
        assert result["first"] == sorted(tasks[4:], key=lambda t: (scores[t], t)), "same ranking as computed alone"

        queue = Queue(env["RQ_QUEUE"] if "RQ_QUEUE" in env else "label-loop", connection=Redis.from_url(redis_url))
        helped = wait_until(lambda: [j for j in queue.job_class.fetch_many(
            FinishedJobRegistry(queue=queue).get_job_ids(), connection=queue.connection)
            if j and j.func_name.endswith("rq_help")] or None, 60, "the helpers to finish")
        assert len(helped) >= 4, "3 helpers for the unlabeled chunks, 1 for the labeled ones"
        assert FailedJobRegistry(queue=queue).count == 0
        # the boards are gone once merged
        assert not list((tmp_path / "active").rglob("*.board"))
    finally:
        for worker in workers:
            worker.stop()
            print(worker.log_tail())
