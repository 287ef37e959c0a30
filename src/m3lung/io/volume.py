"""`CTVolume`: voxels in one canonical orientation, with their geometry and where they came from.

Canonical orientation
---------------------
``CTVolume.voxels`` has shape ``(slices, rows, cols)`` and is always stored so that, in DICOM's
patient coordinate system (LPS: x to the patient's Left, y to Posterior, z to Superior),

* axis 0 (slices) runs **inferior → superior** (feet to head, increasing z),
* axis 1 (rows) runs **anterior → posterior** (the usual radiological display: anterior at the top),
* axis 2 (cols) runs **patient right → patient left** (patient right on the image's left).

That is the orientation of a standard axial DICOM series (ImageOrientationPatient ``1,0,0,0,1,0``)
stacked by increasing ImagePositionPatient z. Every reader flips and permutes its input to this
orientation (to the nearest axes for oblique acquisitions), so downstream code never has to ask.
``direction`` keeps the exact world direction of each array axis, so oblique data keeps its true
geometry; for an axis-aligned scan it is the identity permutation of (z, y, x).

Slice ``k`` of the volume is slice ``source_index[k]`` in the source's own order: InstanceNumber order
for DICOM (file name order when InstanceNumber is missing or repeated), the index along the file's
slice axis for NIfTI/MHA/NRRD/NumPy. Labels published in the source's order map through it.
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np

from m3lung.errors import IntensityError

Intensity = Literal["HU", "uint8"]

#: Source metadata fields that identify a person or an institution; dropped by ``anonymize``.
IDENTIFYING_FIELDS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "PatientWeight",
    "OtherPatientIDs",
    "AccessionNumber",
    "InstitutionName",
    "InstitutionAddress",
    "ReferringPhysicianName",
    "PerformingPhysicianName",
    "OperatorsName",
    "StationName",
    "StudyDate",
    "SeriesDate",
    "AcquisitionDate",
    "ContentDate",
    "StudyTime",
    "SeriesTime",
    "AcquisitionTime",
    "ContentTime",
    "StudyID",
    "DeviceSerialNumber",
)


@dataclass(frozen=True)
class SourceInfo:
    """Where a volume came from.

    ``files`` and ``instance_numbers`` are per canonical slice (empty when the source is one file).
    ``metadata`` holds further header fields as strings (identifying ones removed by ``anonymize``).
    """

    path: str
    format: str
    series_uid: str | None = None
    study_uid: str | None = None
    patient_id: str | None = None
    modality: str | None = None
    series_description: str | None = None
    transfer_syntax: str | None = None
    files: tuple[str, ...] = ()
    instance_numbers: tuple[int | None, ...] = ()
    metadata: Mapping[str, str] = field(default_factory=dict)
    anonymized: bool = False


def _hash_uid(uid: str) -> str:
    """A stable replacement UID (DICOM ``2.25.<integer>`` form) derived from ``uid``."""
    digest = hashlib.sha256(uid.encode()).digest()[:16]
    return "2.25." + str(int.from_bytes(digest, "big"))


@dataclass(eq=False)
class CTVolume:
    """A CT volume in the canonical orientation described in this module's docstring.

    Attributes
    ----------
    voxels : (N, H, W) float32
        Hounsfield units when ``intensity == "HU"``; grey values 0..255 when ``"uint8"`` (2D images).
    spacing : (z, y, x) mm
        Slice spacing (median distance between slice centres) and in-plane pixel spacing.
    origin : (x, y, z) mm, LPS
        World position of the centre of voxel ``[0, 0, 0]``.
    direction : (3, 3)
        Row ``a`` is the LPS unit vector along array axis ``a`` (0 slices, 1 rows, 2 cols).
    slice_positions : (N,) mm
        Position of each slice centre along ``direction[0]``, measured from ``origin`` (0 for the
        first slice). Uneven spacing is kept here exactly.
    source_index : (N,) int
        Slice ``k`` is slice ``source_index[k]`` in the source's own order.
    intensity : "HU" or "uint8"
    source : SourceInfo
    warnings : list of str
        Every warning raised while reading or processing this volume.
    """

    voxels: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: np.ndarray = field(default_factory=lambda: canonical_direction())
    slice_positions: np.ndarray | None = None
    source_index: np.ndarray | None = None
    intensity: Intensity = "HU"
    source: SourceInfo = field(default_factory=lambda: SourceInfo(path="<memory>", format="array"))
    warnings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        vox = np.asarray(self.voxels)
        if vox.ndim != 3:
            raise ValueError(f"CTVolume voxels must be (slices, rows, cols), got shape {vox.shape}")
        if vox.dtype != np.float32:
            vox = vox.astype(np.float32)
        self.voxels = vox
        self.spacing = tuple(float(s) for s in self.spacing)  # type: ignore[assignment]
        self.origin = tuple(float(o) for o in self.origin)  # type: ignore[assignment]
        self.direction = np.asarray(self.direction, dtype=np.float64).reshape(3, 3)
        n = vox.shape[0]
        if self.slice_positions is None:
            self.slice_positions = np.arange(n, dtype=np.float64) * self.spacing[0]
        self.slice_positions = np.asarray(self.slice_positions, dtype=np.float64)
        if self.source_index is None:
            self.source_index = np.arange(n)
        self.source_index = np.asarray(self.source_index, dtype=np.int64)
        if self.slice_positions.shape != (n,) or self.source_index.shape != (n,):
            raise ValueError("slice_positions and source_index must have one entry per slice")

    # ------------------------------------------------------------------ shape and geometry
    @property
    def shape(self) -> tuple[int, int, int]:
        """``(slices, rows, cols)``."""
        s = self.voxels.shape
        return (int(s[0]), int(s[1]), int(s[2]))

    @property
    def n_slices(self) -> int:
        return int(self.voxels.shape[0])

    @property
    def is_hu(self) -> bool:
        return self.intensity == "HU"

    def affine(self) -> np.ndarray:
        """4x4 matrix mapping voxel index ``(k, i, j, 1)`` to LPS ``(x, y, z, 1)`` in mm."""
        a = np.eye(4)
        a[:3, :3] = (self.direction * np.asarray(self.spacing)[:, None]).T
        a[:3, 3] = self.origin
        return a

    def world(self, k: float, i: float, j: float) -> np.ndarray:
        """LPS position (mm) of voxel ``(k, i, j)``; ``k`` uses the exact slice positions when integral."""
        kk = float(k)
        along = (
            float(self.slice_positions[int(kk)])  # type: ignore[index]
            if kk.is_integer() and 0 <= kk < self.n_slices
            else kk * self.spacing[0]
        )
        o = np.asarray(self.origin)
        return (
            o
            + along * self.direction[0]
            + i * self.spacing[1] * self.direction[1]
            + (j * self.spacing[2] * self.direction[2])
        )

    def hu_range(self) -> tuple[float, float]:
        """Minimum and maximum voxel value."""
        return float(self.voxels.min()), float(self.voxels.max())

    # ------------------------------------------------------------------ derived volumes
    def with_voxels(self, voxels: np.ndarray, **changes: Any) -> CTVolume:
        """A copy carrying new voxels (and any other field changed), warnings copied."""
        changes.setdefault("warnings", list(self.warnings))
        return replace(self, voxels=voxels, **changes)

    def require_hu(self, step: str) -> None:
        """Raise :class:`IntensityError` unless the voxels are Hounsfield units."""
        if not self.is_hu:
            raise IntensityError(
                f"{step} needs Hounsfield units, but {self.source.path} holds 8-bit grey values "
                "(a PNG/JPG or a display image). Use a DICOM/NIfTI CT in HU, or map the grey values "
                "to HU explicitly with m3lung.io.grey_to_hu(volume, center=..., width=...) if you "
                "know the window the image was exported with."
            )

    def anonymize(self) -> CTVolume:
        """A copy without identifying metadata; UIDs replaced by stable hashed UIDs."""
        src = self.source
        meta = {k: v for k, v in src.metadata.items() if k not in IDENTIFYING_FIELDS}
        new_src = replace(
            src,
            patient_id=None,
            series_uid=_hash_uid(src.series_uid) if src.series_uid else None,
            study_uid=_hash_uid(src.study_uid) if src.study_uid else None,
            metadata=meta,
            anonymized=True,
        )
        out = copy.copy(self)
        out.source = new_src
        out.warnings = list(self.warnings)
        return out

    def summary(self) -> dict[str, Any]:
        """Plain-data description (what ``m3lung info --json`` prints)."""
        lo, hi = self.hu_range()
        s = self.source
        return {
            "path": s.path,
            "format": s.format,
            "slices": self.shape[0],
            "rows": self.shape[1],
            "cols": self.shape[2],
            "spacing_mm": {"z": self.spacing[0], "y": self.spacing[1], "x": self.spacing[2]},
            "intensity": self.intensity,
            "value_range": [lo, hi],
            "modality": s.modality,
            "series_uid": s.series_uid,
            "study_uid": s.study_uid,
            "patient_id": s.patient_id,
            "series_description": s.series_description,
            "transfer_syntax": s.transfer_syntax,
            "origin_lps_mm": list(self.origin),
            "direction": self.direction.round(6).tolist(),
            "anonymized": s.anonymized,
            "warnings": list(self.warnings),
        }


def canonical_direction() -> np.ndarray:
    """Direction rows of the canonical orientation: slices +z (S), rows +y (P), cols +x (L)."""
    return np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])


def grey_to_hu(volume: CTVolume, *, center: float, width: float) -> CTVolume:
    """Map 8-bit grey values (0..255) back to approximate HU, given the window they were exported with.

    Grey 0 becomes ``center - width/2`` and 255 becomes ``center + width/2``; values the export clipped
    stay clipped. The result is flagged as HU and carries a warning saying it is an approximation.
    """
    if volume.is_hu:
        raise IntensityError(f"{volume.source.path} is already in HU; grey_to_hu is for 8-bit images")
    if width <= 0:
        raise IntensityError(f"window width must be positive, got {width}")
    hu = volume.voxels * np.float32(width / 255.0) + np.float32(center - width / 2.0)
    out = volume.with_voxels(hu, intensity="HU")
    out.warnings.append(f"grey values mapped to approximate HU with window centre {center:g} / width {width:g}")
    return out


def check_finite(voxels: np.ndarray, path: str) -> None:
    """Raise :class:`IntensityError` when ``voxels`` holds NaN or infinite values."""
    bad = ~np.isfinite(voxels)
    if bad.any():
        n = int(bad.sum())
        ks = np.unique(np.nonzero(bad)[0])
        raise IntensityError(
            f"{path}: {n} voxel(s) are NaN or infinite (in {len(ks)} slice(s), first at index "
            f"{int(ks[0])}). A CT holds finite HU everywhere; replace them (e.g. with -1024 HU for "
            "outside the field of view) before using this volume."
        )
