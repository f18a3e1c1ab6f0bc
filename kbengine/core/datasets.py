"""Dataset-layout rules: the key a source file is stored under, and the MVTec AD layout that
ingest, evaluation and training read
(``<root>/<category>/{train/good, test/<defect_type>, ground_truth/<defect_type>/<name>_mask.png}``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from kbengine.core.errors import InvalidInputError
from kbengine.core.images import IMAGE_SUFFIXES
from kbengine.core.vocabulary import NORMAL_TYPE, normalise_name


def source_key(path: Path) -> str:
    """The key a source file's locks are stored under (payload ``source``)."""
    return str(path.absolute())


def under(path: str, source: str) -> bool:
    """``path`` (a stored ``source`` key) is the file ``source`` or lies in the folder ``source``,
    ``source`` taken as written or made absolute (stored keys are absolute)."""
    for prefix in {source.rstrip("/"), str(Path(source).absolute()).rstrip("/")}:
        if path == prefix or path.startswith(prefix + "/"):
            return True
    return False


def image_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def is_mvtec_category(folder: Path) -> bool:
    return (folder / "train" / "good").is_dir() or ((folder / "test").is_dir() and (folder / "ground_truth").is_dir())


class DatasetImage(BaseModel):
    """One image of an MVTec-layout dataset."""

    category: str
    defect_type: str
    split: str
    path: Path
    mask: Path | None = None

    @property
    def is_normal(self) -> bool:
        return self.defect_type == NORMAL_TYPE


def mvtec_categories(root: Path) -> list[Path]:
    """The category folders of a dataset root (or the root itself when it is one category)."""
    if not root.is_dir():
        raise InvalidInputError(f"{root} is not a folder; give an MVTec-layout dataset (<category>/train/good ...)")
    if is_mvtec_category(root):
        return [root]
    found = [d for d in sorted(root.iterdir()) if d.is_dir() and is_mvtec_category(d)]
    if not found:
        raise InvalidInputError(
            f"{root} holds no MVTec-layout category (<category>/train/good or <category>/test + ground_truth)"
        )
    return found


def mvtec_images(root: Path, split: str | None = None, categories: list[str] | None = None) -> list[DatasetImage]:
    """Every image of the dataset (of ``split`` and ``categories`` when given), masks paired."""
    images: list[DatasetImage] = []
    for folder in mvtec_categories(root):
        category = normalise_name(folder.name)
        if categories and category not in {normalise_name(c) for c in categories}:
            continue
        for part in ("train", "test") if split is None else (split,):
            base = folder / part
            if not base.is_dir():
                continue
            for type_dir in sorted(d for d in base.iterdir() if d.is_dir()):
                defect_type = normalise_name(type_dir.name)
                for path in image_files(type_dir):
                    mask = folder / "ground_truth" / type_dir.name / f"{path.stem}_mask.png"
                    images.append(
                        DatasetImage(
                            category=category,
                            defect_type=defect_type,
                            split=part,
                            path=path,
                            mask=mask if mask.is_file() else None,
                        )
                    )
    return images
