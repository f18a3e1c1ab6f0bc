"""``hf`` backend: a local Qwen2-VL / Qwen2.5-VL-style model run with transformers.

Everything is read from one folder (``--model DIR`` / ``KBENGINE_LLM_MODEL``); nothing is downloaded.
Images go into the prompt in the order of the message parts, one vision block each.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from kbengine.core.errors import InvalidInputError, LLMError, MissingDependencyError
from reasoning.llm.base import Message, Stream

if TYPE_CHECKING:
    from kbengine.core.settings import Settings

DEFAULT_REPO = "Qwen/Qwen2.5-VL-3B-Instruct"
_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_PROCESSOR_FILES = ("preprocessor_config.json", "processor_config.json")
_TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")
_DTYPES = ("float32", "float16", "bfloat16", "auto")


def download_hint(model_dir: str | Path) -> str:
    """What to do to fill ``model_dir`` with a model."""
    return (
        f"download {DEFAULT_REPO} (or another Qwen2-VL/Qwen2.5-VL chat model) on a machine with internet: "
        f"`huggingface-cli download {DEFAULT_REPO} --local-dir {model_dir}`, copy the folder here and pass "
        f"--model {model_dir} (or set KBENGINE_LLM_MODEL)"
    )


def check_model_dir(model_dir: str | Path) -> Path:
    """``model_dir`` as a Path once it holds a config, weights, a processor and a tokenizer; else LLMError."""
    path = Path(model_dir).expanduser()
    if not path.is_dir():
        raise LLMError(f"model folder {path} does not exist: {download_hint(path)}")
    missing = []
    if not (path / "config.json").is_file():
        missing.append("config.json")
    if not any((path / f).is_file() for f in _WEIGHT_FILES) and not any(path.glob("*.safetensors")):
        missing.append("weights (*.safetensors)")
    if not any((path / f).is_file() for f in _PROCESSOR_FILES):
        missing.append("preprocessor_config.json")
    if not any((path / f).is_file() for f in _TOKENIZER_FILES):
        missing.append("tokenizer files")
    if missing:
        raise LLMError(f"model folder {path} lacks {', '.join(missing)}: {download_hint(path)}")
    return path


def _reserved_strings(processor: Any) -> list[str]:
    """Special-token strings (chat and vision markers) that text parts must not smuggle into the prompt."""
    tokenizer = processor.tokenizer
    reserved = {t.content for t in getattr(tokenizer, "added_tokens_decoder", {}).values() if t.special}
    reserved.update(getattr(tokenizer, "all_special_tokens", []))
    reserved.update(s for s in (getattr(processor, "image_token", None), getattr(processor, "video_token", None)) if s)
    return sorted(reserved, key=len, reverse=True)


def _clean(text: str, reserved: Iterable[str]) -> str:
    for token in reserved:
        text = text.replace(token, "")
    return text


def to_chat(messages: list[Message], reserved: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Messages in the processor's chat format, parts in order; ``reserved`` strings are removed from text."""
    reserved = list(reserved)
    chat: list[dict[str, Any]] = []
    for message in messages:
        content: list[dict[str, Any]] = []
        for part in message.parts:
            if part.kind == "image":
                image = part.image
                if image is None:
                    if not part.image_path:
                        raise InvalidInputError(f"image part {part.label or ''!r} has neither an image nor a path")
                    try:
                        with Image.open(part.image_path) as opened:
                            image = opened.convert("RGB")
                    except OSError as exc:
                        raise InvalidInputError(f"cannot read image {part.image_path}: {exc}") from exc
                content.append({"type": "image", "image": image})
            elif part.text:
                content.append({"type": "text", "text": _clean(part.text, reserved)})
        chat.append({"role": message.role, "content": content})
    return chat


def render_prompt(processor: Any, messages: list[Message]) -> str:
    """The prompt text the model sees, before image placeholders are expanded to one per visual token."""
    chat = to_chat(messages, _reserved_strings(processor))
    return str(processor.apply_chat_template(chat, add_generation_prompt=True, tokenize=False))


def count_image_placeholders(processor: Any, messages: list[Message]) -> int:
    """How many image placeholders (one per image, each in a vision block) the rendered prompt holds."""
    ids = processor.tokenizer(render_prompt(processor, messages), add_special_tokens=False)["input_ids"]
    return int(list(ids).count(processor.image_token_id))


def _set_pixel_bounds(image_processor: Any, min_pixels: int, max_pixels: int) -> None:
    # transformers 5 resizes by size={"shortest_edge", "longest_edge"} (both pixel counts); passing
    # min_pixels/max_pixels to from_pretrained still works but then warns on every call. 4.x read
    # the min_pixels/max_pixels attributes.
    image_processor.size = {"shortest_edge": min_pixels, "longest_edge": max_pixels}
    for name, value in (("min_pixels", min_pixels), ("max_pixels", max_pixels)):
        if hasattr(image_processor, name):
            setattr(image_processor, name, value)


