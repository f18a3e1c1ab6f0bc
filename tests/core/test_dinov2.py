"""The dinov2 backend on a tiny random-init ``Dinov2Config`` model saved with ``save_pretrained``,
checked against transformers' own ``Dinov2Model`` forward, and run end to end (ingest, seek,
detect) through the knowledge base and the CLI."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from kbengine import synth
from kbengine.cli import app
from kbengine.core.encoders import get_encoder
from kbengine.core.encoders.dinov2 import IMAGENET_MEAN, IMAGENET_STD, Dinov2Encoder
from kbengine.core.errors import EncoderMismatchError, InvalidInputError, WeightsNotFoundError
from kbengine.core.schemas import KBInfo
from kbengine.core.settings import Settings
from kbengine.facade import KnowledgeBase
from tests.conftest import SMALL

SIZE = 56  # a 4x4 patch grid: fast on two cores


def _tiny(folder: Path, processor: bool, seed: int = 0, registers: int = 0, layers: int = 4) -> Path:
    """A random-init DINOv2 (with ``registers`` register tokens: Dinov2WithRegistersModel) saved
    with ``save_pretrained``: 32-d, 2 heads, 14 px patches at a native 56 px (4x4 grid)."""
    import transformers

    torch.manual_seed(seed)
    size: dict[str, Any] = {
        "hidden_size": 32,
        "num_hidden_layers": layers,
        "num_attention_heads": 2,
        "image_size": SIZE,
    }
    if registers:
        config = transformers.Dinov2WithRegistersConfig(patch_size=14, num_register_tokens=registers, **size)
        transformers.Dinov2WithRegistersModel(config).save_pretrained(folder)
    else:
        transformers.Dinov2Model(transformers.Dinov2Config(patch_size=14, **size)).save_pretrained(folder)
    if processor:
        transformers.BitImageProcessor(image_mean=[0.5, 0.4, 0.3], image_std=[0.2, 0.25, 0.3]).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def tiny_dino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DINOv2 folder with an image processor config."""
    return _tiny(tmp_path_factory.mktemp("dino"), processor=True)


@pytest.fixture(scope="module")
def bare_dino(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny DINOv2 folder with weights and config only (no preprocessor_config.json)."""
    return _tiny(tmp_path_factory.mktemp("dino-bare"), processor=False, seed=1)


@pytest.fixture(scope="module")
def encoder(tiny_dino: Path) -> Dinov2Encoder:
    return Dinov2Encoder(str(tiny_dino), image_size=SIZE)


def _images(size: int = 96) -> list[Image.Image]:
    return [synth.sample("tile", None, 1, size)[0], synth.sample("disc", "scratch", 2, size)[0]]


def _reference(encoder: Dinov2Encoder, pixels: torch.Tensor):
    """transformers' own Dinov2Model, loaded afresh from the folder, on ``pixels``."""
    from transformers import Dinov2Model

    model = Dinov2Model.from_pretrained(encoder.identity.model, local_files_only=True).eval()
    with torch.no_grad():
        return model(pixel_values=pixels, output_hidden_states=True)


def test_shapes_identity_and_default_layers(encoder):
    images = _images()
    assert encoder.patch_layers == (0, 1, 2, 3) and not encoder.has_text and not encoder.joint_space
    glob = encoder.embed_images(images)
    assert glob.shape == (2, 32) and glob.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(glob, axis=1), 1.0, atol=1e-5)
    maps = encoder.patch_features(images)
    assert {k: v.shape for k, v in maps.items()} == {i: (2, 4, 4, 32) for i in range(4)}
    assert all(v.dtype == np.float32 for v in maps.values())
    keys, patches = encoder.encode(images, [1, 3])
    np.testing.assert_allclose(keys, glob, atol=1e-6)
    assert set(patches) == {1, 3}
    np.testing.assert_allclose(patches[3], maps[3], atol=1e-6)
    identity = encoder.identity
    assert identity.backend == "dinov2" and identity.model == encoder.identity.model
    assert identity.image_dim == 32 and identity.text_dim is None and not identity.joint_space
    assert identity.weights.endswith(f"-{SIZE}px") and len(identity.weights.split("-")[0]) == 12
    assert encoder.embed_images([]).shape == (0, 32)


