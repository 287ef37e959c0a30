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
import io
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


def _read_csv_rows(path: Path, what: str, columns: str) -> tuple[list[str], list[tuple[int, dict[str, str]]]]:
    """The header (stripped names) and rows ``(line number, {column: value})`` of a UTF-8 CSV file.

    ``what`` names the file in messages (``"predictions"``), ``columns`` the header it needs
    (``"patient_id,label,pred"``). A file that is empty, binary or not UTF-8, or a row with more or fewer
    fields than the header, is an :class:`InputError` naming the file and the line. Blank lines are skipped;
    extra trailing empty fields are allowed.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise InputError(f"{path}: cannot read the {what} file ({exc.strerror or exc})") from exc
    if not raw.strip():
        raise InputError(f"{path}: the {what} file is empty; it needs a header row {columns} and one row per line")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise InputError(
            f"{path}, line {line}: not UTF-8 text (byte 0x{raw[exc.start]:02x}); the {what} file must be a "
            f"CSV with the header {columns}, saved as UTF-8"
        ) from exc
    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise InputError(
            f"{path}, line {line}: a NUL byte: this is a binary file, not a CSV; the {what} file must be a "
            f"CSV with the header {columns}"
        )
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        header = next(reader, None)
        if header is None:
            raise InputError(f"{path}: the {what} file is empty; it needs a header row {columns}")
        fields = [f.strip() for f in header]
        rows: list[tuple[int, dict[str, str]]] = []
        for values in reader:
            if not values or all(not v.strip() for v in values):
                continue  # a blank line
            line = reader.line_num
            if len(values) > len(fields) and not any(v.strip() for v in values[len(fields) :]):
                values = values[: len(fields)]
            if len(values) != len(fields):
                raise InputError(
                    f"{path}, line {line}: {len(values)} field(s) where the header has {len(fields)} "
                    f"({', '.join(fields)}); every row needs one value per column"
                )
            rows.append((line, dict(zip(fields, values, strict=True))))
    except csv.Error as exc:
        raise InputError(
            f"{path}, line {reader.line_num}: not a valid CSV ({exc}); expected the header {columns}"
        ) from exc
    return fields, rows


def read_predictions(path: str | os.PathLike[str], classes: Sequence[str] = PAPER_CLASSES) -> Predictions:
    """Read and check a predictions CSV (format in the module docstring)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(f"{p}: no such predictions file")
    fields, rows = _read_csv_rows(p, "predictions", "patient_id,label,pred[,p_<class>...]")
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
    for i, row in rows:
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
    fields, rows = _read_csv_rows(lab, "labels", "study_id,label")
    if not {"study_id", "label"} <= set(fields):
        raise InputError(f"{lab}: a labels file needs the columns study_id,label")
    truth = {r["study_id"].strip(): (r["label"], f"{lab}, line {i}") for i, r in rows}
    ids, y, pred, proba = [], [], [], []
    missing = []
    for sid, (label, where) in truth.items():
        rep = root / sid / "report.json"
        if not rep.is_file():
            missing.append(sid)
            continue
        try:
            patient = json.loads(rep.read_text(encoding="utf-8"))["patient"]
            names = list(patient["classes"])
            rule = patient.get("decided_by", "nonparametric")
            probs = [float(v) for v in patient[rule]["probs"]]
            label_pred = str(patient["label"])
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise InputError(
                f"{rep}: not a report.json of m3lung screen ({type(exc).__name__}: {exc}); screen the study again"
            ) from exc
        if [n.lower() for n in names] != [c.lower() for c in classes]:
            raise InputError(f"{rep}: the report's classes {names} are not the evaluation's {list(classes)}")
        ids.append(sid)
        y.append(_class_index(label, classes, where))
        pred.append(_class_index(label_pred, classes, str(rep)))
        proba.append(probs)
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