class HFChat:
    """A local Qwen2-VL / Qwen2.5-VL chat model (transformers), greedy decoding."""

    def __init__(
        self,
        model_dir: str | Path,
        device: str = "cpu",
        dtype: str | None = None,
        min_pixels: int = 64 * 28 * 28,
        max_pixels: int = 1280 * 28 * 28,
    ) -> None:
        path = check_model_dir(model_dir)
        if not 0 < min_pixels <= max_pixels:
            raise InvalidInputError(f"need 0 < min_pixels <= max_pixels, got {min_pixels} and {max_pixels}")
        if dtype is not None and dtype not in _DTYPES:
            raise InvalidInputError(f"dtype {dtype!r} is not one of {', '.join(_DTYPES)}")
        try:
            import torch
            from transformers import AutoModelForImageTextToText, AutoProcessor
        except ImportError as exc:
            raise MissingDependencyError(
                f"--llm hf needs torch and transformers: pip install transformers ({exc})"
            ) from exc
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise LLMError(f"device {device} asked for but CUDA is not available here: use --device cpu")
        dtype = dtype or ("bfloat16" if device.startswith("cuda") else "float32")
        self.name = f"hf:{path.name}"
        self.device = device
        self.usage: dict[str, int] = {}
        """Token counts of the last reply: prompt_tokens, completion_tokens."""
        try:
            processor: Any = AutoProcessor.from_pretrained(path, local_files_only=True)
            model: Any = AutoModelForImageTextToText.from_pretrained(
                path, dtype=dtype if dtype == "auto" else getattr(torch, dtype), local_files_only=True
            )
        except (OSError, ValueError, KeyError) as exc:
            raise LLMError(f"cannot load a vision-language model from {path}: {exc}. {download_hint(path)}") from exc
        _set_pixel_bounds(processor.image_processor, min_pixels, max_pixels)
        self.processor: Any = processor
        self.model: Any = model.to(device).eval()
        self._reserved = _reserved_strings(self.processor)

    @classmethod
    def from_settings(cls, settings: Settings) -> HFChat:
        """The model in ``settings.llm_model`` on ``settings.device``."""
        if not settings.llm_model:
            raise LLMError(
                f"--llm hf needs a local model folder (--model DIR or KBENGINE_LLM_MODEL): {download_hint('DIR')}"
            )
        return cls(settings.llm_model, device=settings.device)

    def _inputs(self, messages: list[Message]) -> Any:
        if not messages:
            raise LLMError("no messages to answer")
        chat = to_chat(messages, self._reserved)
        inputs = self.processor.apply_chat_template(
            chat, add_generation_prompt=True, tokenize=True, return_dict=True, return_tensors="pt"
        )
        return inputs.to(device=self.device, dtype=self.model.dtype)  # dtype casts pixel_values only

    def _generation_config(self, max_new_tokens: int) -> Any:
        # Greedy, keeping the checkpoint's eos ids and repetition penalty. Its sampling flags (Qwen ships
        # temperature 0.1, top_p 0.001, top_k 1) are set to their neutral values rather than None:
        # transformers 5 fills a passed config's None fields from the model's own, and they would warn.
        config = copy.deepcopy(self.model.generation_config)
        config.do_sample = False
        config.temperature = 1.0
        config.top_p = 1.0
        config.top_k = 50
        config.max_new_tokens = max_new_tokens
        config.max_length = None
        if config.pad_token_id is None:
            tokenizer = self.processor.tokenizer
            config.pad_token_id = (
                tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            )
        return config

    def generate(self, messages: list[Message], *, max_new_tokens: int = 512, stream: Stream | None = None) -> str:
        """The assistant's reply to ``messages`` (greedy); ``stream`` receives the text as it arrives."""
        if max_new_tokens < 1:
            raise InvalidInputError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
        inputs = self._inputs(messages)
        config = self._generation_config(max_new_tokens)
        prompt_len = int(inputs["input_ids"].shape[1])
        if stream is None:
            try:
                output = self.model.generate(**inputs, generation_config=config)
            except RuntimeError as exc:
                raise LLMError(f"{self.name} failed to generate: {exc}") from exc
            new = output[0, prompt_len:]
            self.usage = {"prompt_tokens": prompt_len, "completion_tokens": int(new.shape[0])}
            return str(self.processor.tokenizer.decode(new, skip_special_tokens=True))
        return self._generate_streamed(inputs, config, prompt_len, stream)

    def _generate_streamed(self, inputs: Any, config: Any, prompt_len: int, stream: Stream) -> str:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        stop = threading.Event()

        class _StopWhenAsked(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool, device=input_ids.device)

        streamer = TextIteratorStreamer(self.processor.tokenizer, skip_prompt=True, skip_special_tokens=True)
        result: dict[str, Any] = {}

        def run() -> None:
            try:
                result["output"] = self.model.generate(
                    **inputs,
                    generation_config=config,
                    streamer=streamer,
                    stopping_criteria=StoppingCriteriaList([_StopWhenAsked()]),
                )
            except BaseException as exc:
                result["error"] = exc
                streamer.end()  # unblocks the reader below

        thread = threading.Thread(target=run, name="hf-generate", daemon=True)
        thread.start()
        pieces: list[str] = []
        try:
            for piece in streamer:
                if piece:
                    pieces.append(piece)
                    stream(piece)
        finally:
            # A callback that raises stops generation at the next token instead of leaving it running.
            stop.set()
            thread.join()
        if "error" in result:
            raise LLMError(f"{self.name} failed to generate: {result['error']}") from result["error"]
        self.usage = {"prompt_tokens": prompt_len, "completion_tokens": int(result["output"].shape[1]) - prompt_len}
        return "".join(pieces)
