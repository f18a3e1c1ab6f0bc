"""The multi-set suite that chooses rules and backbones: ``eval zsad`` and ``eval seek`` over every
real set at hand, with fixed protocols, one table per set, their mean, and JSON that two runs compare.

    python benchmarks/suite.py --out runs/lite0.json                      # everything (~20-30 min, 2 cores)
    KBENGINE_PACKAGED_MODEL=lite2 python benchmarks/suite.py --out runs/lite2.json
    python benchmarks/suite.py --compare runs/lite0.json runs/lite2.json  # per set and mean, B - A
    python benchmarks/suite.py --summary runs/base.json runs/rule-off-*.json  # a row per run
    python benchmarks/suite.py --sets magnetic_tile,elpv --skip seek \
        --patch kbengine.core.banks.profile:BRIGHTNESS_CV=inf

Sets (made once under ``--work``; real ones are never copied into the project):
- ``magnetic_tile``, ``kolektor``, ``metal_plate``: ``../shared/data`` (MVTec layout, real photos);
- ``elpv``: the elpv solar cells (PyPI ``elpv-dataset``): 64 functional cells as ``train/good``,
  150 functional and 150 defective (probability >= 0.67) as the test set, drawn with seed 0;
- ``textures``: scikit-image's real brick / grass / gravel photos with generated defects
  (``benchmarks/real_textures.py``; the photos come from the ``scikit-image`` wheel, fetched with
  ``pip download`` when ``--skimage-data`` is not given);
- ``generated``: ``kbengine.synth`` parts (disc, fabric, tile; 16 train, 6 good and 4 per type).

Protocols, fixed:
- detect: the first 16 ``train/good`` photos as references (``first16``), and the medoids of 16
  clusters of all of them (``medoids16``); image AUROC, pixel AUROC, pixel AUPRO, pixel F1-max.
  ``--max-per-type`` keeps a seeded sample of the test photos of each type (the default keeps
  magnetic tile's 492 test photos to 60 per type, which keeps the run within 30 minutes);
- seek (sets with two or more defect types): the splits of ``seek_keys.py`` (3 examples per type,
  16 references, up to 20 queries per type, 3 splits), the fused key's type top-1 and the type
  prediction's accuracy.

Each set's ``headline`` is the mean of its image and pixel AUROC under both protocols and its seek
top-1; the suite's is the mean of the sets'. A rule earns its place when it raises the suite's
headline and costs no set more than 0.02 (``--compare`` marks those). ``--patch MODULE:NAME=VALUE``
sets a module constant for the run (a Python literal, or ``inf`` / ``-inf``), to measure a rule
without it. The encoder is the environment's (``KBENGINE_ENCODER``, ``KBENGINE_PACKAGED_MODEL``, ...;
default ``packaged``)."""

from __future__ import annotations

import argparse
import ast
import importlib
import json
import math
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared" / "data"
REAL = {"magnetic_tile": "magnetic_tile", "kolektor": "kolektor", "metal_plate": "metal_plate"}
SETS = ("magnetic_tile", "kolektor", "metal_plate", "elpv", "textures", "generated")
SHOTS = 16
SEEK = {"examples": 3, "references": 16, "limit": 20, "splits": 3}
DETECT_METRICS = ("image_auroc", "pixel_auroc", "pixel_aupro", "pixel_f1_max")
HEADLINE = ("first16.image_auroc", "first16.pixel_auroc", "medoids16.image_auroc", "medoids16.pixel_auroc", "seek.top1")
WORST_LOSS = 0.02
TIE = 0.002
"""Mean headline changes smaller than this are a tie (the suite's figures are rounded to 0.001 and
its samples are small): the simpler of the two stays."""


