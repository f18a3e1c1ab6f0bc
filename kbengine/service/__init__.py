"""``kbengine serve``: the HTTP API (FastAPI) and the inspection page over one knowledge base."""

from kbengine.service.app import create_app
from kbengine.service.settings import ServiceSettings

__all__ = ["ServiceSettings", "create_app"]
