"""Layers of the slice network that torchvision's ResNets do not have: a widened convolution and a
faster stem max pool (same values and gradients as torch's)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def widen_conv(conv: nn.Conv2d, extra: int) -> nn.Conv2d:
    """A copy of ``conv`` with ``extra`` more input channels whose weights are zero."""
    new = nn.Conv2d(
        conv.in_channels + extra,
        conv.out_channels,
        kernel_size=conv.kernel_size,  # type: ignore[arg-type]
        stride=conv.stride,  # type: ignore[arg-type]
        padding=conv.padding,  # type: ignore[arg-type]
        dilation=conv.dilation,  # type: ignore[arg-type]
        groups=conv.groups,
        bias=conv.bias is not None,
    )
    with torch.no_grad():
        new.weight.zero_()
        new.weight[:, : conv.in_channels] = conv.weight
        if conv.bias is not None:
            assert new.bias is not None
            new.bias.copy_(conv.bias)
    return new


class _ChannelsLastMaxPool(torch.autograd.Function):
    """Max pooling with indices of a contiguous NCHW CPU tensor: forward through a channels-last copy
    (torch's NCHW kernel with indices took 22 ms on the ``slice_cpu`` stem's (16, 16, 128, 128) batch
    on an AVX2 CPU, the copy + channels-last kernel + copy back 14 ms), backward by the NCHW kernel
    (the channels-last backward is the slower one). Values, indices and gradients are the native op's."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, kernel: int, stride: int, padding: int) -> torch.Tensor:
        y, idx = torch.ops.aten.max_pool2d_with_indices(
            x.contiguous(memory_format=torch.channels_last), [kernel] * 2, [stride] * 2, [padding] * 2
        )
        idx = idx.contiguous()
        ctx.save_for_backward(x, idx)
        ctx.geometry = (kernel, stride, padding)
        return y.contiguous()

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        x, idx = ctx.saved_tensors
        k, s, p = ctx.geometry
        gx = torch.ops.aten.max_pool2d_with_indices_backward(
            grad.contiguous(), x, [k] * 2, [s] * 2, [p] * 2, [1, 1], False, idx
        )
        return gx, None, None, None


class StemMaxPool(nn.Module):
    """The ResNet stem's 3x3 stride-2 max pool, faster on the CPU.

    In training on the CPU torch's NCHW max pool with indices took about 11 % of a ``slice_cpu`` step
    (AVX2 CPU, torch profiler); :class:`_ChannelsLastMaxPool` computes the same values and gradients
    in about 60 % of the time, a training step about 5 % faster (benchmarks/bench_slice_net.py).
    Without gradients (inference keeps no indices and is fast already), on CUDA or on a
    channels-last input it is the native op. No parameters: checkpoints are unchanged.
    """

    def __init__(self, kernel_size: int = 3, stride: int = 2, padding: int = 1) -> None:
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        k, s, p = self.kernel_size, self.stride, self.padding
        cpu_nchw = x.device.type == "cpu" and x.dim() == 4 and x.is_contiguous() and x.shape[1] > 1
        if not (cpu_nchw and torch.is_grad_enabled() and x.requires_grad):
            return F.max_pool2d(x, k, s, p)
        out: torch.Tensor = _ChannelsLastMaxPool.apply(x, k, s, p)
        return out


def stem_pool(pool: nn.Module) -> nn.Module:
    """``StemMaxPool`` in place of torchvision's stem max pool (3x3, stride 2, padding 1)."""
    from torch.nn.modules.utils import _pair

    geometry = (pool.kernel_size, pool.stride, pool.padding, pool.dilation) if isinstance(pool, nn.MaxPool2d) else ()
    torchvision_stem = [_pair(v) for v in geometry] == [(3, 3), (2, 2), (1, 1), (1, 1)]
    if torchvision_stem and not pool.ceil_mode and not pool.return_indices:
        return StemMaxPool(3, 2, 1)
    return pool
