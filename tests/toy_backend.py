"""A minimal backend used to test the shared plumbing end to end (not a product backend).

Its model is deliberately trivial, so the tests exercise only the protocol server, journal, queue,
registry and Label Studio client: predict puts one box in the image centre with the config's first
label (loading the real image through the media loader); fit pages the project's annotations from
Label Studio and publishes a version recording how many it saw. ``TOY_FIT_SECONDS`` makes fit slow
enough to kill a worker in the middle of it; ``TOY_WEIGHTS_BYTES`` sizes its weights file and
``TOY_FSIZE_LIMIT`` caps the size of any file the process writes (a full disk for weights, while the
small journal keeps working).
"""

from __future__ import annotations

import os
import time
from typing import Any

from backends.core.cli import serve
from backends.core.model import LabelLoopModel


class ToyModel(LabelLoopModel):
    backend = "toy"
    #: TOY_PROBE webhooks start a ``probe`` job: it reports the process it ran in, after ``seconds``
    #: (its payload) of waiting that a cancellation or a kill -9 can interrupt; it needs no Label Studio.
    job_kinds = {**LabelLoopModel.job_kinds, "TOY_PROBE": "probe"}

    def run_job(self, kind: str, events: Any, job: Any) -> dict[str, Any] | None:
        if kind != "probe":
            return super().run_job(kind, events, job)
        deadline = time.time() + float(events[-1].payload.get("seconds", 0))
        while time.time() < deadline:
            time.sleep(0.05)
            job.check_cancelled()
        return {"pid": os.getpid()}

    def setup(self) -> None:
        super().setup()
        self.control()

    def control(self) -> Any:
        controls = [c for c in self.label_interface.controls if c.tag == "RectangleLabels"]
        if not controls:
            from backends.core.errors import LabelConfigError

            raise LabelConfigError("toy backend needs a <RectangleLabels> control")
        return controls[0]

    def predict(self, tasks: list[dict[str, Any]], context: dict[str, Any] | None = None, **kwargs: Any) -> list[dict[str, Any]]:
        control = self.control()
        version = self.model_version
        images = self.per_task(tasks, self.load_task_image)
        out = []
        for image in images:
            if isinstance(image, Exception):
                out.append({"result": [], "model_version": version})
                continue
            box = control.label([control.labels[0]], x=25, y=25, width=50, height=50)
            region = self.region(box, width=image.width, height=image.height, score=0.5)
            out.append({"result": [region], "score": 0.5, "model_version": version})
        return out

    def fit(self, event: str, data: dict[str, Any], *, job: Any = None, events: Any = (), **kwargs: Any) -> dict[str, Any]:
        n_annotations = sum(len(t.get("annotations") or []) for t in self.services.ls.iter_tasks(self.project_id))
        deadline = time.time() + float(os.environ.get("TOY_FIT_SECONDS", "0"))
        while time.time() < deadline:
            time.sleep(0.1)
            if job is not None:
                job.check_cancelled()
        with self.registry.stage() as staged:
            (staged.path / "weights.txt").write_text(str(n_annotations))
            (staged.path / "weights.bin").write_bytes(b"\0" * int(os.environ.get("TOY_WEIGHTS_BYTES", "0")))
            version = staged.publish({"n_annotations": n_annotations, "events": len(events)})
        return {"version": version.name, "n_annotations": n_annotations}


if __name__ == "__main__":
    if os.environ.get("TOY_FSIZE_LIMIT"):
        import resource
        import signal

        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # EFBIG instead of being killed, as a full disk behaves
        limit = int(os.environ["TOY_FSIZE_LIMIT"])
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    # Import the class under its module name (not __main__) so RQ workers can import it by path.
    from tests.toy_backend import ToyModel as ImportableToyModel

    serve(ImportableToyModel)