def test_global_and_patch_tokens_are_transformers_own(encoder):
    """The global key is Dinov2Model's pooler output (class token after the final layernorm);
    the last block's patch tokens are its last_hidden_state[:, 1:] on the patch grid; an earlier
    block's are its hidden state through the same layernorm."""
    images = _images()
    out = _reference(encoder, encoder._batch(images))
    pooled = out.pooler_output.numpy()
    np.testing.assert_allclose(
        encoder.embed_images(images), pooled / np.linalg.norm(pooled, axis=1, keepdims=True), atol=1e-5
    )
    maps = encoder.patch_features(images, [1, 3])
    np.testing.assert_allclose(maps[3], out.last_hidden_state[:, 1:].reshape(2, 4, 4, 32).numpy(), atol=1e-5)
    with torch.no_grad():
        mid = encoder.model.layernorm(out.hidden_states[2][:, 1:]).reshape(2, 4, 4, 32).numpy()
    np.testing.assert_allclose(maps[1], mid, atol=1e-5)
    assert encoder.mean == pytest.approx((0.5, 0.4, 0.3)) and encoder.std == pytest.approx((0.2, 0.25, 0.3))


def test_pixels_are_the_image_processors_resized_whole(encoder):
    """The folder's own processor (resize to the square, no crop) gives the same pixels, up to
    its rounding of a grey level."""
    from transformers import AutoImageProcessor

    processor = AutoImageProcessor.from_pretrained(encoder.identity.model, local_files_only=True)
    images = _images()
    side = {"height": SIZE, "width": SIZE}
    theirs = processor(images, size=side, do_center_crop=False, return_tensors="pt")["pixel_values"]
    ours = encoder._batch(images)
    assert ours.shape == theirs.shape == (2, 3, SIZE, SIZE)
    assert (ours - theirs).abs().max() <= 1.01 / 255 / min(encoder.std)
    assert (ours - theirs).abs().mean() < 1e-3


def test_any_size_on_the_14_px_grid(tiny_dino):
    for asked, side in [(70, 70), (98, 98), (100, 98), (8, 14)]:
        enc = Dinov2Encoder(str(tiny_dino), image_size=asked)
        grid = side // 14
        assert enc.image_size == side
        maps = enc.patch_features(_images(64), [3])
        assert maps[3].shape == (2, grid, grid, 32)
        assert enc.identity.weights.endswith(f"-{side}px")
    with pytest.raises(InvalidInputError, match="no block 4"):
        enc.patch_features(_images(), [4])


