"""The service's own settings (``KBENGINE_*`` like the engine's): keys, limits, the queue, CORS."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class ServiceSettings(BaseSettings):
    """``kbengine serve`` settings; every field can be set as ``KBENGINE_<FIELD>``."""

    model_config = SettingsConfigDict(env_prefix="KBENGINE_", extra="ignore")

    api_keys: str | None = Field(
        None,
        description="Comma-separated API keys, each 'read:KEY' or 'write:KEY' (write implies read); a bare KEY is "
        "read-only.",
    )
    api_keys_file: Path | None = Field(
        None,
        description="A file of hashed keys, one 'SCOPE sha256:HEX [name]' per line (see 'kbengine serve --hash-key').",
    )
    max_upload_bytes: int = Field(50 * 1024 * 1024, ge=1, description="Largest request body (uploads) in bytes.")
    max_upload_files: int = Field(64, ge=1, description="Most files in one ingest upload.")
    queue: int = Field(
        32, ge=1, description="Requests waiting for a worker at most; more are refused with 503 and Retry-After."
    )
    cors_origins: list[str] = Field(
        default_factory=list, description="Origins allowed by CORS (JSON list); none by default (CORS off)."
    )
    jobs_kept: int = Field(100, ge=1, description="Finished ingest jobs kept for GET /v1/jobs/{id}.")
