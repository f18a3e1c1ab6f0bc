"""The words every layer shares: the normal and unknown defect types, the default domain, the
text sections of a knowledge document, and how a category or defect type is spelled."""

from __future__ import annotations

import re

NORMAL_TYPE = "good"
"""The defect type of a normal ("good") reference, as in the MVTec layout."""

UNSPECIFIED_TYPE = "unspecified"
"""The defect type of knowledge whose type nothing names (it gets no type centroid)."""

DEFAULT_DOMAIN = "industrial"
"""The domain of knowledge ingested without one, and the built-in prompt vocabulary."""

FEEDBACK_SOURCE = "feedback"
"""Fed-back photos' source keys are ``feedback/<sha256 of the photo>`` (``ingest.feedback``)."""

SECTION_NAMES: tuple[str, ...] = (
    "description",
    "appearance",
    "causes",
    "consequences",
    "production_scenarios",
    "application_scenarios",
)
"""A knowledge document's text sections, in the paper's order (field names of ``TextSections``)."""


def section_heading(name: str) -> str:
    """How a section is written as a heading: ``production_scenarios`` -> ``Production scenarios``."""
    return name.replace("_", " ").capitalize()


def normalise_name(value: str) -> str:
    """Normalise a category or defect type: lower case, words joined by underscores."""
    return re.sub(r"[\s\-]+", "_", value.strip().lower())


DOMAIN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
"""A domain is a name (it picks ``<name>.yaml`` in the domains folders), never a path."""


def check_domain(value: str) -> str:
    """``value`` when it is a domain name; ``ValueError`` (no path, no dots, at most 64 characters) otherwise."""
    if not DOMAIN_NAME.fullmatch(value):
        raise ValueError("a domain is a name of letters, digits, '_' or '-' (at most 64, e.g. 'medical'), not a path")
    return value


def printable(text: str) -> str:
    """``text`` as results spell it: bytes of a file name that are not UTF-8 (which Python keeps as
    lone surrogates) become ``\\xNN`` escapes, so reports and JSON never fail on them."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def is_utf8(text: str) -> bool:
    """Whether ``text`` (a path) encodes as UTF-8: what the store and JSON can hold."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
