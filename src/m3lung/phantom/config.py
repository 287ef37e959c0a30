"""Settings and result types of the synthetic chest-CT phantom.

Lesion codes in :attr:`PhantomStudy.lesion_mask`
-----------------------------------------------
======  =================  ==========================================================
code    name               meaning
======  =================  ==========================================================
0       none               no lesion
1       ground-glass       ground-glass opacity (GGO), about -700..-300 HU
2       consolidation      consolidation, about -100..+50 HU (air bronchograms inside)
3       nodule             small (centrilobular) nodule, about -400..0 HU
4       crazy-paving       ground-glass with a superimposed reticular grid
======  =================  ==========================================================

Lung codes in :attr:`PhantomStudy.lung_mask`: 0 outside, 1 right lung, 2 left lung.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from m3lung.classes import CLASSES
from m3lung.errors import InputError
from m3lung.io.volume import CTVolume

#: Class names in index order (the project's 0 Healthy, 1 COVID-19, 2 H1N1, 3 CAP).
CLASS_NAMES: tuple[str, ...] = CLASSES
#: Short lower-case class tags used in synthetic patient ids (``syn-0003-cap``).
CLASS_TAGS: tuple[str, ...] = ("healthy", "covid", "h1n1", "cap")

LESION_NONE, LESION_GGO, LESION_CONSOLIDATION, LESION_NODULE, LESION_CRAZY_PAVING = 0, 1, 2, 3, 4
#: Lesion code -> name (see the module docstring).
LESION_CODES: dict[int, str] = {
    LESION_NONE: "none",
    LESION_GGO: "ground-glass",
    LESION_CONSOLIDATION: "consolidation",
    LESION_NODULE: "nodule",
    LESION_CRAZY_PAVING: "crazy-paving",
}
LUNG_RIGHT, LUNG_LEFT = 1, 2


def _check_range(name: str, value: tuple[float, float], low: float, high: float) -> None:
    if len(value) != 2 or not (low <= value[0] <= value[1] <= high):
        raise InputError(f"PhantomConfig.{name} must be (min, max) with {low} <= min <= max <= {high}, got {value}")


@dataclass(frozen=True)
class PhantomConfig:
    """How synthetic studies are drawn. The defaults give realistic 512x512 clinical chest CTs.

    Every ``(min, max)`` pair is a range a value is drawn from uniformly, once per study.

    Attributes
    ----------
    rows, cols : int
        In-plane image size in pixels.
    slices : (int, int)
        Inclusive range of the number of slices. The scan always covers the same anatomy (from just
        above the lung apices to below the bases), so the slice spacing is ``extent / slices``.
    pixel_spacing : (float, float)
        Range of the in-plane pixel spacing in mm; field of view = ``rows * spacing`` (280..460 mm
        by default). The body is sized to the field of view, as a scanner operator would.
    z_extent_mm : (float, float)
        Range of the cranio-caudal scan length in mm.
    noise_hu : (float, float)
        Range of the standard deviation of the Gaussian image noise, HU.
    blur_sigma_px : (float, float)
        Range of the in-plane Gaussian blur (partial volume / reconstruction kernel), pixels.
    artefact_probability : float
        Chance that a Healthy study carries a pulsatile or respiratory motion artefact (the usual
        source of false positives). Artefacts are not lesions.
    diseased_artefact_probability : float
        The same chance for COVID-19 / H1N1 / CAP studies (0.1 by default, so that an artefact alone
        never gives the class away).
    min_lesion_pixels : int
        A slice is labelled *with lesion* (``slice_labels``) when it holds at least this many lesion
        pixels (100 at 512x512, about 50 mm² at 0.7 mm pixels: a lesion a reader would mark; slices
        with only a speck of a lesion stay unlabelled, as the paper's annotators would leave them).
    covid_lesions : (int, int)
        Inclusive range of the number of ground-glass lesions of a COVID-19 study.
    max_vessel_segments : int
        Upper bound on the tube segments of each vessel tree (detail versus speed).
    """

    rows: int = 512
    cols: int = 512
    slices: tuple[int, int] = (24, 495)
    pixel_spacing: tuple[float, float] = (0.55, 0.9)
    z_extent_mm: tuple[float, float] = (260.0, 340.0)
    noise_hu: tuple[float, float] = (8.0, 30.0)
    blur_sigma_px: tuple[float, float] = (0.5, 0.8)
    artefact_probability: float = 0.35
    diseased_artefact_probability: float = 0.1
    min_lesion_pixels: int = 100
    covid_lesions: tuple[int, int] = (2, 8)
    max_vessel_segments: int = 1200

    def __post_init__(self) -> None:
        if self.rows < 32 or self.cols < 32:
            raise InputError(f"PhantomConfig rows/cols must be at least 32, got {self.rows}x{self.cols}")
        if len(self.slices) != 2 or not (4 <= self.slices[0] <= self.slices[1] <= 5000):
            raise InputError(f"PhantomConfig.slices must be (min, max) with 4 <= min <= max, got {self.slices}")
        _check_range("pixel_spacing", self.pixel_spacing, 0.05, 20.0)
        _check_range("z_extent_mm", self.z_extent_mm, 150.0, 500.0)
        _check_range("noise_hu", self.noise_hu, 0.0, 500.0)
        _check_range("blur_sigma_px", self.blur_sigma_px, 0.0, 5.0)
        _check_range("covid_lesions", self.covid_lesions, 1, 50)
        for name in ("artefact_probability", "diseased_artefact_probability"):
            p = getattr(self, name)
            if not 0.0 <= p <= 1.0:
                raise InputError(f"PhantomConfig.{name} must lie in [0, 1], got {p}")
        if self.min_lesion_pixels < 1 or self.max_vessel_segments < 0:
            raise InputError("PhantomConfig.min_lesion_pixels must be >= 1 and max_vessel_segments >= 0")

    @classmethod
    def small(cls, size: int = 128, slices: tuple[int, int] = (24, 40), **changes: Any) -> PhantomConfig:
        """A fast configuration of ``size x size`` images with the default field of view.

        The pixel spacing range is scaled by ``512 / size`` (so anatomy and lesions keep their size
        in mm), ``min_lesion_pixels`` by the pixel area, and the vessel trees are thinned.
        """
        f = 512.0 / size
        base = cls()
        kw: dict[str, Any] = {
            "rows": size,
            "cols": size,
            "slices": slices,
            "pixel_spacing": (round(base.pixel_spacing[0] * f, 4), round(base.pixel_spacing[1] * f, 4)),
            "min_lesion_pixels": max(3, round(base.min_lesion_pixels / f**2)),
            "max_vessel_segments": 100,
        }
        kw.update(changes)
        return cls(**kw)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable copy of the settings."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


@dataclass
class PhantomStudy:
    """One synthetic study with its ground truth.

    Attributes
    ----------
    patient_id : str
    label : int
        0 Healthy, 1 COVID-19, 2 H1N1, 3 CAP.
    class_name : str
    volume : CTVolume
        Canonical orientation, HU, integer-valued float32 in [-1024, 3071]; ``source.format`` is
        ``"phantom"`` and ``source.patient_id`` is set.
    lung_mask : (N, H, W) uint8
        0 outside, 1 right lung, 2 left lung (vessels and airways inside the lungs included).
    lesion_mask : (N, H, W) uint8
        Lesion codes (module docstring); always inside ``lung_mask``.
    slice_labels : (N,) uint8
        1 where the slice holds at least ``config.min_lesion_pixels`` lesion pixels, canonical order
        (index 0 = most inferior slice).
    lesions : list of dict
        One JSON-serialisable description per lesion: ``kind``, ``code``, ``lung``, ``lobe``,
        ``zone``, ``position``, ``hu``, ``centre_voxel`` (k, i, j), ``centre_lps_mm`` (x, y, z),
        ``radii_mm`` (along z, y, x), ``n_voxels``, and kind-specific fields.
    artefacts : list of dict
        Motion / pulsation artefacts (not lesions): ``kind``, ``slices`` (first, last), ``hu``, ...
    seed, index : int
        What the study was drawn from (``np.random.default_rng`` seeded by ``(seed, index)``).
    config : PhantomConfig
    """

    patient_id: str
    label: int
    class_name: str
    volume: CTVolume
    lung_mask: np.ndarray
    lesion_mask: np.ndarray
    slice_labels: np.ndarray
    lesions: list[dict[str, Any]]
    artefacts: list[dict[str, Any]]
    seed: int = 0
    index: int = 0
    config: PhantomConfig = field(default_factory=PhantomConfig)

    @property
    def n_lesion_slices(self) -> int:
        """Number of slices labelled *with lesion*."""
        return int(np.count_nonzero(self.slice_labels))

    def truth(self) -> dict[str, Any]:
        """The ground truth as plain JSON-serialisable data (what ``truth.json`` holds)."""
        vol = self.volume
        return {
            "patient_id": self.patient_id,
            "label": int(self.label),
            "class_name": self.class_name,
            "slice_labels": [int(v) for v in self.slice_labels],
            "slice_order": "canonical: index 0 is the most inferior slice (feet), increasing towards the head",
            "n_slices": vol.n_slices,
            "n_lesion_slices": self.n_lesion_slices,
            "shape": list(vol.shape),
            "spacing_mm": list(vol.spacing),
            "origin_lps_mm": list(vol.origin),
            "lesion_codes": {str(k): v for k, v in LESION_CODES.items()},
            "lung_codes": {"0": "outside", "1": "right lung", "2": "left lung"},
            "lesions": self.lesions,
            "artefacts": self.artefacts,
            "seed": int(self.seed),
            "index": int(self.index),
            "config": self.config.to_dict(),
        }