def test_a_folder_without_an_image_processor_uses_imagenet_statistics(bare_dino):
    enc = Dinov2Encoder(str(bare_dino), image_size=SIZE)
    assert enc.mean == IMAGENET_MEAN and enc.std == IMAGENET_STD
    from transformers import Dinov2Model

    images = _images()
    batch = np.stack([np.asarray(im.resize((SIZE, SIZE), Image.Resampling.BICUBIC), np.float32) / 255 for im in images])
    pixels = torch.from_numpy((batch - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        ref = Dinov2Model.from_pretrained(str(bare_dino), local_files_only=True).eval()(pixel_values=pixels)
    np.testing.assert_allclose(
        enc.patch_features(images, [3])[3], ref.last_hidden_state[:, 1:].reshape(2, 4, 4, 32).numpy(), atol=1e-4
    )


def test_register_tokens_are_dropped_with_the_class_token(tmp_path):
    from transformers import Dinov2WithRegistersModel

    _tiny(tmp_path, processor=False, seed=2, registers=4, layers=2)
    enc = Dinov2Encoder(str(tmp_path), image_size=SIZE)
    assert enc.registers == 4 and enc.patch_layers == (0, 1)
    images = _images()
    model = Dinov2WithRegistersModel.from_pretrained(str(tmp_path), local_files_only=True).eval()
    with torch.no_grad():
        out = model(pixel_values=enc._batch(images))
    keys, maps = enc.encode(images, [1])
    np.testing.assert_allclose(maps[1], out.last_hidden_state[:, 5:].reshape(2, 4, 4, 32).numpy(), atol=1e-5)
    pooled = out.pooler_output.numpy()
    np.testing.assert_allclose(keys, pooled / np.linalg.norm(pooled, axis=1, keepdims=True), atol=1e-5)


def test_another_model_is_refused(tmp_path):
    from transformers import ViTConfig, ViTModel

    ViTModel(
        ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64)
    ).save_pretrained(tmp_path)
    with pytest.raises(InvalidInputError, match="not DINOv2"):
        Dinov2Encoder(str(tmp_path))


def test_missing_weights_say_what_to_download_and_where(monkeypatch, tmp_path, tiny_dino):
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    for model in ["kbengine-test/dinov2-absent", str(tmp_path / "nowhere"), None]:
        with pytest.raises(WeightsNotFoundError, match="huggingface-cli download facebook/dinov2-base") as err:
            Dinov2Encoder(model)
        assert "KBENGINE_DINO_MODEL" in str(err.value) and "packaged" in str(err.value)
        assert model is None or "not on this machine" in str(err.value)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(WeightsNotFoundError, match=r"no config\.json"):
        Dinov2Encoder(str(empty))
    no_weights = tmp_path / "no-weights"
    shutil.copytree(tiny_dino, no_weights)
    (no_weights / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="no model weights"):
        Dinov2Encoder(str(no_weights))
    with pytest.raises(WeightsNotFoundError, match="KBENGINE_DINO_MODEL is not set"):
        get_encoder(Settings(encoder="dinov2"))


def test_no_text_is_a_clear_error(encoder):
    with pytest.raises(InvalidInputError, match="no text embeddings"):
        encoder.embed_texts(["a crack"])


def test_the_identity_is_stable_and_tells_weights_apart(encoder, tiny_dino, bare_dino, tmp_path):
    assert Dinov2Encoder(str(tiny_dino), image_size=SIZE).identity == encoder.identity
    assert Dinov2Encoder(str(bare_dino), image_size=SIZE).identity.weights != encoder.identity.weights
    moved = shutil.copytree(tiny_dino, tmp_path / "moved")
    again = get_encoder(Settings(encoder="dinov2", dino_model=str(moved), dino_image_size=SIZE), encoder.identity)
    assert again.identity == encoder.identity  # the same weights elsewhere: the same space
    with pytest.raises(EncoderMismatchError):
        get_encoder(Settings(encoder="dinov2", dino_model=str(bare_dino), dino_image_size=SIZE), encoder.identity)


def test_knowledge_base_round_trip(tiny_dino, material, tmp_path):
    settings = Settings(kb=tmp_path / "kb", encoder="dinov2", dino_model=str(tiny_dino), dino_image_size=SIZE)
    with KnowledgeBase.open(settings=settings) as kb:
        report = kb.ingest([material["documents"], material["dataset"]])
        assert report.ok and report.locks_added > 0 and report.encoder.startswith("dinov2:")
        photo = synth.sample("disc", "scratch", 4_001, 128)[0]
        seek = kb.seek(photo, k=3)
        assert len(seek.hits) == 3 and seek.hits[0].category in SMALL
        with pytest.raises(InvalidInputError, match="no text embeddings"):
            kb.seek(photo, text="a scratch")
        detection = kb.detect(photo, "disc")
        assert detection.anomaly_map.shape == (128, 128) and np.isfinite(detection.score)
        assert detection.threshold is not None and detection.evidence.references
        locks = kb.info().locks
    auto = Settings(kb=tmp_path / "kb", dino_model=str(tiny_dino))  # encoder auto, size from the base
    with KnowledgeBase.open(settings=auto) as kb:
        assert kb.encoder.identity.backend == "dinov2" and kb.info().locks == locks
        assert kb.ingest([material["documents"]]).locks_added == 0
    with KnowledgeBase.open(settings=Settings(kb=tmp_path / "kb")) as kb:  # nothing set: the recorded folder
        assert kb.detect(photo, "disc").evidence.references


def test_cli_ingest_seek_detect_info(tiny_dino, material, tmp_path, monkeypatch):
    monkeypatch.setenv("KBENGINE_ENCODER", "dinov2")
    monkeypatch.setenv("KBENGINE_DINO_MODEL", str(tiny_dino))
    monkeypatch.setenv("KBENGINE_DINO_IMAGE_SIZE", str(SIZE))
    runner = CliRunner()
    kb = str(tmp_path / "kb")
    ingested = runner.invoke(app, ["ingest", str(material["dataset"]), "--kb", kb])
    assert ingested.exit_code == 0, ingested.output
    image = material["dataset"] / "tile" / "test" / "crack" / "000.png"
    seek = runner.invoke(app, ["seek", str(image), "--kb", kb, "-k", "2", "--json"])
    assert seek.exit_code == 0, seek.output
    detect = runner.invoke(app, ["detect", str(image), "--kb", kb, "--category", "tile", "--json"])
    assert detect.exit_code == 0, detect.output
    info = runner.invoke(app, ["info", "--kb", kb, "--json"])
    assert info.exit_code == 0, info.output
    data = KBInfo.model_validate_json(info.stdout)
    assert data.encoder.startswith(f"dinov2:{tiny_dino}@") and data.image_dim == 32 and data.text_dim is None
    table = runner.invoke(app, ["info", "--kb", kb])
    assert table.exit_code == 0 and "dinov2" in table.output
