"""Explanations: lesion maps put back on the scan's grid, and what they say about the lung."""

from __future__ import annotations

from m3lung.explain.maps import infected_share, uncrop_maps

__all__ = ["infected_share", "uncrop_maps"]
