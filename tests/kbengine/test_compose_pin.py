"""The Qdrant server docker-compose.yml starts must fit the qdrant-client we install: qdrant-client
refuses (warns of) a server more than one minor version away, so the image tags and the client
are pinned to the same minor and this test fails when they drift apart."""

from __future__ import annotations

import re
from importlib.metadata import version
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.version import Version

ROOT = Path(__file__).resolve().parents[2]


def _qdrant_tags() -> dict[str, Version]:
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    tags = {}
    for name, service in compose["services"].items():
        image = str(service.get("image", ""))
        if image.startswith("qdrant/qdrant"):
            match = re.fullmatch(r"qdrant/qdrant:v?(\d+\.\d+\.\d+)", image)
            assert match, f"service {name}: pin the Qdrant image to a release tag (qdrant/qdrant:vX.Y.Z), not {image!r}"
            tags[name] = Version(match[1])
    return tags


def _minor(v: Version) -> tuple[int, int]:
    return (v.major, v.minor)


def test_every_qdrant_service_runs_the_client_minor():
    client = Version(version("qdrant-client"))
    tags = _qdrant_tags()
    assert tags, "docker-compose.yml starts no qdrant/qdrant service"
    drifted = {name: str(tag) for name, tag in tags.items() if _minor(tag) != _minor(client)}
    assert not drifted, (
        f"qdrant-client {client} is installed but docker-compose.yml runs {drifted}: move the image tags and the "
        "qdrant-client range in pyproject.toml to the same minor version"
    )


def test_the_client_range_stays_within_the_image_minor():
    text = (ROOT / "pyproject.toml").read_text()
    [line] = re.findall(r'"(qdrant-client[^"]*)"', text)
    requirement = Requirement(line)
    [tag] = set(_qdrant_tags().values())
    assert requirement.specifier.contains(str(tag)), f"{line} does not allow the compose file's server {tag}"
    next_minor = Version(f"{tag.major}.{tag.minor + 1}.0")
    previous_minor = Version(f"{tag.major}.{max(tag.minor - 1, 0)}.99")
    assert not requirement.specifier.contains(str(next_minor)), f"{line} lets pip install a client of a newer minor"
    if tag.minor > 0:
        assert not requirement.specifier.contains(str(previous_minor)), f"{line} allows a client of an older minor"
