"""The service's routes, one router per area: probes (health, readiness, metrics, whoami), inspect
(seek, detect, ask), knowledge (info, documents, blobs, ingest jobs, edits), and the page."""

from kbengine.service.routes import inspect, knowledge, page, probes

__all__ = ["inspect", "knowledge", "page", "probes"]
