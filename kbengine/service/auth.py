"""API keys with two scopes: ``read`` (seek, detect, ask, info, documents, blobs) and ``write``
(ingest, and the write routes; write implies read).

Keys come from ``KBENGINE_API_KEYS`` (``write:KEY,read:KEY``) or a file of sha256 hashes
(``KBENGINE_API_KEYS_FILE``, one ``SCOPE sha256:HEX [name]`` per line); only hashes are kept in
memory and compared in constant time. No key configured means open access, which ``serve``
allows on a loopback host only."""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from kbengine.core.errors import InvalidInputError

Scope = Literal["read", "write"]
SCOPES: tuple[Scope, ...] = ("read", "write")


def hash_key(key: str) -> str:
    """The line form of a key's hash: ``sha256:HEX``."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> str:
    return "kbe_" + secrets.token_urlsafe(24)


@dataclass(frozen=True)
class Keys:
    """The configured keys as (hash, scope) pairs."""

    entries: tuple[tuple[str, Scope], ...] = ()

    @property
    def open(self) -> bool:
        """No key configured: every request has every scope."""
        return not self.entries

    @classmethod
    def load(cls, env: str | None, file: Path | None) -> Keys:
        entries: list[tuple[str, Scope]] = []
        for item in (env or "").split(","):
            item = item.strip()
            if not item:
                continue
            scope, sep, key = item.partition(":")
            if not sep:
                scope, key = "read", item
            entries.append((hash_key(key.strip()), _scope(scope, "KBENGINE_API_KEYS")))
        if file is not None:
            entries.extend(_read_file(file))
        return cls(tuple(entries))

    def scope_of(self, key: str | None) -> Scope | None:
        """The scope ``key`` grants (``write`` when any entry grants it), None when it grants none."""
        if self.open:
            return "write"
        if not key:
            return None
        digest = hash_key(key)
        granted: Scope | None = None
        for known, scope in self.entries:
            if hmac.compare_digest(known, digest) and (granted is None or scope == "write"):
                granted = scope
        return granted


def allows(granted: Scope | None, needed: Scope) -> bool:
    return granted == "write" or (granted == "read" and needed == "read")


def _scope(value: str, where: str) -> Scope:
    value = value.strip().lower()
    if value not in SCOPES:
        raise InvalidInputError(f"{where}: scope {value!r} is not one of read, write")
    return "write" if value == "write" else "read"


def _read_file(path: Path) -> Iterable[tuple[str, Scope]]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"KBENGINE_API_KEYS_FILE {path}: cannot read it ({e.__class__.__name__})") from None
    for number, line in enumerate(lines, 1):
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if len(words) < 2 or not words[1].startswith("sha256:") or len(words[1]) != 71:
            raise InvalidInputError(f"KBENGINE_API_KEYS_FILE {path}, line {number}: expected 'SCOPE sha256:HEX [name]'")
        yield words[1].lower(), _scope(words[0], f"KBENGINE_API_KEYS_FILE line {number}")


def is_loopback(host: str) -> bool:
    """``host`` only accepts connections from this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
