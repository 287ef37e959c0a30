"""Per-patient (or per-slice) predictions to evaluate: the CSV format, and ``m3lung screen`` output folders.

CSV columns (a header row; extra columns are ignored):

* ``patient_id`` — one row per patient (per slice: repeat the patient id; the bootstrap then resamples
  patients, not rows);
* ``label`` — the truth, a class name (case-insensitive) or a 0-based class index;
* ``pred`` — the prediction, same forms;
* ``p_<class>`` — optionally, one probability (or score) column per class, e.g. ``p_Healthy``,
  ``p_COVID-19``: needed for AUC, ROC curves and calibration. Either every class has one or none.

Classes default to the paper's four, ``Healthy, COVID-19, H1N1, CAP``; any list works (seed 002's
``NP, CAP, COVID-19``, or two classes for a binary task).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from m3lung.classes import CLASSES
from m3lung.errors import InputError

PAPER_CLASSES: tuple[str, ...] = CLASSES
#: names users and data sets give the paper's classes, mapped to the canonical ones
ALIASES = {"normal": "Healthy", "covid": "COVID-19", "influenza": "H1N1"}


@dataclass
class Predictions:
    """Predictions of one system. ``proba`` (N, K) or None; ``ids`` (N,) patient ids (repeated for slices)."""

    ids: np.ndarray
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    classes: tuple[str, ...]
    source: str

    @property
    def per_patient(self) -> bool:
        return len(set(self.ids.tolist())) == self.ids.size

    def groups(self) -> np.ndarray | None:
        """Patient index of every row when rows are slices (None when every row is a patient)."""
        if self.per_patient:
            return None
        _, inv = np.unique(self.ids, return_inverse=True)
        return np.asarray(inv)


def parse_classes(text: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"NP,CAP,COVID-19"`` or a list → a tuple of at least two distinct names (default: the paper's four)."""
    if text is None:
        return PAPER_CLASSES
    names = [t.strip() for t in (text.split(",") if isinstance(text, str) else text) if t.strip()]
    if len(names) < 2 or len({n.lower() for n in names}) != len(names):
        raise InputError(f"--classes needs at least two distinct class names, got {text!r}")
    return tuple(names)


def _class_index(value: str, classes: Sequence[str], where: str) -> int:
    v = value.strip()
    lower = {c.lower(): i for i, c in enumerate(classes)}
    if v.lower() in lower:
        return lower[v.lower()]
    alias = ALIASES.get(v.lower())
    if alias is not None and alias.lower() in lower:
        return lower[alias.lower()]
    if v.lstrip("-").isdigit():
        i = int(v)
        if 0 <= i < len(classes):
            return i
    raise InputError(f"{where}: {value!r} is not one of the classes {', '.join(classes)} (or 0..{len(classes) - 1})")


def read_predictions(path: str | os.PathLike[str], classes: Sequence[str] = PAPER_CLASSES) -> Predictions:
    """Read and check a predictions CSV (format in the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such predictions file")
    with p.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        fields = [f.strip() for f in (reader.fieldnames or [])]
        rows = list(reader)
    missing = [c for c in ("patient_id", "label", "pred") if c not in fields]
    if missing:
        raise InputError(f"{p}: missing column(s) {', '.join(missing)}; expected patient_id,label,pred[,p_<class>...]")
    if not rows:
        raise InputError(f"{p}: no prediction rows")
    prob_cols = [f"p_{c}" for c in classes]
    present = [c for c in prob_cols if c in fields]
    if present and len(present) != len(prob_cols):
        absent = [c for c in prob_cols if c not in fields]
        raise InputError(f"{p}: probability columns for some classes only; missing {', '.join(absent)}")
    ids, y, pred, proba = [], [], [], []
    for i, row in enumerate(rows, start=2):
        where = f"{p}, line {i}"
        ids.append(row["patient_id"].strip())
        y.append(_class_index(row["label"], classes, where))
        pred.append(_class_index(row["pred"], classes, where))
        if present:
            try:
                vals = [float(row[c]) for c in prob_cols]
            except (TypeError, ValueError) as exc:
                raise InputError(f"{where}: probability columns must be numbers ({exc})") from exc
            if not all(math.isfinite(v) for v in vals):
                raise InputError(f"{where}: probabilities must be finite")
            proba.append(vals)
    return Predictions(
        ids=np.array(ids),
        y_true=np.array(y, dtype=np.int64),
        y_pred=np.array(pred, dtype=np.int64),
        proba=np.array(proba, dtype=np.float64) if present else None,
        classes=tuple(classes),
        source=str(p),
    )


def read_screen_outputs(
    folder: str | os.PathLike[str], labels: str | os.PathLike[str], classes: Sequence[str] = PAPER_CLASSES
) -> Predictions:
    """Predictions from an ``m3lung screen`` output folder (``<study>/report.json``) and a labels CSV.

    The labels CSV has columns ``study_id`` (the study folder's name) and ``label``. Every labelled study
    must have a report; reports without a label are ignored (and counted in the error message if none
    match). Probabilities are those of the rule that decided each study (``patient.decided_by``).
    """
    root = Path(folder)
    lab = Path(labels)
    if not lab.is_file():
        raise InputError(f"{lab}: no such labels file (columns study_id,label)")
    with lab.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        if not reader.fieldnames or not {"study_id", "label"} <= set(reader.fieldnames):
            raise InputError(f"{lab}: a labels file needs the columns study_id,label")
        truth = {r["study_id"].strip(): r["label"] for r in reader}
    ids, y, pred, proba = [], [], [], []
    missing = []
    for sid, label in truth.items():
        rep = root / sid / "report.json"
        if not rep.is_file():
            missing.append(sid)
            continue
        data = json.loads(rep.read_text())
        patient = data["patient"]
        names = list(patient["classes"])
        if [n.lower() for n in names] != [c.lower() for c in classes]:
            raise InputError(f"{rep}: the report's classes {names} are not the evaluation's {list(classes)}")
        rule = patient.get("decided_by", "nonparametric")
        ids.append(sid)
        y.append(_class_index(label, classes, str(lab)))
        pred.append(_class_index(patient["label"], classes, str(rep)))
        proba.append([float(v) for v in patient[rule]["probs"]])
    if missing:
        raise InputError(f"{root}: no report.json for {len(missing)} labelled study(ies), e.g. {missing[0]!r}")
    if not ids:
        raise InputError(f"{lab}: no labelled study")
    return Predictions(
        ids=np.array(ids),
        y_true=np.array(y, dtype=np.int64),
        y_pred=np.array(pred, dtype=np.int64),
        proba=np.array(proba, dtype=np.float64),
        classes=tuple(classes),
        source=str(root),
    )


def write_predictions(
    path: str | os.PathLike[str],
    ids: Sequence[str],
    y_true: Sequence[int],
    y_pred: Sequence[int],
    proba: np.ndarray | None = None,
    classes: Sequence[str] = PAPER_CLASSES,
) -> Path:
    """Write predictions in the CSV format above (atomically), class names for label and pred."""
    import io

    from m3lung.io.atomic import write_text_atomic

    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["patient_id", "label", "pred", *([f"p_{c}" for c in classes] if proba is not None else [])])
    for i, pid in enumerate(ids):
        row = [pid, classes[int(y_true[i])], classes[int(y_pred[i])]]
        if proba is not None:
            row += [f"{float(v):.6f}" for v in proba[i]]
        w.writerow(row)
    write_text_atomic(Path(path), buf.getvalue())
    return Path(path)
