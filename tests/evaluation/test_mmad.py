"""MMAD loading, answer parsing, scoring (hand-computed) and the resumable record log."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kbengine.core.errors import InvalidInputError
from kbengine.evaluation.mmad import MMADQuestion, MMADRecord, RecordLog, is_normal_question, load_mmad, score
from reasoning.answers import FUZZY_THRESHOLD, parse_answer

YES_NO = {"A": "Yes.", "B": "No."}


def _q(question: str, options: dict[str, str], answer: str, type_: str) -> dict[str, Any]:
    return {"Question": question, "Options": options, "Answer": answer, "type": type_}


def _mmad() -> dict[str, Any]:
    """Four images: two defective, two normal (one with "No" as option A), mixed question types."""
    return {
        "MVTec-AD/bottle/test/broken_large/000.png": {
            "image_path": "MVTec-AD/bottle/test/broken_large/000.png",
            "mask_path": "MVTec-AD/bottle/ground_truth/broken_large/000_mask.png",
            "similar_templates": ["MVTec-AD/bottle/train/good/001.png", "MVTec-AD/bottle/train/good/002.png"],
            "random_templates": ["MVTec-AD/bottle/train/good/003.png"],
            "conversation": [
                _q("Is there any defect in the object?", YES_NO, "A", "Anomaly Detection"),
                _q(
                    "There is a defect in the object. What is the type of the defect?",
                    {"A": "Scratch.", "B": "Broken large.", "C": "Contamination.", "D": "Hole."},
                    "B",
                    "Defect Classification",
                ),
                _q(
                    "Where is the defect?",
                    {"A": "Top left.", "B": "Center.", "C": "Bottom right.", "D": "Rim."},
                    "D",
                    "Defect Localization",
                ),
            ],
        },
        "MVTec-AD/bottle/test/good/000.png": {
            "mask_path": "",
            "similar_templates": [],
            "random_templates": [],
            "conversation": [
                _q("Is there any defect in the object?", YES_NO, "B", "Anomaly Detection"),
                _q(
                    "What kind of product is in the image?",
                    {"A": "Bottle.", "B": "Cable.", "C": "Screw."},
                    "A",
                    "Object Classification",
                ),
                _q("What shape is the bottle mouth?", {"A": "Square.", "B": "Round."}, "B", "Object Structure"),
            ],
        },
        "VisA/candle/test/bad/010.png": {
            "mask_path": "VisA/candle/ground_truth/bad/010.png",
            "conversation": [
                _q("Is there any defect in the object?", YES_NO, "A", "Anomaly Detection"),
                _q(
                    "What is the defect?",
                    {"A": "A wax melt.", "B": "A missing wick."},
                    "B",
                    "Defect Description",
                ),
            ],
        },
        "VisA/candle/test/good/011.png": {
            "conversation": [
                _q(
                    "Does the candle look normal?",
                    {"A": "No defect is visible.", "B": "Yes, there is a defect."},
                    "A",
                    "Anomaly Detection",
                ),
                _q("How many candles are there?", {"A": "Two.", "B": "Four."}, "B", "Object Details"),
            ],
        },
    }


@pytest.fixture
def mmad_file(tmp_path: Path) -> Path:
    path = tmp_path / "mmad.json"
    path.write_text(json.dumps(_mmad()), encoding="utf-8")
    return path


# ------------------------------------------------------------------------------------------------ load_mmad


def test_load_all_questions_in_order(mmad_file: Path) -> None:
    questions = load_mmad(mmad_file)
    assert len(questions) == 10
    first = questions[0]
    assert first.image == "MVTec-AD/bottle/test/broken_large/000.png"
    assert first.index == 0
    assert first.key == "MVTec-AD/bottle/test/broken_large/000.png#0"
    assert first.options == YES_NO
    assert first.answer == "A"
    assert first.mask_path == "MVTec-AD/bottle/ground_truth/broken_large/000_mask.png"
    assert first.similar_templates == ["MVTec-AD/bottle/train/good/001.png", "MVTec-AD/bottle/train/good/002.png"]
    assert first.random_templates == ["MVTec-AD/bottle/train/good/003.png"]
    assert [q.index for q in questions[:3]] == [0, 1, 2]
    assert len({q.key for q in questions}) == 10
    good = questions[3]
    assert good.mask_path is None  # "" in the file
    last = questions[-1]
    assert (last.image, last.index, last.type) == ("VisA/candle/test/good/011.png", 1, "Object Details")
    assert last.mask_path is None and last.similar_templates == [] and last.random_templates == []


def test_load_types_filter_is_case_insensitive_and_keeps_indices(mmad_file: Path) -> None:
    questions = load_mmad(mmad_file, types=["anomaly detection"])
    assert len(questions) == 4
    assert all(q.type == "Anomaly Detection" and q.index == 0 for q in questions)

    located = load_mmad(mmad_file, types=["DEFECT LOCALIZATION", "object structure"])
    assert [(q.image, q.index) for q in located] == [
        ("MVTec-AD/bottle/test/broken_large/000.png", 2),
        ("MVTec-AD/bottle/test/good/000.png", 2),
    ]


def test_load_object_analysis_means_structure_and_details(mmad_file: Path) -> None:
    questions = load_mmad(mmad_file, types=["Object Analysis"])
    assert [q.type for q in questions] == ["Object Structure", "Object Details"]


def test_load_unknown_type_is_an_error(mmad_file: Path) -> None:
    with pytest.raises(InvalidInputError, match="Anomaly Detektion"):
        load_mmad(mmad_file, types=["Anomaly Detektion"])


def test_load_limit_counts_images(mmad_file: Path) -> None:
    questions = load_mmad(mmad_file, limit=2)
    assert len(questions) == 6  # 3 + 3 questions of the first two images
    assert {q.image for q in questions} == {
        "MVTec-AD/bottle/test/broken_large/000.png",
        "MVTec-AD/bottle/test/good/000.png",
    }

    # With a type filter, images without a kept question do not count against the limit.
    details = load_mmad(mmad_file, types=["Object Details"], limit=1)
    assert [q.image for q in details] == ["VisA/candle/test/good/011.png"]

    assert len(load_mmad(mmad_file, limit=100)) == 10
    with pytest.raises(InvalidInputError, match="limit"):
        load_mmad(mmad_file, limit=0)


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        load_mmad(tmp_path / "nope.json")


def test_load_invalid_json(tmp_path: Path) -> None:
    path = tmp_path / "mmad.json"
    path.write_text('{"a.png": {"conversation": [}', encoding="utf-8")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        load_mmad(path)


@pytest.mark.parametrize(
    ("content", "pattern"),
    [
        ([1, 2], "expected a JSON object"),
        ({"img.png": "text"}, "entry 'img.png': expected an object"),
        ({"img.png": {"mask_path": None}}, "entry 'img.png': conversation"),
        ({"img.png": {"conversation": {"Question": "q"}}}, "entry 'img.png': conversation"),
        (
            {"img.png": {"conversation": [{"Question": "q", "Options": {"A": "x"}, "type": "Anomaly Detection"}]}},
            r"entry 'img.png', conversation\[0\]: Answer",
        ),
        (
            {"ok.png": {"conversation": []}, "img.png": {"conversation": [_q("q", YES_NO, "C", "Anomaly Detection")]}},
            r"entry 'img.png', conversation\[0\].*'C' is not one of the options",
        ),
        (
            {"img.png": {"conversation": [_q("q", {}, "A", "Anomaly Detection")]}},
            "Options is empty",
        ),
    ],
)
def test_load_wrong_structure_names_the_entry(tmp_path: Path, content: Any, pattern: str) -> None:
    path = tmp_path / "mmad.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(InvalidInputError, match=pattern):
        load_mmad(path)


# ------------------------------------------------------------------------------------------------ parse_answer

ABCD = {"A": "Scratch.", "B": "Broken large.", "C": "Contamination.", "D": "Hole."}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("B", "B"),
        ("Answer: B", "B"),
        ("Answer: B.", "B"),
        ("B.", "B"),
        ("(C)", "C"),
        ("the answer is D", "D"),
        ("The correct option is (c)... I mean (C).", "C"),
        ("1. Answer: A.", "A"),
        ("I looked at it carefully. Because of the crack, B", "B"),  # "I", "Because" don't count
        ("A scratch is visible, so the answer is B.", "B"),  # marker beats an earlier/later standalone letter
        ("Answer: C. A hole would look different.", "C"),  # the marked letter wins over the last standalone "A"
        ("Either A or D", "D"),  # no marker: the last standalone letter
        ("**B** Broken large", "B"),
        ("The answer is: (B). A hole would be round.", "B"),
    ],
)
def test_parse_letter_variants(text: str, expected: str) -> None:
    assert parse_answer(text, ABCD) == expected


def test_parse_letter_inside_word_does_not_count() -> None:
    # "Because" starts with B, "Contaminated"/"DEFECT" with C/D: none stands alone; the text has no option text.
    assert parse_answer("Because DEFECTS are Common", ABCD) is None
    assert parse_answer("B2 or A-1", ABCD) is None  # next to a digit: not standalone; "A-1" neither
    assert parse_answer("an A-shaped C's mark", ABCD) is None  # joined by a hyphen or an apostrophe
    assert parse_answer("ABCD", ABCD) is None


def test_parse_letter_not_an_option_is_ignored() -> None:
    assert parse_answer("E", ABCD) is None
    assert parse_answer("Answer: E", {"A": "Yes.", "B": "No."}) is None
    assert parse_answer("Answer: E, or B", {"A": "Yes.", "B": "No."}) == "B"
    assert parse_answer("C", {"A": "Yes.", "B": "No."}) is None


def test_parse_option_text_without_letter() -> None:
    assert parse_answer("no", YES_NO) == "B"
    assert parse_answer("yes, there is one", YES_NO) == "A"
    assert parse_answer("It looks like contamination on the surface", ABCD) == "C"
    assert parse_answer("broken large", ABCD) == "B"
    # Fuzzy: a misspelling has a high difflib ratio to one option only.
    assert parse_answer("contaminaton", ABCD) == "C"
    assert parse_answer("brokn lage", ABCD) == "B"


def test_parse_longest_contained_option_wins() -> None:
    options = {"A": "Hole.", "B": "Large hole."}
    assert parse_answer("there is a large hole", options) == "B"


def test_parse_garbage_is_none() -> None:
    assert parse_answer("", ABCD) is None
    assert parse_answer("   ", ABCD) is None
    assert parse_answer("I cannot determine this from the image.", ABCD) is None
    assert parse_answer("xyzzy", ABCD) is None
    assert parse_answer("anything", {}) is None
    assert 0 < FUZZY_THRESHOLD < 1


# ------------------------------------------------------------------------------------------------ is_normal


def test_is_normal_question(mmad_file: Path) -> None:
    by_key = {q.key: q for q in load_mmad(mmad_file)}
    assert is_normal_question(by_key["MVTec-AD/bottle/test/broken_large/000.png#0"]) is False  # "Yes."
    assert is_normal_question(by_key["MVTec-AD/bottle/test/good/000.png#0"]) is True  # "No."
    assert is_normal_question(by_key["VisA/candle/test/bad/010.png#0"]) is False
    assert is_normal_question(by_key["VisA/candle/test/good/011.png#0"]) is True  # "No defect is visible."
    assert is_normal_question(by_key["MVTec-AD/bottle/test/good/000.png#1"]) is None  # not Anomaly Detection


def test_record_from_reply(mmad_file: Path) -> None:
    question = load_mmad(mmad_file)[3]  # the normal bottle, answer B ("No.")
    record = MMADRecord.from_reply(question, "Answer: B.", seconds=1.5)
    assert (record.key, record.predicted, record.correct, record.is_normal_image) == (question.key, "B", True, True)
    assert record.seconds == 1.5 and record.raw == "Answer: B."
    bad = MMADRecord.from_reply(question, "hmm", seconds=0.1)
    assert bad.predicted is None and bad.correct is False


def test_record_rejects_inconsistent_correct() -> None:
    with pytest.raises(ValueError, match="contradicts"):
        MMADRecord(key="x#0", image="x", index=0, type="t", answer="A", predicted="B", correct=True, raw="B")


# ------------------------------------------------------------------------------------------------ score


def _rec(key: str, type_: str, answer: str, predicted: str | None, normal: bool | None = None) -> MMADRecord:
    return MMADRecord(
        key=key,
        image=key.split("#")[0],
        index=int(key.split("#")[1]),
        type=type_,
        answer=answer,
        predicted=predicted,
        correct=predicted == answer,
        raw=predicted or "???",
        is_normal_image=normal,
    )


def test_score_hand_computed() -> None:
    records = [
        # Anomaly Detection: normal images 1 of 2 right, defective images 1 of 1 right.
        #   plain accuracy would be 2/3; balanced = (1/2 + 1/1) / 2 = 0.75
        _rec("n1#0", "Anomaly Detection", "B", "B", normal=True),
        _rec("n2#0", "Anomaly Detection", "B", "A", normal=True),
        _rec("d1#0", "Anomaly Detection", "A", "A", normal=False),
        # Defect Classification: 1 right, 1 unparseable (wrong) -> 1/2 = 0.5
        _rec("d1#1", "Defect Classification", "C", "C"),
        _rec("d2#1", "Defect Classification", "C", None),
        # Object Structure (1 right, 1 wrong) + Object Details (1 right) -> Object Analysis 2/3
        _rec("n1#1", "Object Structure", "A", "A"),
        _rec("n2#1", "Object Structure", "A", "B"),
        _rec("n1#2", "Object Details", "B", "B"),
        # Defect Localization: 0/1 (unparseable) -> 0.0
        _rec("d1#2", "Defect Localization", "D", None),
    ]
    result = score(records)
    assert result.per_type == pytest.approx(
        {
            "Anomaly Detection": 0.75,
            "Defect Classification": 0.5,
            "Object Analysis": 2 / 3,
            "Defect Localization": 0.0,
        }
    )
    assert result.counts == {
        "Anomaly Detection": 3,
        "Defect Classification": 2,
        "Object Analysis": 3,
        "Defect Localization": 1,
    }
    # average = mean of the 4 per-type values = (0.75 + 0.5 + 2/3 + 0) / 4 = 1.9166.../4 = 0.479166...
    assert result.average == pytest.approx((0.75 + 0.5 + 2 / 3 + 0.0) / 4)
    assert result.average == pytest.approx(0.4791666666)
    assert result.answered == 9
    assert result.unparseable == 2


def test_score_anomaly_detection_single_class_and_empty() -> None:
    # Only normal images: balanced accuracy is the normal accuracy, 1/2.
    only_normal = [
        _rec("n1#0", "Anomaly Detection", "B", "B", normal=True),
        _rec("n2#0", "Anomaly Detection", "B", None, normal=True),
    ]
    result = score(only_normal)
    assert result.per_type == {"Anomaly Detection": 0.5}
    assert result.average == 0.5

    empty = score([])
    assert (empty.per_type, empty.counts, empty.average, empty.answered, empty.unparseable) == ({}, {}, 0.0, 0, 0)


def test_score_anomaly_detection_needs_normal_flag() -> None:
    with pytest.raises(InvalidInputError, match="is_normal_image"):
        score([_rec("x#0", "Anomaly Detection", "A", "A", normal=None)])


def test_score_end_to_end_from_file(mmad_file: Path) -> None:
    questions = load_mmad(mmad_file, types=["Anomaly Detection"])
    # Always answering "A": right on the 2 defective images (answer A) and on the normal candle (answer A, "No
    # defect is visible."), wrong on the normal bottle -> normal 1/2, defective 2/2 -> (0.5 + 1) / 2 = 0.75
    records = [MMADRecord.from_reply(q, "A") for q in questions]
    assert score(records).per_type == {"Anomaly Detection": 0.75}


# ------------------------------------------------------------------------------------------------ RecordLog


def test_record_log_resume_after_interrupted_write(tmp_path: Path) -> None:
    path = tmp_path / "runs" / "answers.jsonl"
    log = RecordLog(path)
    assert log.done_keys() == set() and log.records() == []
    first = [_rec(f"img{i}#0", "Defect Classification", "A", "A") for i in range(3)]
    for record in first:
        log.append(record)
    assert log.done_keys() == {"img0#0", "img1#0", "img2#0"}

    # An interrupted run: half a JSON line, no newline.
    partial = _rec("img3#0", "Defect Classification", "A", "B").model_dump_json()[:25]
    with path.open("a", encoding="utf-8") as handle:
        handle.write(partial)

    reopened = RecordLog(path, fsync=True)
    assert reopened.done_keys() == {"img0#0", "img1#0", "img2#0"}
    assert [r.key for r in reopened.records()] == ["img0#0", "img1#0", "img2#0"]

    reopened.append(_rec("img3#0", "Defect Classification", "A", "B"))
    reopened.append(_rec("img4#0", "Defect Classification", "A", None))
    assert reopened.done_keys() == {f"img{i}#0" for i in range(5)}
    records = RecordLog(path).records()
    assert [r.key for r in records] == [f"img{i}#0" for i in range(5)]
    assert records[3].predicted == "B" and records[4].predicted is None
    assert path.read_text(encoding="utf-8").count("\n") == 5  # the partial line is gone
    assert score(records).per_type == {"Defect Classification": 3 / 5}


def test_record_log_complete_last_line_without_newline_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    path.write_text(_rec("a#0", "Defect Classification", "A", "A").model_dump_json(), encoding="utf-8")
    log = RecordLog(path)
    assert log.done_keys() == {"a#0"}
    log.append(_rec("b#0", "Defect Classification", "A", "B"))
    assert [r.key for r in log.records()] == ["a#0", "b#0"]


def test_record_log_corrupt_middle_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "answers.jsonl"
    good = _rec("a#0", "Defect Classification", "A", "A").model_dump_json()
    path.write_text(f"{good}\n{{broken\n{good}\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="line 2"):
        RecordLog(path).done_keys()


def test_record_log_last_record_per_key_wins(tmp_path: Path) -> None:
    log = RecordLog(tmp_path / "answers.jsonl")
    log.append(_rec("a#0", "Defect Classification", "A", None))
    log.append(_rec("b#0", "Defect Classification", "A", "A"))
    log.append(_rec("a#0", "Defect Classification", "A", "A"))
    records = log.records()
    assert [(r.key, r.predicted) for r in records] == [("a#0", "A"), ("b#0", "A")]


def test_question_model_key() -> None:
    question = MMADQuestion(
        image="x/y.png", index=3, question="q", options=YES_NO, answer="A", type="Anomaly Detection"
    )
    assert question.key == "x/y.png#3"


@pytest.mark.parametrize(
    ("reply", "letter"),
    [
        ("No. A normal bottle.", "B"),
        ("B. A defect is not visible.", "B"),
        ("B: A clean surface", "B"),
        ("I think A is right", "A"),
        ("A normal part. B", "B"),
    ],
)
def test_the_article_a_is_not_option_a(reply: str, letter: str) -> None:
    assert parse_answer(reply, {"A": "Yes", "B": "No"}) == letter
