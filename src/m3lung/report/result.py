"""What a system answers for one study — the one input of every report.

:class:`StudyResult` (with its :class:`RuleResult` s and :class:`SliceViews`) is filled by a system's
``predict`` (:mod:`m3lung.systems.base`) and turned into ``report.json``, ``report.html`` and
``lesion_map.nii.gz`` by :func:`m3lung.report.study.build_report`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["RuleResult", "SliceViews", "StudyResult", "rounded"]


@dataclass
class RuleResult:
    """One patient-level decision rule's answer.

    probs : (K,) probabilities over the system's classes. label : the class name it gives.
    title / note : how the report names the rule and what it computes. why : one sentence on why it gives
    ``label`` for this study (shown under the decision; needed where the label is not the most probable
    class, as with the non-parametric rule). details : rule-specific JSON-able values (``counts``, ...).
    """

    probs: np.ndarray
    label: str
    title: str = ""
    note: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    why: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "probs": rounded(self.probs),
            "label": self.label,
            **self.details,
            "title": self.title,
            "note": self.note,
            **({"why": self.why} if self.why else {}),
        }


@dataclass
class SliceViews:
    """The slices ``report.html`` shows.

    indices : (K,) canonical slice indices (0 = most inferior). images : (K, S, S) HU crops.
    overlays : (K, S, S) lesion maps in [0, 1] on those crops, or None. window : (centre, width) HU shown.
    """

    indices: np.ndarray
    images: np.ndarray
    overlays: np.ndarray | None = None
    window: tuple[float, float] = (-600.0, 1200.0)


@dataclass
class StudyResult:
    """What every system answers for one study; :func:`m3lung.report.study.build_report` writes it.

    Required: ``system`` (its registered name), ``classes``, and the patient decision: ``label`` (a class
    name; None when the study is not assessable), ``probs`` (K,) of the deciding rule, ``decided_by``
    (a key of ``rules``), ``rules`` (every rule's result; None for a rule that could not run).
    Optional: ``slices`` (per-slice table: column name → one value per slice, canonical order),
    ``lesion_map`` ((N, H, W) uint8 on the study's own grid, value x 1/255), ``regions`` (lesion boxes
    or regions, JSON-able dicts), ``extras`` (system-specific top-level report fields, e.g.
    ``infected_share`` or a risk score), ``weights`` (``hashes`` {part: content hash}, ``trained_on``,
    provenance...), ``timings`` (seconds per step), ``warnings``, ``views`` (slices for the HTML page),
    ``device``.
    """

    system: str
    classes: tuple[str, ...]
    label: str | None
    probs: np.ndarray | None
    decided_by: str | None
    rules: dict[str, RuleResult | None]
    slices: dict[str, list[Any]] | None = None
    lesion_map: np.ndarray | None = None
    regions: list[dict[str, Any]] | None = None
    extras: dict[str, Any] = field(default_factory=dict)
    weights: dict[str, Any] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    views: SliceViews | None = None
    device: str = "cpu"
    #: the input quality gate's verdict (``ChestQuality.to_dict()``), when it ran
    quality: dict[str, Any] | None = None

    @property
    def assessable(self) -> bool:
        """False when the quality gate refused the study (then there is no label)."""
        return self.quality is None or bool(self.quality.get("assessable", True))

    def __post_init__(self) -> None:
        if self.decided_by is not None and self.rules.get(self.decided_by) is None:
            raise ValueError(f"decided_by {self.decided_by!r} names no rule that ran")
        if self.label is not None and self.label not in self.classes:
            raise ValueError(f"label {self.label!r} is not one of {self.classes}")


def rounded(a: Any, nd: int = 4) -> list[float]:
    """Every value of ``a`` as a float rounded to ``nd`` decimals, flat (how reports write probabilities)."""
    return [round(float(v), nd) for v in np.asarray(a).ravel()]
