"""Attention between the slices of a volume, in parts: the building blocks of the M³Lung-Sys patient network.

* :func:`part_bounds` / :func:`part_membership`: the multi-scale split of a volume's slices into
  contiguous parts (see :mod:`m3lung.models.patient_net` for the whole network);
* :func:`pad_features`: volumes of different length as one padded batch and its mask;
* :class:`RefinementBlock` (multi-head self-attention between slices with a skip connection) and
  :class:`AggregationBlock` (one learnt weight per slice, their weighted sum).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from m3lung.errors import InputError

__all__ = [
    "AggregationBlock",
    "RefinementBlock",
    "pad_features",
    "part_bounds",
    "part_mask",
    "part_membership",
    "part_table",
]


def part_bounds(n: int, scale: int) -> list[tuple[int, int]]:
    """The half-open slice ranges [start, end) of the ``scale`` parts of a volume of ``n`` slices.

    Part j covers start = floor(j n / s) .. end = max(start + 1, floor((j + 1) n / s)) (exclusive): the
    parts are contiguous, in order, cover every slice and differ in size by at most one. When n < s the
    ``max`` makes neighbouring parts share a slice so that none is empty (n = 2, s = 4: [0], [0], [1], [1]).
    """
    if n < 1 or scale < 1:
        raise ValueError(f"need n >= 1 and scale >= 1, got n={n}, scale={scale}")
    out = []
    for j in range(scale):
        start = j * n // scale
        out.append((start, min(n, max(start + 1, (j + 1) * n // scale))))
    return out


def part_table(scales: Sequence[int], device: torch.device | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(P,) part index j and (P,) scale s of every part, scales in order."""
    j = [i for s in scales for i in range(s)]
    s = [s for s in scales for _ in range(s)]
    return (
        torch.tensor(j, dtype=torch.long, device=device),
        torch.tensor(s, dtype=torch.long, device=device),
    )


def part_mask(mask: torch.Tensor, part_j: torch.Tensor, part_s: torch.Tensor) -> torch.Tensor:
    """(B, P, Nmax) bool: slice i of volume b is a real slice inside part p (see :func:`part_bounds`)."""
    n = mask.sum(dim=1, dtype=torch.long)[:, None]  # (B, 1): each volume's own N
    rank = mask.long().cumsum(dim=1) - 1  # (B, Nmax): position of a real slice among the real slices
    start = torch.div(part_j[None] * n, part_s[None], rounding_mode="floor")  # (B, P)
    end = torch.div((part_j[None] + 1) * n, part_s[None], rounding_mode="floor")
    end = torch.minimum(torch.maximum(end, start + 1), n)
    r = rank[:, None, :]
    return mask[:, None, :] & (r >= start[..., None]) & (r < end[..., None])


def part_membership(mask: torch.Tensor, scales: Sequence[int]) -> torch.Tensor:
    """(B, P, Nmax) bool membership of every real slice in every part, P = sum(scales).

    ``mask`` (B, Nmax) is True for real slices; the parts of a volume are computed from its own number of
    real slices and their order (ranks), never from Nmax, so padding never moves a part boundary.
    """
    part_j, part_s = part_table(scales, mask.device)
    return part_mask(mask.bool(), part_j, part_s)


