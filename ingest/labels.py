"""Labels for knowledge found in real documents: which category and defect type a PDF section is.

In this order (the first that decides wins; each records its source and confidence):

1. ``option``: the CLI options / ``kb.ingest(category=..., defect_type=...)``;
2. ``sidecar``: the PDF's sidecar file, per page or for the whole file;
3. ``line``: explicit ``Category: x`` / ``Defect type: y`` lines in the section;
4. ``taxonomy``: the user's taxonomy (``--taxonomy FILE``, else ``<kb>/taxonomy.yaml``): category
   and defect-type names with synonyms, matched as whole words (plurals folded) in the section's
   heading (confidence 0.95), its parent headings and the document's title (0.85), its captions
   (0.8) or its text (0.7, the most frequent name when several appear);
5. ``knowledge base``: the categories and defect types the knowledge base already holds, matched
   the same way (0.05 less);
6. ``text embedding``: the section's heading and text against those names embedded by the
   knowledge base's text encoder (the cosine, when it is at least ``EMBEDDING_THRESHOLD``);
7. ``figure``: the section's figures against the labelled photos in the knowledge base (the
   share of the nearest photos that agree, when at least ``FIGURE_THRESHOLD``);
8. else the category falls back to the file name and the defect type to ``unspecified``, with
   confidence 0, and the ingest report lists the section with what to do.

A label below ``LABEL_THRESHOLD`` is not used: the next source is tried.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from kbengine.core.encoders.base import Encoder
from kbengine.core.errors import InvalidInputError
from kbengine.core.schemas import LabelSource, LockLabel
from kbengine.core.store import Store, Where
from kbengine.core.vocabulary import NORMAL_TYPE, UNSPECIFIED_TYPE, normalise_name

LABEL_THRESHOLD = 0.5
EMBEDDING_THRESHOLD = 0.55
FIGURE_THRESHOLD = 0.6
FIGURE_NEIGHBOURS = 5
TAXONOMY_FILE = "taxonomy.yaml"


class Taxonomy(BaseModel):
    """Categories and defect types with their synonyms (``crack: [cracks, fissure, fracture]``)."""

    model_config = ConfigDict(extra="forbid")

    categories: dict[str, list[str]] = Field(default_factory=dict)
    defect_types: dict[str, list[str]] = Field(default_factory=dict)

    def digest(self) -> str:
        return hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]


def load_taxonomy(path: Path) -> Taxonomy:
    """A taxonomy file; a clear error for a wrong one (a typo never passes silently)."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise InvalidInputError(f"taxonomy {path}: cannot be read ({e})") from e
    if not isinstance(data, dict):
        raise InvalidInputError(f"taxonomy {path}: expected 'categories:' and 'defect_types:' mappings")
    data = {key: _synonyms(value) for key, value in data.items()}
    try:
        return Taxonomy.model_validate(data)
    except ValidationError as e:
        problems = "; ".join(f"{'.'.join(map(str, err['loc']))}: {err['msg']}" for err in e.errors())
        raise InvalidInputError(f"taxonomy {path}: {problems} (expected categories: {{name: [synonyms]}}, "
                                "defect_types: {name: [synonyms]})") from e  # fmt: skip


def _synonyms(mapping: object) -> object:
    """``{name: [synonyms]}`` with a single synonym written as a string accepted too; anything
    else is left for the schema to refuse."""
    if not isinstance(mapping, dict):
        return mapping
    return {
        name: [value] if isinstance(value, str) else [] if value is None else value for name, value in mapping.items()
    }


def _words(text: str) -> list[str]:
    """Lower-case words with a plural 's' / 'es' folded."""
    out = []
    for word in re.findall(r"[^\W_]+", text.lower()):
        if len(word) > 4 and word.endswith(("sses", "xes", "zes", "ches", "shes")):
            word = word[:-2]  # glasses -> glass, boxes -> box, patches -> patch
        elif len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
            word = word[:-1]  # cracks -> crack, holes -> hole, dents -> dent
        out.append(word)
    return out


def _phrase(text: str) -> tuple[str, ...]:
    return tuple(_words(text.replace("_", " ")))


@dataclass
class Vocabulary:
    """Names (categories or defect types), each with the phrases that name it."""

    phrases: dict[str, set[tuple[str, ...]]] = field(default_factory=dict)

    def add(self, name: str, synonyms: Iterable[str] = ()) -> None:
        name = normalise_name(name)
        phrases = self.phrases.setdefault(name, set())
        for text in (name, *synonyms):
            phrase = _phrase(text)
            if phrase:
                phrases.add(phrase)

    def find(self, text: str) -> Counter[str]:
        """How often each name is named in ``text`` (longest phrases first, no double counting)."""
        words = _words(text)
        found: Counter[str] = Counter()
        used = [False] * len(words)
        candidates = sorted(
            ((phrase, name) for name, phrases in self.phrases.items() for phrase in phrases), key=lambda p: -len(p[0])
        )
        for phrase, name in candidates:
            n = len(phrase)
            for i in range(len(words) - n + 1):
                if not any(used[i : i + n]) and tuple(words[i : i + n]) == phrase:
                    found[name] += 1
                    for j in range(i, i + n):
                        used[j] = True
        return found