def elpv(out: Path, train: int = 64, test: int = 150, seed: int = 0) -> Path:
    """The elpv cells in MVTec layout (one category, one defect type, no masks)."""
    if (out / "solar_cell" / "test" / "defective").is_dir():
        return out
    try:
        import elpv_dataset
    except ImportError as e:
        raise SystemExit("the elpv set needs the elpv-dataset package: pip install elpv-dataset") from e
    from PIL import Image

    labels = Path(elpv_dataset.__file__).parent / "data" / "labels.csv"
    rows = [line.split() for line in labels.read_text().splitlines() if line.strip()]
    good = [r[0] for r in rows if float(r[1]) == 0.0]
    bad = [r[0] for r in rows if float(r[1]) >= 0.67]
    rng = np.random.default_rng(seed)
    good = [good[i] for i in rng.permutation(len(good))[: train + test]]
    bad = [bad[i] for i in rng.permutation(len(bad))[:test]]
    splits = {"train/good": good[:train], "test/good": good[train:], "test/defective": bad}
    for split, names in splits.items():
        folder = out / "solar_cell" / split
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            Image.open(labels.parent / name).convert("L").save(folder / Path(name).name)
    (out / "solar_cell" / "ground_truth").mkdir(exist_ok=True)
    return out


def textures(out: Path, work: Path, skimage_data: Path | None) -> Path:
    """scikit-image's real textures with generated defects (``real_textures.py``)."""
    if (out / "brick" / "test").is_dir():
        return out
    if skimage_data is None:
        wheels = work / "wheels"
        if not list(wheels.glob("scikit_image-*.whl")):
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "scikit-image", "-d", str(wheels)]
            subprocess.run(cmd, check=True)
        wheel = sorted(wheels.glob("scikit_image-*.whl"))[-1]
        with zipfile.ZipFile(wheel) as z:
            for name in ("brick.png", "grass.png", "gravel.png"):
                z.extract(f"skimage/data/{name}", work / "skimage")
        skimage_data = work / "skimage" / "skimage" / "data"
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import real_textures

    return real_textures.write(skimage_data, out)


def generated(out: Path) -> Path:
    if not (out / "disc").is_dir():
        from kbengine import synth

        synth.write_mvtec(out, n_train=16, n_test_good=6, n_test_defect=4)
    return out


def sample_tests(dataset: Path, out: Path, per_type: int | None, seed: int = 0) -> Path:
    """A view of ``dataset`` (symlinks) keeping a seeded sample of at most ``per_type`` test photos
    per (category, type); the dataset itself when no type has more."""
    from kbengine.core.datasets import mvtec_images

    images = mvtec_images(dataset)
    groups: dict[tuple[str, str], list[Any]] = {}
    for image in images:
        if image.split == "test":
            groups.setdefault((image.category, image.defect_type), []).append(image)
    if per_type is None or all(len(g) <= per_type for g in groups.values()):
        return dataset
    if out.is_dir():
        return out
    rng = np.random.default_rng(seed)
    keep = {i.path for g in groups.values() for i in (g[j] for j in sorted(rng.permutation(len(g))[:per_type]))}
    for image in images:
        if image.split == "test" and image.path not in keep:
            continue
        category = image.path.parent.parent.parent.name
        base = out / category if image.path.parent.parent.parent != dataset else out
        rel = image.path.relative_to(image.path.parent.parent.parent)
        for source, target in [(image.path, base / rel)] + (
            [(image.mask, base / image.mask.relative_to(image.path.parent.parent.parent))] if image.mask else []
        ):
            target.parent.mkdir(parents=True, exist_ok=True)
            if not target.exists():
                target.symlink_to(source)
    return out


def prepare(sets: list[str], work: Path, skimage_data: Path | None, per_type: int | None) -> dict[str, Path]:
    paths: dict[str, Path] = {}
    for name in sets:
        if name in REAL:
            source = SHARED / REAL[name]
            if not source.is_dir():
                print(f"skipping {name}: {source} is not here", file=sys.stderr)
                continue
        elif name == "elpv":
            source = elpv(work / "elpv")
        elif name == "textures":
            source = textures(work / "textures", work, skimage_data)
        elif name == "generated":
            source = generated(work / "generated")
        else:
            raise SystemExit(f"unknown set {name!r}; choose from {', '.join(SETS)}")
        paths[name] = sample_tests(source, work / f"{name}-sample{per_type}", per_type)
    return paths


