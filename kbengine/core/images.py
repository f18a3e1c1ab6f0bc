"""Loading images safely: paths, PIL images or arrays in; 8-bit RGB out; bombs and broken files refused."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from kbengine.core.errors import InvalidInputError
from kbengine.core.vocabulary import printable

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif"})
ImageInput = str | Path | Image.Image | np.ndarray


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB from any PIL mode; 16-bit and float images are scaled by their maximum."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "F"):
        array = np.asarray(image, dtype=np.float64)
        peak = array.max() if array.size and array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / peak * 255.0, 0, 255).astype(np.uint8))
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        background = Image.new("RGB", image.size, (255, 255, 255))
        rgba = image.convert("RGBA")
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def array_to_image(array: np.ndarray) -> Image.Image:
    a = np.asarray(array)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[-1] not in (3, 4)):
        raise InvalidInputError(f"an image array must be HxW, HxWx1, HxWx3 or HxWx4, not {a.shape}")
    if a.dtype.kind == "f":
        a = np.clip(a * 255.0 if a.max(initial=0) <= 1.0 else a, 0, 255).astype(np.uint8)
    elif a.dtype != np.uint8:
        peak = max(int(a.max(initial=0)), 1)
        a = (a.astype(np.float64) / (peak if peak > 255 else 255) * 255).astype(np.uint8)
    return to_rgb(Image.fromarray(a))


def open_image_file(path: Path, max_pixels: int) -> Image.Image:
    """Open and fully decode an image file, refusing empty, unreadable, truncated or oversized ones."""
    return decode_image(path.read_bytes(), path, max_pixels)


def decode_image(data: bytes, path: Path, max_pixels: int) -> Image.Image:
    """Decode an image file's bytes (``path`` names it in errors) with the checks of :func:`open_image_file`;
    a photo with an EXIF orientation (phones, tablets) is turned upright, as viewers show it."""
    if not data:
        raise InvalidInputError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if width * height > max_pixels:
                    raise InvalidInputError(
                        f"{path}: {width}x{height} = {width * height:,} pixels, over the limit of "
                        f"{max_pixels:,} (KBENGINE_MAX_IMAGE_PIXELS)"
                    )
                frames = getattr(image, "n_frames", 1)
                if frames > 1:
                    raise InvalidInputError(
                        f"{path}: an animation or multi-page image ({frames} frames); save the frame to "
                        "inspect as a PNG"
                    )
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
    except InvalidInputError:
        raise
    except UnidentifiedImageError as e:
        raise InvalidInputError(f"{path}: not an image file PIL can read (is its extension right?)") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise InvalidInputError(f"{path}: refused as a decompression bomb ({e})") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise InvalidInputError(f"{path}: broken or truncated image ({e})") from e


def load_image(source: ImageInput, max_pixels: int = 40_000_000) -> Image.Image:
    """A path, PIL image or array as an 8-bit RGB PIL image."""
    if isinstance(source, Image.Image):
        return to_rgb(source)
    if isinstance(source, np.ndarray):
        return array_to_image(source)
    path = Path(source)
    if not path.is_file():
        raise InvalidInputError(f"{path}: no such image file")
    return open_image_file(path, max_pixels)


def describe(image: ImageInput) -> str:
    """How an image input is named in results: its path, or its kind and size."""
    if isinstance(image, str | Path):
        return printable(str(image))
    if isinstance(image, np.ndarray):
        return f"<array {'x'.join(map(str, image.shape))}>"
    return f"<image {image.size[0]}x{image.size[1]}>"
