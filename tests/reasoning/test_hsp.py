"""Hierarchical sparse prompts (ISTA, SparsePrompt) and learnable CLIP text prompts (PromptLearner),
checked against hand values, constructed sparse codes and open_clip's own ``encode_text`` on the
tiny random-init CLIP."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from reasoning.expert.hsp import SparsePrompt, ista, lipschitz, soft_threshold
from reasoning.expert.prompts_learned import PLACEHOLDER, PromptLearner, text_features_from_tokens

WORDS = ("object.", "damaged object.")


# --------------------------------------------------------------------------- ISTA


def test_soft_threshold_by_hand() -> None:
    x = torch.tensor([-3.0, -0.5, 0.0, 0.2, 1.0, 2.5])
    torch.testing.assert_close(soft_threshold(x, 1.0), torch.tensor([-2.0, 0.0, 0.0, 0.0, 0.0, 1.5]))
    torch.testing.assert_close(soft_threshold(x, 0.0), x)
    torch.testing.assert_close(soft_threshold(x, torch.tensor(0.5)), torch.tensor([-2.5, 0.0, 0.0, 0.0, 0.5, 2.0]))


def _dictionary(k: int = 32, d: int = 64, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(k, d, generator=g), dim=-1)


def test_ista_recovers_the_support_of_a_sparse_code() -> None:
    D = _dictionary()
    truth = torch.zeros(32)
    support = [3, 17, 28]
    truth[support] = torch.tensor([1.5, -2.0, 1.0])
    y = truth @ D
    a = ista(D, y, lam=0.01, steps=300)
    assert a.shape == (32,)
    assert set(a.abs().topk(3).indices.tolist()) == set(support)
    assert torch.sign(a[support]).tolist() == [1.0, -1.0, 1.0]
    assert (a @ D - y).norm() / y.norm() < 0.05
    assert (a - truth).abs().max() < 0.1


def test_ista_decreases_the_lasso_objective_and_keeps_batch_dims() -> None:
    D = _dictionary(seed=1)
    y = torch.randn(2, 3, 64, generator=torch.Generator().manual_seed(2))
    lam = 0.2

    def objective(a: torch.Tensor) -> torch.Tensor:
        return 0.5 * (y - a @ D).square().sum() + lam * a.abs().sum()

    values = [objective(ista(D, y, lam, steps)).item() for steps in (1, 5, 20, 60)]
    assert values == sorted(values, reverse=True)
    assert ista(D, y, lam, 5).shape == (2, 3, 32)
    # the default step is 1 / L with L the largest eigenvalue of D D^T
    L = torch.linalg.eigvalsh(D @ D.T)[-1]
    torch.testing.assert_close(lipschitz(D), L, rtol=1e-4, atol=0)
    torch.testing.assert_close(ista(D, y, lam, 7), ista(D, y, lam, 7, step_size=float(1 / L)), rtol=1e-4, atol=1e-6)


def test_ista_is_differentiable() -> None:
    D = _dictionary(seed=3).requires_grad_(True)
    y = torch.randn(4, 64, generator=torch.Generator().manual_seed(4)).requires_grad_(True)
    ista(D, y, 0.05, 10).sum().backward()
    assert D.grad is not None and D.grad.abs().sum() > 0
    assert y.grad is not None and y.grad.abs().sum() > 0


def test_ista_rejects_bad_input() -> None:
    D = _dictionary()
    with pytest.raises(ValueError, match="dimension"):
        ista(D, torch.zeros(63), 0.1, 3)
    with pytest.raises(ValueError, match="steps"):
        ista(D, torch.zeros(64), 0.1, 0)


# --------------------------------------------------------------------------- SparsePrompt


def _hsp(lam: float = 0.3) -> SparsePrompt:
    torch.manual_seed(0)
    return SparsePrompt(feature_dim=32, prompt_dim=24, n_atoms=16, n_prompts=3, stages=(6, 2, 9), lam=lam, steps=5)


def test_sparse_prompt_shapes_per_stage() -> None:
    hsp = _hsp()
    assert hsp.stages == (2, 6, 9)
    prompts, codes = hsp.forward_with_codes(torch.randn(5, 32))
    assert list(prompts) == [2, 6, 9] and list(codes) == [2, 6, 9]
    for stage in hsp.stages:
        assert prompts[stage].shape == (5, 3, 24)
        assert codes[stage].shape == (5, 16)
        torch.testing.assert_close(hsp.last_codes[stage], codes[stage])
        torch.testing.assert_close(hsp.atoms(stage).norm(dim=-1), torch.ones(16))
    assert set(hsp(torch.randn(2, 32))) == {2, 6, 9}


def test_sparse_prompt_gradients_reach_every_stage() -> None:
    hsp = _hsp()
    prompts = hsp(torch.randn(8, 32))
    sum(p.square().sum() for p in prompts.values()).backward()  # type: ignore[union-attr]
    for name, parameter in hsp.named_parameters():
        assert parameter.grad is not None, name
        assert parameter.grad.abs().sum() > 0, name


def test_sparse_prompt_hierarchy_feeds_deeper_stages() -> None:
    hsp = _hsp()
    hsp(torch.randn(8, 32))[9].sum().backward()
    # the deepest stage depends on the shallower stages' dictionaries and projections
    for stage in (2, 6):
        grad = hsp.dictionary[str(stage)].grad
        assert grad is not None and grad.abs().sum() > 0
        assert hsp.project[str(stage)].weight.grad is not None
    # ... but the shallowest stage does not depend on the deeper ones
    hsp.zero_grad(set_to_none=True)
    hsp(torch.randn(8, 32))[2].sum().backward()
    assert hsp.dictionary["9"].grad is None or hsp.dictionary["9"].grad.abs().sum() == 0


def test_sparse_prompt_codes_are_sparse() -> None:
    codes = _hsp(lam=0.3).forward_with_codes(torch.randn(16, 32))[1]
    for stage, a in codes.items():
        zeros = (a == 0).float().mean().item()
        assert 0.1 < zeros < 0.95, (stage, zeros)
    dense = _hsp(lam=0.0).forward_with_codes(torch.randn(16, 32))[1]
    assert all((a == 0).float().mean() < 0.05 for a in dense.values())


def test_sparse_prompt_rejects_bad_config() -> None:
    with pytest.raises(ValueError, match="stage"):
        SparsePrompt(8, 8, stages=())
    with pytest.raises(ValueError, match="distinct"):
        SparsePrompt(8, 8, stages=(1, 1))
    with pytest.raises(ValueError, match="features"):
        SparsePrompt(8, 8, stages=(1,))(torch.zeros(2, 7))


# --------------------------------------------------------------------------- PromptLearner


def _texts(n_ctx: int, prefix: str | None = None) -> list[str]:
    ctx = prefix if prefix is not None else " ".join([PLACEHOLDER] * n_ctx)
    return [f"{ctx} {w}" for w in WORDS]


@torch.no_grad()
def _reference(tiny_clip: Any, texts: list[str]) -> torch.Tensor:
    return F.normalize(tiny_clip.model.encode_text(tiny_clip.tokenizer(texts)), dim=-1)


def test_encode_with_the_placeholder_embeddings_is_open_clips_encode_text(tiny_clip: Any) -> None:
    model, tokenizer = tiny_clip.model, tiny_clip.tokenizer
    torch.manual_seed(1)
    learner = PromptLearner(model, tokenizer, n_ctx=8)
    assert learner.ctx_start == 1
    ids = tokenizer(_texts(8))
    with torch.no_grad():
        words = model.token_embedding(ids[:, 1:9])
        random = learner.encode()
        learner.ctx_normal.copy_(words[0])
        learner.ctx_abnormal.copy_(words[1])
        ours = learner.encode()
    expected = _reference(tiny_clip, _texts(8))
    assert ours.shape == (2, 32)
    torch.testing.assert_close(ours, expected, atol=1e-5, rtol=0)
    assert not torch.allclose(random, expected, atol=1e-3)  # the contexts are really used
    # the shared forward without normalisation is encode_text itself
    with torch.no_grad():
        raw = text_features_from_tokens(model, model.token_embedding(ids), ids)
        torch.testing.assert_close(raw, model.encode_text(ids), atol=1e-5, rtol=0)


def test_ctx_init_from_a_phrase(tiny_clip: Any) -> None:
    learner = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, n_ctx=4, ctx_init="a photo of a")
    with torch.no_grad():
        ours = learner.encode()
    torch.testing.assert_close(ours, _reference(tiny_clip, _texts(4, "a photo of a")), atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="n_ctx=4"):
        PromptLearner(tiny_clip.model, tiny_clip.tokenizer, n_ctx=4, ctx_init="a photo of")


def test_sequence_first_transformer_gives_the_same_features(tiny_clip: Any) -> None:
    model = copy.deepcopy(tiny_clip.model)
    model.transformer.batch_first = False
    for block in model.transformer.resblocks:
        block.attn.batch_first = False
    ids = tiny_clip.tokenizer(_texts(8))
    with torch.no_grad():
        ours = text_features_from_tokens(model, model.token_embedding(ids), ids)
        torch.testing.assert_close(ours, model.encode_text(ids), atol=1e-5, rtol=0)
        torch.testing.assert_close(ours, tiny_clip.model.encode_text(ids), atol=1e-5, rtol=0)


def test_deep_prompts_replace_the_context_positions_at_the_block_input(tiny_clip: Any) -> None:
    model = tiny_clip.model
    ids = tiny_clip.tokenizer(_texts(8))
    seen: list[torch.Tensor] = []
    hook = model.transformer.resblocks[1].register_forward_pre_hook(lambda _m, args: seen.append(args[0].clone()))
    try:
        with torch.no_grad():
            plain = text_features_from_tokens(model, model.token_embedding(ids), ids)
    finally:
        hook.remove()
    hidden = seen[0]  # (N, L, width): batch-first input of block 1
    with torch.no_grad():
        same = text_features_from_tokens(model, model.token_embedding(ids), ids, deep={1: hidden[:, 1:5]})
        other = text_features_from_tokens(model, model.token_embedding(ids), ids, deep={1: torch.zeros(4, 64)})
    torch.testing.assert_close(same, plain, atol=1e-6, rtol=0)
    assert not torch.allclose(other, plain, atol=1e-3)
    with pytest.raises(ValueError, match="blocks"):
        text_features_from_tokens(model, model.token_embedding(ids), ids, deep={5: torch.zeros(4, 64)})


def test_deep_prompt_configuration(tiny_clip: Any) -> None:
    torch.manual_seed(2)
    learner = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, n_ctx=6, deep_layers=[1], deep_len=3)
    assert learner.deep["1"].shape == (3, 64)
    with torch.no_grad():
        before = learner.encode()
        learner.deep["1"].add_(torch.randn(3, 64))  # (a constant shift would vanish in LayerNorm)
        assert not torch.allclose(learner.encode(), before, atol=1e-3)
    with pytest.raises(ValueError, match="deep_layers"):
        PromptLearner(tiny_clip.model, tiny_clip.tokenizer, n_ctx=6, deep_layers=[0])
    with pytest.raises(ValueError, match="deep_layers"):
        PromptLearner(tiny_clip.model, tiny_clip.tokenizer, n_ctx=6, deep_layers=[2])
    with pytest.raises(ValueError, match="deep_len"):
        PromptLearner(tiny_clip.model, tiny_clip.tokenizer, n_ctx=2, deep_layers=[1], deep_len=3)


def test_training_moves_only_the_prompts(tiny_clip: Any) -> None:
    model = tiny_clip.model
    clip_before = {k: v.clone() for k, v in model.state_dict().items()}
    torch.manual_seed(3)
    learner = PromptLearner(model, tiny_clip.tokenizer, n_ctx=8, deep_layers=[1], deep_len=4)
    assert not any(p.requires_grad for p in model.parameters())
    assert {name for name, _ in learner.named_parameters()} == {"ctx_normal", "ctx_abnormal", "deep.1"}
    learner_before = {k: v.clone() for k, v in learner.state_dict().items()}
    image = F.normalize(torch.randn(32, generator=torch.Generator().manual_seed(4)), dim=0)

    def loss_fn() -> torch.Tensor:  # the abnormal prompt should win for this "defective" image
        logits = 100 * learner.encode() @ image
        return F.cross_entropy(logits[None], torch.tensor([1]))

    optimiser = torch.optim.Adam(learner.parameters(), lr=1e-2)
    losses = []
    for _ in range(15):
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    final = loss_fn().item()
    assert final < losses[0] * 0.5, (losses, final)
    for key, value in learner.state_dict().items():
        assert not torch.equal(value, learner_before[key]), key
    for key, value in model.state_dict().items():
        assert torch.equal(value, clip_before[key]), key


def test_state_dict_round_trip(tiny_clip: Any) -> None:
    """Learned prompts travel as an ordinary torch state dict (``training.PromptModel`` saves them)."""
    torch.manual_seed(5)
    learner = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, n_ctx=8, deep_layers=[1], deep_len=4)
    assert set(learner.state_dict()) == {"ctx_normal", "ctx_abnormal", "deep.1"}
    torch.manual_seed(6)
    third = PromptLearner(tiny_clip.model, tiny_clip.tokenizer, n_ctx=8, deep_layers=[1], deep_len=4)
    with torch.no_grad():
        assert not torch.allclose(third.encode(), learner.encode())
    third.load_state_dict(learner.state_dict())
    with torch.no_grad():
        assert torch.equal(third.encode(), learner.encode())
