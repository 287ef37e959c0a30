"""Lesion-map algorithms of the slice network, as torch functions over feature maps and lesion maps.

* :func:`prototype_similarity` — a prototype (a weight row of the lesion head) against every position of
  a feature map, dot product or cosine;
* :func:`minmax_normalise` — every map of a batch to [0, 1];
* :func:`upsample_map` / :func:`resample_matrix` — feature-grid maps to pixels, each cell on its
  receptive field's centre;
* :func:`shift_input` / :func:`stitch_shifts` — shift-and-stitch (Long et al., CVPR 2015): maps of
  shifted inputs interleaved into a finer grid;
* :func:`flip_average` — a map averaged with the mirrored map of the mirrored slice.

None of them holds weights: :class:`m3lung.models.SliceNet` calls them with its own features.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F


def prototype_similarity(features: torch.Tensor, prototype: torch.Tensor, *, similarity: str = "dot") -> torch.Tensor:
    """(B, h, w) similarity between ``prototype`` and ``features`` (B, C, h, w) at every position.

    ``prototype`` is one row (C,) shared by the batch or one row per slice (B, C); ``similarity`` is
    "dot" (CAM-like) or "cosine" (both vectors normalised over C).
    """
    shared = prototype.dim() == 1
    spec = "c,bchw->bhw" if shared else "bc,bchw->bhw"
    if similarity == "cosine":
        return torch.einsum(spec, F.normalize(prototype, dim=0 if shared else 1), F.normalize(features, dim=1))
    return torch.einsum(spec, prototype, features)


def minmax_normalise(maps: torch.Tensor) -> torch.Tensor:
    """Min-max normalise each (h, w) map of a (B, h, w) tensor to [0, 1] (constant maps become 0)."""
    flat = maps.flatten(1)
    lo = flat.min(dim=1, keepdim=True).values
    hi = flat.max(dim=1, keepdim=True).values
    return ((flat - lo) / (hi - lo).clamp_min(1e-12)).view_as(maps)


def resample_matrix(n_out: int, n_in: int, n_cells: int, stride: int, device: torch.device) -> torch.Tensor:
    """(n_out, n_cells) linear-interpolation weights from a stride-``stride`` feature axis to an output axis.

    Output pixel ``x`` of an axis of ``n_out`` pixels covering an input axis of ``n_in`` pixels sits at
    input coordinate ``u = (x + 0.5) * n_in / n_out - 0.5`` (pixel centres); feature cell ``i`` of a
    ResNet with total stride ``stride`` is centred on input pixel ``stride * i`` (every stride-2 layer,
    padded, maps its output j to input 2j). Beyond the first and last cell the edge value is kept.
    """
    u = (torch.arange(n_out, device=device, dtype=torch.float32) + 0.5) * (n_in / n_out) - 0.5
    c = (u / stride).clamp(0, n_cells - 1)
    cells = torch.arange(n_cells, device=device, dtype=torch.float32)
    return (1 - (c[:, None] - cells[None, :]).abs()).clamp(min=0)


def upsample_map(maps: torch.Tensor, size: tuple[int, int], input_size: tuple[int, int], stride: int) -> torch.Tensor:
    """Bilinear resampling of (B, h, w) feature-grid maps to ``size``, each cell placed on its receptive
    field's centre in an input of ``input_size`` pixels (``stride * i``, not ``F.interpolate``'s
    ``stride * i + (stride - 1) / 2``, which moves the map half a cell down and to the right)."""
    h, w = maps.shape[-2:]
    ry = resample_matrix(size[0], input_size[0], h, stride, maps.device)
    rx = resample_matrix(size[1], input_size[1], w, stride, maps.device)
    return torch.einsum("yi,bij,xj->byx", ry, maps.float(), rx)


def shift_input(x: torch.Tensor, down: int, right: int) -> torch.Tensor:
    """The batch ``x`` (B, C, H, W) moved up by ``down`` and left by ``right`` pixels, edge pixels repeated
    (so that the network's cell (i, j) then looks at input pixel (s i + down, s j + right))."""
    return F.pad(x, (0, right, 0, down), mode="replicate")[:, :, down:, right:]


def stitch_shifts(
    x: torch.Tensor, coarse: torch.Tensor, shifts: int, step: int, draw: Callable[[torch.Tensor], torch.Tensor]
) -> torch.Tensor:
    """Shift-and-stitch: (B, K h, K w) from the map ``coarse`` (B, h, w) of ``x`` and K² - 1 shifted passes.

    Fine cell (K i + a, K j + b) is cell (i, j) of ``draw(shift_input(x, a * step, b * step))`` (float32),
    the map of the input moved up by ``a`` and left by ``b`` steps of ``step`` pixels; ``(0, 0)`` is
    ``coarse`` itself. ``shifts`` = K = 1 returns ``coarse``.
    """
    k = shifts
    if k == 1:
        return coarse
    b, h, w = coarse.shape
    fine = coarse.new_empty(b, h * k, w * k)
    for a in range(k):
        for c in range(k):
            if a == 0 and c == 0:
                fine[:, ::k, ::k] = coarse
                continue
            fine[:, a::k, c::k] = draw(shift_input(x, a * step, c * step)).float()
    return fine


def flip_average(maps: torch.Tensor, mirrored: torch.Tensor) -> torch.Tensor:
    """Min-max normalised mean of ``maps`` (B, h, w) and ``mirrored`` (the maps of the mirrored slices, on
    the same pixel grid) mirrored back."""
    return minmax_normalise((maps + mirrored.flip(-1)) / 2)
