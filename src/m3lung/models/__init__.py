"""Networks only (``torch.nn.Module``): they never read files; checkpoints live in :mod:`m3lung.train`."""

from __future__ import annotations

from m3lung.models.patient_net import (
    PATIENT_VARIANTS,
    AggregationBlock,
    PatientNet,
    PatientNetConfig,
    PatientOutput,
    RefinementBlock,
    pad_features,
    part_bounds,
    part_membership,
)
from m3lung.models.slice_net import VARIANTS, SliceNet, SliceNetConfig, SliceOutput, coordinate_maps

__all__ = ["VARIANTS", "SliceNet", "SliceNetConfig", "SliceOutput", "coordinate_maps"]
__all__ += [
    "PATIENT_VARIANTS",
    "AggregationBlock",
    "PatientNet",
    "PatientNetConfig",
    "PatientOutput",
    "RefinementBlock",
    "pad_features",
    "part_bounds",
    "part_membership",
]