def apply_patches(patches: list[str]) -> None:
    """``MODULE:NAME=VALUE``: set a module constant (a Python literal, ``inf`` or ``-inf``)."""
    for patch in patches:
        target, _, text = patch.partition("=")
        module, _, name = target.partition(":")
        value = {"inf": math.inf, "-inf": -math.inf}.get(text.strip())
        value = ast.literal_eval(text) if value is None else value
        mod = importlib.import_module(module)
        if not hasattr(mod, name):
            raise SystemExit(f"{module} has no {name}")
        setattr(mod, name, value)
        print(f"patched {module}.{name} = {value!r}", file=sys.stderr)


def detect_figures(path: Path, settings: Any, pick: str) -> dict[str, float | None]:
    from kbengine.evaluation.zsad import eval_zsad

    report = eval_zsad(path, settings, mode="references", shots=SHOTS, pick=pick)
    return {m: getattr(report.mean, m) for m in DETECT_METRICS} | {"seconds": report.seconds}


def seek_figures(path: Path, settings: Any) -> dict[str, float | None] | None:
    from kbengine.core.datasets import mvtec_images
    from kbengine.evaluation.seek import eval_seek

    types = {(i.category, i.defect_type) for i in mvtec_images(path, split="test") if not i.is_normal}
    if len(types) < 2:
        return None
    top1: list[float] = []
    typed: list[float] = []
    by_key: dict[str, list[float]] = {}
    started = time.perf_counter()
    for split in range(SEEK["splits"]):
        report = eval_seek(
            path,
            settings,
            strategy="topk",
            k=3,
            limit=SEEK["limit"],
            examples=SEEK["examples"],
            references=SEEK["references"],
            split_seed=split,
        )
        fused = report.overall.keys["auto"]
        top1.append(fused.top1)
        typed.append(np.nan if fused.type_accuracy is None else fused.type_accuracy)
        for key, score in report.overall.keys.items():
            if key != "auto":
                by_key.setdefault(f"{key}_top1", []).append(score.top1)
    return {
        "top1": float(np.mean(top1)),
        "type": float(np.nanmean(typed)),
        **{key: float(np.mean(values)) for key, values in by_key.items()},
        "seconds": round(time.perf_counter() - started, 1),
    }


def headline(figures: dict[str, float | None]) -> float | None:
    values = [figures[k] for k in HEADLINE if figures.get(k) is not None]
    return float(np.mean(values)) if values else None  # type: ignore[arg-type]


def run(args: argparse.Namespace) -> dict[str, Any]:
    from kbengine.core.settings import Settings

    apply_patches(args.patch)
    settings = Settings() if os.environ.get("KBENGINE_ENCODER") else Settings(encoder="packaged")
    sets = args.sets.split(",") if args.sets else list(SETS)
    paths = prepare(sets, args.work, args.skimage_data, args.max_per_type)
    result: dict[str, Any] = {"patches": args.patch, "env": _env(), "sets": {}}
    started = time.perf_counter()
    for name, path in paths.items():
        figures: dict[str, float | None] = {}
        if "detect" not in args.skip:
            for protocol, pick in (("first16", "first"), ("medoids16", "diverse")):
                for metric, value in detect_figures(path, settings, pick).items():
                    figures[f"{protocol}.{metric}"] = value
        if "seek" not in args.skip:
            seek = seek_figures(path, settings)
            for metric, value in (seek or {}).items():
                figures[f"seek.{metric}"] = value
        figures["headline"] = headline(figures)
        result["sets"][name] = figures
        print_set(name, figures)
    result["mean"] = mean_of(result["sets"])
    result["seconds"] = round(time.perf_counter() - started, 1)
    print_set("mean", result["mean"])
    print(f"suite: {result['seconds']:.0f} s", flush=True)
    return result


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("KBENGINE_")}


def mean_of(sets: dict[str, dict[str, float | None]]) -> dict[str, float | None]:
    keys = sorted({k for f in sets.values() for k in f if not k.endswith("seconds")})
    out: dict[str, float | None] = {}
    for key in keys:
        values = [f[key] for f in sets.values() if f.get(key) is not None]
        out[key] = float(np.mean(values)) if values else None  # type: ignore[arg-type]
    return out


