"""Region locks: every defect example photo (image or PDF figure) of a category that has normal
references gets a ``region`` point, the descriptor of its anomalous region against the category's
memory bank (``kbengine.core.banks.region``), labelled like the example.

A region point's id is uuid5 of the example lock's id and the bank's fingerprint; its payload
names both (``region_of``, ``bank``). :func:`update_regions` brings a knowledge base up to date:
per category it writes the region points missing for the current bank, then deletes the ones of
other banks and of examples that are gone. Re-running it after a kill -9 at any point computes
only what is missing and ends with exactly the points of one clean run; a category whose normal
references change (added after the examples, edited, removed) is renewed the same way. Ingest
calls it after every run.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

from ingest.units import NAMESPACE
from kbengine.core.banks.memory_bank import score_images
from kbengine.core.banks.references import EXAMPLE_KINDS, ReferenceBank, ReferenceBanks
from kbengine.core.banks.region import region_descriptor, region_fingerprint
from kbengine.core.errors import KBEngineError
from kbengine.core.images import load_image
from kbengine.core.schemas import LockPayload, RegionLabel
from kbengine.core.store import Store, StorePoint, Where
from kbengine.core.vocabulary import NORMAL_TYPE

Progress = Callable[[int, int, str], None]


@dataclass
class RegionUpdate:
    """What :func:`update_regions` did."""

    added: int = 0
    removed: int = 0
    without_references: list[str] = field(default_factory=list)
    """Categories whose defect examples have no region locks: no normal references to compare with."""
    failed: list[str] = field(default_factory=list)
    """Categories whose references could not be read (a damaged blob): their region locks wait."""


def region_id(example_id: str, fingerprint: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"region:{example_id}:{fingerprint}"))


def update_regions(
    store: Store,
    banks: ReferenceBanks,
    progress: Progress | None = None,
    categories: Collection[str] | None = None,
) -> RegionUpdate:
    """Bring every category's region locks (or only those of ``categories``) up to date with its
    normal references."""
    update = RegionUpdate()
    meta = store.read_meta()
    if meta is None or not meta.region_dim:
        return update
    chosen = banks.categories() if categories is None else dict.fromkeys(sorted(categories), True)
    for category, has_references in chosen.items():
        references = banks.references(category) if has_references else []
        if not references:
            update.removed += _delete(store, Where.of(category=category, kind="region"))
            if store.count(_example_filter(category)):
                update.without_references.append(category)
            continue
        fingerprint = region_fingerprint(banks.fingerprint(references))
        current = Where.of(category=category, kind="region", bank=fingerprint)
        if _up_to_date(store, category, fingerprint):
            continue
        examples = _examples(store, category)
        done = {RegionLabel.read(h.payload).region_of for h in store.scroll(current, fields=RegionLabel.fields())}
        todo = [(lock_id, lock) for lock_id, lock in examples if lock_id not in done]
        if todo and progress:
            progress(0, len(todo), f"memory bank of {category} ({len(references)} normal references)")
        try:
            bank = banks.get(category, references) if todo else None  # built only when something is missing
        except KBEngineError as e:
            update.failed.append(f"{category}: {e}")
            continue
        size = banks.settings.batch_size
        try:
            for start in range(0, len(todo), size):
                if progress:
                    progress(start, len(todo), f"region locks of {category}")
                batch = todo[start : start + size]
                store.upsert(_region_points(banks, bank, fingerprint, batch))
                update.added += len(batch)
        except KBEngineError as e:  # a damaged example photo: the others' locks are kept, this waits
            update.failed.append(f"{category}: {e}")
            continue
        stale = Where.of(category=category, kind="region").excluding(bank=fingerprint)
        update.removed += _delete(store, stale)
        gone = Where.of(category=category, kind="region").excluding(region_of=tuple(i for i, _ in examples) or None)
        if examples:
            update.removed += _delete(store, gone)
        else:
            update.removed += _delete(store, Where.of(category=category, kind="region"))
    if progress:
        progress(1, 1, "")
    return update


Example = tuple[str, LockPayload]
"""A defect example photo: its lock id and payload."""


def _example_filter(category: str) -> Where:
    return Where.of(category=category, kind=EXAMPLE_KINDS).excluding(defect_type=NORMAL_TYPE)


def _up_to_date(store: Store, category: str, fingerprint: str) -> bool:
    """Whether the category's region locks are all of the current bank and as many as its
    examples: three counts, so an ingest that did not touch the category reads none of its
    payloads (at 100k example photos in ten categories, reading them all took 5.5 s of every
    ingest). Region locks leave with their example (same source, same document), so equal counts
    mean one lock per example; any other state gets the full comparison."""
    regions = Where.of(category=category, kind="region")
    if store.count(regions.excluding(bank=fingerprint)):
        return False
    return store.count(Where.of(category=category, kind="region", bank=fingerprint)) == store.count(
        _example_filter(category)
    )


def _examples(store: Store, category: str) -> list[Example]:
    """The category's defect example photos (not its normal references), in a stable order."""
    found = [(h.id, LockPayload.read(h.payload)) for h in store.scroll(_example_filter(category))]
    return sorted((example for example in found if example[1].blob), key=lambda example: example[0])


def _region_points(
    banks: ReferenceBanks, bank: ReferenceBank | None, fingerprint: str, examples: list[Example]
) -> list[StorePoint]:
    assert bank is not None
    images = [load_image(banks.path_of(lock), banks.settings.max_image_pixels) for _, lock in examples]
    scores = score_images(banks.encoder, bank.bank, images)
    points = []
    for (lock_id, lock), scored in zip(examples, scores, strict=True):
        payload = lock.model_copy(update={"kind": "region", "region_of": lock_id, "bank": fingerprint})
        points.append(
            StorePoint(
                id=region_id(lock_id, fingerprint),
                vectors={"region": region_descriptor(scored, bank.bank)},
                payload=payload.model_dump(),
            )
        )
    return points


def _delete(store: Store, where: Where) -> int:
    count = store.count(where)
    if count:
        store.delete(where)
    return count
