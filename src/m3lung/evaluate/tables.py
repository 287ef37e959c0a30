"""Markdown tables laid out like the seed papers' tables.

* :func:`table_patient_level` — M³Lung-Sys Table II: one row per system; per class Sen., Spec. and AUC;
  overall Acc. with its 95 % interval in square brackets ``[lo~hi]`` (the paper's ``95.21 [92.81~97.26]``)
  and the p-value against the reference system in parentheses, then FPE, FNE, FDPE; every number a
  percentage with two decimals (halves rounded up, as printed in the papers).
* :func:`table_per_class` — Xu et al. Table 6: one row per class with recall, precision and F1 (three
  decimals), then the accuracy.

Both take the figures of :func:`m3lung.evaluate.bootstrap_figures` (key → (point, low, high)) or of
:func:`m3lung.evaluate.classification_figures` (key → point). :func:`to_jsonable` turns those dicts
(and nested ones) into plain JSON data: tuples to lists, NaN to ``null``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import numpy as np

Figure = float | tuple[float, float, float] | Sequence[float]


def _md(text: str) -> str:
    """``text`` safe inside a Markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def _triple(v: Figure | None) -> tuple[float, float, float]:
    """(point, low, high) of a figure given as a number or as (point, low, high); NaN where missing."""
    nan = float("nan")
    if v is None:
        return nan, nan, nan
    if isinstance(v, (int, float, np.number)):
        return float(v), nan, nan
    vals = [float(x) for x in v]
    if not vals:
        return nan, nan, nan
    return (vals[0], vals[1], vals[2]) if len(vals) >= 3 else (vals[0], nan, nan)


def _fixed(x: float, decimals: int, *, percent: bool = False) -> str:
    """``x`` (times 100 when ``percent``) with ``decimals`` decimals, halves rounded up as the papers do.

    Rounds the shortest decimal form of ``x`` (``0.8125`` → ``0.813``, seed 004's precision of
    26/32), where ``format`` would round the binary value half to even (``0.812``).
    """
    d = Decimal(repr(float(x))) + 0  # + 0 turns -0.0 into 0
    if percent:
        d = d.scaleb(2)
    return str(d.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP))


def _pct(v: Figure | None) -> str:
    x = _triple(v)[0]
    return _fixed(x, 2, percent=True) if math.isfinite(x) else "–"


def _ci(v: Figure | None) -> str:
    _, lo, hi = _triple(v)
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return ""
    return f" [{_fixed(lo, 2, percent=True)}~{_fixed(hi, 2, percent=True)}]"


def _p(p: float | None) -> str:
    if p is None or not math.isfinite(p):
        return ""
    return " (p < 0.001)" if p < 0.001 else f" (p = {_fixed(p, 3)})"


def table_patient_level(
    systems: Mapping[str, Mapping[str, Figure]],
    classes: Sequence[str],
    *,
    pvalues: Mapping[str, float] | None = None,
) -> str:
    """Seed 001 Table II as Markdown: one row per system, in the order given.

    Parameters
    ----------
    systems : mapping of str to figures
        System name → figures of :func:`~m3lung.evaluate.bootstrap_figures` (key → (point, low,
        high)) or of :func:`~m3lung.evaluate.classification_figures` (key → point).
    classes : sequence of str
        Class names, in the order of the column groups.
    pvalues : mapping of str to float, optional
        System name → p-value of its accuracy against the reference system (the paper's "Ours",
        whose row has none); printed after the interval as ``(p < 0.001)`` or ``(p = 0.123)``.

    Returns
    -------
    str
        Columns ``Method``, then per class ``<c> Sen.``, ``<c> Spec.`` (and ``<c> AUC`` when any
        system has AUCs), then ``Acc.`` as ``95.21 [92.81~97.26] (p < 0.001)``, then ``FPE``,
        ``FNE`` (when any system has them) and ``FDPE`` (K >= 3). Percentages with two decimals;
        ``–`` for an undefined or missing figure.
    """
    has_auc = any(f"auc[{c}]" in figs for figs in systems.values() for c in classes)
    has_err = any("fpe" in figs for figs in systems.values())
    per = ["Sen.", "Spec."] + (["AUC"] if has_auc else [])
    head = ["Method"] + [f"{_md(c)} {m}" for c in classes for m in per] + ["Acc."]
    if has_err:
        head += ["FPE", "FNE"] + (["FDPE"] if len(classes) >= 3 else [])
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, figs in systems.items():
        cells = [_md(name)]
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
    """Seed 004 Table 6 as Markdown: one row per class with recall, precision and F1-score, then accuracy.

    Fractions with three decimals, as in the paper; with bootstrap figures each cell is followed by
    its interval ``[lo~hi]``. The last row is ``| Accuracy | 0.867 | | |``.
    """

    def cell(key: str) -> str:
        x, lo, hi = _triple(figs.get(key))
        if not math.isfinite(x):
            return "–"
        text = _fixed(x, 3)
        return text if not (math.isfinite(lo) and math.isfinite(hi)) else f"{text} [{_fixed(lo, 3)}~{_fixed(hi, 3)}]"

    lines = ["| Class | Recall | Precision | F1-score |", "|---|---|---|---|"]
    for c in classes:
        lines.append(f"| {_md(c)} | {cell(f'sen[{c}]')} | {cell(f'prec[{c}]')} | {cell(f'f1[{c}]')} |")
    lines.append(f"| Accuracy | {cell('acc')} | | |")
    return "\n".join(lines)


def to_jsonable(obj: Any) -> Any:
    """``obj`` (figure dicts, nested mappings, tuples, numpy values) as plain JSON data.

    Mappings keep their (string) keys, tuples/lists/arrays become lists, numpy numbers become Python
    numbers, and NaN or infinite figures become ``None`` (``null``), so ``json.dumps(...,
    allow_nan=False)`` accepts the result.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()]
    if isinstance(obj, (tuple, list)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (int, np.integer)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        x = float(obj)
        return x if math.isfinite(x) else None
    if obj is None or isinstance(obj, str):
        return obj
    raise TypeError(f"cannot write {type(obj).__name__} as JSON")
