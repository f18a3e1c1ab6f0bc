"""Reasoning layer: the AD Expert and the MLLM answers. Reads knowledge through retrieval."""
