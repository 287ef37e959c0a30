"""The input quality gate: does a volume hold a chest CT in Hounsfield units?

:func:`assess_chest` looks at a :class:`CTVolume` before any decision is made on it and says whether
it can be screened at all (``ChestQuality.assessable``), why not (``reasons``, one plain sentence
each), what is borderline but still assessable (``notes``) and the figures it judged on
(``figures``). It never raises on odd voxel values (NaN, inf, 1e30, 8-bit grey values, an empty
volume): those are verdicts, not crashes.

What it measures (whole-volume numpy, no loop over slices or pixels):

* the HU histogram: the share of voxels that are air (< -900 HU), lung (-900..-500), soft tissue
  (-200..300: fat, water, muscle, blood), bone (300..2000), dense (> 2000: metal, or values that are
  not HU) and implausible (NaN, inf, or outside -3100..32767, which no CT stores);
* the lung, with the project's lung mask (:func:`m3lung.preprocess.lung_mask`: air inside the body,
  not touching the slice border) on at most ``max_mask_slices`` evenly spaced slices: its volume in
  mL (areas x ``volume.spacing``), each slice's lung share of the body cross-section, and the
  fraction of slices whose share reaches ``lung_slice_share``. A small field of view cut *inside*
  the body (the lungs touch the image edge, so the mask's border rule would drop them) is detected
  from the slice border (little outside air on it) and those slices get a ring of soft tissue
  before masking.

The verdict. *Not assessable* (``assessable=False``) only when the volume is clearly not a chest CT
in HU: not HU, too small, non-finite or impossible values, dense values a CT of a body cannot hold,
no air-or-lung density, no soft tissue, or no slice whose lung share reaches ``lung_slice_share``
(no lung). A partial chest with lung on it is *assessable* and gets ``notes``: few slices, lung on
only part of the slices, little lung volume, a small field of view, an unusual air share.

Where the thresholds come from (each in :class:`QualityConfig`, figures in
``benchmarks/bench_quality.py``): the three real COVID-CT-MD volumes (P002, cap002, normal001:
512x512, 131-154 slices), the TotalSegmentator chest crop (NIfTI, 122x102x112 at 1.5 mm) and the
lungmask one-slice series (2 files), all assessable; synthetic phantom studies of all four classes
at 128, 256 and 512 pixels, all assessable; and refused on purpose: uniform noise, all 0, all -1024,
all 1e30, NaN, 8-bit grey values, a water cylinder, a head-like blob and the phantoms' own slices
below the lung bases (an abdomen with stomach gas).

*Decided, against the first expectation*: the TotalSegmentator 20-slice DICOM series (labelled
"upper abdomen / lung bases") is **not assessable**. Its slices show liver, stomach and spleen; the
air the lung mask finds (37 mL) is mostly stomach and bowel gas, largest on the lowest slice
(23 cm²) and shrinking upwards, and the lung proper is a 2-4 cm² posterior sliver on the top slices.
Its largest lung share of the body cross-section is 3 %, where every real chest slice set reaches
25 % or more and the phantoms' abdominal slices reach 1 %. Accepting it would accept any upper
abdomen with stomach gas, which is what the gate exists to refuse. A genuine lung-bases series
(the lowest 20 slices of a phantom, with the bases on them) is assessable with notes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from m3lung.io.volume import CTVolume
from m3lung.preprocess.lungcrop import LungCropConfig, body_mask, lung_mask, map_chunks

__all__ = ["ChestQuality", "QualityConfig", "assess_chest"]


@dataclass(frozen=True)
class QualityConfig:
    """Every threshold of :func:`assess_chest`, with the data it was set from.

    Measured (``benchmarks/bench_quality.py``) on 3 real COVID-CT-MD chest CTs ("real"), the
    TotalSegmentator chest crop and the lungmask 1-slice series ("variants"), and phantom studies
    of all four classes ("phantoms").

    HU bands
        air_hu : below it a voxel is air (-900 HU); lung_hu : air_hu..lung_hu is aerated lung
        (-500); soft_hu : (-200, 300) fat, water, muscle, blood, contrast; bone_hu : 300..dense_hu
        is bone; dense_hu : above it metal, or values that are not HU (2000).
        plausible_hu : (-3100, 32767): CT values outside it do not exist (scanners pad the area
        outside the reconstruction circle with -1024, -2048 or -3024; extended-scale CT stops at
        the int16 maximum).

    Refusals (``assessable=False``)
        min_matrix : slices smaller than 32x32 pixels cannot show a chest (the phantom's minimum).
        max_implausible_fraction : 0.001. Real and phantom scans: 0.
        max_dense_fraction : 0.01 of voxels above ``dense_hu``. Highest seen: 0.09 % (the
        TotalSegmentator crop, through contrast-filled vessels and bone); real: 0; uniform noise
        -1024..3000: 25 %. Ten times the highest seen leaves room for implants.
        min_low_density_fraction, max_low_density_fraction : air + lung share (< ``lung_hu``) must
        lie in 0.05..0.95. Lowest seen: 0.38 (normal001 and the crop), highest 0.69 (a 256-px
        phantom with a wide field of view); all 0 and 8-bit grey: 0; all -1024: 1.
        min_soft_fraction : 0.10 of voxels in ``soft_hu``. Lowest seen 0.24 (a 128-px phantom);
        all -1024, all 1e30: 0.
        lung_slice_share : a slice *has lung* when the lung mask covers at least this share of the
        body's cross-section (0.10). Largest share of every accepted case: real 0.27-0.40 (single
        slices 0.26-0.37, crops 0.46-0.65), phantoms 0.25-0.40; of the refused: the phantoms'
        slices below the lung bases 0.006, a synthetic abdomen with gas 0.04, the TotalSegmentator
        upper-abdomen series 0.03 (see the module docstring), a head-like blob 0.006.
        min_lung_slices : at least this many (sampled) slices must have lung (1: a single chest
        slice, as the lungmask series, is assessable, with a note).

    Notes (assessable, borderline)
        few_slices : fewer slices than this (10) give a note: the result covers those slices only.
        partial_lung_fraction : lung on fewer than this share (0.4) of the slices: partial coverage.
        Real: 0.65-0.78 of slices reach ``lung_slice_share``; phantoms 0.59-0.78.
        short_scan_mm : a series shorter head-to-feet (slices x slice spacing) than this (200 mm)
        gives a note. Real 262-308 mm; the phantoms cover 260-340 mm.
        small_lung_ml : less aerated lung than this (500 mL) gives a note. Real 3500-4000 mL,
        phantoms 1150-3050 mL (CAP consolidation removes aerated lung); adult lungs hold 3-6 L.
        air_fraction_range : (0.05, 0.75) of voxels below ``air_hu``; outside it a note. Real
        0.20-0.32, phantoms 0.50-0.63, the crop 0.015 (small FOV: noted).
        crop_border_air : a slice whose border has less than this share (0.25) of outside air
        (< ``air_hu``) is a crop inside the body and gets a soft-tissue ring before masking. Real
        full-FOV slices: 0.6-0.85 of their border is air; the TotalSegmentator crop: below 0.2.

    Speed
        max_mask_slices : the lung mask runs on at most this many evenly spaced slices (96; the
        whole gate takes 1.1-1.9 s for a 512x512x500 volume on the 2-core machine, 9.4 s without
        sampling, same verdict, lung volume within 0.5 %); areas are scaled back to the whole
        volume. max_histogram_voxels : the histogram uses a strided sample
        of about this many voxels (4e6; fractions move by < 0.003 against all voxels on P002).
    """

    air_hu: float = -900.0
    lung_hu: float = -500.0
    soft_hu: tuple[float, float] = (-200.0, 300.0)
    dense_hu: float = 2000.0
    plausible_hu: tuple[float, float] = (-3100.0, 32767.0)
    min_matrix: int = 32
    max_implausible_fraction: float = 0.001
    max_dense_fraction: float = 0.01
    min_low_density_fraction: float = 0.05
    max_low_density_fraction: float = 0.95
    min_soft_fraction: float = 0.10
    lung_slice_share: float = 0.10
    min_lung_slices: int = 1
    few_slices: int = 10
    partial_lung_fraction: float = 0.4
    short_scan_mm: float = 200.0
    small_lung_ml: float = 500.0
    air_fraction_range: tuple[float, float] = (0.05, 0.75)
    crop_border_air: float = 0.25
    max_mask_slices: int = 96
    max_histogram_voxels: int = 4_000_000
    lung_crop: LungCropConfig = field(default_factory=LungCropConfig)


@dataclass
class ChestQuality:
    """The verdict of :func:`assess_chest`.

    assessable : False only when the volume is clearly not a chest CT in HU.
    reasons : why it is not assessable, one plain sentence each (empty when assessable).
    notes : borderline findings of an assessable volume (partial coverage, few slices, ...).
    figures : what the verdict was judged on: ``n_slices``, ``rows``, ``cols``, the histogram
        fractions ``air_fraction`` ... ``implausible_fraction``, ``low_density_fraction``,
        ``lung_ml``, ``max_lung_share``, ``lung_slice_fraction``, ``lung_slices`` (estimated over all
        slices), ``crop_slice_fraction``, ``sampled_slices``, ``hu_min``, ``hu_max`` (finite voxels).
    """

    assessable: bool
    reasons: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    figures: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable data (non-finite figures become ``None``)."""
        d = asdict(self)
        d["figures"] = {k: (float(v) if np.isfinite(v) else None) for k, v in self.figures.items()}
        return d


