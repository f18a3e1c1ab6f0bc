"""The MMAD benchmark: its question file, answer scoring, resumable records and the run."""

from kbengine.evaluation.mmad.questions import MMADQuestion, load_mmad
from kbengine.evaluation.mmad.records import RecordLog
from kbengine.evaluation.mmad.scoring import MMADRecord, MMADScore, is_normal_question, score, score_type

__all__ = [
    "MMADQuestion",
    "MMADRecord",
    "MMADScore",
    "RecordLog",
    "is_normal_question",
    "load_mmad",
    "score",
    "score_type",
]