def pad_features(features: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack volumes of (N_i, F) slice features into (B, Nmax, F) (zero padding at the end) and a (B, Nmax) mask."""
    if len(features) == 0:
        raise InputError("pad_features needs at least one volume")
    dims = {int(f.shape[-1]) for f in features if f.dim() == 2}
    if any(f.dim() != 2 for f in features) or len(dims) != 1:
        shapes = [tuple(f.shape) for f in features]
        raise InputError(f"every volume must be an (N, F) tensor with the same F, got shapes {shapes}")
    if any(f.shape[0] == 0 for f in features):
        raise InputError("a volume has no slices (N = 0); every volume needs at least one slice")
    nmax = max(int(f.shape[0]) for f in features)
    x = features[0].new_zeros(len(features), nmax, dims.pop())
    mask = torch.zeros(len(features), nmax, dtype=torch.bool, device=x.device)
    for b, f in enumerate(features):
        x[b, : f.shape[0]] = f
        mask[b, : f.shape[0]] = True
    return x, mask


class RefinementBlock(nn.Module):
    """Multi-head self-attention between slices with a skip connection: X + concat_h(softmax(Q Kᵀ / sqrt(D')) V) W4.

    Q, K, V = X W1, X W2, X W3 per head (F -> D', no bias, the heads' matrices stacked in one Linear);
    the scaling by 1/sqrt(D') is a choice (standard scaled dot-product attention; the paper writes the
    plain product, which saturates the softmax for D' = 512). W4 (heads D' -> F, no bias) starts at zero,
    so a fresh block returns its input.

    ``forward(x, mask, groups)``: x (..., N, F); mask (..., N) bool, True = real slice, masks padded
    slices out as keys; groups (..., N) integer, a slice attends only to slices of the same group (the
    parts of :class:`PatientNet`). The leading dimensions of the three are broadcast (the Q, K, V of an
    x shared by several groupings are computed once). Rows of padded slices attend to every real slice,
    so they stay finite, but their values mean nothing and :class:`PatientNet` zeroes them.
    """

    def __init__(self, feature_dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = head_dim
        inner = heads * head_dim
        self.query = nn.Linear(feature_dim, inner, bias=False)  # W1 of every head
        self.key = nn.Linear(feature_dim, inner, bias=False)  # W2
        self.value = nn.Linear(feature_dim, inner, bias=False)  # W3
        self.out = nn.Linear(inner, feature_dim, bias=False)  # W4
        nn.init.zeros_(self.out.weight)

    def forward(
        self, x: torch.Tensor, mask: torch.Tensor | None = None, groups: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(..., N, F) -> (broadcast leading dims, N, F)."""
        n = x.shape[-2]
        lead = torch.broadcast_shapes(x.shape[:-2], *(t.shape[:-1] for t in (mask, groups) if t is not None))
        allowed: torch.Tensor | None = None  # (..., N queries, N keys), True = may attend
        if groups is not None:
            allowed = groups[..., :, None] == groups[..., None, :]
        if mask is not None:
            keys = mask[..., None, :]
            # a padded query sees every real key: never an all-masked row (NaN forward and backward)
            allowed = keys if allowed is None else keys & (allowed | ~mask[..., :, None])

        def heads(t: torch.Tensor) -> torch.Tensor:  # (..., N, h D') -> (B', h, N, D')
            t = t.unflatten(-1, (self.heads, self.head_dim)).transpose(-3, -2)
            return t.expand(*lead, self.heads, n, self.head_dim).reshape(-1, self.heads, n, self.head_dim)

        attn_mask = None if allowed is None else allowed.expand(*lead, n, n).reshape(-1, 1, n, n)
        y = F.scaled_dot_product_attention(
            heads(self.query(x)), heads(self.key(x)), heads(self.value(x)), attn_mask=attn_mask
        )  # softmax(Q Kᵀ / sqrt(D')) V
        y = y.transpose(1, 2).reshape(*lead, n, self.heads * self.head_dim)
        return x + self.out(y)


class AggregationBlock(nn.Module):
    """Attention pooling of slices: a = softmax over slices of (X W2) k, output aᵀ (X W3).

    W2: F -> D' (no bias), k in R^D' (learnable, initialised N(0, 1/D'), choice), W3: F -> F (no bias;
    choice, so the output is one F-d vector without projecting back). Part p pools with the softmax of
    the scores restricted to its slices. The input's padded rows must be finite (they get weight exactly
    0); :class:`PatientNet` zeroes them.
    """

    def __init__(self, feature_dim: int, head_dim: int) -> None:
        super().__init__()
        self.key = nn.Linear(feature_dim, head_dim, bias=False)  # W2
        self.k = nn.Parameter(torch.empty(head_dim))
        nn.init.normal_(self.k, std=1.0 / math.sqrt(head_dim))
        self.value = nn.Linear(feature_dim, feature_dim, bias=False)  # W3

    def scores(self, x: torch.Tensor) -> torch.Tensor:
        """(..., N, F) -> (..., N): score_n = (x_n W2) · k."""
        return self.key(x) @ self.k

    def forward(
        self, x: torch.Tensor, members: torch.Tensor, part_scale: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pool the slices of every part.

        x (B, N, F), or (B, S, N, F) with one version of the volume per scale; members (B, P, N) bool,
        every part non-empty; part_scale (P,) long: which of the S versions part p pools (needed for 4-d
        x with S > 1). Returns the part vectors (B, P, F) and the part weights (B, P, N), zeros outside a
        part.
        """
        if x.dim() == 4 and x.shape[1] == 1:
            x = x[:, 0]
        if x.dim() == 3:
            weights = self.scores(x)[:, None, :].masked_fill(~members, float("-inf")).softmax(dim=-1)
            pooled = weights @ x
        else:
            if part_scale is None:
                raise ValueError("part_scale is needed to pool a (B, S, N, F) input with S > 1")
            scores = self.scores(x)[:, part_scale]  # (B, P, N): part p scores its scale's version
            weights = scores.masked_fill(~members, float("-inf")).softmax(dim=-1)
            which = F.one_hot(part_scale, x.shape[1]).T.to(weights.dtype)  # (S, P)
            pooled = torch.einsum("bpn,sp,bsnf->bpf", weights, which, x)
        # aᵀ (X W3) = (aᵀ X) W3: pool first, then project P vectors instead of N
        return self.value(pooled), weights
