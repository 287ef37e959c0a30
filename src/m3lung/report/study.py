"""One study's outputs, for every system: ``report.json`` (schema ``m3lung.report/2``), ``report.html``,
``lesion_map.nii.gz`` — built from a :class:`~m3lung.report.result.StudyResult` and written atomically.

``docs/report_schema.md`` documents every field. Schema 2 keeps every field of schema 1 where it was
(``patient.network`` / ``nonparametric`` / ``maxpool``, ``slices.*``, ``infected_share``,
``weights.slice_hash`` ...) and adds ``system`` (name, title, classes), ``patient.probs``,
``patient.rules`` (the rule names in display order; each ``patient.<rule>`` carries its ``title``
and ``note``) and ``weights.hashes``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.io import CTVolume
from m3lung.io.atomic import atomic_dir
from m3lung.report.result import SliceViews, StudyResult, rounded

REPORT_SCHEMA = "m3lung.report/2"
MAP_SLOPE = 1.0 / 255.0
#: the report's own top-level fields: a system's ``extras`` may not take these names
REPORT_FIELDS = {
    "schema",
    "m3lung_version",
    "created",
    "system",
    "study",
    "patient",
    "slices",
    "regions",
    "outputs",
    "weights",
    "device",
    "timings_s",
    "warnings",
    "quality",
    "assessable",
}


@dataclass
class Report:
    """The outputs of screening one study. ``to_dict()`` is ``report.json``; ``write()`` writes every file.

    lesion_map : (N, H, W) uint8 on the study's canonical grid (value x 1/255), or None.
    views : the slices ``report.html`` shows (their HU crops and overlays), or None.
    """

    data: dict[str, Any]
    volume: CTVolume
    lesion_map: np.ndarray | None
    views: SliceViews | None

    @property
    def assessable(self) -> bool:
        """False when the input quality gate refused the study: no class is given."""
        return bool(self.data.get("assessable", True))

    @property
    def label(self) -> str:
        """The class given, or ``"not assessable"``."""
        label = self.data["patient"]["label"]
        return "not assessable" if label is None else str(label)

    @property
    def probs(self) -> dict[str, float]:
        """The deciding rule's probability of each class (empty when not assessable)."""
        p = self.data["patient"]
        return dict(zip(p["classes"], p["probs"], strict=True)) if p["probs"] is not None else {}

    @property
    def shown(self) -> np.ndarray:
        return self.views.indices if self.views is not None else np.zeros(0, np.int64)

    @property
    def crops(self) -> np.ndarray | None:
        return self.views.images if self.views is not None else None

    @property
    def maps(self) -> np.ndarray | None:
        return self.views.overlays if self.views is not None else None

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def write(self, out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``report.json``, ``report.html`` and (with a map) ``lesion_map.nii.gz`` as one atomic folder."""
        from m3lung.io.write import write_nifti
        from m3lung.report.html import render_html

        t0 = time.perf_counter()
        with atomic_dir(out, overwrite=overwrite) as tmp:
            if self.lesion_map is not None:
                n_warn = len(self.volume.warnings)
                write_nifti(
                    self.volume, tmp / "lesion_map.nii.gz", array=self.lesion_map, dtype="uint8", slope=MAP_SLOPE
                )
                self.data["warnings"].extend(self.volume.warnings[n_warn:])
            v = self.views
            html = render_html(
                self.data,
                crops=v.images if v is not None else np.zeros((0, 1, 1), np.float32),
                maps=v.overlays if v is not None else None,
                shown=v.indices if v is not None else np.zeros(0, np.int64),
                **({"window": v.window} if v is not None else {}),
            )
            (tmp / "report.html").write_text(html, encoding="utf-8")
            timings = self.data["timings_s"]
            timings["write"] = round(time.perf_counter() - t0, 3)
            if "total" in timings:  # the screener's total, now with the writing
                timings["total"] = round(timings["total"] + timings["write"], 3)
            (tmp / "report.json").write_text(json.dumps(self.data, indent=1), encoding="utf-8")
        return Path(out)


def build_report(result: StudyResult, volume: CTVolume, *, system_title: str = "") -> Report:
    """The report of ``result``, a study ``volume`` screened by a system."""
    from m3lung._version import __version__

    src = volume.source
    n, h, w = volume.shape
    if result.lesion_map is not None and result.lesion_map.shape != (n, h, w):
        raise ValueError(f"lesion map {result.lesion_map.shape} is not on the study's grid {(n, h, w)}")
    clash = sorted(set(result.extras) & REPORT_FIELDS)
    if clash:
        raise ValueError(f"system extras may not replace report fields: {clash}")
    patient: dict[str, Any] = {
        "classes": list(result.classes),
        "label": result.label,
        "decided_by": result.decided_by,
        "probs": rounded(result.probs) if result.probs is not None else None,
        "rules": list(result.rules),
    }
    for name, rule in result.rules.items():
        patient[name] = rule.to_dict() if rule is not None else None
    data: dict[str, Any] = {
        "schema": REPORT_SCHEMA,
        "m3lung_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "system": {"name": result.system, "title": system_title or result.system, "classes": list(result.classes)},
        "study": {
            "patient_id": src.patient_id,
            "study_uid": src.study_uid,
            "series_uid": src.series_uid,
            "source": src.path,
            "format": src.format,
            "modality": src.modality,
            "anonymized": src.anonymized,
            "n_slices": n,
            "rows": h,
            "cols": w,
            "spacing_mm": list(volume.spacing),
        },
        "assessable": result.assessable,
        "patient": patient,
    }
    if result.quality is not None:
        data["quality"] = result.quality
    if result.slices is not None:
        data["slices"] = {
            "order": "canonical: index 0 is the most inferior (feet) slice; source_index maps to the input order",
            "source_index": [int(i) for i in np.asarray(volume.source_index)],
            **result.slices,
        }
    data.update(result.extras)
    if result.regions is not None:
        data["regions"] = result.regions
    outputs: dict[str, Any] = {"report_html": "report.html"}
    if result.lesion_map is not None:
        outputs.update({"lesion_map": "lesion_map.nii.gz", "lesion_map_scale": MAP_SLOPE})
    data["outputs"] = outputs
    data["weights"] = result.weights
    data["device"] = result.device
    data["timings_s"] = dict(result.timings)
    data["warnings"] = list(result.warnings)
    return Report(data=data, volume=volume, lesion_map=result.lesion_map, views=result.views)
