"""The options commands share (``options.KbDir``, ``options.Json`` ...), and the one way the CLI
builds settings and opens a knowledge base."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from kbengine.cli.remote import Remote
    from kbengine.core.settings import Settings
    from kbengine.facade import KnowledgeBase

KbDir = Annotated[Path | None, typer.Option("--kb", help="Knowledge base folder (default ./kb or KBENGINE_KB).")]
Url = Annotated[str | None, typer.Option("--url", help="Qdrant server URL (KBENGINE_QDRANT_URL).")]
Collection = Annotated[str | None, typer.Option("--collection", help="Collection name in server mode.")]
Encoder = Annotated[
    str | None, typer.Option("--encoder", help="auto | packaged | open_clip | dinov2 (KBENGINE_ENCODER).")
]
Server = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="KBENGINE_SERVER",
        show_envvar=False,
        help="Send the request to this running 'kbengine serve' (KBENGINE_SERVER; default: the serve that owns "
        "the knowledge base, found by its <kb>/serve.json).",
    ),
]
ApiKey = Annotated[
    str | None,
    typer.Option(
        "--api-key",
        envvar="KBENGINE_API_KEY",
        show_envvar=False,
        help="The service's API key (KBENGINE_API_KEY), sent as 'Authorization: Bearer KEY'.",
    ),
]
Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
Strategy = Annotated[
    str, typer.Option("--strategy", "-s", help="kde (Q2K: Bayesian mixture + KDE-weighted clusters) | topk | mmr.")
]
K = Annotated[int, typer.Option("-k", "--k", min=1, help="How many knowledge documents to return.")]
Mode = Annotated[
    str, typer.Option("--mode", help="auto | zero-shot (CLIP prompts) | references (normal images) | both.")
]
Prompts = Annotated[Path | None, typer.Option("--prompts", help="Learned prompts from train-prompts (CLIP).")]
Llm = Annotated[str | None, typer.Option("--llm", help="none (grounded report) | openai | hf (KBENGINE_LLM).")]
LlmUrl = Annotated[str | None, typer.Option("--llm-url", help="OpenAI-compatible server URL (KBENGINE_LLM_URL).")]
Model = Annotated[
    str | None, typer.Option("--model", help="Model name (openai) or local model folder (hf) (KBENGINE_LLM_MODEL).")
]
Setting = Annotated[str, typer.Option("--setting", help="seek (knowledge + expert) | vanilla (1-shot).")]


def settings_for(
    *,
    kb_dir: Path | None = None,
    url: str | None = None,
    collection: str | None = None,
    encoder: str | None = None,
    llm: str | None = None,
    llm_url: str | None = None,
    model: str | None = None,
    **more: Any,
) -> Settings:
    """The one way the CLI builds settings: ``KBENGINE_*`` variables, overridden by the options given."""
    from kbengine.core.settings import Settings

    given: dict[str, Any] = {
        "kb": kb_dir,
        "qdrant_url": url,
        "collection": collection,
        "encoder": encoder,
        "llm": llm,
        "llm_url": llm_url,
        "llm_model": model,
        **more,
    }
    return Settings(**{name: value for name, value in given.items() if value is not None})


def service(server: str | None, api_key: str | None, kb_dir: Path | None, url: str | None) -> Remote | None:
    """The running ``kbengine serve`` a command sends its request to (``--server``, or the one that
    owns the knowledge base); None: the command runs in this process."""
    from kbengine.cli.remote import find

    return find(server, api_key, kb_dir, url)


def require_kb(settings: Settings) -> None:
    """Refuse, with how to make one, a command that reads a knowledge base that does not exist."""
    from kbengine.core.errors import EmptyKnowledgeBaseError

    if not settings.qdrant_url and not (settings.kb / "qdrant").exists():
        raise EmptyKnowledgeBaseError(
            f"no knowledge base at {settings.kb}; create one with: kbengine ingest PATH --kb {settings.kb}"
        )


def existing_kb(
    kb_dir: Path | None, url: str | None, collection: str | None, *, lazy_encoder: bool = False
) -> KnowledgeBase:
    """Open the knowledge base the store options name, refusing one that does not exist yet: what
    every command that only reads or edits a knowledge base starts with."""
    settings = settings_for(kb_dir=kb_dir, url=url, collection=collection)
    require_kb(settings)
    return open_kb(settings, lazy_encoder=lazy_encoder)


def open_kb(settings: Settings, *, lazy_encoder: bool = False) -> KnowledgeBase:
    from kbengine.facade import KnowledgeBase

    return KnowledgeBase.open(settings=settings, lazy_encoder=lazy_encoder)


Categories = Annotated[list[str] | None, typer.Option("--category", help="Only these categories (repeatable).")]
