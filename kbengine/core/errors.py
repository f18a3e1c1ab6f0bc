"""kbengine's exceptions: one class per thing that can go wrong, each message says what to do.

The CLI catches :class:`KBEngineError` once and prints the message without a traceback.
"""

from __future__ import annotations


class KBEngineError(Exception):
    """Base class for every error kbengine raises on purpose."""


class StoreInUseError(KBEngineError):
    """The embedded store is opened by another process."""


class EncoderMismatchError(KBEngineError):
    """The knowledge base was built with another encoder."""


class WeightsNotFoundError(KBEngineError):
    """Model weights are not on this machine and cannot be downloaded."""


class MissingDependencyError(KBEngineError):
    """An optional package is not installed."""


class InvalidInputError(KBEngineError):
    """A file or argument cannot be used; the message names it and says why."""


class EmptyKnowledgeBaseError(KBEngineError):
    """The knowledge base holds nothing to answer from."""


class StoreError(KBEngineError):
    """The Qdrant store failed or cannot be reached."""


class LLMError(KBEngineError):
    """The multimodal LLM could not answer: a server that is down, a wrong model name, a reply
    without content, missing model files."""
