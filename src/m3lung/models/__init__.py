"""Networks only (``torch.nn.Module``): they never read files; checkpoints live in :mod:`m3lung.train`."""

from __future__ import annotations

from m3lung.models.attention import AggregationBlock, RefinementBlock, pad_features, part_bounds, part_membership
from m3lung.models.patient_net import PATIENT_VARIANTS, PatientNet, PatientNetConfig, PatientOutput
from m3lung.models.registry import (
    ModelFamily,
    build_model,
    get_model,
    list_models,
    model_from_checkpoint,
    register_model,
)
from m3lung.models.slice_net import VARIANTS, SliceNet, SliceNetConfig, SliceOutput, coordinate_maps

register_model("slice_net", SliceNetConfig, description="M³Lung-Sys slice network (ResNet, lesion head, maps)")(
    SliceNet
)
register_model("patient_net", PatientNetConfig, description="M³Lung-Sys patient network")(PatientNet)

__all__ = ["VARIANTS", "SliceNet", "SliceNetConfig", "SliceOutput", "coordinate_maps"]
__all__ += ["ModelFamily", "build_model", "get_model", "list_models", "model_from_checkpoint", "register_model"]
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
