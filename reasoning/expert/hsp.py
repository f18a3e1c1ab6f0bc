"""Hierarchical sparse prompts (HSP), ADSeeker eqs. 7-9 (arXiv 2508.03088).

The query's defect feature is projected into the prompt space (eq. 7), coded sparsely over a
learnable dictionary by iterative soft thresholding (eq. 8), and the sparse reconstruction is mapped
to prompt tokens (eq. 9) that are inserted at given blocks of a CLIP encoder. Everything is plain,
differentiable torch: ISTA is unrolled for a fixed number of steps, so the dictionary and both
linear layers train through it.

Choices where the paper leaves room (documented in :class:`SparsePrompt`):

* atoms are kept on the unit sphere (the dictionary is row-normalised in every forward), which
  removes the scale ambiguity that would otherwise let training shrink the codes towards zero and
  defeat the L1 penalty;
* the ISTA step size ``1 / L`` (``L`` the largest eigenvalue of ``D D^T``) is treated as a constant
  (computed on the detached dictionary), gradients flow through the iterations, not through ``L``;
* the hierarchy runs from the shallowest stage to the deepest: the input of stage ``s`` is its own
  projection of the query feature plus the sparse reconstruction of stage ``s - 1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["SparsePrompt", "ista", "lipschitz", "soft_threshold"]


def soft_threshold(x: Tensor, lam: float | Tensor) -> Tensor:
    """The proximal operator of ``lam * ||.||_1``: ``sign(x) * relu(|x| - lam)``."""
    return torch.sign(x) * F.relu(torch.abs(x) - lam)


def lipschitz(D: Tensor) -> Tensor:
    """The largest eigenvalue of ``D D^T`` (the squared spectral norm of ``D``), detached.

    It is the Lipschitz constant of the gradient of ``0.5 ||y - a D||^2`` with respect to ``a``.
    """
    return torch.linalg.matrix_norm(D.detach().float(), ord=2).square().to(D.dtype)


def ista(D: Tensor, y: Tensor, lam: float, steps: int, step_size: float | None = None) -> Tensor:
    """Sparse codes ``a`` minimising ``0.5 ||y - a D||^2 + lam ||a||_1`` by ISTA.

    ``D`` holds the atoms as rows ``(K, d)``; ``y`` is ``(..., d)``; the result is ``(..., K)``.
    Starting from ``a_0 = 0`` it iterates ``a_{t+1} = soft(a_t + eta (y - a_t D) D^T, eta * lam)``
    with ``eta = 1 / L`` (``L`` the largest eigenvalue of ``D D^T``) unless ``step_size`` is given.
    The iterations are unrolled, so the result is differentiable in ``D`` and ``y``.
    """
    if D.dim() != 2:
        raise ValueError(f"the dictionary must be (atoms, dim), got shape {tuple(D.shape)}")
    if y.shape[-1] != D.shape[1]:
        raise ValueError(f"y has dimension {y.shape[-1]} but the atoms have dimension {D.shape[1]}")
    if steps < 1:
        raise ValueError(f"steps must be at least 1, got {steps}")
    if lam < 0:
        raise ValueError(f"lam must be non-negative, got {lam}")
    if step_size is None:
        eta: float | Tensor = 1.0 / lipschitz(D).clamp_min(torch.finfo(D.dtype).eps)
    else:
        if step_size <= 0:
            raise ValueError(f"step_size must be positive, got {step_size}")
        eta = step_size
    threshold = eta * lam
    a = torch.zeros(*y.shape[:-1], D.shape[0], dtype=y.dtype, device=y.device)
    for _ in range(steps):
        residual = y - a @ D
        a = soft_threshold(a + eta * (residual @ D.T), threshold)
    return a


class SparsePrompt(nn.Module):
    """The HSP module: sparse-coded prompt tokens for chosen encoder blocks.

    For every stage ``s`` (an encoder block index, processed in increasing order)::

        z_s = W_s f + r_{s-1}                 (eq. 7; r_{-1} = 0, the hierarchy)
        a_s = ISTA(D_s, z_s, lam, steps)      (eq. 8; D_s learnable, atoms unit-norm)
        r_s = a_s D_s                         (the sparse reconstruction)
        P_s = reshape(U_s r_s + b_s)          (eq. 9; n_prompts tokens of prompt_dim)

    ``f`` is the query defect feature ``(B, feature_dim)``. The hierarchy is wired additively: a
    deeper stage starts from what the shallower stage already explained (``r_{s-1}``) plus its own
    view of the feature, so deeper prompts refine rather than repeat the shallower ones. The
    dictionaries are row-normalised in every forward (unit-norm atoms).

    ``forward`` returns ``{stage: (B, n_prompts, prompt_dim)}``; :meth:`forward_with_codes` also
    returns the codes ``{stage: (B, n_atoms)}``, and the codes of the latest call are kept in
    :attr:`last_codes` (detached) for inspection.
    """

    def __init__(
        self,
        feature_dim: int,
        prompt_dim: int,
        n_atoms: int = 16,
        n_prompts: int = 4,
        stages: Sequence[int] = (),
        lam: float = 0.1,
        steps: int = 5,
    ) -> None:
        super().__init__()
        ordered = sorted(int(s) for s in stages)
        if not ordered:
            raise ValueError("SparsePrompt needs at least one stage (an encoder block index)")
        if len(set(ordered)) != len(ordered) or ordered[0] < 0:
            raise ValueError(f"stages must be distinct non-negative block indices, got {list(stages)}")
        if min(feature_dim, prompt_dim, n_atoms, n_prompts, steps) < 1:
            raise ValueError("feature_dim, prompt_dim, n_atoms, n_prompts and steps must be positive")
        if lam < 0:
            raise ValueError(f"lam must be non-negative, got {lam}")
        self.feature_dim = feature_dim
        self.prompt_dim = prompt_dim
        self.n_atoms = n_atoms
        self.n_prompts = n_prompts
        self.stages: tuple[int, ...] = tuple(ordered)
        self.lam = float(lam)
        self.steps = int(steps)
        self.project = nn.ModuleDict({str(s): nn.Linear(feature_dim, prompt_dim) for s in ordered})
        self.dictionary = nn.ParameterDict(
            {str(s): nn.Parameter(F.normalize(torch.randn(n_atoms, prompt_dim), dim=-1)) for s in ordered}
        )
        self.to_prompts = nn.ModuleDict({str(s): nn.Linear(prompt_dim, n_prompts * prompt_dim) for s in ordered})
        self.last_codes: dict[int, Tensor] = {}

    def atoms(self, stage: int) -> Tensor:
        """The unit-norm dictionary ``(n_atoms, prompt_dim)`` of a stage."""
        return F.normalize(self.dictionary[str(stage)], dim=-1)

    def forward_with_codes(self, features: Tensor) -> tuple[dict[int, Tensor], dict[int, Tensor]]:
        """Prompts ``{stage: (B, n_prompts, prompt_dim)}`` and codes ``{stage: (B, n_atoms)}``."""
        if features.dim() != 2 or features.shape[1] != self.feature_dim:
            raise ValueError(f"features must be (B, {self.feature_dim}), got shape {tuple(features.shape)}")
        prompts: dict[int, Tensor] = {}
        codes: dict[int, Tensor] = {}
        previous: Tensor | None = None
        for stage in self.stages:
            key = str(stage)
            z = self.project[key](features)
            if previous is not None:
                z = z + previous
            D = self.atoms(stage)
            a = ista(D, z, self.lam, self.steps)
            reconstruction = a @ D
            prompts[stage] = self.to_prompts[key](reconstruction).view(-1, self.n_prompts, self.prompt_dim)
            codes[stage] = a
            previous = reconstruction
        self.last_codes = {s: a.detach() for s, a in codes.items()}
        return prompts, codes

    def forward(self, features: Tensor) -> dict[int, Tensor]:
        return self.forward_with_codes(features)[0]

    def extra_repr(self) -> str:
        return (
            f"feature_dim={self.feature_dim}, prompt_dim={self.prompt_dim}, n_atoms={self.n_atoms}, "
            f"n_prompts={self.n_prompts}, stages={list(self.stages)}, lam={self.lam}, steps={self.steps}"
        )
