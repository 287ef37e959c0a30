"""Markdown tables laid out like the seed papers' tables.

* :func:`table_patient_level` — M³Lung-Sys Table II: one row per system; per class Sen., Spec. and AUC;
  overall Acc. with its 95 % interval in square brackets ``[lo~hi]`` and the p-value against the first
  system in parentheses, then FPE, FNE, FDPE; every number a percentage with two decimals.
* :func:`table_per_class` — Xu et al. Table 6: one row per class with recall, precision and F1 (three
  decimals), then the accuracy.

Both take the figures of :func:`m3lung.evaluate.bootstrap_figures` (key → (point, low, high)) or of
:func:`m3lung.evaluate.classification_figures` (key → point).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

Figure = float | tuple[float, float, float] | Sequence[float]


def _point(v: Figure | None) -> float:
    if v is None:
        return float("nan")
    if isinstance(v, (int, float)):
        return float(v)
    return float(v[0])


def _pct(v: Figure | None) -> str:
    x = _point(v)
    return "–" if math.isnan(x) else f"{100 * x:.2f}"


def _ci(v: Figure | None) -> str:
    if v is None or isinstance(v, (int, float)) or len(v) < 3:
        return ""
    lo, hi = float(v[1]), float(v[2])
    return "" if math.isnan(lo) or math.isnan(hi) else f" [{100 * lo:.2f}~{100 * hi:.2f}]"


def _p(p: float | None) -> str:
    if p is None or math.isnan(p):
        return ""
    return " (p < 0.001)" if p < 0.001 else f" (p = {p:.3f})"


def table_patient_level(
    systems: Mapping[str, Mapping[str, Figure]],
    classes: Sequence[str],
    *,
    pvalues: Mapping[str, float] | None = None,
) -> str:
    """Seed 001 Table II layout (module docstring). ``pvalues``: system name → p of its accuracy vs the first."""
    has_auc = any(f"auc[{c}]" in figs for figs in systems.values() for c in classes)
    has_err = any("fpe" in figs for figs in systems.values())
    per = ["Sen.", "Spec."] + (["AUC"] if has_auc else [])
    head = ["Method"] + [f"{c} {m}" for c in classes for m in per] + ["Acc."]
    if has_err:
        head += ["FPE", "FNE"] + (["FDPE"] if len(classes) >= 3 else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, figs in systems.items():
        cells = [name]
        for c in classes:
            cells += [_pct(figs.get(f"sen[{c}]")), _pct(figs.get(f"spec[{c}]"))]
            if has_auc:
                cells.append(_pct(figs.get(f"auc[{c}]")))
        cells.append(_pct(figs.get("acc")) + _ci(figs.get("acc")) + _p((pvalues or {}).get(name)))
        if has_err:
            cells += [_pct(figs.get("fpe")), _pct(figs.get("fne"))]
            if len(classes) >= 3:
                cells.append(_pct(figs.get("fdpe")))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def table_per_class(figs: Mapping[str, Figure], classes: Sequence[str]) -> str:
    """Seed 004 Table 6 layout: recall, precision and F1 per class (3 decimals), with 95 % intervals."""

    def cell(key: str) -> str:
        v = figs.get(key)
        x = _point(v)
        if math.isnan(x):
            return "–"
        text = f"{x:.3f}"
        if v is not None and not isinstance(v, (int, float)) and len(v) >= 3 and not math.isnan(float(v[1])):
            text += f" [{float(v[1]):.3f}~{float(v[2]):.3f}]"
        return text

    lines = ["| Class | Recall | Precision | F1-score |", "|---|---|---|---|"]
    for c in classes:
        lines.append(f"| {c} | {cell(f'sen[{c}]')} | {cell(f'prec[{c}]')} | {cell(f'f1[{c}]')} |")
    lines.append(f"| Accuracy | {cell('acc')} | | |")
    return "\n".join(lines)


def to_jsonable(figs: Mapping[str, Any]) -> dict[str, Any]:
    """Tuples to lists and numpy scalars to floats, for ``json.dumps``."""
    out: dict[str, Any] = {}
    for k, v in figs.items():
        if isinstance(v, Mapping):
            out[k] = to_jsonable(v)
        elif isinstance(v, (tuple, list)):
            out[k] = [float(x) for x in v]
        else:
            out[k] = float(v)
    return out
