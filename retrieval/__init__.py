"""Retrieval layer (Q2K RAG): key embedding -> cosine scores -> Bayesian GMM -> KDE-weighted
cluster sampling. Reads the store; never writes it."""
