"""Metrics and statistics, computed the way the seed papers compute them.

Figures over predictions (:mod:`classification`), bootstrap intervals over patients and paired
p-values (:mod:`bootstrap`), paper-style tables (:mod:`tables`), calibration and Hosmer–Lemeshow
(:mod:`calibration`), survival statistics (:mod:`survival`, imports lifelines), figures
(:mod:`figures`, imports matplotlib) and the ``m3lung evaluate`` command (:mod:`summary`).
"""

from __future__ import annotations

from m3lung.evaluate.bootstrap import (
    bootstrap_figures,
    bootstrap_replicates,
    paired_bootstrap_pvalue,
    resample_counts,
)
from m3lung.evaluate.calibration import calibration_curve, hosmer_lemeshow
from m3lung.evaluate.classification import classification_figures
from m3lung.evaluate.figures import plot_calibration, plot_confusion, plot_kaplan_meier, plot_roc
from m3lung.evaluate.maps import dice, pointing_game
from m3lung.evaluate.metrics import (
    accuracy,
    confusion_matrix,
    error_rates,
    one_vs_rest_auc,
    roc_auc,
    sensitivity_specificity,
)
from m3lung.evaluate.survival import CoxResult, cox_stepwise, kaplan_meier, logrank
from m3lung.evaluate.tables import table_patient_level, table_per_class, to_jsonable

__all__ = [
    "CoxResult",
    "accuracy",
    "bootstrap_figures",
    "bootstrap_replicates",
    "calibration_curve",
    "classification_figures",
    "confusion_matrix",
    "cox_stepwise",
    "dice",
    "error_rates",
    "hosmer_lemeshow",
    "kaplan_meier",
    "logrank",
    "one_vs_rest_auc",
    "paired_bootstrap_pvalue",
    "plot_calibration",
    "plot_confusion",
    "plot_kaplan_meier",
    "plot_roc",
    "pointing_game",
    "resample_counts",
    "roc_auc",
    "sensitivity_specificity",
    "table_patient_level",
    "table_per_class",
    "to_jsonable",
]
