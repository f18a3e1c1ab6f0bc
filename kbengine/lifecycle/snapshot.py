"""``kbengine snapshot create|restore``: a knowledge base in one file, and back.

What a snapshot holds (a tar, zstd-compressed for ``.tar.zst``, gzip for ``.tar.gz``, plain for
``.tar``):

- ``collection/points-NNNNN.jsonl`` and ``.npz``: every point of the collection (locks, source
  markers and the metadata point), exported through the store in point-id order. Each JSON line
  is a point's id, whole payload and the names of its vectors; the npz holds, per vector name,
  the float32 rows of the points that have it, in line order. Exported points rather than the
  embedded store's files or a server's own snapshot: one format for both backends, restorable
  with any Qdrant engine version, and the vectors come back bit for bit (Qdrant stores cosine
  vectors normalised; normalising them again changes nothing), so the restored base answers seek
  exactly as the original.
- ``blobs/ab/<sha256>.<suffix>``: every blob a lock names (each checked against its name; a
  missing or damaged one is left out and listed in the report).
- ``files/taxonomy.yaml``: the knowledge base's own taxonomy, when it has one.
- ``manifest.json``, the last member: format, encoder identity, counts, and the sha256 and size
  of every other member.

Caches are not included: they are derived and rebuild themselves by fingerprint.

Consistency: the snapshot is taken through the open store. An embedded store holds its
knowledge base's exclusive lock while open, so no other process writes during the snapshot; in
server mode nothing can lock the collection, so the point counts are compared before and after
and a snapshot taken while someone wrote is refused.

``restore`` reads the whole file into a staging folder beside the target, verifies every member
against the manifest, builds the knowledge base there, and only then moves it into place (an
existing knowledge base is replaced only with ``force``): a snapshot that does not verify writes
nothing.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import tarfile
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import numpy as np
import portalocker
from pydantic import BaseModel, Field, ValidationError

from kbengine.core import __version__
from kbengine.core.blobs import BLOB_NAME, BlobStore
from kbengine.core.cache import TEMP_PREFIX
from kbengine.core.encoders.base import EncoderIdentity
from kbengine.core.errors import EmptyKnowledgeBaseError, InvalidInputError, StoreError, StoreInUseError
from kbengine.core.parts import KnowledgeBaseParts
from kbengine.core.schemas import SOURCE_KIND, BlobRef, CollectionMeta
from kbengine.core.settings import Settings
from kbengine.core.store import Store, StorePoint, Where, get_store

FORMAT: Literal["kbengine-snapshot"] = "kbengine-snapshot"
FORMAT_VERSION = 1
CHUNK_POINTS = 4096
"""Points per ``collection/points-NNNNN`` pair."""
EXPORT_BATCH = 1024
MANIFEST = "manifest.json"
TAXONOMY = "taxonomy.yaml"
COPY_BYTES = 1 << 20
KB_MARKS = ("qdrant", "blobs", ".lock")
"""What a knowledge base folder holds: ``--force`` replaces only a folder with one of these."""
Compression = Literal["zstd", "gzip", "none"]

_MEMBER = re.compile(
    r"manifest\.json|collection/points-\d{5}\.(jsonl|npz)|files/taxonomy\.yaml"
    r"|blobs/(?P<prefix>[0-9a-f]{2})/(?P<blob>[0-9a-f]{64}(\.[A-Za-z0-9]{1,16})?)"
)


class SnapshotMember(BaseModel):
    sha256: str
    size: int


class SnapshotManifest(BaseModel):
    """What a snapshot holds; its ``members`` let ``restore`` verify every other member."""

    format: Literal["kbengine-snapshot"] = FORMAT
    version: int = FORMAT_VERSION
    created: str = Field(description="UTC time the snapshot was taken (ISO 8601).")
    kbengine: str
    source: str = Field(description="Where the knowledge base was (store location).")
    store: str
    encoder: EncoderIdentity
    meta: dict[str, Any] = Field(description="The collection's metadata point, as stored.")
    meta_id: str
    points: int = Field(description="Every point: locks, source markers and the metadata point.")
    locks: int
    sources: int
    kinds: dict[str, int] = Field(default_factory=dict, description="Locks per kind.")
    vectors: dict[str, int] = Field(default_factory=dict, description="Points per named vector.")
    blobs: int
    members: dict[str, SnapshotMember] = Field(description="Every other member: sha256 and size in bytes.")


class SnapshotReport(BaseModel):
    """What ``snapshot create`` wrote."""

    path: str
    compression: Compression
    bytes: int
    points: int
    locks: int
    sources: int
    blobs: int
    encoder: str
    missing_blobs: list[str] = Field(default_factory=list, description="Blobs locks name that are not there.")
    damaged_blobs: list[str] = Field(
        default_factory=list, description="Blobs whose bytes do not match their name (left out)."
    )
    seconds: float


class RestoreReport(BaseModel):
    """What ``snapshot restore`` made."""

    path: str = Field(description="The snapshot file.")
    kb: str = Field(description="The restored knowledge base folder.")
    replaced: bool = Field(description="An existing knowledge base was replaced (--force).")
    points: int
    locks: int
    sources: int
    blobs: int
    encoder: str
    created: str = Field(description="When the snapshot was taken.")
    seconds: float


def compression_of(path: Path) -> Compression:
    """The compression a snapshot file name asks for, by suffix."""
    name = path.name.lower()
    if name.endswith((".tar.zst", ".tzst", ".tar.zstd")):
        return "zstd"
    if name.endswith((".tar.gz", ".tgz")):
        return "gzip"
    if name.endswith(".tar"):
        return "none"
    raise InvalidInputError(f"{path}: a snapshot file name ends in .tar.zst, .tar.gz or .tar")


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a dependency; the sentence is for broken installs
        from kbengine.core.errors import MissingDependencyError

        raise MissingDependencyError(
            "zstd snapshots need the zstandard package: pip install zstandard (or name the file .tar.gz)"
        ) from None
    return zstandard


@contextlib.contextmanager
def _writer(file: IO[bytes], compression: Compression) -> Iterator[tarfile.TarFile]:
    if compression == "zstd":
        with (
            _zstd().ZstdCompressor(level=3, write_checksum=True).stream_writer(file, closefd=False) as stream,
            tarfile.open(fileobj=stream, mode="w|") as tar,
        ):
            yield tar
    else:
        with tarfile.open(fileobj=file, mode="w|gz" if compression == "gzip" else "w|") as tar:
            yield tar


@contextlib.contextmanager
def _reader(file: IO[bytes], compression: Compression) -> Iterator[tarfile.TarFile]:
    if compression == "zstd":
        with (
            _zstd().ZstdDecompressor().stream_reader(file, closefd=False) as stream,
            tarfile.open(fileobj=stream, mode="r|") as tar,
        ):
            yield tar
    else:
        with tarfile.open(fileobj=file, mode="r|gz" if compression == "gzip" else "r|") as tar:
            yield tar


class _Archive:
    """A tar being written: members added from bytes, each one's sha256 and size recorded."""

    def __init__(self, tar: tarfile.TarFile, mtime: float) -> None:
        self.tar = tar
        self.mtime = mtime
        self.members: dict[str, SnapshotMember] = {}

    def add(self, name: str, data: bytes) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mtime = int(self.mtime)
        info.mode = 0o644
        self.tar.addfile(info, io.BytesIO(data))
        self.members[name] = SnapshotMember(sha256=hashlib.sha256(data).hexdigest(), size=len(data))


