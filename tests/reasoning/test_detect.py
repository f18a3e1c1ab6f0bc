"""The AD Expert end to end: normal-reference detection localises generated defects with the
packaged encoder's real weights, the zero-shot path runs on a tiny CLIP, banks are cached and
renewed, domains come from files, train-prompts round-trips, bad inputs get clear errors."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from kbengine import synth
from kbengine.cli import app
from kbengine.core.encoders.base import Encoder
from kbengine.core.errors import InvalidInputError
from kbengine.core.regions import focus_crop, grow, location_phrase
from kbengine.core.schemas import Detection
from kbengine.core.settings import Settings
from kbengine.evaluation.reports import ZsadReport
from kbengine.evaluation.zsad import eval_zsad
from reasoning.expert.domains import INDUSTRIAL, load_domain
from reasoning.expert.metrics import auroc
from tests.conftest import open_kb

SIZE = 224


@pytest.fixture(scope="module")
def expert_kb(tmp_path_factory: pytest.TempPathFactory, packaged: Encoder) -> Path:
    root = tmp_path_factory.mktemp("expert")
    dataset = synth.write_mvtec(
        root / "dataset", {"tile": ("crack", "hole"), "disc": ("scratch", "missing")}, n_train=10, n_test_good=0,
        n_test_defect=2, size=SIZE,
    )  # fmt: skip
    with open_kb(root / "kb", packaged) as kb:
        assert kb.ingest([dataset]).ok
    return root / "kb"


def test_normal_references_localise_generated_defects(expert_kb, packaged):
    image_aurocs, masks, maps = [], [], []
    with open_kb(expert_kb, packaged) as kb:
        for category, defects in (("tile", ("crack", "hole", "stain")), ("disc", ("scratch", "missing"))):
            labels, scores = [], []
            for i in range(3):
                for defect in (None, *defects):
                    image, mask = synth.sample(category, defect, 40_000 + 10 * i + len(defect or ""), SIZE)
                    det = kb.detect(image, category)
                    assert det.anomaly_map.shape == (SIZE, SIZE) and det.mask.shape == (SIZE, SIZE)
                    assert det.anomaly_map.min() >= 0.0 and det.anomaly_map.max() <= 1.0
                    assert det.evidence.references == 10 and det.evidence.calibrated and not det.evidence.zero_shot
                    labels.append(int(defect is not None))
                    scores.append(det.score)
                    masks.append(mask)
                    maps.append(det.anomaly_map)
            image_aurocs.append(auroc(np.array(labels), np.array(scores)))
    assert np.mean(image_aurocs) > 0.9, image_aurocs
    assert auroc(np.stack(masks).ravel(), np.stack(maps).ravel()) > 0.9


def test_detection_fields_regions_and_type(expert_kb, packaged):
    image, mask = synth.sample("disc", "missing", 41_001, SIZE)
    with open_kb(expert_kb, packaged) as kb:
        det = kb.detect(image)  # category inferred from the nearest knowledge
    assert isinstance(det, Detection) and det.category == "disc" and det.is_anomalous
    assert det.regions and det.regions[0].peak >= det.threshold
    x0, y0, x1, y1 = det.regions[0].bbox
    assert mask[y0:y1, x0:x1].any(), "the strongest region overlaps the true defect"
    assert det.predicted_defect_type is not None and det.predicted_defect_type.category == "disc"
    assert any("inferred" in n for n in det.evidence.notes)
    data = det.model_dump()
    assert "anomaly_map" not in data and data["width"] == SIZE


def test_memory_banks_are_cached_and_renewed(expert_kb, packaged, tmp_path, monkeypatch):
    path = tmp_path / "kb"
    shutil.copytree(expert_kb, path)
    image = synth.sample("tile", "hole", 41_002, SIZE)[0]
    with open_kb(path, packaged) as kb:
        first = kb.detect(image, "tile")
    banks = list((path / "cache" / "banks").glob("*.npz"))
    assert len(banks) == 2  # tile and disc (the first detect's category inference does not build one)
    import kbengine.core.banks.references as references

    def no_rebuild(*args: object, **kwargs: object) -> None:
        raise AssertionError("the cached bank should have been read, not rebuilt")

    with open_kb(path, packaged) as kb:
        with monkeypatch.context() as patched:
            patched.setattr(references, "build_bank", no_rebuild)
            again = kb.detect(image, "tile")  # a new process reads the bank from the cache
        assert again.score == pytest.approx(first.score)
        extra = tmp_path / "more" / "tile" / "good"
        extra.mkdir(parents=True)
        synth.sample("tile", None, 41_003, SIZE)[0].save(extra / "new.png")
        kb.ingest([extra])
        renewed = kb.detect(image, "tile")
    assert renewed.evidence.references == 11


def test_zero_shot_on_a_tiny_clip(tmp_path, tiny_clip, material):
    with open_kb(tmp_path / "clip", tiny_clip) as kb:
        kb.ingest([material["documents"]])
        both = kb.detect(synth.sample("tile", "crack", 5, 64)[0], "tile")
        zero = kb.detect(synth.sample("tile", "crack", 5, 64)[0], "tile", mode="zero-shot")
        softmax_types = kb.detector.knowledge.texts("tile", INDUSTRIAL).types
    assert both.evidence.zero_shot and both.evidence.references == 1 and both.evidence.fusion
    assert zero.evidence.zero_shot and zero.evidence.references == 0 and zero.is_anomalous is not None
    assert zero.anomaly_map.shape == (64, 64) and np.isfinite(zero.anomaly_map).all()
    assert set(softmax_types) == {"crack", "stain"}  # type-level prompts from the knowledge base


def test_seek_with_a_focus_key(expert_kb, packaged):
    image = synth.sample("disc", "scratch", 41_004, SIZE)[0]
    with open_kb(expert_kb, packaged) as kb:
        plain = kb.seek(image, k=3, category="disc", key="global")
        focused = kb.seek(image, k=3, category="disc", focus=True, key="global")
        with pytest.raises(InvalidInputError, match="focus needs normal references"):
            kb.seek(image, k=3, category="bottle", focus=True)
    assert [p.name for p in plain.diagnostics.pipelines] == ["image>image"]
    assert [p.name for p in focused.diagnostics.pipelines] == ["image>image", "focus>image"]
    assert focused.hits[0].category == "disc" and "focus>image" in focused.hits[0].pipeline_scores


def test_the_focus_key_is_the_crop_around_the_strongest_region_detect_finds(expert_kb, packaged):
    """Seek's focus key comes from the query and the bank (``Query.focus_key``), not from the AD
    Expert, and is what the expert's references-only detection gave: the embedding of the crop
    around its strongest region (a large photo: mapped at working resolution, cropped at its own)."""
    photos = [("disc", "scratch", 41_004, None), ("tile", "crack", 41_005, None), ("disc", None, 41_007, None)]
    with open_kb(expert_kb, packaged) as kb:
        for category, defect, seed, resized in [*photos, ("tile", "hole", 41_006, (700, 500))]:
            picture = synth.sample(category, defect, seed, SIZE)[0]
            query = kb.query(picture.resize(resized) if resized else picture)
            for given in (category, None):
                det = kb.detect(query, given, mode="references")
                expected = packaged.embed_images([focus_crop(query.picture, det.anomaly_map, det.regions)])[0]
                np.testing.assert_array_equal(kb.seeker.focus_key(query, given), expected)


def test_softmax_map_form(tmp_path, tiny_clip, material):
    with open_kb(tmp_path / "clip", tiny_clip, detect_map_form="softmax") as kb:
        kb.ingest([material["documents"]])
        det = kb.detect(synth.sample("tile", "crack", 5, 64)[0], "tile", mode="zero-shot")
    assert np.isfinite(det.anomaly_map).all() and 0 <= det.score <= 1


def test_modes_the_encoder_or_knowledge_cannot_do_are_clear_errors(expert_kb, packaged, tmp_path):
    image = synth.sample("tile", "crack", 6, SIZE)[0]
    with open_kb(expert_kb, packaged) as kb:
        with pytest.raises(InvalidInputError, match="joint image-text space"):
            kb.detect(image, "tile", mode="zero-shot")
        with pytest.raises(InvalidInputError, match="no normal references for category 'bottle'"):
            kb.detect(image, "bottle")
        with pytest.raises(InvalidInputError, match="unknown mode"):
            kb.detect(image, "tile", mode="magic")
        with pytest.raises(InvalidInputError, match="too small"):
            kb.detect(Image.new("RGB", (8, 8)), "tile")
        for odd in (image.convert("L"), image.convert("RGBA"), np.asarray(image.convert("L"), np.uint16) * 256):
            assert kb.detect(odd, "tile").anomaly_map.shape == (SIZE, SIZE)
        big = kb.detect(image.resize((700, 500)), "tile")
        assert big.anomaly_map.shape == (500, 700)


def test_domains_come_from_files(tmp_path):
    (tmp_path / "medical.yaml").write_text(
        "normal_states: ['healthy {obj}']\nabnormal_states: ['{obj} with a lesion']\n"
        "templates: ['a brain MRI showing a {state}.']\ntype_templates: ['a brain MRI showing {cls}.']\n"
    )
    domain, note = load_domain("medical", [tmp_path])
    assert note is None and domain.state_prompts("brain", abnormal=True) == [
        "a brain MRI showing a brain with a lesion."
    ]
    assert domain.type_prompts("brain", "edema") == ["a brain MRI showing edema."]
    fallback, note = load_domain("castings", [tmp_path])
    assert fallback is INDUSTRIAL and note and "castings" in note
    (tmp_path / "bad.yaml").write_text("normal_states: []\n")
    with pytest.raises(InvalidInputError, match=r"bad\.yaml is invalid"):
        load_domain("bad", [tmp_path])
    shipped, _ = load_domain("medical", [Path(__file__).parents[2] / "docs" / "domains"])
    assert "MRI" in shipped.templates[0]


@pytest.mark.parametrize(
    ("cy", "cx", "phrase"), [(5, 5, "top left"), (50, 50, "center"), (95, 50, "bottom"), (50, 99, "right")]
)
def test_location_phrases(cy, cx, phrase):
    assert location_phrase(cy, cx, 100, 100) == phrase


def test_eval_zsad_and_cli(material, tmp_path, monkeypatch):
    report = eval_zsad(material["dataset"], Settings(encoder="packaged"), shots=3)
    assert [r.category for r in report.rows] == ["disc", "tile"] and report.mode == "auto"
    assert report.mean.image_auroc is not None and report.mean.pixel_auroc is not None
    assert report.mean.pixel_auroc > 0.8
    for row in report.rows:  # what the category's references chose, and what a user's boxes catch
        assert row.score_rule and row.views and row.region_recall is not None and 0 <= row.region_recall <= 1
    with pytest.raises(InvalidInputError, match="needs normal references"):
        eval_zsad(material["dataset"], Settings(encoder="packaged"), shots=0, mode="references")
    with pytest.raises(InvalidInputError, match="joint image-text space"):
        eval_zsad(material["dataset"], Settings(encoder="packaged"), shots=0)
    monkeypatch.setenv("KBENGINE_ENCODER", "packaged")
    runner = CliRunner()
    result = runner.invoke(app, ["eval", "zsad", str(material["dataset"]), "--shots", "2", "--limit", "2", "--json"])
    assert result.exit_code == 0, result.output
    assert ZsadReport.model_validate_json(result.stdout).shots == 2
    args = ["eval", "zsad", str(material["dataset"]), "--shots", "2", "--pick", "diverse", "--limit", "2", "--json"]
    diverse = runner.invoke(app, args)
    assert diverse.exit_code == 0, diverse.output
    assert ZsadReport.model_validate_json(diverse.stdout).pick == "diverse"
    with pytest.raises(InvalidInputError, match="unknown pick"):
        eval_zsad(material["dataset"], Settings(encoder="packaged"), shots=2, pick="best")
    kb = tmp_path / "kb"
    assert runner.invoke(app, ["ingest", str(material["dataset"]), "--kb", str(kb)]).exit_code == 0
    image = material["dataset"] / "tile" / "test" / "crack" / "000.png"
    overlay = tmp_path / "heat.png"
    shown = runner.invoke(app, ["detect", str(image), "--kb", str(kb), "--category", "tile", "--out", str(overlay)])
    assert shown.exit_code == 0, shown.output
    assert "evidence: 4 normal references" in shown.output and Image.open(overlay).size == (128, 128)  # material


def test_train_prompts_round_trip(tmp_path, tiny_clip, material):
    from reasoning.expert.training import load_learned_texts, train_prompts

    logged: list[str] = []
    result = train_prompts(
        tiny_clip, material["dataset"], tmp_path / "p.safetensors", epochs=3, lr=1e-2, log=logged.append
    )
    assert len(logged) == 3 and result["loss"][-1] < result["loss"][0]
    learned = load_learned_texts(tiny_clip, tmp_path / "p.safetensors")
    with open_kb(tmp_path / "kb", tiny_clip) as kb:
        kb.ingest([material["documents"]])
        det = kb.detect(synth.sample("disc", "scratch", 1, 64)[0], "disc", prompts=tmp_path / "p.safetensors")
    assert det.evidence.learned_prompts and det.evidence.zero_shot
    pair = learned.texts_for(np.ones(tiny_clip.identity.image_dim, np.float32))
    assert pair.normal.shape == pair.abnormal.shape == (tiny_clip.identity.image_dim,)
    with pytest.raises(InvalidInputError, match="no prompt file"):
        load_learned_texts(tiny_clip, tmp_path / "missing.safetensors")


def test_the_mask_grows_from_strong_seeds_over_their_weaker_surroundings():
    anomaly_map = np.zeros((20, 20), np.float32)
    anomaly_map[5, 5] = 0.9  # a seed above the threshold
    anomaly_map[5, 6:12] = 0.4  # its weaker tail, connected: grown into the mask
    anomaly_map[15, 15:18] = 0.4  # as weak but alone: no seed, not a region
    mask = grow(anomaly_map, 0.5)
    assert mask[5, 5:12].all() and not mask[15].any() and mask.sum() == 7
    assert not grow(anomaly_map * 0.5, 0.5).any()


def test_a_large_photo_is_mapped_at_working_resolution_and_answered_at_its_own(expert_kb, packaged):
    small, mask = synth.sample("disc", "missing", 41_001, SIZE)
    large = small.resize((1200, 900))  # non-square, over the 512 px working side
    with open_kb(expert_kb, packaged) as kb:
        det = kb.detect(large, "disc")
    assert det.anomaly_map.shape == (900, 1200) and det.mask.shape == (900, 1200)
    assert det.regions and det.is_anomalous
    x0, y0, x1, y1 = det.regions[0].bbox
    assert 0 <= x0 < x1 <= 1200 and 0 <= y0 < y1 <= 900
    big_mask = np.asarray(Image.fromarray(mask).resize((1200, 900), Image.Resampling.NEAREST))
    assert big_mask[y0:y1, x0:x1].any(), "the box, in the photo's pixels, overlaps the true defect"
    assert det.mask[y0:y1, x0:x1].any()


def test_detect_many_batches_photos_and_the_cli_prints_a_line_each(expert_kb, packaged, tmp_path):
    folder = tmp_path / "line"
    folder.mkdir()
    for i, defect in enumerate((None, "crack", None, "hole", "crack")):
        synth.sample("tile", defect, 42_000 + i, SIZE)[0].save(folder / f"{i}.png")
    (folder / "9_broken.png").write_bytes(b"not a png")
    photos = sorted(folder.iterdir())
    with open_kb(expert_kb, packaged) as kb:
        many = list(kb.detect_many(photos, "tile", batch_size=2))
        one = kb.detect(photos[1], "tile")
    assert [type(r).__name__ for r in many] == ["Detection"] * 5 + ["FileFailure"]
    assert abs(many[1].score - one.score) < 1e-4 and many[1].regions == one.regions
    assert "not an image" in many[-1].reason
    table = tmp_path / "summary.csv"
    result = CliRunner().invoke(
        app, ["detect", str(folder), "--kb", str(expert_kb), "--category", "tile", "--json", "--csv", str(table)]
    )
    assert result.exit_code == 1, result.output  # one photo failed
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(lines) == 6 and lines[0]["category"] == "tile" and "reason" in lines[-1]
    rows = table.read_text().splitlines()
    assert rows[0].startswith("image,category,score") and len(rows) == 7
