"""Prometheus metrics. Request figures are counters/histograms; job and version figures are read
from the journal and the model store at scrape time, so they are right in every process layout
(gunicorn workers, RQ workers on other machines) without shared memory."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector

REQUESTS = Counter("labelloop_http_requests_total", "HTTP requests served", ["backend", "route", "status"])
LATENCY = Histogram(
    "labelloop_http_request_seconds",
    "HTTP request latency",
    ["backend", "route"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 100),
)
PREDICTIONS = Counter("labelloop_predictions_total", "Task predictions returned", ["backend"])
JOBS_FINISHED = Counter("labelloop_jobs_finished_total", "Background jobs finished", ["backend", "kind", "state"])


class StateCollector:
    """Jobs by state and the serving version per project, read live."""

    def __init__(self, backend: str, services: object) -> None:
        self.backend = backend
        self.services = services

    def collect(self) -> Iterator[GaugeMetricFamily]:
        journal = self.services.journal  # type: ignore[attr-defined]
        jobs = GaugeMetricFamily("labelloop_jobs", "Background jobs by state", labels=["backend", "state"])
        for state, n in journal.count_jobs(self.backend).items():
            jobs.add_metric([self.backend, state], n)
        yield jobs
        events = GaugeMetricFamily("labelloop_journal_events", "Events in the journal", labels=["backend"])
        events.add_metric([self.backend], journal.count_events(self.backend))
        yield events
        version = GaugeMetricFamily(
            "labelloop_model_version_info", "Serving model version (value 1)", labels=["backend", "project", "version"]
        )
        quality = GaugeMetricFamily(
            "labelloop_model_metric", "Evaluation metrics of the serving version (from its metadata)",
            labels=["backend", "project", "version", "metric"],
        )
        for project in journal.projects(self.backend):
            current = self.services.registry(self.backend, project).current()  # type: ignore[attr-defined]
            version.add_metric([self.backend, str(project), current.name if current else f"{self.backend}-base"], 1)
            for metric, value in ((current.metadata.get("metrics") or {}) if current else {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    quality.add_metric([self.backend, str(project), current.name, metric], float(value))
        yield version
        yield quality
        progress = GaugeMetricFamily(
            "labelloop_job_progress", "Numeric progress of running jobs (epoch, epochs, loss, ...)",
            labels=["backend", "project", "job", "key"],
        )
        for job in journal.list_jobs(self.backend, state="running"):
            for key, value in (job.progress or {}).items():
                if isinstance(value, (int, float)) and not isinstance(value, bool) and key != "updated_at":
                    progress.add_metric([self.backend, str(job.project), str(job.id), key], float(value))
        yield progress
        yield from gpu_memory(self.backend)


def gpu_memory(backend: str) -> Iterator[GaugeMetricFamily]:
    """CUDA memory this process holds, per device, as PyTorch's allocator sees it: the segmenter's
    embedding cache and the models live there, not in the RSS. Read from the process itself because
    ``nvidia-smi``'s per-process figures name host PIDs, which do not match inside a container. With
    several server workers (gunicorn), it is the figure of the worker that answers the scrape.

    Nothing when torch was never imported or CUDA never started: a scrape must not import torch or
    create a CUDA context (hundreds of MiB) in a process that had no use for one."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    family = GaugeMetricFamily("labelloop_gpu_memory_bytes", "CUDA memory held by this process (PyTorch allocator)",
                               labels=["backend", "device", "kind"])
    for index in range(torch.cuda.device_count()):
        family.add_metric([backend, f"cuda:{index}", "allocated"], float(torch.cuda.memory_allocated(index)))
        family.add_metric([backend, f"cuda:{index}", "reserved"], float(torch.cuda.memory_reserved(index)))
    yield family


def render(state: StateCollector) -> bytes:
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        shared = CollectorRegistry()
        MultiProcessCollector(shared)
        text = generate_latest(shared)
    else:
        from prometheus_client import REGISTRY

        text = generate_latest(REGISTRY)
    mine = CollectorRegistry()
    mine.register(state)
    return text + generate_latest(mine)
