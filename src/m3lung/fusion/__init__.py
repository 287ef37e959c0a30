"""Slice → patient decisions that are not networks (M³Lung-Sys Appendix I and the max-pooling baseline)."""

from __future__ import annotations

from m3lung.fusion.rules import DEFAULT_TIE_ORDER, FusionResult, max_pooling, nonparametric_assessment

__all__ = ["DEFAULT_TIE_ORDER", "FusionResult", "max_pooling", "nonparametric_assessment"]
