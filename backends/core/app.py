"""The Label Studio ML protocol server: a thin Flask layer over a :class:`LabelLoopModel` subclass.

Routes: ``GET /health``, ``POST /setup``, ``POST /predict``, ``POST /webhook``, ``GET|POST /versions``,
``GET /jobs``, ``GET /jobs/<id>``, ``POST /jobs/<id>/cancel``, ``GET /metrics``. Every error is JSON
``{"error", "message"}``; input problems are 4xx, never 5xx.
"""

from __future__ import annotations

import hmac
import json
import logging
import math
import threading
import time
from base64 import b64decode
from collections.abc import Callable
from typing import Any

import orjson
from flask import Flask, Response, g, jsonify, request
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

from .errors import BadRequest, LabelLoopError, NotFound, Unauthorized
from .extra_params import parse_extra_params
from .heap import HeapTrimmer
from .job_process import ProcessDispatcher
from .jobs import EmbeddedDispatcher
from .limits import MAX_JSON_DEPTH, body_limit, nesting_depth
from .logs import redact, setup_logging
from .metrics import LATENCY, PREDICTIONS, REQUESTS, StateCollector, render
from .model import LabelLoopModel, importable
from .rq_jobs import RQDispatcher
from .services import Services
from .settings import CoreSettings

log = logging.getLogger(__name__)


MAX_ID = 2**63 - 1  # SQLite's (and Label Studio's) integer range
WARMUP_DONE = "warm-up done"  # logged once the first request will find everything loaded
WARMUP_WAIT_S = 120.0  # how long a /predict waits for a warm-up still running
REASON_CHARS = 300  # an HTTP reason phrase Label Studio prints whole in its form


# orjson writes NaN and infinities as null (what FiniteJSON promises), sorts keys as Flask does,
# and takes int keys (per-class counts) as the standard encoder does.
_ORJSON = orjson.OPT_NON_STR_KEYS | orjson.OPT_SORT_KEYS


class FiniteJSON(DefaultJSONProvider):
    """JSON that strict parsers accept: a diverged loss (NaN) or an unbounded metric in a job's
    progress or a version's metadata becomes null instead of the bare ``NaN`` Python writes.

    Compact responses (all of them outside Flask's debug mode) are written by orjson: a brush mask
    is a list of tens of thousands of RLE bytes, which the standard encoder writes in 5 ms and
    orjson in 0.7 ms, a tenth of a warm SAM click (bench/segmenter.py). What orjson refuses (an int
    beyond 64 bits, a tuple key) falls back to the standard encoder. The values are the same; the
    text differs where JSON leaves it free: non-ASCII as UTF-8 rather than escaped, int
    keys sorted as strings (no answer here carries a date, which orjson writes as ISO 8601)."""

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        if set(kwargs) <= {"separators"}:  # Flask's compact call
            try:
                return orjson.dumps(obj, default=self.default, option=_ORJSON).decode()
            except TypeError:
                pass
        try:
            return super().dumps(obj, allow_nan=False, **kwargs)
        except ValueError:  # rare: pay for the walk only then
            return super().dumps(_finite(obj), **kwargs)


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def status_line(code: int, message: str) -> str:
    """``"400 <message>"``: the message as the HTTP reason phrase too. Label Studio shows a failed
    /setup or /predict as requests' ``"400 Client Error: <reason> for url: ..."`` and never reads
    the body, so the reason phrase is the only place where its Connect Model form can show why."""
    printable = "".join(ch if " " <= ch <= "~" else " " for ch in message)  # ASCII, no CR/LF
    reason = " ".join(printable.split())[:REASON_CHARS]
    return f"{code} {reason}" if reason else str(code)


def parse_project(value: Any) -> int | None:
    """Label Studio sends ``"4.1795408869"`` (id.created_at) to /setup and /predict, a project
    object to webhooks, and users send plain ids to our own routes."""
    if isinstance(value, dict):
        value = value.get("id")
    if value is None or isinstance(value, bool):
        return None
    if isinstance(value, int) and 0 <= value <= MAX_ID:
        return value
    if isinstance(value, str):
        head = value.split(".", 1)[0].strip()
        # isdigit() also passes "²" (which int() refuses); ids beyond 64 bits overflow SQLite
        if head.isascii() and head.isdecimal() and int(head) <= MAX_ID:
            return int(head)
    raise BadRequest(f"project {str(value)[:40]!r} is not a Label Studio project id")