def encode_points(points: list[StorePoint]) -> tuple[bytes, bytes]:
    """Points as a JSON-lines member (id, payload, vector names) and an npz member (per vector
    name, the float32 rows of the points that have it, in line order)."""
    lines = []
    rows: dict[str, list[np.ndarray]] = {}
    for point in points:
        names = sorted(point.vectors)
        lines.append(json.dumps({"id": point.id, "payload": point.payload, "vectors": names}, ensure_ascii=False))
        for name in names:
            rows.setdefault(name, []).append(np.asarray(point.vectors[name], np.float32))
    buffer = io.BytesIO()
    np.savez(buffer, **{name: np.stack(found) for name, found in rows.items()})  # type: ignore[arg-type]
    return ("\n".join(lines) + "\n").encode(), buffer.getvalue()


def decode_points(jsonl: bytes, npz: bytes) -> list[StorePoint]:
    """The points :func:`encode_points` wrote; :class:`InvalidInputError` when they do not fit."""
    try:
        with np.load(io.BytesIO(npz), allow_pickle=False) as data:
            arrays = {name: data[name] for name in data.files}
        taken = dict.fromkeys(arrays, 0)
        points = []
        for line in jsonl.decode().splitlines():
            row = json.loads(line)
            vectors = {}
            for name in row["vectors"]:
                vectors[name] = arrays[name][taken[name]]
                taken[name] += 1
            points.append(StorePoint(id=str(row["id"]), vectors=vectors, payload=dict(row["payload"])))
    except (ValueError, KeyError, IndexError, TypeError, OSError) as e:
        raise InvalidInputError(f"a points member of the snapshot cannot be read ({type(e).__name__}: {e})") from e
    if any(taken[name] != len(arrays[name]) for name in arrays):
        raise InvalidInputError("a points member of the snapshot has vectors no point names")
    return points


