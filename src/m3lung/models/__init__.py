"""Networks only (``torch.nn.Module``): they never read files; checkpoints live in :mod:`m3lung.train`."""

from __future__ import annotations

from m3lung.models.slice_net import VARIANTS, SliceNet, SliceNetConfig, SliceOutput, coordinate_maps

__all__ = ["VARIANTS", "SliceNet", "SliceNetConfig", "SliceOutput", "coordinate_maps"]
