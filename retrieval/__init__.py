"""Retrieval layer (Q2K RAG): key embedding -> cosine scores -> Bayesian GMM -> KDE-weighted
cluster sampling. Reads the store; never writes it."""

from retrieval.centroids import TypeCentroids, TypeService, predict_type
from retrieval.sampling import STRATEGIES, Selection, kde_sample, mmr_select, select, topk_select
from retrieval.seeker import Seeker

__all__ = [
    "STRATEGIES",
    "Seeker",
    "Selection",
    "TypeCentroids",
    "TypeService",
    "kde_sample",
    "mmr_select",
    "predict_type",
    "select",
    "topk_select",
]
