"""The job process (core/job_process.py): a server's jobs run in a child process, which dies with the
server, is started again when it dies alone, and loses nothing to a kill -9 (the journal)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from backends.core.app import create_app
from backends.core.job_process import JOB_NICENESS, ProcessDispatcher, settings_env
from backends.core.jobs import EmbeddedDispatcher
from backends.core.settings import CoreSettings
from tests.harness import wait_until
from tests.toy_backend import ToyModel

ROOT = Path(__file__).resolve().parents[2]


def test_the_servers_settings_reach_the_job_process_whole(tmp_path):
    given = CoreSettings(DATA_DIR=tmp_path / "d", LABEL_STUDIO_API_KEY="s3cret", ALLOWED_MEDIA_HOSTS="a.example,b.example",
                         WARMUP=False, JOB_LEASE_S=7.5, LOCAL_FILES_DOCUMENT_ROOT=tmp_path)
    env = settings_env(given)
    assert env["LABEL_STUDIO_API_KEY"] == "s3cret" and env["ALLOWED_MEDIA_HOSTS"] == "a.example,b.example"
    rebuilt = subprocess.run([sys.executable, "-c", "from backends.core.settings import CoreSettings; "
                              "print(CoreSettings().model_dump_json())"], env={**os.environ, **env}, cwd=ROOT,
                             capture_output=True, text=True, check=True).stdout
    assert rebuilt.strip() == given.model_dump_json()  # secrets print masked on both sides


def test_a_class_another_process_cannot_import_runs_its_jobs_in_a_thread(settings):
    class DefinedHere(ToyModel):
        pass

    runner = {"job_runner": "process"}
    assert isinstance(create_app(ToyModel, settings.model_copy(update=runner), start_worker=False)
                      .extensions["labelloop"]["dispatcher"], ProcessDispatcher)
    assert isinstance(create_app(DefinedHere, settings.model_copy(update=runner), start_worker=False)
                      .extensions["labelloop"]["dispatcher"], EmbeddedDispatcher)
    assert isinstance(create_app(ToyModel, settings.model_copy(update={"job_runner": "thread"}), start_worker=False)
                      .extensions["labelloop"]["dispatcher"], EmbeddedDispatcher)

    class FillsTheServersCache(ToyModel):  # as the segmenter's prefetch does
        jobs_in_child = False

    assert isinstance(create_app(FillsTheServersCache, settings.model_copy(update=runner), start_worker=False)
                      .extensions["labelloop"]["dispatcher"], EmbeddedDispatcher)


def probe(url: str, seconds: float, project: int = 3) -> int:
    reply = requests.post(f"{url}/webhook", json={"action": "TOY_PROBE", "project": {"id": project}, "seconds": seconds},
                          timeout=5)
    assert reply.status_code == 200, reply.text
    return reply.json()["job"]


def job(url: str, job_id: int) -> dict:
    return requests.get(f"{url}/jobs/{job_id}", timeout=5).json()


def children(pid: int) -> list[int]:
    """The live children of process ``pid``, from every one of its threads."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


def test_jobs_run_in_a_child_that_a_kill_9_only_delays(start_backend, tmp_path):
    env = {"DATA_DIR": tmp_path / "toy", "LABEL_STUDIO_URL": "http://127.0.0.1:9", "TRAIN_DEBOUNCE_S": 0,
           "JOB_LEASE_S": 1.5, "WARMUP": "false"}
    server, url = start_backend("tests.toy_backend", env)
    # a server that has only served has no job process (nor its torch import and memory) ...
    assert requests.get(f"{url}/health", timeout=2).status_code == 200
    time.sleep(1.5)
    assert not children(server.pid), "a job process started before any job"
    first = probe(url, 0)
    done = wait_until(lambda: job(url, first)["state"] == "done" and job(url, first), 30, "the first probe")
    assert done["result"]["pid"] != server.pid, "the job ran in the server process"
    # ... at a lower priority: serving goes first on a small machine
    assert os.getpriority(os.PRIO_PROCESS, done["result"]["pid"]) >= JOB_NICENESS

    second = probe(url, 6)
    running = wait_until(lambda: job(url, second)["state"] == "running" and job(url, second), 30, "the long probe")
    child = int(running["worker"].split(":")[1])
    os.kill(child, signal.SIGKILL)
    # the server keeps serving and journaling while its job process is dead
    assert requests.get(f"{url}/health", timeout=2).status_code == 200
    third = probe(url, 0, project=4)
    for job_id in (second, third):
        finished = wait_until(lambda job_id=job_id: job(url, job_id)["state"] == "done" and job(url, job_id), 60,
                              f"job {job_id} after the kill")
        assert finished["result"]["pid"] not in (child, server.pid), "a new job process ran it"
    resumed = job(url, second)
    assert [t["outcome"] for t in resumed["tries"]] == ["lost", "done"], resumed  # resumed, not lost
    # the wake-ups sent while a job process was starting (the first probe's, the third's) did not kill it
    exits = re.findall(r"job process exited with (-?\d+)", server.log_tail(200_000))
    assert exits == [str(-signal.SIGKILL)], exits
    # and it dies with its server: no training left running beside a restarted server
    child = resumed["result"]["pid"]
    os.kill(server.pid, signal.SIGKILL)
    wait_until(lambda: not Path(f"/proc/{child}").exists() or "zombie" in Path(f"/proc/{child}/status").read_text(),
               10, "the job process to die with its server")


def test_a_restarted_server_resumes_the_job_it_was_running_without_a_new_event(start_backend, tmp_path):
    env = {"DATA_DIR": tmp_path / "toy", "LABEL_STUDIO_URL": "http://127.0.0.1:9", "TRAIN_DEBOUNCE_S": 0,
           "JOB_LEASE_S": 1.5, "WARMUP": "false"}
    server, url = start_backend("tests.toy_backend", env)
    left = probe(url, 3)
    wait_until(lambda: job(url, left)["state"] == "running", 30, "the probe to start")
    os.kill(server.pid, signal.SIGKILL)  # and its job process with it
    # the new server starts its job process for the journal's job, though no webhook has come
    _, url = start_backend("tests.toy_backend", env)
    resumed = wait_until(lambda: job(url, left)["state"] == "done" and job(url, left), 60, "the left job")
    assert [t["outcome"] for t in resumed["tries"]] == ["lost", "done"], resumed
