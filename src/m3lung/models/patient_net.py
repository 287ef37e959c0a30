"""The M³Lung-Sys patient-level network (seed 001, §III-C; Table IV).

The input is the stack of slice features of one CT volume, (N, F) with F = 3072 for the ResNet-50
slice network (768 for ResNet-18) and any N >= 1; each slice is one token and attention runs *between
slices*:

* **Refinement block** (two stacked, :class:`RefinementBlock`): for each of ``heads`` = 12 heads
  Q, K, V = X W1, X W2, X W3 (F -> D' = ``head_dim`` = 512), H = softmax over keys of Q Kᵀ / sqrt(D')
  (N x N; the scaling by sqrt(D') is a choice, the paper writes the plain product), Y = H V; the heads
  are concatenated (12 D') and W4 maps them back to F; the block returns X + Y W4. W4 starts at zero,
  so a fresh block is the identity.
* **Aggregation block** (:class:`AggregationBlock`): one weight per slice, a = softmax over slices of
  (X W2) k with W2: F -> D' and a learnable k in R^D', and the output aᵀ (X W3). Choice: W3 maps
  F -> F, so the block yields one F-d vector directly (no projection back).
* **Multi-scale**: for every scale s in ``scales`` = [1, 2, 3, 4] the N slices are split, in order, into s
  near-equal contiguous parts (:func:`part_bounds`); one *shared* refinement + aggregation head turns
  every part into one vector; the 1 + 2 + 3 + 4 = 10 part vectors are concatenated and go through
  ``Linear(10 F -> F)`` + ReLU (+ dropout, 0 by default) and the classifier ``Linear(F -> 4)``.

Batches of volumes with different N are padded to (B, Nmax, F) with a boolean ``mask`` (B, Nmax), True
for real slices. Padding never changes a volume's output: padded rows are zeroed, masked out of every
softmax (keys of the refinement blocks, slices of the aggregation), and the parts are computed from each
volume's own N over the ranks of its real slices (so padding need not even sit at the end).

Every part goes through the shared head on its own: inside the refinement blocks a slice attends only to
the slices of its own part. This is vectorised over the batch and the scales: the refinement runs on a
(B, S, Nmax, F) stack (one copy of the volume per scale) with a block-diagonal "same part" attention mask
(the parts of one scale never overlap when N >= s; when N < s every part is a single slice, so a slice in
two parts has the same refined value in both). The first block's Q, K, V are computed once and shared by
the scales; everything after differs per scale, so the full network costs about three times the
refinement of the whole volume.

The Table IV ablations are switches of :class:`PatientNetConfig` (``variant``): ``"maxpool"`` (max over
the real slices of every feature, then the classifier; no attention), ``"single_scale"`` (aggregation
only, scales [3]), ``"multi_scale"`` (aggregation only, scales [1, 2, 3, 4]) and ``"full"`` (two
refinement blocks + aggregation, scales [1, 2, 3, 4]; the paper's network).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from m3lung.errors import InputError
from m3lung.models.attention import AggregationBlock, RefinementBlock, part_mask, part_table

__all__ = [
    "PATIENT_VARIANTS",
    "PatientNet",
    "PatientNetConfig",
    "PatientOutput",
]

PatientVariant = Literal["maxpool", "single_scale", "multi_scale", "full"]
PATIENT_VARIANTS: tuple[str, ...] = ("maxpool", "single_scale", "multi_scale", "full")
_DEFAULT_SCALES: dict[str, tuple[int, ...]] = {
    "maxpool": (),
    "single_scale": (3,),
    "multi_scale": (1, 2, 3, 4),
    "full": (1, 2, 3, 4),
}
_DEFAULT_REFINE: dict[str, int] = {"maxpool": 0, "single_scale": 0, "multi_scale": 0, "full": 2}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass(frozen=True)
class PatientNetConfig:
    """Architecture of the patient network (defaults: the paper's).

    variant : Table IV switch: maxpool / single_scale / multi_scale / full (paper: full).
    feature_dim : F, the size of one slice feature (3072 for the ResNet-50 slice network, 768 for ResNet-18).
    heads : attention heads of a refinement block (paper: 12).
    head_dim : D', the size of a head's queries, keys and values and of the aggregation keys (paper: 512).
    n_refine : refinement blocks (None: the variant's, 2 for full, 0 otherwise; only full may use more or
        fewer).
    scales : numbers of parts the slices are split into (None: the variant's, [1, 2, 3, 4], or [3] for
        single_scale; single_scale takes exactly one scale; maxpool takes none). Stored as a tuple.
    num_classes : 4 (Healthy, COVID-19, H1N1, CAP).
    dropout : dropout on the patient feature before the classifier (choice: 0 by default).

    ``None`` fields are resolved to the variant's values on construction, so :meth:`to_dict` always holds
    the architecture actually built and ``PatientNetConfig(**cfg.to_dict())`` gives back the same config.
    Invalid settings raise :class:`ValueError` (the project has no dedicated configuration error).
    """

    variant: PatientVariant = "full"
    feature_dim: int = 3072
    heads: int = 12
    head_dim: int = 512
    n_refine: int | None = None
    scales: tuple[int, ...] | None = None
    num_classes: int = 4
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.variant not in PATIENT_VARIANTS:
            raise ValueError(f"variant must be one of {PATIENT_VARIANTS}, got {self.variant!r}")
        for name in ("feature_dim", "heads", "head_dim"):
            value = getattr(self, name)
            if not _is_int(value) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if not _is_int(self.num_classes) or self.num_classes < 2:
            raise ValueError(f"num_classes must be an integer >= 2, got {self.num_classes!r}")
        if not isinstance(self.dropout, (int, float)) or not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")

        scales = _DEFAULT_SCALES[self.variant] if self.scales is None else self.scales
        if isinstance(scales, (str, bytes)) or not isinstance(scales, Sequence):
            raise ValueError(f"scales must be a sequence of positive integers, got {self.scales!r}")
        scales = tuple(scales)
        if any(not _is_int(s) or s < 1 for s in scales):
            raise ValueError(f"scales must be positive integers, got {list(scales)}")
        if len(set(scales)) != len(scales):
            raise ValueError(f"scales must not repeat, got {list(scales)}")
        if self.variant == "maxpool":
            if scales:
                raise ValueError(f"variant 'maxpool' uses no scales (no attention), got {list(scales)}")
        elif not scales:
            raise ValueError(f"variant {self.variant!r} needs at least one scale, got an empty list")
        if self.variant == "single_scale" and len(scales) != 1:
            raise ValueError(f"variant 'single_scale' takes exactly one scale, got {list(scales)}")

        n_refine = _DEFAULT_REFINE[self.variant] if self.n_refine is None else self.n_refine
        if not _is_int(n_refine) or n_refine < 0:
            raise ValueError(f"n_refine must be a non-negative integer, got {self.n_refine!r}")
        if self.variant != "full" and n_refine != 0:
            raise ValueError(f"variant {self.variant!r} has no refinement blocks (n_refine=0), got {n_refine}")

        object.__setattr__(self, "scales", scales)
        object.__setattr__(self, "n_refine", n_refine)
        object.__setattr__(self, "dropout", float(self.dropout))

    @property
    def part_scales(self) -> tuple[int, ...]:
        """The resolved scales (never None)."""
        return tuple(self.scales or ())

    @property
    def n_parts(self) -> int:
        """Number of part vectors concatenated before the FC layer (10 for [1, 2, 3, 4]; 0 for maxpool)."""
        return sum(self.part_scales)

    @property
    def refine_blocks(self) -> int:
        """The resolved number of refinement blocks (never None)."""
        return int(self.n_refine or 0)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["scales"] = list(self.part_scales)  # JSON/YAML friendly; turned back into a tuple on construction
        return d


@dataclass
class PatientOutput:
    """What the patient network returns for a batch of B volumes padded to Nmax slices.

    logits (B, num_classes); ``probs`` is their softmax.
    slice_weights (B, Nmax): which slices mattered, zeros at padding, each row sums to 1. For the attention
        variants it is the aggregation weights of the scale-1 part (the whole volume); without scale 1
        (e.g. single_scale, [3]) it is the mean of the part weights of the first scale (choice), which
        still sums to 1. For ``maxpool`` (choice) it is the share of the feature dimensions whose maximum
        comes from that slice (ties go to the first slice).
    part_weights (B, P, Nmax): the aggregation weights of every part (scales in config order, parts in
        slice order), zeros outside the part; None for maxpool.
    features (B, F): the patient feature the classifier reads (after FC + ReLU, before dropout).
    """

    logits: torch.Tensor
    slice_weights: torch.Tensor
    part_weights: torch.Tensor | None
    features: torch.Tensor

    @property
    def probs(self) -> torch.Tensor:
        return self.logits.softmax(dim=1)


class PatientNet(nn.Module):
    """The patient-level network; ``forward(x, mask)`` takes (B, Nmax, F) slice features (or one (N, F) volume)."""

    def __init__(self, config: PatientNetConfig = PatientNetConfig()) -> None:
        super().__init__()
        self.config = config
        f = config.feature_dim
        self.refine = nn.ModuleList(
            RefinementBlock(f, config.heads, config.head_dim) for _ in range(config.refine_blocks)
        )
        self.aggregate: AggregationBlock | None = None
        self.fc: nn.Linear | None = None
        if config.variant != "maxpool":
            self.aggregate = AggregationBlock(f, config.head_dim)
            self.fc = nn.Linear(config.n_parts * f, f)
        self.dropout = nn.Dropout(config.dropout)
        self.classifier = nn.Linear(f, config.num_classes)
        scales = config.part_scales
        part_j, part_s = part_table(scales)
        part_scale = torch.tensor([i for i, s in enumerate(scales) for _ in range(s)], dtype=torch.long)
        self.part_j: torch.Tensor
        self.part_s: torch.Tensor
        self.part_scale: torch.Tensor
        self.register_buffer("part_j", part_j, persistent=False)
        self.register_buffer("part_s", part_s, persistent=False)
        self.register_buffer("part_scale", part_scale, persistent=False)
        # the part whose weights are reported as slice_weights (see PatientOutput)
        first = sum(scales[: scales.index(1)]) if 1 in scales else 0
        self._report_parts = list(range(first, first + (1 if 1 in scales else scales[0] if scales else 0)))

    def _check(self, x: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        if x.dim() == 2:
            x = x.unsqueeze(0)
            if mask is not None and mask.dim() == 1:
                mask = mask.unsqueeze(0)
        if x.dim() != 3:
            raise InputError(f"slice features must be (B, N, F) or (N, F), got shape {tuple(x.shape)}")
        if not x.is_floating_point():
            raise InputError(f"slice features must be floating point, got {x.dtype}")
        if x.shape[-1] != self.config.feature_dim:
            raise InputError(
                f"slice features have {x.shape[-1]} dimensions but this patient network expects "
                f"{self.config.feature_dim} (feature_dim); use features from the matching slice network "
                "or set PatientNetConfig.feature_dim"
            )
        if x.shape[1] == 0:
            raise InputError("a volume needs at least one slice, got N = 0")
        if mask is None:
            return x, torch.ones(x.shape[:2], dtype=torch.bool, device=x.device)
        if mask.dtype != torch.bool:
            raise InputError(f"mask must be a bool tensor (True = real slice), got {mask.dtype}")
        if tuple(mask.shape) != tuple(x.shape[:2]):
            raise InputError(f"mask must have shape (B, Nmax) = {tuple(x.shape[:2])}, got {tuple(mask.shape)}")
        mask = mask.to(x.device)
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise InputError(f"volume(s) {empty} of the batch have no real slice (all-False mask row)")
        return x, mask

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> PatientOutput:
        """Classify B volumes.

        x (B, Nmax, F) slice features (a single (N, F) volume is taken as B = 1); mask (B, Nmax) bool,
        True = real slice (None: every slice is real). Padded rows may hold anything, NaN included.
        """
        x, mask = self._check(x, mask)
        pad = ~mask[..., None]
        x = x.masked_fill(pad, 0.0)
        if self.aggregate is None or self.fc is None:  # maxpool
            masked = x.masked_fill(pad, float("-inf"))
            pooled = masked.amax(dim=1)  # (B, F)
            winner = masked.argmax(dim=1)  # (B, F): the slice each feature's maximum comes from
            share = torch.full(winner.shape, 1.0 / x.shape[-1], dtype=x.dtype, device=x.device)
            slice_weights = torch.zeros(mask.shape, dtype=x.dtype, device=x.device).scatter_add_(1, winner, share)
            return PatientOutput(
                logits=self.classifier(self.dropout(pooled)),
                slice_weights=slice_weights,
                part_weights=None,
                features=pooled,
            )
        members = part_mask(mask, self.part_j, self.part_s)  # (B, P, Nmax)
        h = x
        if len(self.refine) > 0:
            n_scales = len(self.config.part_scales)
            # group of a slice at scale s: the first part of s that holds it (padding: P, in no part)
            index = torch.arange(members.shape[1], device=x.device)[None, :, None].expand_as(members)
            index = index.masked_fill(~members, members.shape[1])
            groups = index.new_full((x.shape[0], n_scales, x.shape[1]), members.shape[1])
            groups = groups.scatter_reduce(1, self.part_scale[None, :, None].expand_as(index), index, "amin")
            h = x[:, None]  # (B, 1, N, F): the first block computes Q, K, V once for every scale
            for block in self.refine:
                h = block(h, mask[:, None], groups).masked_fill(pad[:, None], 0.0)  # (B, S, N, F)
        parts, part_weights = self.aggregate(h, members, self.part_scale)
        feature = F.relu(self.fc(parts.flatten(1)))
        slice_weights = part_weights[:, self._report_parts].mean(dim=1)
        return PatientOutput(
            logits=self.classifier(self.dropout(feature)),
            slice_weights=slice_weights,
            part_weights=part_weights,
            features=feature,
        )