def _body() -> dict[str, Any]:
    too_deep = BadRequest(f"request body nests deeper than {MAX_JSON_DEPTH} levels of objects and lists")
    limit = g.body_limit
    if limit.cut_short(len(request.get_data(cache=True)), request.content_length):
        raise LabelLoopError(limit.refusal(request.path, None), status=413)
    if nesting_depth(request.get_data(cache=True)) > MAX_JSON_DEPTH:
        raise too_deep
    try:
        data = request.get_json(silent=True, force=True)
    except RecursionError:  # the parser recurses once per level (a guard: the count above comes first)
        raise too_deep from None
    if data is None:
        raise BadRequest("request body is not valid JSON")
    if not isinstance(data, dict):
        raise BadRequest(f"request body must be a JSON object, got {type(data).__name__}")
    return data


def _uploads_allowed(settings: CoreSettings) -> None:
    if not settings.basic_auth_user and not settings.allow_unauthenticated_uploads:
        raise LabelLoopError("uploading weights needs Basic auth (BASIC_AUTH_USER and BASIC_AUTH_PASS), or "
                             "ALLOW_UNAUTHENTICATED_UPLOADS=true where nobody else can reach this port", status=403)


def create_app(
    model_class: type[LabelLoopModel],
    settings: CoreSettings | None = None,
    *,
    start_worker: bool | None = None,
) -> Flask:
    settings = settings or CoreSettings()
    setup_logging(settings.log_level)
    services = Services.from_settings(settings)
    backend = model_class.backend
    dispatcher = _dispatcher(model_class, services)
    background = start_worker if start_worker is not None else bool(settings.embedded_worker or settings.redis_url)
    # Jobs and /predict start once the warm-up is over: the warm-up imports and exports (torch.onnx,
    # dynamo) what a training job imports too, and two threads importing that package graph at once
    # can deadlock Python's import locks and leave a module half-initialised for the process's life
    # (seen: a job resumed at a restart, training beside the warm-up's ONNX export).
    warm = threading.Event()
    if settings.warmup:
        threading.Thread(target=_warmup, args=(model_class, services, warm, dispatcher.start if background else None),
                         name="warmup", daemon=True).start()
    else:
        warm.set()
        if background:
            dispatcher.start()
    state_metrics = StateCollector(backend, services)
    if model_class.watch_interval_s and background:
        threading.Thread(target=_watch, args=(model_class, services), name=f"{backend}-watch", daemon=True).start()

    app = Flask(f"labelloop.{backend}")
    app.json = FiniteJSON(app)
    heap = HeapTrimmer().start()
    app.extensions["labelloop"] = {"services": services, "dispatcher": dispatcher, "model_class": model_class,
                                   "heap": heap}

    def new_model(project: int | None, label_config: str | None) -> LabelLoopModel:
        return model_class.for_project(project, services, label_config=label_config)

    # -- cross-cutting --------------------------------------------------------------------------
    @app.before_request
    def _auth_and_clock() -> None:
        g.started = time.perf_counter()
        limit = g.body_limit = body_limit(request.path, request.mimetype, settings)
        request.max_content_length = limit.max_bytes  # a chunked body is cut there as it streams
        if (request.content_length or 0) > limit.max_bytes:  # refused before a byte of it is read
            raise LabelLoopError(limit.refusal(request.path, request.content_length or 0), status=413)
        if request.path == "/health" or not settings.basic_auth_user:
            return
        expected_pass = settings.basic_auth_pass.get_secret_value() if settings.basic_auth_pass else ""
        user, password = _basic_credentials(request.headers.get("Authorization", ""))
        ok_user = hmac.compare_digest(user.encode(), settings.basic_auth_user.encode())
        ok_pass = hmac.compare_digest(password.encode(), expected_pass.encode())
        if not (ok_user and ok_pass):
            raise Unauthorized("Basic auth required (BASIC_AUTH_USER / BASIC_AUTH_PASS are set on this backend)")

    @app.teardown_request
    def _give_back_freed_memory(_exc: BaseException | None) -> None:
        heap.request_done()

    @app.after_request
    def _measure(response: Response) -> Response:
        route = request.url_rule.rule if request.url_rule else "unmatched"
        REQUESTS.labels(backend, route, str(response.status_code)).inc()
        LATENCY.labels(backend, route).observe(time.perf_counter() - g.get("started", time.perf_counter()))
        if response.status_code == 401:
            response.headers["WWW-Authenticate"] = 'Basic realm="label-loop"'
        return response

    @app.errorhandler(LabelLoopError)
    def _input_error(exc: LabelLoopError) -> Response:
        log.info("%s %s -> %s: %s", request.method, request.path, exc.status, exc.message)
        body = {key: redact(value) if isinstance(value, str) else value for key, value in exc.to_json().items()}
        response = jsonify(body)
        # what Flask does with a (body, "status line") tuple, whose str status its types do not admit
        response.status = status_line(exc.status, body["message"])
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        return jsonify({"error": exc.name.lower().replace(" ", "_"), "message": exc.description}), exc.code or 500

    @app.errorhandler(Exception)
    def _bug(exc: Exception) -> tuple[Response, int]:
        log.exception("%s %s failed", request.method, request.path)
        return jsonify({"error": "internal", "message": f"internal error ({type(exc).__name__}); see the backend log"}), 500

    # -- protocol -------------------------------------------------------------------------------
    @app.get("/health")
    @app.get("/")
    def health() -> Response:
        return jsonify({"status": "UP", "backend": backend, "model_class": model_class.__name__})

    @app.post("/setup")
    def setup() -> Response:
        body = _body()
        schema = body.get("schema")
        if not isinstance(schema, str) or not schema.strip():
            raise BadRequest("/setup needs 'schema': the project's label config (XML string)")
        project = parse_project(body.get("project"))
        if project is None:
            raise BadRequest("/setup needs 'project' (Label Studio's '<id>.<timestamp>')")
        extra = parse_extra_params(body.get("extra_params"))  # the Connect Model form sends a string
        hostname = body.get("hostname")
        if hostname is not None and not isinstance(hostname, str):
            raise BadRequest("'hostname' must be a string (Label Studio's URL)")
        model = model_class(project_id=project, label_config=schema, services=services, extra_params=extra)
        model.setup()
        services.journal.save_setup(backend, project, schema, extra, hostname)
        return jsonify({"model_version": model.model_version})

    @app.post("/predict")
    def predict() -> Response:
        body = _body()
        tasks = body.get("tasks")
        if not isinstance(tasks, list) or not all(isinstance(t, dict) for t in tasks):
            raise BadRequest("/predict needs 'tasks': a list of task objects")
        if len(tasks) > settings.predict_max_tasks:
            raise LabelLoopError(f"/predict got {len(tasks)} tasks, over the {settings.predict_max_tasks} a request may "
                                 "carry (PREDICT_MAX_TASKS): select fewer tasks per Retrieve Predictions", status=413)
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise BadRequest("'params' must be a JSON object")
        context = params.get("context")
        if context is not None and not isinstance(context, dict):
            raise BadRequest("'params.context' must be a JSON object")
        model = new_model(parse_project(body.get("project")), body.get("label_config"))
        if not tasks:
            return jsonify({"results": [], "model_version": model.model_version})
        if not warm.wait(WARMUP_WAIT_S):  # it loads what this request needs; bounded if it hangs
            log.warning("%s: warm-up still running after %.0f s; predicting beside it", backend, WARMUP_WAIT_S)
        results = model.predict(tasks, context=context, login=params.get("login"), password=params.get("password"))
        if len(results) != len(tasks):
            raise RuntimeError(f"{model_class.__name__}.predict returned {len(results)} results for {len(tasks)} tasks")
        predictions = [item for item in results if isinstance(item, dict)]  # a list: the task's predictions, or none
        for item in predictions:
            item.setdefault("model_version", model.model_version)
        PREDICTIONS.labels(backend).inc(len(predictions))
        answer: dict[str, Any] = {"results": results,
                                  "model_version": predictions[0]["model_version"] if predictions else model.model_version}
        for note in model.deferred:  # Label Studio ignores the key; an API caller reads why a task got nothing
            answer.setdefault("deferred", []).append(note)
            if model.project_id is not None:
                notify(note["job"], model.project_id)
        return jsonify(answer)

    def notify(job_id: int, project: int) -> None:
        # The event is already journaled: a dispatcher error (Redis down) must not turn into a 5xx
        # that makes Label Studio report a failed webhook; the reaper re-sends the job later.
        try:
            dispatcher.notify(job_id, project)
        except Exception as exc:
            log.warning("%s: job %s journaled, but the dispatcher could not be told (%s); it is re-sent later",
                        backend, job_id, exc)

    @app.post("/webhook")
    def webhook() -> tuple[Response, int]:
        body = _body()
        action = body.get("action")
        if not isinstance(action, str):
            raise BadRequest("webhook body has no 'action'")
        kind = model_class.job_kinds.get(action)
        if kind is None:
            return jsonify({"status": "ignored", "action": action}), 200
        project = parse_project(body.get("project"))
        if project is None:
            raise BadRequest(f"{action} webhook has no project id")
        if isinstance(body.get("project"), dict):
            body["project"] = {k: v for k, v in body["project"].items() if k != "token"}
        recorded = services.journal.record(
            backend, project, action, body, kind=kind, dedup_key=model_class.dedup_key(action, body)
        )
        if recorded.new_job:
            notify(recorded.job_id, project)
        status = "duplicate" if recorded.event_id is None else "queued"
        return jsonify({"status": status, "job": recorded.job_id, "kind": kind}), 200

    # -- versions and jobs ----------------------------------------------------------------------
    @app.get("/versions")
    def versions() -> Response:
        project_arg = request.args.get("project")
        if project_arg is None:
            names = sorted({v.name for p in services.journal.projects(backend) for v in services.registry(backend, p).list()})
            return jsonify({"versions": names})
        project = parse_project(project_arg)
        assert project is not None, "a query argument is a str, which parses to an id or raises BadRequest"
        registry = services.registry(backend, project)
        current = registry.current_name()
        listed = registry.list()
        return jsonify({
            "project": project,
            "current": current or new_model(project, None).model_version,  # the model's own base name
            "versions": [v.name for v in listed],
            "details": [v.to_json(current) for v in listed],
        })

    @app.post("/versions")
    def change_versions() -> tuple[Response, int]:
        if request.mimetype == "multipart/form-data":
            _uploads_allowed(settings)  # before the body is read
            if not request.files:
                raise BadRequest("the multipart upload carries no file")
            project = parse_project(request.form.get("project"))
            if project is None:
                raise BadRequest("uploading weights needs a 'project' form field")
            model = new_model(project, None)
            version = model.import_version(upload=next(iter(request.files.values())))
            return jsonify(version.to_json(version.name)), 201
        body = _body()
        project = parse_project(body.get("project"))
        if project is None:
            raise BadRequest("POST /versions needs 'project'")
        if isinstance(body.get("current"), str):  # rollback / roll forward
            version = services.registry(backend, project).set_current(body["current"])
            log.info("%s: project %s now serves %s", backend, project, version.name)
            return jsonify(version.to_json(version.name)), 200
        if isinstance(body.get("path"), str):
            version = new_model(project, None).import_version(path=body["path"])
            return jsonify(version.to_json(version.name)), 201
        raise BadRequest("POST /versions takes {'project', 'current': <version>} to roll back, "
                         "{'project', 'path': <weights file>} or a multipart upload to register weights")

    @app.get("/jobs")
    def jobs() -> Response:
        project = parse_project(request.args.get("project")) if request.args.get("project") else None
        return jsonify({"jobs": [j.to_json() for j in services.journal.list_jobs(backend, project)]})

    @app.post("/jobs")
    def request_job() -> tuple[Response, int]:
        """Queue a job of one of the backend's kinds by hand, e.g. ``{"project": 3, "kind": "score"}``;
        ``tasks`` (a list of task ids) narrows a job that takes it (the detector's ``prelabel``)."""
        body = _body()
        project = parse_project(body.get("project"))
        kinds = sorted(set(model_class.job_kinds.values()) | set(model_class.requested_kinds))
        if project is None or body.get("kind") not in kinds:
            raise BadRequest(f"POST /jobs needs 'project' and 'kind', one of {', '.join(kinds)}")
        payload: dict[str, Any] = {"project": project}
        if "tasks" in body:
            tasks = body["tasks"]
            if not isinstance(tasks, list) or not tasks or not all(isinstance(t, int) and not isinstance(t, bool) for t in tasks):
                raise BadRequest(f"'tasks' must be a non-empty list of task ids (integers); got {json.dumps(tasks)[:200]}")
            payload["tasks"] = tasks
        recorded = services.journal.record(backend, project, "API_REQUEST", payload, kind=body["kind"])
        if recorded.new_job:
            notify(recorded.job_id, project)
        return jsonify({"status": "queued", "job": recorded.job_id, "kind": body["kind"]}), 202

    @app.get("/report")
    def report() -> Response:
        project = parse_project(request.args.get("project"))
        if project is None:
            raise BadRequest("GET /report needs ?project=<id>")
        return jsonify(new_model(project, None).report())

    def own_job(job_id: int) -> Any:
        found = services.journal.get_job(job_id) if job_id <= MAX_ID else None
        if found is None or found.backend != backend:
            raise NotFound(f"no job {job_id} for {backend}")
        return found

    @app.get("/jobs/<int:job_id>")
    def job(job_id: int) -> Response:
        return jsonify(own_job(job_id).to_json())

    @app.post("/jobs/<int:job_id>/cancel")
    def cancel(job_id: int) -> Response:
        cancelled = services.journal.request_cancel(own_job(job_id).id)
        if cancelled is None:  # pruned since own_job read it (it had ended long before)
            raise NotFound(f"no job {job_id} for {backend}")
        return jsonify(cancelled.to_json())

    @app.get("/metrics")
    def metrics() -> Response:
        return Response(render(state_metrics), mimetype="text/plain; version=0.0.4")

    return app


