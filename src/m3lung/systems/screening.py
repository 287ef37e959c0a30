"""One screener for every system: ``Screener(weights, system=..., options)`` → :class:`~m3lung.report.study.Report`.

A study is read (any format :func:`m3lung.io.read_ct` reads), handed to the system's
:meth:`~m3lung.systems.base.System.predict`, and its :class:`~m3lung.systems.base.StudyResult` becomes
the report (``report.json``, ``report.html``, ``lesion_map.nii.gz``; :mod:`m3lung.report.study`).
Batches, manifests, resume and shards are :mod:`m3lung.systems.batch`'s.
"""

from __future__ import annotations

import os
import time
import warnings
from typing import Any

from m3lung.errors import InputError, M3LungWarning
from m3lung.io import CTVolume, read_ct
from m3lung.preprocess.quality import ChestQuality, QualityConfig, assess_chest
from m3lung.report.result import StudyResult
from m3lung.report.study import REPORT_SCHEMA, Report, build_report
from m3lung.systems.base import System, get_system, make_options

__all__ = ["REPORT_SCHEMA", "Report", "Screener", "not_assessable", "screen"]


class Screener:
    """Load a system's weights once; screen any number of studies.

    Parameters
    ----------
    weights : the system's weights file (for M³Lung-Sys: ``system.pt`` of ``m3lung train patient``, or a
        slice-network checkpoint); None: the weights shipped for the system, when it has some.
    system : a registered system's name (``m3lung systems`` lists them; default M³Lung-Sys) or class.
    options : the system's ``Options`` instance; or give its fields as keywords (``batch_size=7``,
        ``map_shifts=2`` ...), the same names as the ``m3lung screen`` flags.
    device : "auto", "cpu" or "cuda".
    quality_gate : look at every study first (:func:`m3lung.preprocess.quality.assess_chest`): a volume
        that is clearly not a chest CT in HU is *not assessable*: the system does not run on it, and
        its report gives no class but says why. ``quality`` sets the gate's thresholds. Turning the
        gate off (``--no-quality-gate``) is for research on inputs the gate was not set on.
    """

    def __init__(
        self,
        weights: str | os.PathLike[str] | None = None,
        *,
        system: str | type[System] = "m3lung",
        options: Any = None,
        device: str = "auto",
        quality_gate: bool = True,
        quality: QualityConfig | None = None,
        **option_values: Any,
    ) -> None:
        self.system_type = get_system(system) if isinstance(system, str) else system
        self.options = make_options(self.system_type, options, **option_values)
        if weights is None:
            weights = self.system_type.default_weights()
            if weights is None:
                raise InputError(f"system {self.system_type.name!r} ships no weights: pass --weights FILE")
        self.weights = str(weights)
        self.system = self.system_type.load(weights, self.options, device)
        self.device = self.system.device
        self.quality_gate = quality_gate
        self.quality = quality or QualityConfig()

    def screen(self, source: str | os.PathLike[str] | CTVolume, **read_options: Any) -> Report:
        """Screen one study (a path ``read_ct`` reads, with its options, or a :class:`CTVolume`).

        ``timings_s`` in the report add up: ``read``, the system's own steps, ``other`` (building the
        report, and what the steps do not time) make ``total``; :meth:`Report.write` adds ``write``.
        """
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", M3LungWarning)
            vol = source if isinstance(source, CTVolume) else read_ct(source, **read_options)
        t_read = round(time.perf_counter() - t0, 3)
        read_warnings = [*vol.warnings, *(str(w.message) for w in caught)]
        vol.require_hu("screening (the systems read Hounsfield units)")  # 8-bit images are an error, as always
        t1 = time.perf_counter()
        gate = assess_chest(vol, self.quality) if self.quality_gate else None
        t_gate = round(time.perf_counter() - t1, 3)
        if gate is not None and not gate.assessable:
            result = not_assessable(self.system_type, gate)
        else:
            result = self.system.predict(vol)
        result.timings = {"read": t_read, **({"quality_gate": t_gate} if gate is not None else {}), **result.timings}
        if gate is not None:
            result.quality = gate.to_dict()
            result.warnings = [*(f"quality: {n}" for n in gate.notes), *result.warnings]
        result.warnings = list(dict.fromkeys([*read_warnings, *result.warnings]))
        report = build_report(result, vol, system_title=self.system_type.title)
        timings = report.data["timings_s"]
        total = round(time.perf_counter() - t0, 3)
        timings["other"] = round(max(0.0, total - sum(timings.values())), 3)
        timings["total"] = total
        return report


def not_assessable(system: type[System], gate: ChestQuality) -> StudyResult:
    """The result of a study the quality gate refused: no class, no rule ran, the reasons as warnings."""
    return StudyResult(
        system=system.name,
        classes=system.classes,
        label=None,
        probs=None,
        decided_by=None,
        rules={},
        warnings=[f"not assessable: {r}" for r in gate.reasons],
    )


def screen(
    path: str | os.PathLike[str] | CTVolume,
    *,
    weights: str | os.PathLike[str] | None = None,
    out: str | os.PathLike[str] | None = None,
    system: str = "m3lung",
    **options: Any,
) -> Report:
    """Screen one study: ``m3lung.screen(path, weights=...) -> Report`` (writes to ``out`` when given).

    ``options`` are :class:`Screener`'s: ``device`` and the system's own options (for M³Lung-Sys:
    patient_weights, batch_size, bf16, chunk, every, threshold, maxpool_threshold, map_shifts, map_flip).
    """
    report = Screener(weights, system=system, **options).screen(path)
    if out is not None:
        report.write(out, overwrite=True)
    return report