def print_set(name: str, figures: dict[str, float | None]) -> None:
    shown = {k: v for k, v in figures.items() if not k.endswith("seconds")}
    print(f"\n{name}", flush=True)
    for key, value in shown.items():
        print(f"  {key:28s} {'-' if value is None else f'{value:.3f}'}", flush=True)


def compare(a_path: Path, b_path: Path) -> None:
    """B - A per set and metric; a set whose headline falls more than ``WORST_LOSS`` is marked."""
    a, b = json.loads(a_path.read_text()), json.loads(b_path.read_text())
    names = [n for n in a["sets"] if n in b["sets"]]
    keys = [k for k in [*HEADLINE, "seek.type", "first16.pixel_aupro", "first16.pixel_f1_max", "headline"]]
    print(f"A = {a_path} {a.get('patches') or ''} {a.get('env') or ''}")
    print(f"B = {b_path} {b.get('patches') or ''} {b.get('env') or ''}")
    print("| set | " + " | ".join(keys) + " |")
    print("| --- |" + " --- |" * len(keys))
    for name in [*names, "mean"]:
        fa = a["sets"][name] if name != "mean" else mean_of({n: a["sets"][n] for n in names})
        fb = b["sets"][name] if name != "mean" else mean_of({n: b["sets"][n] for n in names})
        cells = []
        for key in keys:
            va, vb = fa.get(key), fb.get(key)
            if va is None or vb is None:
                cells.append("-")
                continue
            mark = " **(loses > 0.02)**" if key == "headline" and vb - va < -WORST_LOSS else ""
            cells.append(f"{va:.3f} -> {vb:.3f} ({vb - va:+.3f}){mark}")
        print(f"| {name} | " + " | ".join(cells) + " |")


def summary(base_path: Path, others: list[Path]) -> None:
    """One row per run against ``base_path``: each set's headline change, the mean's, and what the
    rule of the suite says (B earns its place over the base when the mean rises by ``TIE`` or more
    and no set loses more than ``WORST_LOSS``)."""
    base = json.loads(base_path.read_text())
    names = list(base["sets"])
    print(f"base = {base_path}: headline " + ", ".join(f"{n} {base['sets'][n]['headline']:.3f}" for n in names))
    print("| run | " + " | ".join(names) + " | mean | verdict |")
    print("| --- |" + " --- |" * (len(names) + 2))
    for path in others:
        run = json.loads(path.read_text())
        shared = [n for n in names if n in run["sets"] and run["sets"][n].get("headline") is not None]
        deltas = {n: run["sets"][n]["headline"] - base["sets"][n]["headline"] for n in shared}
        mean = float(np.mean(list(deltas.values()))) if deltas else 0.0
        worst = min(deltas.values(), default=0.0)
        if abs(mean) < TIE and worst >= -WORST_LOSS:
            verdict = "a tie: the simpler stays"
        else:
            verdict = "B over base" if mean > 0 and worst >= -WORST_LOSS else "base over B"
        cells = [f"{deltas[n]:+.3f}" if n in deltas else "-" for n in names]
        print(f"| {path.stem} | " + " | ".join(cells) + f" | {mean:+.3f} | {verdict} (worst {worst:+.3f}) |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="Write the figures here as JSON.")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"))
    parser.add_argument(
        "--summary", nargs="+", type=Path, metavar="JSON", help="BASE.json RUN.json...: headline changes per run."
    )
    parser.add_argument("--sets", help=f"Comma-separated subset of {','.join(SETS)}.")
    parser.add_argument("--skip", default="", help="'detect' and/or 'seek' (comma-separated).")
    parser.add_argument("--patch", action="append", default=[], metavar="MODULE:NAME=VALUE")
    parser.add_argument("--work", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "kbengine-suite")
    parser.add_argument("--skimage-data", type=Path, help="scikit-image's data folder (brick.png, ...).")
    parser.add_argument("--max-per-type", type=int, default=60, help="Test photos kept per type (0 = all).")
    args = parser.parse_args()
    if args.compare:
        compare(*args.compare)
        return
    if args.summary:
        summary(args.summary[0], args.summary[1:])
        return
    args.max_per_type = args.max_per_type or None
    args.work.mkdir(parents=True, exist_ok=True)
    result = run(args)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