def _watch(model_class: type[LabelLoopModel], services: Services) -> None:
    while True:
        time.sleep(model_class.watch_interval_s or 60)
        try:
            model_class.watch(services)
        except Exception:  # a failed look must not end the watching
            log.exception("%s: watch failed", model_class.backend)


def _dispatcher(model_class: type[LabelLoopModel], services: Services) -> Any:
    """Who runs the jobs this server journals: RQ workers (REDIS_URL), else a child job process
    (``JOB_RUNNER=process``: training never shares this process's GIL with acks and /predict), else
    a thread of this process. A class a child cannot import by path (defined in a notebook or a
    function) runs in a thread."""
    settings, backend = services.settings, model_class.backend
    model_path = f"{model_class.__module__}:{model_class.__qualname__}"
    if settings.redis_url:
        return RQDispatcher(services.journal, backend, model_path, settings.redis_url, settings.rq_queue)
    if settings.job_runner == "process" and model_class.jobs_in_child and importable(model_path, model_class):
        return ProcessDispatcher(backend, model_path, settings, services.journal)
    if settings.job_runner == "process" and model_class.jobs_in_child:
        log.warning("%s: %s cannot be imported by path; jobs run in a thread of the server", backend, model_path)
    return EmbeddedDispatcher(services.journal, backend, lambda job: model_class.for_job(job, services))


def _warmup(model_class: type[LabelLoopModel], services: Services, warm: threading.Event,
            then: Callable[[], None] | None) -> None:
    """Warm up, then mark the process warm and start ``then`` (the job worker), whatever happens."""
    started = time.perf_counter()
    try:
        model_class.warmup(services)
        log.info("%s: %s in %.1f s", model_class.backend, WARMUP_DONE, time.perf_counter() - started)
    except Exception as exc:  # a failed warm-up only means a slower first request
        log.warning("%s: warm-up failed (first request will load instead): %s", model_class.backend, exc)
    finally:
        warm.set()
        if then is not None:
            then()


def _basic_credentials(header: str) -> tuple[str, str]:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded:
        return "", ""
    try:
        user, _, password = b64decode(encoded, validate=True).decode("utf-8").partition(":")
    except (ValueError, UnicodeDecodeError):
        return "", ""
    return user, password
