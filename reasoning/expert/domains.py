"""Domains come from data: a small YAML file gives the words the zero-shot prompts are built from.

A domain file (``<kb>/domains/<name>.yaml`` or ``KBENGINE_DOMAINS_DIR/<name>.yaml``)::

    name: medical
    object: "{category}"                 # how a category is named in a prompt
    normal_states: ["healthy {obj}", "normal {obj}"]
    abnormal_states: ["{obj} with a lesion", "abnormal {obj}"]
    templates: ["a brain MRI showing {state}.", "an MRI scan of {state}."]
    type_templates: ["a brain MRI showing {cls}.", "an MRI scan of a {obj} with {cls}."]

``{obj}`` is the object phrase, ``{state}`` one state phrase, ``{cls}`` a defect type as words.
``industrial`` is built in (the state words and templates of WinCLIP/AnomalyCLIP-style
ensembles); a knowledge base ingested with ``--domain NAME`` uses ``NAME``'s file when there is
one, else the industrial words (and says so in the detection's evidence).
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kbengine.core.errors import InvalidInputError
from kbengine.core.vocabulary import DEFAULT_DOMAIN, check_domain


class Domain(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    object: str = Field("{category}", description="The object phrase; {category} is the category as words.")
    normal_states: list[str] = Field(min_length=1)
    abnormal_states: list[str] = Field(min_length=1)
    templates: list[str] = Field(min_length=1)
    type_templates: list[str] = Field(min_length=1)

    def object_phrase(self, category: str) -> str:
        return self.object.format(category=category.replace("_", " "))

    def state_prompts(self, category: str, abnormal: bool) -> list[str]:
        """Every template filled with every (normal or abnormal) state of the object."""
        obj = self.object_phrase(category)
        states = self.abnormal_states if abnormal else self.normal_states
        return [t.format(state=s.format(obj=obj)) for t in self.templates for s in states]

    def type_prompts(self, category: str, defect_type: str) -> list[str]:
        obj = self.object_phrase(category)
        words = defect_type.replace("_", " ")
        return [t.format(obj=obj, cls=words) for t in self.type_templates]


INDUSTRIAL = Domain(
    name=DEFAULT_DOMAIN,
    normal_states=["{obj}", "flawless {obj}", "perfect {obj}", "unblemished {obj}", "{obj} without flaw",
                   "{obj} without defect", "{obj} without damage"],
    abnormal_states=["damaged {obj}", "broken {obj}", "{obj} with flaw", "{obj} with defect", "{obj} with damage"],
    templates=[
        "a photo of a {state}.", "a cropped photo of the {state}.", "a close-up photo of a {state}.",
        "a bright photo of a {state}.", "a dark photo of the {state}.", "a photo of the {state} for visual inspection.",
        "a photo of a {state} for anomaly detection.", "there is a {state} in the scene.",
        "a low resolution photo of the {state}.", "a blurry photo of a {state}.",
    ],
    type_templates=["a photo of a {obj} with {cls} defect.", "a close-up photo of a {obj} with {cls}.",
                    "a photo of the {cls} on a {obj}."],
)  # fmt: skip


def load_domain(name: str, folders: list[Path]) -> tuple[Domain, str | None]:
    """The domain ``name`` from the first folder that has ``<name>.yaml``; else the built-in one
    (with a note saying so when ``name`` is not ``industrial``). ``name`` must be a name: a path
    (older knowledge bases could store one) reads no file. A domain file must lie in its folder
    (a symlink out of it is not read), and its errors name fields, never the values read."""
    try:
        check_domain(name)
    except ValueError:
        return INDUSTRIAL, "the knowledge's domain is not a domain name; using the industrial prompt words"
    for folder in folders:
        for suffix in (".yaml", ".yml"):
            path = folder / f"{name}{suffix}"
            if not path.is_file():
                continue
            if os.path.dirname(os.path.realpath(path)) != os.path.realpath(folder):
                raise InvalidInputError(f"domain file {path} is a symlink out of {folder}; copy the file there instead")
            try:
                data = yaml.safe_load(path.read_text("utf-8")) or {}
                return Domain.model_validate({"name": name, **data}), None
            except ValidationError as e:
                problems = "; ".join(
                    f"{'.'.join(str(p) for p in item['loc']) or '(top level)'}: {item['msg']}"
                    for item in e.errors(include_input=False)
                )
                raise InvalidInputError(f"domain file {path} is invalid: {problems}") from None
            except (yaml.YAMLError, UnicodeDecodeError, TypeError) as e:
                raise InvalidInputError(f"domain file {path} is invalid: {type(e).__name__}") from None
    if name == DEFAULT_DOMAIN:
        return INDUSTRIAL, None
    return INDUSTRIAL, f"domain {name!r} has no domain file ({name}.yaml); using the industrial prompt words"
