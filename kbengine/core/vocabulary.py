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
