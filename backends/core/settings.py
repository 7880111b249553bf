"""Configuration shared by every backend, read from the environment (pydantic-settings).

Each backend adds its own prefixed settings (``DETECTOR_*``, ``SAM_*``, ``ACTIVE_*``) in its own module;
these are the ones the plumbing needs. docs/configuration.md lists them all.
"""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Self

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from .errors import BadRequest


class CoreSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", extra="ignore", populate_by_name=True)

    # Where Label Studio is, and how to authenticate: a legacy token or a personal access token.
    label_studio_url: str = Field("http://localhost:8080", alias="LABEL_STUDIO_URL")
    label_studio_api_key: SecretStr | None = Field(None, alias="LABEL_STUDIO_API_KEY")
    # Label Studio's public address, as its own LABEL_STUDIO_HOST puts in front of media URLs, when
    # it is not LABEL_STUDIO_URL: those URLs are then Label Studio's too (fetched from LABEL_STUDIO_URL).
    label_studio_host: str | None = Field(None, alias="LABEL_STUDIO_HOST")

    # Local state: the journal, the media cache, per-project setup. MODEL_DIR defaults under it.
    data_dir: Path = Field(Path(".data"), alias="DATA_DIR")
    model_dir_override: Path | None = Field(None, alias="MODEL_DIR")
    journal_path_override: Path | None = Field(None, alias="JOURNAL_PATH")

    # Background jobs. Unset REDIS_URL: an in-process worker thread runs them.
    redis_url: str | None = Field(None, alias="REDIS_URL")
    rq_queue: str = Field("label-loop", alias="RQ_QUEUE")
    # FULL: every acknowledged event survives power loss; NORMAL: survives process crashes (kill -9),
    # the last commits may roll back on power loss, and commits skip an fsync.
    journal_synchronous: Literal["FULL", "NORMAL"] = Field("FULL", alias="JOURNAL_SYNCHRONOUS")
    train_debounce_s: float = Field(1.0, alias="TRAIN_DEBOUNCE_S", ge=0)
    job_lease_s: float = Field(60.0, alias="JOB_LEASE_S", gt=0)
    job_retry_s: float = Field(30.0, alias="JOB_RETRY_S", ge=0)
    # how long a job that fails only because Label Studio is unreachable keeps waiting for it
    # (trying again every minute at most, its tries uncounted) before it fails for good
    label_studio_outage_s: float = Field(86400.0, alias="LABEL_STUDIO_OUTAGE_S", gt=0)
    journal_keep_days: float = Field(30.0, alias="JOURNAL_KEEP_DAYS", gt=0)
    embedded_worker: bool = Field(True, alias="EMBEDDED_WORKER")
    # Without REDIS_URL, where the server's jobs run: a child process (its GIL and imports apart
    # from the acks and /predict; job_process.py) or a thread of the server process.
    job_runner: Literal["process", "thread"] = Field("process", alias="JOB_RUNNER")

    # Optional Basic auth in front of every route but /health.
    basic_auth_user: str | None = Field(None, alias="BASIC_AUTH_USER")
    basic_auth_pass: SecretStr | None = Field(None, alias="BASIC_AUTH_PASS")
    # A weights upload (POST /versions, multipart) is refused unless Basic auth is on: a new version
    # serves every labeler at once. Opt in without auth only where the port is yours alone.
    allow_unauthenticated_uploads: bool = Field(False, alias="ALLOW_UNAUTHENTICATED_UPLOADS")

    # Media loading limits.
    # Largest body per route, in MB (limits.py): a weights upload, a webhook (brush RLE can be a few
    # MB), a /predict (a few KB per task); /setup and the other routes take 2 MB.
    # A request's headers must arrive within this; its body then within 10 s plus 1 s per 256 KB.
    # Connections wait for their request outside the request threads (buffering.py); late ones get 408.
    request_timeout_s: float = Field(10.0, alias="REQUEST_TIMEOUT_S", gt=0)
    upload_max_mb: int = Field(512, alias="UPLOAD_MAX_MB", gt=0)
    webhook_max_mb: int = Field(8, alias="WEBHOOK_MAX_MB", gt=0)
    predict_max_mb: int = Field(32, alias="PREDICT_MAX_MB", gt=0)
    # tasks one /predict may carry (Label Studio sends every selected task in one): more get a 413
    predict_max_tasks: int = Field(5000, alias="PREDICT_MAX_TASKS", gt=0)
    allowed_media_hosts: Annotated[list[str], NoDecode] = Field(default_factory=list, alias="ALLOWED_MEDIA_HOSTS")
    media_max_bytes: int = Field(50 * 1024 * 1024, alias="MEDIA_MAX_BYTES", gt=0)
    media_max_pixels: int = Field(100_000_000, alias="MEDIA_MAX_PIXELS", gt=0)
    media_timeout_s: float = Field(10.0, alias="MEDIA_TIMEOUT_S", gt=0)
    media_cache_mb: int = Field(1024, alias="MEDIA_CACHE_MB", ge=0)
    # videos are streamed to disk, never held in memory: their own cap, download deadline and cache
    video_max_bytes: int = Field(2 * 1024**3, alias="VIDEO_MAX_BYTES", gt=0)
    video_download_s: float = Field(300.0, alias="VIDEO_DOWNLOAD_S", gt=0)
    video_cache_mb: int = Field(4096, alias="VIDEO_CACHE_MB", ge=0)
    local_files_root: Path | None = Field(None, alias="LOCAL_FILES_DOCUMENT_ROOT")

    log_level: str = Field("INFO", alias="LOG_LEVEL")
    warmup: bool = Field(True, alias="WARMUP")

    @field_validator("allowed_media_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        # Accept "a.example,b.example" from the environment as well as a JSON list.
        if isinstance(value, str):
            return [h.strip().lower() for h in value.split(",") if h.strip()]
        return value

    @property
    def model_dir(self) -> Path:
        return self.model_dir_override or self.data_dir / "models"

    @property
    def journal_path(self) -> Path:
        return self.journal_path_override or self.data_dir / "journal.sqlite3"

    @cached_property
    def media_cache_dir(self) -> Path:
        return self.data_dir / "media-cache"


class ProjectSettings(BaseSettings):
    """Base of a backend's own settings: environment first, then a project's ``extra_params``
    (set when connecting the backend in Label Studio) override the keys the backend lists in
    ``project_overridable``, validated like the environment."""

    project_overridable: ClassVar[tuple[str, ...]] = ()

    def for_project(self, extra_params: dict[str, Any] | None) -> Self:
        overrides = {k: v for k, v in (extra_params or {}).items() if k in self.project_overridable}
        if not overrides:
            return self
        try:
            return self.model_validate({**self.model_dump(), **overrides})
        except ValidationError as exc:
            problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
            prefix = self.model_config.get("env_prefix", "").rstrip("_").lower() or "backend"
            raise BadRequest(f"invalid {prefix} extra_params: {problems}") from None