def _total(store: Store) -> int:
    """Every point of the collection: locks, source markers and the metadata point."""
    return store.count() + store.count(Where.of(kind=SOURCE_KIND)) + (1 if store.read_meta() else 0)


def create_snapshot(kb: KnowledgeBaseParts, path: str | Path, *, force: bool = False) -> SnapshotReport:
    """Write a snapshot of ``kb`` (its store, blobs and settings: the facade, or ``Parts``) to
    ``path`` (see the module docstring); an existing file is replaced only with ``force``. The
    file appears whole or not at all."""
    started = time.perf_counter()
    target = Path(path)
    compression = compression_of(target)
    if target.exists() and not force:
        raise InvalidInputError(f"{target} exists: choose another name, or pass --force to replace it")
    store = kb.store
    meta = store.read_meta()
    if meta is None:
        raise EmptyKnowledgeBaseError(f"{store.location} holds no knowledge base yet: nothing to snapshot")
    before = _total(store)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=TEMP_PREFIX, suffix=".snapshot")
    try:
        with os.fdopen(fd, "wb") as file:
            with _writer(file, compression) as tar:
                manifest, missing, damaged = _write_members(_Archive(tar, time.time()), kb, meta)
            file.flush()
            os.fsync(file.fileno())
        if _total(store) != before or manifest.points != before:
            raise StoreError(
                f"{store.location} changed while the snapshot was taken ({before} points before, "
                f"{_total(store)} after): take it again while nobody ingests or removes"
            )
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return SnapshotReport(
        path=str(target),
        compression=compression,
        bytes=target.stat().st_size,
        points=manifest.points,
        locks=manifest.locks,
        sources=manifest.sources,
        blobs=manifest.blobs,
        encoder=manifest.encoder.name,
        missing_blobs=missing,
        damaged_blobs=damaged,
        seconds=round(time.perf_counter() - started, 3),
    )


def _write_members(
    archive: _Archive, kb: KnowledgeBaseParts, meta: CollectionMeta
) -> tuple[SnapshotManifest, list[str], list[str]]:
    store = kb.store
    kinds: Counter[str] = Counter()
    vectors: Counter[str] = Counter()
    blobs: set[str] = set()
    points = sources = 0
    meta_payload: dict[str, Any] | None = None
    meta_id = ""
    chunk: list[StorePoint] = []
    chunks = 0

    def flush() -> None:
        nonlocal chunks
        jsonl, npz = encode_points(chunk)
        archive.add(f"collection/points-{chunks:05d}.jsonl", jsonl)
        archive.add(f"collection/points-{chunks:05d}.npz", npz)
        chunks += 1
        chunk.clear()

    for batch in store.export(EXPORT_BATCH):
        for point in batch:
            points += 1
            vectors.update(list(point.vectors))
            kind = str(point.payload.get("kind", ""))
            if CollectionMeta.parse(point.payload) is not None:
                meta_payload, meta_id = point.payload, point.id
            elif kind == SOURCE_KIND:
                sources += 1
            else:
                kinds[kind] += 1
                blob = BlobRef.read(point.payload).blob
                if blob:
                    blobs.add(blob)
            chunk.append(point)
            if len(chunk) >= CHUNK_POINTS:
                flush()
    if chunk:
        flush()
    if meta_payload is None:
        raise StoreError(f"{store.location}: the metadata point was not exported; run kbengine verify")
    missing, damaged, stored = [], [], 0
    for name in sorted(blobs):
        try:
            data = kb.blobs.path(name).read_bytes()
        except FileNotFoundError:
            missing.append(name)
            continue
        if not BLOB_NAME.fullmatch(name) or hashlib.sha256(data).hexdigest() != name[:64]:
            damaged.append(name)
            continue
        archive.add(f"blobs/{name[:2]}/{name}", data)
        stored += 1
    taxonomy = kb.settings.kb / TAXONOMY
    if kb.settings.qdrant_url is None and taxonomy.is_file():
        archive.add(f"files/{TAXONOMY}", taxonomy.read_bytes())
    manifest = SnapshotManifest(
        created=datetime.fromtimestamp(archive.mtime, UTC).isoformat(timespec="seconds"),
        kbengine=__version__,
        source=store.location,
        store=store.kind,
        encoder=meta.encoder,
        meta=meta_payload,
        meta_id=meta_id,
        points=points,
        locks=sum(kinds.values()),
        sources=sources,
        kinds=dict(sorted(kinds.items())),
        vectors=dict(sorted(vectors.items())),
        blobs=stored,
        members=dict(archive.members),
    )
    archive.add(MANIFEST, manifest.model_dump_json(indent=1).encode())
    return manifest, missing, damaged


