"""What every route shares: the :class:`Service` (knowledge base, worker pool, ingest jobs, keys,
metrics) on ``app.state.service``, and the dependencies that hand it to a route and check keys."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

from fastapi import Depends, Header, HTTPException, Request, UploadFile
from PIL import Image

from kbengine.core.errors import InvalidInputError, KBEngineError
from kbengine.facade import KnowledgeBase
from kbengine.service.auth import Keys, Scope, allows
from kbengine.service.jobs import Jobs
from kbengine.service.metrics import Metrics
from kbengine.service.pool import WorkPool
from kbengine.service.recent import RecentPhotos
from kbengine.service.settings import ServiceSettings
from kbengine.service.uploads import decode_upload


class Service:
    """What the routes share: the knowledge base, the pool, the jobs, the keys, the metrics."""

    def __init__(self, kb: KnowledgeBase, settings: ServiceSettings) -> None:
        self.kb = kb
        self.settings = settings
        self.keys = Keys.load(settings.api_keys, settings.api_keys_file)
        self.pool = WorkPool(kb.settings.workers, settings.queue)
        self.metrics = Metrics(lambda: float(self.pool.depth))
        self.jobs = Jobs(
            kb.ingest,
            self.pool,
            settings.jobs_kept,
            on_finish=lambda job: self.metrics.jobs.labels(state=job.state).inc(),
        )
        self.uploads = kb.settings.kb / "uploads"
        self.recent = RecentPhotos()
        """The photos inspected lately, by inspection id (``POST /v1/feedback`` takes one)."""
        self.ready = False
        self.ready_error: str | None = None
        self._llm: Any = None
        self._llm_loaded = False

    def warm(self) -> None:
        """Load the encoder and wire the layers, so the first request pays no start-up."""
        try:
            if self.kb.identity is not None or self.kb.settings.encoder != "auto":
                _ = self.kb.encoder
            _ = self.kb.seeker, self.kb.detector
            self.kb.store.count()
            self.ready = True
        except KBEngineError as e:
            self.ready_error = str(e)

    def llm(self, name: str | None) -> Any:
        """The server's configured LLM (loaded once); a request may ask for ``none`` instead."""
        from reasoning.llm import get_llm

        if name not in (None, "", self.kb.settings.llm, "none"):
            raise InvalidInputError(f"llm {name!r}: this server offers {self.kb.settings.llm!r} or 'none'")
        if name == "none":
            return None
        if not self._llm_loaded:
            self._llm = get_llm(self.kb.settings)
            self._llm_loaded = True
        return self._llm

    def close(self) -> None:
        self.jobs.close()
        self.pool.close()

    def photo(self, upload: tuple[bytes, str | None]) -> Image.Image:
        """An uploaded photo decoded with the engine's checks (run it on a worker)."""
        return decode_upload(upload[0], upload[1], self.kb.settings.max_image_pixels)


def get_service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


Shared = Annotated[Service, Depends(get_service)]
"""A route's parameter that receives the service."""


async def read_upload(image: UploadFile) -> tuple[bytes, str | None]:
    return await image.read(), image.filename


def request_key(authorization: str | None, x_api_key: str | None) -> str | None:
    """The key a request carries: ``Authorization: Bearer KEY``, else ``X-API-Key``."""
    if authorization and authorization.lower().startswith("bearer "):
        return authorization[7:].strip()
    return x_api_key


def require(needed: Scope) -> Callable[..., None]:
    """A dependency: 401 without a known key, 403 when its scope is not ``needed`` (open access
    when no key is configured)."""

    def check(
        service: Shared,
        authorization: Annotated[str | None, Header(include_in_schema=False)] = None,
        x_api_key: Annotated[str | None, Header(include_in_schema=False)] = None,
    ) -> None:
        if service.keys.open:
            return
        granted = service.keys.scope_of(request_key(authorization, x_api_key))
        if granted is None:
            raise HTTPException(
                401, "an API key is needed: 'Authorization: Bearer KEY'", {"WWW-Authenticate": "Bearer"}
            )
        if not allows(granted, needed):
            raise HTTPException(403, f"this key has the {granted} scope; this route needs {needed}")

    return check


READ = [Depends(require("read"))]
WRITE = [Depends(require("write"))]