@dataclass
class Evidence:
    """What a section says of itself, strongest first: (text, confidence of a match there)."""

    heading: str = ""
    context: list[str] = field(default_factory=list)
    captions: list[str] = field(default_factory=list)
    body: str = ""

    def places(self) -> list[tuple[str, float]]:
        return [(self.heading, 0.95), *((c, 0.85) for c in self.context), *((c, 0.8) for c in self.captions),
                (self.body, 0.7)]  # fmt: skip


def _match(vocabulary: Vocabulary, evidence: Evidence, source: str, penalty: float) -> tuple[str, LabelSource] | None:
    for text, confidence in evidence.places():
        counts = vocabulary.find(text)
        if not counts:
            continue
        best = counts.most_common()
        if len(best) > 1 and best[0][1] == best[1][1]:
            continue  # two names equally named here: look at the next place
        return best[0][0], LabelSource(source=source, confidence=round(confidence - penalty, 3))
    return None


class Labeler:
    """Infers a section's category and defect type (see the module docstring)."""

    def __init__(
        self,
        taxonomy: Taxonomy | None = None,
        store: Store | None = None,
        encoder: Encoder | None = None,
    ) -> None:
        self.taxonomy = taxonomy or Taxonomy()
        self.store = store
        self.encoder = encoder
        self.categories = Vocabulary()
        self.types = Vocabulary()
        for name, synonyms in self.taxonomy.categories.items():
            self.categories.add(name, synonyms)
        for name, synonyms in self.taxonomy.defect_types.items():
            self.types.add(name, synonyms)
        self._known: tuple[Vocabulary, Vocabulary] | None = None
        self._name_embeddings: tuple[list[str], np.ndarray] | None = None

    @property
    def known_categories(self) -> Vocabulary:
        return self._known_names()[0]

    @property
    def known_types(self) -> Vocabulary:
        return self._known_names()[1]

    def _known_names(self) -> tuple[Vocabulary, Vocabulary]:
        """The knowledge base's categories and defect types (read on first use)."""
        if self._known is None:
            categories, types = Vocabulary(), Vocabulary()
            if self.store is not None:
                for hit in self.store.scroll(Where.of(kind=("image", "figure", "page")), fields=LockLabel.fields()):
                    label = LockLabel.read(hit.payload)
                    categories.add(label.category)
                    if label.defect_type not in (NORMAL_TYPE, UNSPECIFIED_TYPE):
                        types.add(label.defect_type)
            self._known = (categories, types)
        return self._known

    @property
    def fingerprint(self) -> str:
        """What the labels depend on besides the file (part of a PDF's fingerprint)."""
        return f"taxonomy={self.taxonomy.digest()}"

    def category(self, evidence: Evidence) -> tuple[str, LabelSource] | None:
        for vocabulary, source, penalty in ((self.categories, "taxonomy", 0.0),
                                            (self.known_categories, "knowledge base", 0.05)):  # fmt: skip
            found = _match(vocabulary, evidence, source, penalty)
            if found is not None and found[1].confidence >= LABEL_THRESHOLD:
                return found
        return None

    def defect_type(
        self, evidence: Evidence, figures: list[Image.Image], category: str | None
    ) -> tuple[str, LabelSource] | None:
        for vocabulary, source, penalty in ((self.types, "taxonomy", 0.0), (self.known_types, "knowledge base", 0.05)):
            found = _match(vocabulary, evidence, source, penalty)
            if found is not None and found[1].confidence >= LABEL_THRESHOLD:
                return found
        return self._by_embedding(evidence) or self._by_figures(figures, category)

    def _by_embedding(self, evidence: Evidence) -> tuple[str, LabelSource] | None:
        encoder = self.encoder
        if encoder is None or not encoder.has_text or not evidence.heading.strip():
            return None
        if self._name_embeddings is None:
            names = sorted(set(self.types.phrases) | set(self.known_types.phrases))
            vectors = encoder.embed_texts([n.replace("_", " ") for n in names]) if names else np.zeros((0, 1))
            self._name_embeddings = (names, vectors)
        names, vectors = self._name_embeddings
        if not names:
            return None
        query = encoder.embed_texts([evidence.heading])[0]
        similarity = vectors @ query
        best = int(np.argmax(similarity))
        score = float(similarity[best])
        if score < EMBEDDING_THRESHOLD:
            return None
        return names[best], LabelSource(source="text embedding", confidence=round(score, 3))

    def _by_figures(self, figures: list[Image.Image], category: str | None) -> tuple[str, LabelSource] | None:
        if not figures or self.store is None or self.encoder is None:
            return None
        votes: Counter[str] = Counter()
        total = 0
        where = Where.of(category=category, kind=("image", "figure")).excluding(
            defect_type=(NORMAL_TYPE, UNSPECIFIED_TYPE)
        )
        for vector in self.encoder.embed_images(figures):
            for hit in self.store.search("image", vector, FIGURE_NEIGHBOURS, where):
                votes[LockLabel.read(hit.payload).defect_type] += 1
                total += 1
        if not votes:
            return None
        name, count = votes.most_common(1)[0]
        share = count / total
        if share < FIGURE_THRESHOLD:
            return None
        return name, LabelSource(source="figure", confidence=round(share * 0.9, 3))