def _extract(path: Path, folder: Path) -> SnapshotManifest:
    """Every member of the snapshot at ``path`` into ``folder``, verified against the manifest;
    :class:`InvalidInputError` (with what is wrong) when anything does not verify."""
    compression = compression_of(path)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such snapshot file")
    seen: dict[str, SnapshotMember] = {}
    manifest_bytes: bytes | None = None
    try:
        with open(path, "rb") as file, _reader(file, compression) as tar:
            for member in tar:
                name = member.name
                if not member.isfile() or not (match := _MEMBER.fullmatch(name)):
                    raise InvalidInputError(f"{path}: unexpected member {name!r}: not a kbengine snapshot")
                if match["blob"] and match["prefix"] != match["blob"][:2]:
                    raise InvalidInputError(f"{path}: blob {name!r} is filed under the wrong folder")
                if name in seen or (name == MANIFEST and manifest_bytes is not None):
                    raise InvalidInputError(f"{path}: member {name!r} appears twice")
                source = tar.extractfile(member)
                if source is None:  # pragma: no cover - isfile() members always have content
                    raise InvalidInputError(f"{path}: member {name!r} has no content")
                if name == MANIFEST:
                    manifest_bytes = source.read()
                    continue
                digest, size = hashlib.sha256(), 0
                out = folder / name
                out.parent.mkdir(parents=True, exist_ok=True)
                with open(out, "wb") as sink:
                    while block := source.read(COPY_BYTES):
                        digest.update(block)
                        size += len(block)
                        sink.write(block)
                seen[name] = SnapshotMember(sha256=digest.hexdigest(), size=size)
    except InvalidInputError:
        raise
    except Exception as e:  # tarfile, zstandard, zlib, EOF: a file cut short or with changed bytes
        if isinstance(e, OSError) and e.errno is not None:
            raise  # the disk (full, unreadable), not the snapshot
        raise InvalidInputError(
            f"{path} cannot be read as a snapshot ({type(e).__name__}: {e}): it is damaged or cut short"
        ) from e
    if manifest_bytes is None:
        raise InvalidInputError(f"{path} has no manifest: it is cut short, or not a kbengine snapshot")
    try:
        manifest = SnapshotManifest.model_validate_json(manifest_bytes)
    except ValidationError as e:
        raise InvalidInputError(f"{path}: the manifest cannot be read ({e.error_count()} problem(s))") from e
    if manifest.version > FORMAT_VERSION:
        raise InvalidInputError(f"{path} was written by a newer kbengine (format {manifest.version}): upgrade kbengine")
    missing = sorted(set(manifest.members) - set(seen))
    extra = sorted(set(seen) - set(manifest.members))
    changed = sorted(name for name, member in seen.items() if manifest.members.get(name, member) != member)
    if missing or extra or changed:
        said = [
            f"{len(found)} {what} (e.g. {found[0]})"
            for what, found in (
                ("member(s) changed", changed),
                ("member(s) missing", missing),
                ("member(s) not in the manifest", extra),
            )
            if found
        ]
        raise InvalidInputError(
            f"{path} does not verify against its manifest: {'; '.join(said)}. Nothing was restored; "
            "use an intact copy of the snapshot"
        )
    return manifest


def read_snapshot(path: str | Path) -> SnapshotManifest:
    """The manifest of the snapshot at ``path`` after verifying every member (nothing is kept)."""
    file = Path(path)
    with tempfile.TemporaryDirectory(prefix=TEMP_PREFIX, dir=file.parent if file.parent.is_dir() else None) as tmp:
        return _extract(file, Path(tmp))


