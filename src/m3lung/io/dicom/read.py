"""Reading: choose a series, decode it and build the canonical :class:`CTVolume` (see :mod:`m3lung.io.dicom`)."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.errors import DicomError, IntensityError, warn
from m3lung.io.checks import check_slices
from m3lung.io.dicom.decode import _auto_workers, _decode_all
from m3lung.io.dicom.geometry import (
    _check_memory,
    _order_and_dedupe,
    _pixels_of,
    _resolve_duplicates,
    _spacing_checks,
    _unit,
)
from m3lung.io.dicom.scan import DicomScan, SeriesInfo, _scan_path, _SliceRef
from m3lung.io.dicom.tags import _opt_float
from m3lung.io.guards import check_spacing
from m3lung.io.orientation import apply_reorientation, plan_reorientation
from m3lung.io.volume import IDENTIFYING_FIELDS, CTVolume, SourceInfo, check_finite

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------------------------- choosing
def _choose_series(scan: DicomScan, series_uid: str | None, sink: list[str]) -> SeriesInfo:
    if not scan.series:
        _raise_no_images(scan)
    if series_uid is not None:
        matches = [s for s in scan.series if s.series_uid == series_uid]
        if not matches:
            listing = "\n  ".join(s.label() for s in scan.series)
            raise DicomError(f"no series {series_uid} under {scan.root}; found:\n  {listing}")
        pool = matches
    else:
        pool = scan.series

    def rank(s: SeriesInfo) -> tuple[int, int, int]:
        is_ct = s.modality is None or s.modality.upper() == "CT"
        return (int(is_ct), int(not s.is_localizer), s.n_slices)

    chosen = max(pool, key=rank)
    if len(scan.series) > 1:
        listing = "; ".join(s.label() for s in scan.series)
        warn(f"{scan.root} holds {len(scan.series)} image stacks ({listing}); read {chosen.label()}", sink)
    return chosen


def _raise_no_images(scan: DicomScan) -> None:
    if scan.broken and not scan.non_image:
        first = "; ".join(f"{p} ({why})" for p, why in scan.broken[:3])
        raise DicomError(
            f"{scan.root}: no readable DICOM image; {len(scan.broken)} file(s) look like DICOM but "
            f"cannot be parsed (truncated or corrupt): {first}"
        )
    if scan.non_image:
        kinds = ", ".join(f"{n} {k}" for k, n in scan.non_image.items())
        raise DicomError(
            f"{scan.root}: the DICOM files here hold no image ({kinds}). Point m3lung at the folder of "
            "the CT image series."
        )
    if scan.other_files and not Path(scan.root).is_dir():
        from m3lung.io.formats import IMAGE_SUFFIXES, ITK_SUFFIXES, NIFTI_SUFFIXES, NUMPY_SUFFIXES

        known = "/".join(NIFTI_SUFFIXES + ITK_SUFFIXES + NUMPY_SUFFIXES + IMAGE_SUFFIXES)
        raise DicomError(
            f"{scan.root}: not a DICOM file, and not a format m3lung reads by its suffix ({known}); "
            "pass a DICOM file or folder, or the image under its usual suffix"
        )
    if scan.other_files:
        raise DicomError(
            f"{scan.root}: no DICOM files among the {scan.other_files} file(s) found. For NIfTI, MHA/NRRD, "
            "NumPy or PNG/JPG input pass the file itself, not its folder."
        )
    if scan.skipped:
        shown = ", ".join(f"{p} ({kind})" for p, kind in scan.skipped[:3])
        raise DicomError(
            f"{scan.root}: no regular file to read, only {len(scan.skipped)} FIFO/device entr(ies): {shown}; "
            "point m3lung at a folder of DICOM files"
        )
    raise DicomError(f"{scan.root}: the folder is empty (no files found, subfolders included)")


# --------------------------------------------------------------------------------------------- reading
def read_dicom(
    path: str | os.PathLike[str],
    *,
    series_uid: str | None = None,
    anonymize: bool = False,
    workers: int | None = None,
    skip_broken: bool = False,
    rescale: tuple[float, float] | None = None,
) -> CTVolume:
    """Read a DICOM folder (recursively) or one DICOM file into a canonical :class:`CTVolume`.

    Parameters
    ----------
    path : folder or file
    series_uid : read this SeriesInstanceUID instead of the CT series with the most slices.
    anonymize : drop identifying header fields and replace UIDs with hashed ones.
    workers : processes decoding compressed pixel data (default: automatic, 1 for uncompressed).
    skip_broken : warn about and skip files that look like DICOM but cannot be parsed, or whose pixel
        data cannot be decoded (e.g. a truncated slice), instead of raising.
    rescale : ``(slope, intercept)`` to use when the files lack RescaleSlope/RescaleIntercept.
    """
    sink: list[str] = []
    p = Path(path)
    if not p.exists():
        raise DicomError(f"{p}: no such file or folder")
    scan = _scan_path(p, sink)
    if scan.broken:
        listing = "; ".join(f"{bp} ({why})" for bp, why in scan.broken[:5])
        if not skip_broken and scan.series:
            raise DicomError(
                f"{p}: {len(scan.broken)} file(s) look like DICOM but cannot be read (truncated or corrupt): "
                f"{listing}. Remove them, or pass skip_broken=True (CLI: --skip-broken) to read the rest."
            )
        if scan.series:
            warn(f"{p}: skipped {len(scan.broken)} unreadable DICOM file(s): {listing}", sink)
    if scan.not_dicom and scan.series:
        listing = ", ".join(f"{bp} ({why})" for bp, why in scan.not_dicom[:5])
        more = f" and {len(scan.not_dicom) - 5} more" if len(scan.not_dicom) > 5 else ""
        warn(
            f"{p}: {len(scan.not_dicom)} file(s) named like DICOM are empty or not DICOM and were left out: "
            f"{listing}{more}; if they belonged to the series, slices are missing: re-export it",
            sink,
        )
    series = _choose_series(scan, series_uid, sink)
    return _build_volume(
        series, str(p), sink, anonymize=anonymize, workers=workers, rescale=rescale, skip_broken=skip_broken
    )


def _arrange(
    refs: list[_SliceRef], hdr: Any, path: str, sink: list[str]
) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[_SliceRef], np.ndarray, list[list[_SliceRef]], bool]:
    """Directions (row, column, normal), the slices in order, their positions and same-position groups."""
    iop = next((r.iop for r in refs if r.iop is not None), None)
    have_geometry = iop is not None and all(r.ipp is not None for r in refs)
    if have_geometry:
        assert iop is not None
        row_dir = _unit(np.asarray(iop[:3]))  # direction of increasing column index
        col_dir = _unit(np.asarray(iop[3:]))  # direction of increasing row index
        normal = _unit(np.cross(row_dir, col_dir))
        kept, positions, groups = _order_and_dedupe(refs, normal)
    else:
        warn(
            f"{path}: ImagePositionPatient/ImageOrientationPatient missing; slices ordered by InstanceNumber "
            "and geometry assumed axial. Check the slice order by eye.",
            sink,
        )
        row_dir = np.array([1.0, 0.0, 0.0])
        col_dir = np.array([0.0, 1.0, 0.0])
        normal = np.array([0.0, 0.0, 1.0])
        kept = sorted(refs, key=lambda r: (r.instance_number is None, r.instance_number or 0, r.path, r.frame or 0))
        groups = [[r] for r in kept]
        step = _opt_float(hdr.get("SpacingBetweenSlices")) or _opt_float(hdr.get("SliceThickness")) or 1.0
        positions = np.arange(len(kept), dtype=np.float64) * step
    return row_dir, col_dir, normal, kept, positions, groups, have_geometry


def _build_volume(
    series: SeriesInfo,
    path: str,
    sink: list[str],
    *,
    anonymize: bool,
    workers: int | None,
    rescale: tuple[float, float] | None,
    skip_broken: bool = False,
) -> CTVolume:
    refs = list(series.slices)
    hdr = series.header
    modality = series.modality
    if modality is None:
        warn(f"{path}: no Modality tag; assuming CT", sink)
    elif modality.upper() != "CT":
        warn(
            f"{path}: Modality is {modality}, not CT: steps that rely on Hounsfield units (lung crop, "
            "windowing) will not mean what they should",
            sink,
        )
    row_dir, col_dir, normal, kept, positions, groups, have_geometry = _arrange(refs, hdr, path, sink)
    _check_memory(len(kept), series.rows, series.cols, path, sink)
    needed_paths = sorted({r.path for g in groups for r in g})
    n_workers = workers if workers is not None else _auto_workers(len(needed_paths), series.transfer_syntax)
    failed: dict[str, str] | None = {} if skip_broken else None
    pixels = _decode_all(needed_paths, n_workers, sink, failed=failed)
    if failed:
        listing = "; ".join(f"{fp} ({why})" for fp, why in list(failed.items())[:5])
        refs = [r for r in refs if r.path not in failed]
        if not refs:
            raise DicomError(
                f"{path}: the pixel data of every file of the series cannot be decoded (truncated or "
                f"corrupt): {listing}; re-export the series"
            )
        warn(f"{path}: skipped {len(failed)} DICOM file(s) whose pixel data cannot be decoded: {listing}", sink)
        row_dir, col_dir, normal, kept, positions, groups, have_geometry = _arrange(refs, hdr, path, [])
    n = len(kept)
    if any(len(g) > 1 for g in groups):
        _resolve_duplicates(groups, pixels, positions, path, sink)

    if n == 1:
        z_spacing = _opt_float(hdr.get("SpacingBetweenSlices")) or _opt_float(hdr.get("SliceThickness")) or 1.0
        warn(
            f"{path}: a single slice; slice spacing set to {z_spacing:g} mm from the header. Patient-level "
            "results need the whole scan.",
            sink,
        )
    else:
        z_spacing = _spacing_checks(positions, path, sink)
    check_spacing((z_spacing,), path, what="the slice spacing", error=DicomError)

    first = kept[0]
    ps = first.pixel_spacing
    if ps is None:
        warn(f"{path}: PixelSpacing missing; assuming 1 mm", sink)
        ps = (1.0, 1.0)
    bad_ps = sorted({r.pixel_spacing for r in kept if r.pixel_spacing is not None and not _positive(r.pixel_spacing)})
    if bad_ps:
        check_spacing(bad_ps[0], path, what="PixelSpacing", error=DicomError)
    if have_geometry and n > 1:
        ipps = np.stack([r.ipp for r in kept])  # type: ignore[misc]
        offs = ipps - ipps[0]
        in_plane = np.stack([offs @ row_dir, offs @ col_dir], axis=1)
        drift = float(np.abs(in_plane - in_plane[0]).max())
        if drift > 0.5 * min(ps):
            warn(
                f"{path}: slice origins drift {drift:.1f} mm in-plane along the scan (gantry tilt or sheared "
                "series); voxels are stacked without correcting the shear",
                sink,
            )

    stack = np.stack([_pixels_of(r, pixels) for r in kept])
    if stack.shape[1:] != (series.rows, series.cols):
        raise DicomError(f"{path}: decoded images are {stack.shape[1:]}, header says {series.rows}x{series.cols}")
    slopes = np.array([r.slope if r.slope is not None else np.nan for r in kept], dtype=np.float64)
    intercepts = np.array([r.intercept if r.intercept is not None else np.nan for r in kept], dtype=np.float64)
    missing = np.isnan(slopes) | np.isnan(intercepts)
    if missing.any():
        if rescale is not None:
            slopes[missing], intercepts[missing] = rescale
            warn(f"{path}: RescaleSlope/RescaleIntercept missing; used the given {rescale}", sink)
        else:
            raw_min = float(stack[missing].min())
            raw_max = float(stack[missing].max())
            if raw_min < -500:
                slopes[missing], intercepts[missing] = 1.0, 0.0
                warn(
                    f"{path}: RescaleSlope/RescaleIntercept missing in {int(missing.sum())} slice(s); the stored "
                    f"values ({raw_min:g}..{raw_max:g}) already look like HU and are used as they are",
                    sink,
                )
            else:
                raise IntensityError(
                    f"{path}: RescaleSlope/RescaleIntercept are missing and the stored values "
                    f"({raw_min:g}..{raw_max:g}) cannot be Hounsfield units (air would be above -500 HU). "
                    "If you know the scanner's rescale (often slope 1, intercept -1024) pass "
                    "rescale=(slope, intercept) (CLI: --rescale SLOPE INTERCEPT)."
                )
    bad = ~np.isfinite(slopes) | (slopes == 0) | ~np.isfinite(intercepts)
    if bad.any():
        k = int(np.flatnonzero(bad)[0])
        raise IntensityError(
            f"{path}: RescaleSlope {slopes[k]:g} / RescaleIntercept {intercepts[k]:g} in {int(bad.sum())} "
            f"slice(s) (first {kept[k].path}) cannot map stored values to HU (a slope of 0 makes every voxel "
            "one value); fix the tags, or pass the scanner's rescale=(slope, intercept) (CLI: --rescale)"
        )
    voxels = stack.astype(np.float32)
    del stack
    if np.any(slopes != 1.0):
        voxels *= slopes.astype(np.float32)[:, None, None]
    if np.any(intercepts != 0.0):
        voxels += intercepts.astype(np.float32)[:, None, None]
    check_finite(voxels, path)
    lo = float(voxels.min())
    if lo > -500:
        warn(
            f"{path}: no voxel below {lo:g} HU: a chest CT always holds air (about -1000 HU); check the "
            "rescale tags or the modality",
            sink,
        )

    axis_dirs = np.stack([normal, col_dir, row_dir])
    plan = plan_reorientation(axis_dirs)
    origin = np.asarray(kept[0].ipp if kept[0].ipp is not None else np.zeros(3), dtype=np.float64)
    voxels, direction, spacing, new_origin = apply_reorientation(
        voxels, plan, axis_dirs, (z_spacing, ps[0], ps[1]), origin
    )
    if plan.obliquity_deg > 1.0:
        warn(
            f"{path}: the scan is oblique ({plan.obliquity_deg:.1f}° from the nearest axis); it was reoriented "
            "to the nearest axes without resampling (CTVolume.direction keeps the true directions)",
            sink,
        )

    # source order: InstanceNumber order when every slice has a distinct one, file order otherwise
    inst = [r.instance_number for r in kept]
    if all(i is not None for i in inst) and len(set(inst)) == n:
        src_order = np.argsort(np.argsort(np.array(inst), kind="stable"), kind="stable")
    else:
        keys = sorted(range(n), key=lambda i: (kept[i].path, kept[i].frame or 0))
        src_order = np.empty(n, dtype=np.int64)
        src_order[keys] = np.arange(n)
    files: tuple[str, ...] = tuple(r.path for r in kept)
    inst_t: tuple[int | None, ...] = tuple(inst)
    if plan.perm[0] == 0:
        idx = plan.index_map(0, n)
        src_index = src_order[idx]
        files = tuple(files[i] for i in idx)
        inst_t = tuple(inst_t[i] for i in idx)
        rel = positions - positions[0]
        slice_positions = (rel[-1] - rel[::-1]) if plan.flip[0] else rel
    else:
        warn(f"{path}: the series is not axial; it was reoriented to axial slices", sink)
        src_index = np.arange(voxels.shape[0])
        slice_positions = np.arange(voxels.shape[0], dtype=np.float64) * spacing[0]
        files, inst_t = (), ()

    meta: dict[str, str] = {}
    for key in (
        "Manufacturer",
        "ManufacturerModelName",
        "KVP",
        "ConvolutionKernel",
        "SliceThickness",
        "StudyDescription",
        "BodyPartExamined",
        "PatientPosition",
        "ImageType",
        "SeriesNumber",
        "PixelPaddingValue",
        *IDENTIFYING_FIELDS,
    ):
        v = hdr.get(key)
        if v is not None and str(v).strip() != "":
            meta[key] = str(v)
    source = SourceInfo(
        path=path,
        format="dicom",
        series_uid=series.series_uid,
        study_uid=series.study_uid,
        patient_id=(str(hdr.get("PatientID")).strip() or None) if hdr.get("PatientID") else None,
        modality=modality,
        series_description=series.description,
        transfer_syntax=series.transfer_syntax,
        files=files,
        instance_numbers=inst_t,
        metadata=meta,
    )
    vol = CTVolume(
        voxels=voxels,
        spacing=spacing,
        origin=(float(new_origin[0]), float(new_origin[1]), float(new_origin[2])),
        direction=direction,
        slice_positions=slice_positions,
        source_index=src_index,
        intensity="HU",
        source=source,
        warnings=sink,
    )
    check_slices(vol)
    log.info("read %s: %s slices %sx%s, spacing %s", path, *vol.shape, vol.spacing)
    return vol.anonymize() if anonymize else vol


def _positive(values: tuple[float, ...]) -> bool:
    return all(np.isfinite(v) and v > 0 for v in values)
