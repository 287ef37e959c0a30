"""Metrics and statistics, computed the way the seed papers compute them."""

from __future__ import annotations

from m3lung.evaluate.maps import dice, pointing_game
from m3lung.evaluate.metrics import (
    accuracy,
    confusion_matrix,
    error_rates,
    one_vs_rest_auc,
    roc_auc,
    sensitivity_specificity,
)

__all__ = [
    "accuracy",
    "confusion_matrix",
    "dice",
    "error_rates",
    "one_vs_rest_auc",
    "pointing_game",
    "roc_auc",
    "sensitivity_specificity",
]