def _chunks(folder: Path) -> Iterator[list[StorePoint]]:
    for jsonl in sorted((folder / "collection").glob("points-*.jsonl")):
        yield decode_points(jsonl.read_bytes(), jsonl.with_suffix(".npz").read_bytes())


@contextlib.contextmanager
def _claimed(kb: Path) -> Iterator[None]:
    """Hold the knowledge base's lock file (if it has one) while it is replaced: a base in use by a
    process is never pulled from under it."""
    lock_path = kb / ".lock"
    if not lock_path.exists():
        yield
        return
    with open(lock_path, "a+") as lock:
        try:
            portalocker.lock(lock, portalocker.LOCK_EX | portalocker.LOCK_NB)
        except portalocker.LockException as e:
            raise StoreInUseError(
                f"the knowledge base at {kb} is in use by another kbengine process: stop it before restoring over it"
            ) from e
        try:
            yield
        finally:
            portalocker.unlock(lock)


def restore_snapshot(path: str | Path, settings: Settings, *, force: bool = False) -> RestoreReport:
    """Restore the snapshot at ``path`` as the embedded knowledge base ``settings.kb`` (see the
    module docstring). An existing knowledge base there is replaced only with ``force``."""
    started = time.perf_counter()
    file = Path(path)
    if settings.qdrant_url:
        raise InvalidInputError(
            "restore writes an embedded knowledge base (--kb DIR); to put it on a server, restore it, then "
            "kbengine migrate --kb DIR --to-url URL"
        )
    target = Path(settings.kb)
    if target.exists() and not target.is_dir():
        raise InvalidInputError(f"{target} is a file, not a knowledge base folder")
    exists = target.exists() and any(target.iterdir())
    if exists and not force:
        raise InvalidInputError(
            f"{target} exists and is not empty: restore into a new folder, or pass --force to replace it"
        )
    if exists and not any((target / name).exists() for name in KB_MARKS):
        raise InvalidInputError(f"{target} is not a knowledge base folder: --force replaces only a knowledge base")
    compression_of(file)  # a clear error for a wrong name before anything is read
    target.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(dir=target.parent, prefix=f"{TEMP_PREFIX}restore-"))
    try:
        manifest = _extract(file, stage / "extract")
        built = stage / "kb"
        blob_root = settings.blob_dir
        if blob_root is None:
            (built / "blobs").parent.mkdir(parents=True, exist_ok=True)
            if (stage / "extract" / "blobs").is_dir():
                os.replace(stage / "extract" / "blobs", built / "blobs")
        else:
            _copy_blobs(stage / "extract" / "blobs", BlobStore(Path(blob_root)))
        if (stage / "extract" / "files" / TAXONOMY).is_file():
            os.replace(stage / "extract" / "files" / TAXONOMY, built / TAXONOMY)
        points = _build_store(stage / "extract", manifest, settings.model_copy(update={"kb": built}))
        with _claimed(target) if exists else contextlib.nullcontext():
            if exists:
                trash = stage / "replaced"
                os.replace(target, trash)
                try:
                    os.replace(built, target)
                except BaseException:
                    os.replace(trash, target)  # the old knowledge base back where it was
                    raise
            else:
                if target.exists():
                    target.rmdir()
                os.replace(built, target)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
    return RestoreReport(
        path=str(file),
        kb=str(target),
        replaced=exists,
        points=points,
        locks=manifest.locks,
        sources=manifest.sources,
        blobs=manifest.blobs,
        encoder=manifest.encoder.name,
        created=manifest.created,
        seconds=round(time.perf_counter() - started, 3),
    )


def _copy_blobs(folder: Path, blobs: BlobStore) -> None:
    if not folder.is_dir():
        return
    for path in sorted(folder.glob("*/*")):
        blobs.put_bytes(path.read_bytes(), path.name[64:])


def _build_store(folder: Path, manifest: SnapshotManifest, settings: Settings) -> int:
    """The snapshot's points in a new embedded store under ``settings.kb``; the points written."""
    store = get_store(settings)
    try:
        store.import_points([StorePoint(id=manifest.meta_id, vectors={}, payload=manifest.meta)])
        written = 0
        for points in _chunks(folder):
            written += store.import_points(points)
        store.finish_writes()
        total = _total(store)
    finally:
        store.close()
    if written != manifest.points or total != manifest.points:
        raise InvalidInputError(
            f"the snapshot's manifest says {manifest.points} points, its members hold {written} "
            f"({total} stored): it does not verify; nothing was restored"
        )
    return total
