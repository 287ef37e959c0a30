"""``m3lung evaluate PRED.csv``: every figure with bootstrap intervals, tables as the papers lay them out.

One call reads a system's predictions (and optionally a second system's, on the same patients),
computes every figure of :func:`m3lung.evaluate.classification_figures` with a bootstrap 95 %
interval over patients, paired-bootstrap p-values against the second system, the Hosmer–Lemeshow
test per class, and writes the ROC, confusion-matrix and calibration figures (PNG and SVG).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from m3lung._extras import require
from m3lung.errors import InputError
from m3lung.evaluate.predictions import Predictions, parse_classes, read_predictions, read_screen_outputs

#: class names that mean "no disease": FPE / FNE / FDPE are computed against this class
HEALTHY_NAMES = ("healthy", "normal", "np", "non-pneumonia", "negative")
#: figures compared between two systems by paired bootstrap
COMPARED = ("acc", "macro_auc", "macro_f1", "fpe", "fne", "fdpe")


def _finite(v: float) -> float | None:
    """JSON has no NaN or infinity: undefined figures are written as null."""
    x = float(v)
    return x if np.isfinite(x) else None


def healthy_index(classes: tuple[str, ...]) -> int | None:
    """Index of the class meaning "no disease" (Healthy, Normal, NP...), or None."""
    for i, c in enumerate(classes):
        if c.lower() in HEALTHY_NAMES:
            return i
    return None


def load(
    path: str | os.PathLike[str], classes: tuple[str, ...], labels: str | os.PathLike[str] | None = None
) -> Predictions:
    """A predictions CSV, or an ``m3lung screen`` output folder together with a labels CSV."""
    p = Path(path)
    if p.is_dir():
        if labels is None:
            raise InputError(f"{p}: a screen output folder needs --labels LABELS.csv (columns study_id,label)")
        return read_screen_outputs(p, labels, classes)
    return read_predictions(p, classes)


def _align(a: Predictions, b: Predictions) -> Predictions:
    """``b`` reordered to ``a``'s rows; both must hold the same patients with the same labels."""
    if not (a.per_patient and b.per_patient):
        raise InputError("--compare needs one row per patient in both files")
    pos = {pid: i for i, pid in enumerate(b.ids.tolist())}
    if set(pos) != set(a.ids.tolist()):
        only = sorted(set(a.ids.tolist()) ^ set(pos))
        raise InputError(f"the two systems were not scored on the same patients (e.g. {only[0]!r} is in one only)")
    order = np.array([pos[p] for p in a.ids.tolist()])
    if not np.array_equal(b.y_true[order], a.y_true):
        raise InputError("the two prediction files disagree on some patients' labels")
    return Predictions(
        ids=b.ids[order],
        y_true=b.y_true[order],
        y_pred=b.y_pred[order],
        proba=None if b.proba is None else b.proba[order],
        classes=b.classes,
        source=b.source,
    )


def system_name(source: str) -> str:
    """A row name for a predictions file: its stem, or ``<run folder>/<rule>`` for a run's predictions."""
    p = Path(source)
    if p.is_dir():
        return p.name
    if p.stem.startswith("predictions_"):
        return f"{p.parent.name}/{p.stem.removeprefix('predictions_')}"
    return p.stem