def _pct(x: float) -> str:
    return f"{100.0 * x:.1f} %"


def _sample_indices(n: int, k: int) -> np.ndarray:
    """At most ``k`` evenly spaced indices of ``range(n)``, first and last included."""
    if n <= k:
        return np.arange(n)
    return np.unique(np.linspace(0, n - 1, k).round().astype(np.int64))


def _histogram(vox: np.ndarray, c: QualityConfig) -> dict[str, float]:
    """Fractions of the HU bands on a strided sample of ``vox`` (N, H, W)."""
    n, h, w = vox.shape
    step = max(1, int(np.ceil(np.sqrt(vox.size / max(c.max_histogram_voxels, 1)))))
    zstep = max(1, int(np.ceil(n * ((h + step - 1) // step) * ((w + step - 1) // step) / c.max_histogram_voxels)))
    s = vox[::zstep, ::step, ::step]
    finite = np.isfinite(s)
    lo, hi = c.plausible_hu
    with np.errstate(invalid="ignore"):
        plausible = finite & (s >= lo) & (s <= hi)
        t = np.where(plausible, s, np.float32(np.nan))
        total = float(s.size)
        fr = {
            "air_fraction": float(np.count_nonzero(t < c.air_hu)) / total,
            "lung_fraction": float(np.count_nonzero((t >= c.air_hu) & (t < c.lung_hu))) / total,
            "soft_tissue_fraction": float(np.count_nonzero((t >= c.soft_hu[0]) & (t < c.soft_hu[1]))) / total,
            "bone_fraction": float(np.count_nonzero((t >= c.soft_hu[1]) & (t <= c.dense_hu))) / total,
            "dense_fraction": float(np.count_nonzero(t > c.dense_hu)) / total,
            "implausible_fraction": float(np.count_nonzero(~plausible)) / total,
            "nonfinite_fraction": float(np.count_nonzero(~finite)) / total,
        }
    fr["low_density_fraction"] = fr["air_fraction"] + fr["lung_fraction"]
    fin = s[finite]
    fr["hu_min"] = float(fin.min()) if fin.size else float("nan")
    fr["hu_max"] = float(fin.max()) if fin.size else float("nan")
    return fr


def _lung_figures(vox: np.ndarray, spacing: tuple[float, float, float], c: QualityConfig) -> dict[str, float]:
    """Lung volume, per-slice lung share of the body and crop detection on sampled slices."""
    n, h, w = vox.shape
    idx = _sample_indices(n, c.max_mask_slices)
    # clean copy: the mask only thresholds, so non-finite and absurd values become soft tissue / air
    s = np.nan_to_num(vox[idx], nan=0.0, posinf=0.0, neginf=-1024.0)
    np.clip(s, -1024.0, 4000.0, out=s)
    border = np.concatenate([s[:, 0, :], s[:, -1, :], s[:, :, 0], s[:, :, -1]], axis=1)
    crop = (border < c.air_hu).mean(axis=1) < c.crop_border_air
    f = max(1, round(min(h, w) / 128))
    pad = 5 * f
    s = np.pad(s, ((0, 0), (pad, pad), (pad, pad)), constant_values=-1024.0)
    # a crop inside the body: a soft-tissue ring makes lung touching the image edge an inner region
    ring = np.ones((h + 2 * pad, w + 2 * pad), dtype=bool)
    ring[pad:-pad, pad:-pad] = False
    s[crop[:, None, None] & ring[None]] = 40.0
    thr = c.lung_crop.threshold_hu

    def areas(part: slice) -> tuple[np.ndarray, np.ndarray]:
        m = lung_mask(s[part], c.lung_crop)
        b = body_mask(s[part], thr, erode=0)
        return m.sum(axis=(1, 2), dtype=np.int64), (b | m).sum(axis=(1, 2), dtype=np.int64)

    parts = map_chunks(areas, len(idx), c.lung_crop.chunk_slices, c.lung_crop.workers)
    lung_px = np.concatenate([p[0] for p in parts]) if parts else np.zeros(0, np.int64)
    body_px = np.concatenate([p[1] for p in parts]) if parts else np.zeros(0, np.int64)
    share = lung_px / np.maximum(body_px, 1)
    has = share >= c.lung_slice_share
    dz, dy, dx = spacing
    px_ml = dy * dx / 1000.0
    # sampled slices stand for n / len(idx) slices each
    lung_ml = float(lung_px.sum()) * px_ml * dz * n / max(len(idx), 1)
    return {
        "lung_ml": lung_ml,
        "max_lung_share": float(share.max()) if share.size else 0.0,
        "lung_slice_fraction": float(has.mean()) if has.size else 0.0,
        "lung_slices": float(np.round(has.mean() * n)) if has.size else 0.0,
        "sampled_lung_slices": float(has.sum()),
        "crop_slice_fraction": float(crop.mean()) if crop.size else 0.0,
        "sampled_slices": float(len(idx)),
    }


def assess_chest(volume: CTVolume, config: QualityConfig = QualityConfig()) -> ChestQuality:
    """Does ``volume`` hold a chest CT in HU? See the module docstring for what is measured.

    ``volume.voxels`` (N, H, W) is read, never modified; ``volume.spacing`` (z, y, x) mm gives the
    lung volume. Never raises on the voxel values: garbage gives ``assessable=False`` with reasons.
    """
    c = config
    vox = volume.voxels
    n, h, w = (int(d) for d in vox.shape)
    figures: dict[str, float] = {"n_slices": float(n), "rows": float(h), "cols": float(w)}
    reasons: list[str] = []
    notes: list[str] = []
    if volume.intensity != "HU":
        reasons.append(
            f"the voxels are {volume.intensity} grey values, not Hounsfield units: a 2D image, not a CT volume"
        )
        return ChestQuality(False, reasons, notes, figures)
    if vox.size == 0 or h < c.min_matrix or w < c.min_matrix:
        reasons.append(
            f"the slices are {h}x{w} pixels ({n} slice(s)); a chest CT needs at least {c.min_matrix}x{c.min_matrix}"
        )
        return ChestQuality(False, reasons, notes, figures)
    sp = tuple(float(x) for x in volume.spacing)
    spacing_ok = all(np.isfinite(x) and x > 0 for x in sp)
    if not spacing_ok:
        reasons.append(f"the voxel spacing {sp} mm is not positive and finite, so no lung volume can be measured")
    hist = _histogram(vox, c)
    figures.update(hist)
    lung = _lung_figures(vox, (sp[0], sp[1], sp[2]) if spacing_ok else (1.0, 1.0, 1.0), c)
    if not spacing_ok:
        lung["lung_ml"] = float("nan")
    figures.update(lung)

    # ---------------------------------------------------------------- refusals
    if hist["nonfinite_fraction"] > 0 or hist["implausible_fraction"] > c.max_implausible_fraction:
        lo, hi = c.plausible_hu
        reasons.append(
            f"{_pct(hist['implausible_fraction'])} of voxels are NaN, infinite or outside {lo:g}..{hi:g} HU "
            f"({_pct(hist['nonfinite_fraction'])} not finite): these values cannot be Hounsfield units"
        )
    if hist["dense_fraction"] > c.max_dense_fraction:
        reasons.append(
            f"{_pct(hist['dense_fraction'])} of voxels are above {c.dense_hu:g} HU (denser than bone); "
            f"a chest CT has under {_pct(c.max_dense_fraction)}: noise or values that are not HU"
        )
    if hist["hu_min"] == hist["hu_max"]:
        reasons.append(f"every voxel is {hist['hu_min']:g}: a blank volume, not an image")
    elif hist["hu_min"] >= 0.0 and hist["hu_max"] <= 255.0:
        reasons.append(
            f"every value lies in 0..255 ({hist['hu_min']:g}..{hist['hu_max']:g}): an 8-bit grey image "
            "read as HU, not a CT in Hounsfield units (air is -1000 HU)"
        )
    low = hist["low_density_fraction"]
    if low < c.min_low_density_fraction:
        reasons.append(
            f"only {_pct(low)} of voxels are air or lung (< {c.lung_hu:g} HU); a chest CT has "
            f"{_pct(c.min_low_density_fraction)} or more (38-69 % on real and synthetic chests)"
        )
    elif low > c.max_low_density_fraction:
        reasons.append(
            f"{_pct(low)} of voxels are air or lung (< {c.lung_hu:g} HU): there is (almost) no body in the volume"
        )
    soft = hist["soft_tissue_fraction"]
    if soft < c.min_soft_fraction:
        reasons.append(
            f"only {_pct(soft)} of voxels are soft tissue ({c.soft_hu[0]:g}..{c.soft_hu[1]:g} HU); a chest CT "
            f"has {_pct(c.min_soft_fraction)} or more (24-58 % on real and synthetic chests)"
        )
    if lung["sampled_lung_slices"] < c.min_lung_slices:
        reasons.append(
            f"no lung found: on no slice does air inside the body cover {_pct(c.lung_slice_share)} of the "
            f"body's cross-section (largest: {_pct(lung['max_lung_share'])}); a chest CT's mid-thorax "
            "slices have 25-50 %"
        )
    if reasons:
        return ChestQuality(False, reasons, notes, figures)

    # ---------------------------------------------------------------- notes (still assessable)
    if n < c.few_slices:
        notes.append(f"only {n} slice(s): the result describes those slices, not the whole lungs")
    extent = n * sp[0]
    if extent < c.short_scan_mm:
        notes.append(
            f"the series covers {extent:.0f} mm head to feet; a full chest CT covers 250-350 mm: "
            "part of the lungs is outside it"
        )
    if lung["lung_slice_fraction"] < c.partial_lung_fraction:
        notes.append(
            f"lung on only {_pct(lung['lung_slice_fraction'])} of the slices: the scan covers part of the chest"
        )
    if np.isfinite(lung["lung_ml"]) and lung["lung_ml"] < c.small_lung_ml:
        notes.append(
            f"only {lung['lung_ml']:.0f} mL of aerated lung in the volume (adult lungs hold 3000-6000 mL): "
            "partial coverage, or lungs largely airless"
        )
    if lung["crop_slice_fraction"] > 0.5:
        notes.append("the field of view is cut inside the body (little outside air on the image border)")
    a0, a1 = c.air_fraction_range
    if not a0 <= hist["air_fraction"] <= a1:
        notes.append(
            f"{_pct(hist['air_fraction'])} of voxels are air (< {c.air_hu:g} HU); a full chest CT has "
            f"{_pct(a0)}-{_pct(a1)}"
        )
    return ChestQuality(True, reasons, notes, figures)
