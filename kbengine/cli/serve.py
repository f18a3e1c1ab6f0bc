"""``kbengine serve``: the HTTP API and the inspection page (``kbengine.service``) under uvicorn."""

from __future__ import annotations

import signal
import socket
import sys
import time
from typing import Annotated

import typer

from kbengine.cli import options
from kbengine.cli.app import app
from kbengine.cli.rendering import err, out
from kbengine.core.errors import InvalidInputError


@app.command()
def serve(
    kb_dir: options.KbDir = None,
    url: options.Url = None,
    collection: options.Collection = None,
    encoder: options.Encoder = None,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on; not loopback needs API keys.")] = (
        "127.0.0.1"
    ),
    port: Annotated[int, typer.Option("--port", min=0, max=65535, help="TCP port (0: a free one, shown).")] = 8000,
    workers: Annotated[
        int | None,
        typer.Option("--workers", min=1, help="Model calls at once (KBENGINE_WORKERS); torch threads = cores/workers."),
    ] = None,
    hash_key: Annotated[
        bool,
        typer.Option(
            "--hash-key",
            help="Read an API key on stdin (or make one when stdin is empty) and print its line for "
            "KBENGINE_API_KEYS_FILE, then exit.",
        ),
    ] = False,
) -> None:
    """Serve the knowledge base over HTTP: POST /v1/seek, /v1/detect, /v1/ask, /v1/ingest; the inspection
    page at /; OpenAPI at /docs. Keys: KBENGINE_API_KEYS='write:KEY,read:KEY' or KBENGINE_API_KEYS_FILE.

    On an embedded knowledge base it writes <kb>/serve.json (its URL and pid) while it listens, and the
    CLI's seek, detect, ask, info, docs and ingest on that knowledge base send their requests here."""
    from kbengine.service.auth import Keys, is_loopback, new_key
    from kbengine.service.auth import hash_key as hashed

    if hash_key:
        given = "" if sys.stdin.isatty() else sys.stdin.read().strip()
        key = given or new_key()
        if not given:
            err.print(f"new key (give it to the client; it is not stored): {key}", highlight=False)
        out.print(f"write {hashed(key)}  # or: read {hashed(key)}", highlight=False, markup=False)
        return
    import uvicorn

    from kbengine.cli.remote import advertise, withdraw
    from kbengine.service import ServiceSettings, create_app

    service_settings = ServiceSettings()
    keys = Keys.load(service_settings.api_keys, service_settings.api_keys_file)
    if keys.open and not is_loopback(host):
        raise InvalidInputError(
            f"refusing to serve on {host} without API keys: set KBENGINE_API_KEYS ('write:KEY,read:KEY') or "
            "KBENGINE_API_KEYS_FILE (see --hash-key), or listen on 127.0.0.1"
        )
    settings = options.settings_for(kb_dir=kb_dir, url=url, collection=collection, encoder=encoder, workers=workers)
    start = time.perf_counter()
    kb = options.open_kb(settings, lazy_encoder=True)  # loaded on the model thread
    advert = None
    try:
        application = create_app(kb, service_settings)
        listening = listen(host, port)
        address = f"http://{url_host(host)}:{listening.getsockname()[1]}"
        if not settings.qdrant_url:  # the CLI on this knowledge base talks to this process
            advert = advertise(settings.kb, address)
        where = settings.qdrant_url or str(settings.kb)
        access = "open (loopback, no keys)" if keys.open else f"{len(keys.entries)} API key(s)"
        err.print(
            f"kbengine serve: {where} on {address}/  workers {settings.workers}, access {access}, "
            f"opened in {time.perf_counter() - start:.1f} s; loading the models",
            highlight=False,
            markup=False,
        )
        # uvicorn re-raises the SIGTERM it stopped on: end by SystemExit, so the advert is removed
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
        config = uvicorn.Config(application, host=host, port=port, log_level="info", access_log=False)
        uvicorn.Server(config).run(sockets=[listening])
    finally:
        if advert is not None:
            withdraw(advert)
        kb.close()


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: a free one): bound before the models load, so a
    client that connects meanwhile waits in the backlog instead of being refused."""
    try:
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        return socket.create_server((host, port), family=family, backlog=2048)
    except OSError as e:
        raise InvalidInputError(f"cannot listen on {host}:{port}: {e.strerror or e}; choose another --port") from None


def url_host(host: str) -> str:
    """How a client on this machine reaches ``host``: a wildcard address as loopback."""
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host
