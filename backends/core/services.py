"""The per-process objects every backend shares: settings, journal, Label Studio client, media."""

from __future__ import annotations

from dataclasses import dataclass

from .caches import keep_caches_under
from .journal import Journal
from .labelstudio import LabelStudioClient
from .logs import register_secret
from .media import FileLimits, MediaLoader
from .registry import ModelRegistry
from .settings import CoreSettings


@dataclass
class Services:
    settings: CoreSettings
    journal: Journal
    ls: LabelStudioClient
    media: MediaLoader

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> Services:
        keep_caches_under(settings.data_dir)  # before any model library is imported
        api_key = settings.label_studio_api_key.get_secret_value() if settings.label_studio_api_key else None
        register_secret(api_key)
        register_secret(settings.basic_auth_pass.get_secret_value() if settings.basic_auth_pass else None)
        ls = LabelStudioClient(settings.label_studio_url, api_key)
        journal = Journal(
            settings.journal_path, debounce_s=settings.train_debounce_s, lease_s=settings.job_lease_s,
            retry_s=settings.job_retry_s, keep_s=settings.journal_keep_days * 86400,
            synchronous=settings.journal_synchronous, outage_s=settings.label_studio_outage_s,
        )
        media = MediaLoader(
            ls,
            allowed_hosts=settings.allowed_media_hosts,
            max_bytes=settings.media_max_bytes,
            max_pixels=settings.media_max_pixels,
            timeout_s=settings.media_timeout_s,
            cache_dir=settings.media_cache_dir,
            cache_mb=settings.media_cache_mb,
            files=FileLimits(settings.video_max_bytes, settings.video_download_s, settings.video_cache_mb),
            local_files_root=settings.local_files_root,
            label_studio_host=settings.label_studio_host,
        )
        return cls(settings, journal, ls, media)

    def registry(self, backend: str, project: int) -> ModelRegistry:
        return ModelRegistry(self.settings.model_dir, backend, project)