def evaluate_predictions(
    preds: Predictions,
    *,
    compare: Predictions | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Figures, intervals, p-values and tables; figures and ``figures.json`` written into ``out`` when given.

    Returns ``{"json": plain data, "markdown": tables}``.
    """
    from m3lung.evaluate.bootstrap import bootstrap_figures, paired_bootstrap_pvalue
    from m3lung.evaluate.calibration import hosmer_lemeshow
    from m3lung.evaluate.metrics import confusion_matrix
    from m3lung.evaluate.tables import table_patient_level, table_per_class

    if n_resamples < 1:
        raise InputError(f"--bootstrap must be at least 1, got {n_resamples}")
    if out is not None:  # before the bootstrap: say at once that the figures cannot be drawn
        require("matplotlib", "figures", "figures")
    classes = preds.classes
    healthy = healthy_index(classes)
    k = len(classes)
    name_a = system_name(preds.source)
    systems = {
        name_a: bootstrap_figures(
            preds.y_true,
            preds.y_pred,
            preds.proba,
            classes=classes,
            healthy=healthy,
            n_resamples=n_resamples,
            seed=seed,
            groups=preds.groups(),
        )
    }
    pvalues: dict[str, dict[str, float]] = {}
    if compare is not None:
        other = _align(preds, compare)
        name_b = system_name(other.source)
        if name_b == name_a:
            name_b += " (compared)"
        systems[name_b] = bootstrap_figures(
            other.y_true,
            other.y_pred,
            other.proba,
            classes=classes,
            healthy=healthy,
            n_resamples=n_resamples,
            seed=seed,
        )
        for metric in COMPARED:
            if metric not in systems[name_a] or metric not in systems[name_b]:
                continue
            pvalues.setdefault(name_b, {})[metric] = paired_bootstrap_pvalue(
                preds.y_true,
                preds.y_pred,
                other.y_pred,
                preds.proba,
                other.proba,
                metric=metric,
                classes=classes,
                healthy=healthy,
                n_resamples=n_resamples,
                seed=seed,
            )
    conf = confusion_matrix(preds.y_true, preds.y_pred, k)
    hl: dict[str, dict[str, float | int | None]] = {}
    if preds.proba is not None and preds.per_patient:
        for i, c in enumerate(classes):
            y = (preds.y_true == i).astype(int)
            if 0 < y.sum() < y.size and y.size >= 20:
                stat, dof, p = hosmer_lemeshow(y, preds.proba[:, i])
                hl[c] = {"statistic": _finite(stat), "dof": int(dof), "p": _finite(p)}
    data: dict[str, Any] = {
        "classes": list(classes),
        "healthy_class": None if healthy is None else classes[healthy],
        "n_rows": int(preds.y_true.size),
        "n_patients": int(np.unique(preds.ids).size),
        "bootstrap": {"resamples": n_resamples, "seed": seed, "level": 0.95, "over": "patients"},
        "systems": {
            name: {key: [_finite(v) for v in vals] for key, vals in figs.items()} for name, figs in systems.items()
        },
        "confusion": conf.tolist(),
        "pvalues_vs_first": pvalues,
        "hosmer_lemeshow": hl,
        "sources": [preds.source] + ([compare.source] if compare is not None else []),
    }
    pv = {name: vals.get("acc", float("nan")) for name, vals in pvalues.items()}
    markdown = "\n".join(
        [
            f"Patient-level figures, {data['n_patients']} patients ({data['n_rows']} rows), 95 % bootstrap intervals "
            f"over patients ({n_resamples} resamples, seed {seed}); p: paired bootstrap of the accuracy against "
            f"{name_a}.",
            "",
            table_patient_level(systems, classes, pvalues=pv or None),
            "",
            f"Per class, {name_a}:",
            "",
            table_per_class(systems[name_a], classes),
        ]
    )
    if out is not None:
        data["figures"] = [str(p) for p in _write_figures(preds, conf, Path(out))]
        from m3lung.io.atomic import write_text_atomic

        write_text_atomic(Path(out) / "figures.json", json.dumps(data, indent=1, allow_nan=False))
        write_text_atomic(Path(out) / "tables.md", markdown + "\n")
    return {"json": data, "markdown": markdown}


def _write_figures(preds: Predictions, conf: np.ndarray, out: Path) -> list[Path]:
    from m3lung.evaluate.figures import plot_calibration, plot_confusion, plot_roc

    out.mkdir(parents=True, exist_ok=True)
    paths = list(plot_confusion(conf, list(preds.classes), out / "confusion"))
    if preds.proba is not None:
        paths += plot_roc(preds.y_true, preds.proba, list(preds.classes), out / "roc")
        for i, c in enumerate(preds.classes):
            y = (preds.y_true == i).astype(int)
            if 0 < y.sum() < y.size:
                safe = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in c)
                paths += plot_calibration(y, preds.proba[:, i], out / f"calibration_{safe}", title=f"{c} vs rest")
    return paths


def evaluate_files(
    path: str | os.PathLike[str],
    *,
    compare: str | os.PathLike[str] | None = None,
    labels: str | os.PathLike[str] | None = None,
    classes: str | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
    out: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """The ``m3lung evaluate`` command: files in, figures out (see :func:`evaluate_predictions`)."""
    cls = parse_classes(classes)
    preds = load(path, cls, labels)
    other = load(compare, cls, labels) if compare is not None else None
    return evaluate_predictions(preds, compare=other, n_resamples=n_resamples, seed=seed, out=out)
