"""Learnable, object-agnostic text prompts for an open_clip CLIP model (as in AnomalyCLIP).

Two prompts are learned, ``"[ctx_1..ctx_n] object."`` (normal) and ``"[ctx_1..ctx_n] damaged
object."`` (abnormal), each with its own context vectors. The token sequences come from the model's
own tokenizer with placeholder words (``"X X ... X object."``); the placeholder embeddings are
replaced by the learnable context vectors and the result runs through the frozen text tower with a
forward that mirrors ``open_clip.CLIP.encode_text`` step by step (:func:`text_features_from_tokens`).

Deep ("compound") prompts, when ``deep_layers`` is given: for every listed text block ``l`` the
hidden states at the first ``deep_len`` context positions (right after the start token) are
*replaced* at the input of block ``l`` by learnable tokens shared by both prompts. Replacing rather
than appending keeps the sequence length, the causal mask and the end-of-text position unchanged,
and never touches the class words or the end-of-text token. Block 0 is not allowed: at the input
the context vectors themselves play that role.

The CLIP weights are frozen (``requires_grad`` False); only the learner's parameters train. The
CLIP model is referenced, not registered as a submodule, so ``state_dict()`` (and :meth:`save`)
hold only the learned prompts; move the CLIP model to a device yourself.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["PLACEHOLDER", "PromptLearner", "text_features_from_tokens"]

PLACEHOLDER = "X"
DEFAULT_WORDS = ("object.", "damaged object.")


class _TextTower:
    """The parts of an open_clip text tower that ``encode_text`` uses, for CLIP and CustomTextCLIP."""

    def __init__(self, clip_model: Any) -> None:
        if hasattr(clip_model, "token_embedding") and hasattr(clip_model, "transformer"):
            owner = clip_model
            self.pool_type: str = getattr(clip_model, "text_pool_type", "argmax")
        else:
            owner = getattr(clip_model, "text", None)
            if owner is None or not all(
                hasattr(owner, a) for a in ("token_embedding", "positional_embedding", "transformer", "ln_final")
            ):
                raise TypeError(
                    f"{type(clip_model).__name__} has no open_clip text transformer "
                    "(token_embedding / positional_embedding / transformer / ln_final)"
                )
            if getattr(owner, "cls_emb", None) is not None or getattr(owner, "use_pad_mask", False):
                raise TypeError("text towers with a CLS embedding or a padding mask are not supported")
            self.pool_type = getattr(owner, "pool_type", "argmax")
        self.token_embedding: nn.Embedding = owner.token_embedding
        self.positional_embedding: Tensor = owner.positional_embedding
        self.transformer: Any = owner.transformer
        self.ln_final: nn.Module = owner.ln_final
        self.text_projection: Any = getattr(owner, "text_projection", None)
        self.attn_mask: Tensor | None = getattr(owner, "attn_mask", None)
        self.eos_id: int | None = getattr(owner, "text_eos_id", getattr(owner, "eos_id", None))
        self.blocks: Sequence[nn.Module] = owner.transformer.resblocks
        self.batch_first: bool = getattr(owner.transformer, "batch_first", True)
        self.width = int(self.token_embedding.weight.shape[1])

    def cast_dtype(self) -> torch.dtype:
        getter = getattr(self.transformer, "get_cast_dtype", None)
        return getter() if callable(getter) else self.token_embedding.weight.dtype


def _pool(x: Tensor, token_ids: Tensor, pool_type: str, eos_id: int | None) -> Tensor:
    rows = torch.arange(x.shape[0], device=x.device)
    if pool_type == "argmax":  # the end-of-text token has the largest id (open_clip's default)
        return x[rows, token_ids.argmax(dim=-1)]
    if pool_type == "eos":
        if eos_id is None:
            raise ValueError("pool type 'eos' needs the tokenizer's eos id")
        return x[rows, (token_ids == eos_id).int().argmax(dim=-1)]
    if pool_type == "first":
        return x[:, 0]
    if pool_type == "last":
        return x[:, -1]
    raise ValueError(f"unsupported text pool type {pool_type!r}")


def _replace(x: Tensor, start: int, tokens: Tensor) -> Tensor:
    """``x`` (N, L, D) with positions ``start .. start + n`` replaced by ``tokens`` ((n, D) or (N, n, D))."""
    if tokens.dim() == 2:
        tokens = tokens.unsqueeze(0).expand(x.shape[0], -1, -1)
    n = tokens.shape[1]
    if tokens.shape[0] != x.shape[0] or tokens.shape[2] != x.shape[2]:
        raise ValueError(f"deep prompt of shape {tuple(tokens.shape)} does not fit hidden states {tuple(x.shape)}")
    if start < 0 or start + n > x.shape[1]:
        raise ValueError(f"deep prompt positions {start}..{start + n} fall outside the sequence of {x.shape[1]}")
    return torch.cat([x[:, :start], tokens.to(x.dtype), x[:, start + n :]], dim=1)


def text_features_from_tokens(
    clip_model: Any,
    token_embeddings: Tensor,
    token_ids: Tensor,
    deep: Mapping[int, Tensor] | None = None,
    deep_start: int = 1,
    normalize: bool = False,
) -> Tensor:
    """Text features from token *embeddings*: open_clip's ``encode_text`` after its embedding lookup.

    ``token_embeddings`` is ``(N, L, width)`` (what ``token_embedding(token_ids)`` would give, with
    any positions replaced); ``token_ids`` ``(N, L)`` only locates the pooled (end-of-text) token.
    Positional embeddings are added, the blocks run with the model's causal mask (and in its
    ``batch_first`` layout), then ``ln_final``, pooling at the end-of-text token and
    ``text_projection``. ``deep`` maps a block index to tokens ``(n, width)`` or ``(N, n, width)``
    that replace the hidden states at positions ``deep_start .. deep_start + n`` at that block's
    input. Returns ``(N, embed_dim)``, L2-normalised when ``normalize``.
    """
    tower = _TextTower(clip_model)
    if token_embeddings.dim() != 3 or token_embeddings.shape[:2] != token_ids.shape:
        raise ValueError(
            f"token_embeddings {tuple(token_embeddings.shape)} and token_ids {tuple(token_ids.shape)} do not match"
        )
    deep = dict(deep or {})
    unknown = sorted(set(deep) - set(range(len(tower.blocks))))
    if unknown:
        raise ValueError(f"deep prompt layers {unknown} are not blocks of a {len(tower.blocks)}-block text transformer")
    length = token_ids.shape[1]
    dtype = tower.cast_dtype()
    x = token_embeddings.to(dtype) + tower.positional_embedding[:length].to(dtype)
    mask = tower.attn_mask[:length, :length] if tower.attn_mask is not None else None
    for i, block in enumerate(tower.blocks):
        if i in deep:
            x = _replace(x, deep_start, deep[i])
        if not tower.batch_first:  # sequence-first blocks (N, L, D) -> (L, N, D) and back
            x = block(x.transpose(0, 1), attn_mask=mask).transpose(0, 1)
            continue
        x = block(x, attn_mask=mask)
    x = tower.ln_final(x)
    x = _pool(x, token_ids, tower.pool_type, tower.eos_id)
    projection = tower.text_projection
    if projection is not None:
        x = projection(x) if isinstance(projection, nn.Module) else x @ projection
    return F.normalize(x, dim=-1) if normalize else x


def _tokens(tokenizer: Callable[..., Tensor], texts: Sequence[str]) -> Tensor:
    return torch.as_tensor(tokenizer(list(texts))).long()


def _placeholder_id(tokenizer: Callable[..., Tensor]) -> int:
    with_word, empty = _tokens(tokenizer, [PLACEHOLDER, ""])
    differ = (with_word != empty).nonzero()
    if len(differ) == 0:
        raise ValueError(f"the tokenizer does not produce a token for the placeholder {PLACEHOLDER!r}")
    return int(with_word[int(differ[0])])


def _run_start(ids: Tensor, token: int, n: int) -> int:
    """The first position of ``n`` consecutive ``token`` in ``ids``."""
    hits = (ids == token).long()
    if len(hits) >= n:
        runs = hits.unfold(0, n, 1).sum(dim=-1)
        found = (runs == n).nonzero()
        if len(found):
            return int(found[0])
    raise ValueError(f"the {n} placeholder tokens were not found in the tokenised prompt (too long for the context?)")


class PromptLearner(nn.Module):
    """Learnable normal / abnormal text prompts for a frozen open_clip CLIP model.

    ``ctx_init`` initialises both contexts from the token embeddings of a phrase that must tokenise
    to exactly ``n_ctx`` tokens (e.g. ``"a photo of a"`` for ``n_ctx=4``); without it the contexts
    start from ``normal(0, 0.02)``. ``deep_layers`` / ``deep_len`` add deep prompts (see the module
    docstring): tokens of shape ``(deep_len, width)`` per listed block, shared by both prompts,
    replacing the first ``deep_len`` context positions at that block's input.

    Parameters: ``ctx_normal`` and ``ctx_abnormal`` ``(n_ctx, width)`` and ``deep[str(layer)]``.
    """

    clip_model: nn.Module
    token_ids: Tensor
    base_embeddings: Tensor

    def __init__(
        self,
        clip_model: nn.Module,
        tokenizer: Callable[..., Tensor],
        n_ctx: int = 8,
        deep_layers: Sequence[int] = (),
        deep_len: int = 4,
        ctx_init: str | None = None,
        words: tuple[str, str] = DEFAULT_WORDS,
    ) -> None:
        super().__init__()
        if n_ctx < 1:
            raise ValueError(f"n_ctx must be at least 1, got {n_ctx}")
        tower = _TextTower(clip_model)
        n_blocks = len(tower.blocks)
        layers = sorted({int(layer) for layer in deep_layers})
        if layers and (layers[0] < 1 or layers[-1] >= n_blocks):
            raise ValueError(f"deep_layers must lie in 1..{n_blocks - 1} (text blocks; 0 is the input), got {layers}")
        if layers and not 1 <= deep_len <= n_ctx:
            raise ValueError(f"deep_len must be in 1..n_ctx={n_ctx} so deep prompts replace context only")
        object.__setattr__(self, "clip_model", clip_model)  # referenced, not a submodule: kept out of state_dict
        clip_model.requires_grad_(False)
        self.n_ctx = int(n_ctx)
        self.deep_layers: tuple[int, ...] = tuple(layers)
        self.deep_len = int(deep_len) if layers else 0
        self.words = (str(words[0]), str(words[1]))
        self.width = tower.width

        placeholder = " ".join([PLACEHOLDER] * self.n_ctx)
        self.texts = tuple(f"{placeholder} {w}" for w in self.words)
        ids = _tokens(tokenizer, self.texts)
        starts = {_run_start(row, _placeholder_id(tokenizer), self.n_ctx) for row in ids}
        if len(starts) != 1:
            raise ValueError("the placeholder context starts at different positions in the two prompts")
        self.ctx_start = starts.pop()
        device = tower.token_embedding.weight.device
        ids = ids.to(device)
        with torch.no_grad():
            base = tower.token_embedding(ids).float()
        self.register_buffer("token_ids", ids, persistent=False)
        self.register_buffer("base_embeddings", base, persistent=False)

        if ctx_init is None:
            ctx = torch.randn(2, self.n_ctx, self.width, device=device) * 0.02
        else:
            ctx = self._phrase_context(tokenizer, tower, ctx_init, ids)
        self.ctx_normal = nn.Parameter(ctx[0].clone())
        self.ctx_abnormal = nn.Parameter(ctx[1].clone())
        self.deep = nn.ParameterDict(
            {str(layer): nn.Parameter(torch.randn(self.deep_len, self.width, device=device) * 0.02) for layer in layers}
        )

    def _phrase_context(self, tokenizer: Callable[..., Tensor], tower: _TextTower, phrase: str, ids: Tensor) -> Tensor:
        phrase_ids = _tokens(tokenizer, [f"{phrase} {w}" for w in self.words]).to(ids.device)
        span = slice(self.ctx_start, self.ctx_start + self.n_ctx)
        outside = torch.ones(ids.shape[1], dtype=torch.bool, device=ids.device)
        outside[span] = False
        if phrase_ids.shape != ids.shape or not torch.equal(phrase_ids[:, outside], ids[:, outside]):
            raise ValueError(f"ctx_init {phrase!r} must tokenise to exactly n_ctx={self.n_ctx} tokens")
        with torch.no_grad():
            return tower.token_embedding(phrase_ids[:, span]).float()

    def token_embeddings(self) -> Tensor:
        """The two prompts' input embeddings ``(2, L, width)`` with the contexts in place."""
        ctx = torch.stack([self.ctx_normal, self.ctx_abnormal])
        base = self.base_embeddings
        end = self.ctx_start + self.n_ctx
        return torch.cat([base[:, : self.ctx_start], ctx.to(base.dtype), base[:, end:]], dim=1)

    def deep_prompts(self) -> dict[int, Tensor]:
        return {int(layer): p for layer, p in self.deep.items()}

    def encode(self) -> Tensor:
        """L2-normalised text features ``(2, embed_dim)``: row 0 normal, row 1 abnormal."""
        return text_features_from_tokens(
            self.clip_model,
            self.token_embeddings(),
            self.token_ids,
            deep=self.deep_prompts() or None,
            deep_start=self.ctx_start,
            normalize=True,
        )

    def forward(self) -> Tensor:
        return self.encode()

    def extra_repr(self) -> str:
        return (
            f"n_ctx={self.n_ctx}, width={self.width}, deep_layers={list(self.deep_layers)}, "
            f"deep_len={self.deep_len}, words={self.words}"
        )
