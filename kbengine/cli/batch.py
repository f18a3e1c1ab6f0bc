"""``kbengine detect`` over many photos: the paths and folders given, in order, through
``kb.detect_many`` (or, through a running service, one request a photo); one line per photo as
it finishes (one JSON object per line with ``--json``,
a photo that cannot be read as ``{"path": ..., "reason": ...}``), an optional CSV summary, and a
progress bar on stderr."""

from __future__ import annotations

import csv
import sys
from collections.abc import Callable, Iterable
from pathlib import Path

from rich.markup import escape

from kbengine.cli.rendering import out, progress_bar
from kbengine.core.datasets import image_files
from kbengine.core.schemas import Detection, FileFailure
from kbengine.core.vocabulary import printable

CSV_COLUMNS = ("image", "category", "score", "threshold", "is_anomalous", "defect_type", "margin", "regions", "error")


def expand(paths: list[Path]) -> list[Path]:
    """Files as given; folders as the images they hold (sorted, not recursive)."""
    found: list[Path] = []
    for path in paths:
        found += image_files(path) if path.is_dir() else [path]
    return found


def csv_row(result: Detection | FileFailure) -> dict[str, object]:
    if isinstance(result, FileFailure):
        return {"image": result.path, "error": result.reason}
    guess = result.predicted_defect_type
    return {
        "image": result.image,
        "category": result.category or "",
        "score": round(result.score, 4),
        "threshold": result.threshold if result.threshold is not None else "",
        "is_anomalous": "" if result.is_anomalous is None else result.is_anomalous,
        "defect_type": guess.defect_type if guess else "",
        "margin": round(guess.margin, 4) if guess and guess.margin is not None else "",
        "regions": len(result.regions),
        "error": "",
    }


def detect_folder(
    detect_many: Callable[[list[Path]], Iterable[Detection | FileFailure]],
    paths: list[Path],
    csv_path: Path | None,
    as_json: bool,
) -> int:
    """Detect on every photo of ``paths`` (``detect_many`` yields their results in order); the number
    that failed."""
    photos = expand(paths)
    failed = 0
    rows: list[dict[str, object]] = []
    bar, update = progress_bar("detecting")
    with bar:
        results = detect_many(photos)
        for done, result in enumerate(results, 1):
            update(done, len(photos), str(photos[done - 1]))
            failed += isinstance(result, FileFailure)
            rows.append(csv_row(result))
            if as_json:
                sys.stdout.write(result.model_dump_json() + "\n")
                sys.stdout.flush()
            elif isinstance(result, FileFailure):
                out.print(f"{escape(printable(result.path))}: [red]failed[/red] {escape(result.reason)}")
            else:
                verdict = {True: "[red]ANOMALOUS[/red]", False: "[green]normal[/green]", None: "uncalibrated"}
                guess = result.predicted_defect_type
                kind = f", {escape(guess.defect_type)}" if guess and result.is_anomalous else ""
                out.print(f"{escape(result.image)}: {verdict[result.is_anomalous]} {result.score:.3f}{kind}")
    if csv_path is not None:
        with csv_path.open("w", newline="", encoding="utf-8") as file:
            writer = csv.DictWriter(file, fieldnames=CSV_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        if not as_json:
            out.print(f"summary written to {escape(str(csv_path))}")
    return failed
