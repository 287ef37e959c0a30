"""Read DICOM folders and files into a :class:`CTVolume` that is never silently wrong.

What this reader guarantees:

* a folder is searched recursively; every series found is listed, and the CT image series with the
  most slices is chosen (or the one you name with ``series_uid``), with a warning naming it;
* slices are ordered by their position along the slice normal (ImagePositionPatient projected on
  the cross product of the ImageOrientationPatient cosines), never by file name or InstanceNumber;
* voxels are Hounsfield units from RescaleSlope / RescaleIntercept, slice by slice;
* compressed transfer syntaxes (JPEG Lossless, JPEG-LS, JPEG 2000, RLE) decode through GDCM or
  pylibjpeg, whichever is installed;
* enhanced (multi-frame) CT files read frame by frame with their per-frame geometry;
* anything odd (no Modality, a non-CT modality, missing rescale tags, duplicate or missing slices,
  uneven spacing, gantry tilt, a single slice) is a warning with the positions concerned, and
  anything that would make the answer wrong (mixed reconstructions at one position, values that
  cannot be HU, a corrupt file) is a :class:`~m3lung.errors.DicomError` saying what to do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.errors import DicomError, IntensityError, warn
from m3lung.io.orientation import apply_reorientation, plan_reorientation
from m3lung.io.volume import IDENTIFYING_FIELDS, CTVolume, SourceInfo, check_finite

log = logging.getLogger(__name__)

#: SOP classes that carry no CT image volume even when they have Rows/Columns.
_NON_VOLUME_SOP_PREFIXES = {
    "1.2.840.10008.5.1.4.1.1.88.": "structured report",
    "1.2.840.10008.5.1.4.1.1.11.": "presentation state",
    "1.2.840.10008.5.1.4.1.1.66.": "segmentation / registration",
    "1.2.840.10008.5.1.4.1.1.481.": "radiotherapy object",
    "1.2.840.10008.5.1.4.1.1.104.": "encapsulated document",
}
_IMAGE_STORAGE_PREFIX = "1.2.840.10008.5.1.4.1.1."
_SKIP_SUFFIXES = {
    ".nii",
    ".gz",
    ".png",
    ".jpg",
    ".jpeg",
    ".json",
    ".txt",
    ".csv",
    ".md",
    ".npy",
    ".npz",
    ".html",
    ".xml",
    ".pdf",
    ".zip",
    ".mha",
    ".mhd",
    ".nrrd",
    ".raw",
    ".py",
    ".yaml",
    ".yml",
    ".log",
    ".tsv",
}
_MAYBE_DICOM_SUFFIXES = {"", ".dcm", ".dicom", ".ima", ".dic"}
#: Warn above this many slices; the reader estimates the memory it needs before allocating.
LARGE_SERIES_SLICES = 1000


@dataclass
class _SliceRef:
    """One 2D image: a single-frame file, or one frame of a multi-frame file."""

    path: str
    frame: int | None
    ipp: np.ndarray | None
    iop: np.ndarray | None
    pixel_spacing: tuple[float, float] | None
    slope: float | None
    intercept: float | None
    instance_number: int | None
    sop_uid: str | None


@dataclass
class SeriesInfo:
    """One stack of images that can form a volume (a series, or one geometry within a series)."""

    series_uid: str | None
    study_uid: str | None
    modality: str | None
    description: str | None
    rows: int
    cols: int
    transfer_syntax: str | None
    is_localizer: bool
    header: Any = field(repr=False)
    slices: list[_SliceRef] = field(default_factory=list, repr=False)

    @property
    def n_slices(self) -> int:
        return len(self.slices)

    def label(self) -> str:
        desc = f" '{self.description}'" if self.description else ""
        return (
            f"series {self.series_uid or '<no SeriesInstanceUID>'}{desc} "
            f"({self.modality or 'no Modality'}, {self.n_slices} image(s), {self.rows}x{self.cols})"
        )


@dataclass
class DicomScan:
    """What a folder holds: image stacks, DICOM files without images, unreadable DICOM files."""

    root: str
    series: list[SeriesInfo]
    non_image: dict[str, int]
    broken: list[tuple[str, str]]
    other_files: int


# --------------------------------------------------------------------------------------------- scanning
def _is_dicom_magic(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _float_list(value: Any) -> list[float] | None:
    if value is None:
        return None
    try:
        return [float(v) for v in value]
    except (TypeError, ValueError):
        return None


def _opt_float(value: Any) -> float | None:
    if value is None or value == "":
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _opt_int(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def _uid(ds: Any, name: str) -> str | None:
    v = ds.get(name)
    s = str(v).strip() if v is not None else ""
    return s or None


def _sequence_item(ds: Any, seq_name: str) -> Any:
    seq = ds.get(seq_name)
    if seq is None or len(seq) == 0:
        return None
    return seq[0]


def _frame_attr(ds: Any, frame: int, group: str, attr: str) -> Any:
    """An attribute of a multi-frame functional group: per-frame first, then shared."""
    per_frame = ds.get("PerFrameFunctionalGroupsSequence")
    if per_frame is not None and frame < len(per_frame):
        item = _sequence_item(per_frame[frame], group)
        if item is not None and attr in item:
            return item.get(attr)
    shared = _sequence_item(ds, "SharedFunctionalGroupsSequence")
    if shared is not None:
        item = _sequence_item(shared, group)
        if item is not None and attr in item:
            return item.get(attr)
    return None


def _slice_refs(ds: Any, path: str) -> list[_SliceRef]:
    n_frames = _opt_int(ds.get("NumberOfFrames")) or 1
    sop = _uid(ds, "SOPInstanceUID")
    inst = _opt_int(ds.get("InstanceNumber"))
    if n_frames == 1 and "PerFrameFunctionalGroupsSequence" not in ds:
        ipp = _float_list(ds.get("ImagePositionPatient"))
        iop = _float_list(ds.get("ImageOrientationPatient"))
        ps = _float_list(ds.get("PixelSpacing"))
        return [
            _SliceRef(
                path=path,
                frame=None,
                ipp=np.asarray(ipp) if ipp and len(ipp) == 3 else None,
                iop=np.asarray(iop) if iop and len(iop) == 6 else None,
                pixel_spacing=(ps[0], ps[1]) if ps and len(ps) == 2 else None,
                slope=_opt_float(ds.get("RescaleSlope")),
                intercept=_opt_float(ds.get("RescaleIntercept")),
                instance_number=inst,
                sop_uid=sop,
            )
        ]
    refs = []
    top_iop = _float_list(ds.get("ImageOrientationPatient"))
    top_ps = _float_list(ds.get("PixelSpacing"))
    for f in range(n_frames):
        ipp = _float_list(_frame_attr(ds, f, "PlanePositionSequence", "ImagePositionPatient"))
        iop = _float_list(_frame_attr(ds, f, "PlaneOrientationSequence", "ImageOrientationPatient")) or top_iop
        ps = _float_list(_frame_attr(ds, f, "PixelMeasuresSequence", "PixelSpacing")) or top_ps
        slope = _opt_float(_frame_attr(ds, f, "PixelValueTransformationSequence", "RescaleSlope"))
        icpt = _opt_float(_frame_attr(ds, f, "PixelValueTransformationSequence", "RescaleIntercept"))
        if slope is None:
            slope = _opt_float(ds.get("RescaleSlope"))
        if icpt is None:
            icpt = _opt_float(ds.get("RescaleIntercept"))
        refs.append(
            _SliceRef(
                path=path,
                frame=f,
                ipp=np.asarray(ipp) if ipp and len(ipp) == 3 else None,
                iop=np.asarray(iop) if iop and len(iop) == 6 else None,
                pixel_spacing=(ps[0], ps[1]) if ps and len(ps) == 2 else None,
                slope=slope,
                intercept=icpt,
                instance_number=f + 1,
                sop_uid=f"{sop}#{f}" if sop else None,
            )
        )
    return refs


def _non_volume_kind(sop_class: str | None) -> str | None:
    if not sop_class:
        return None
    for prefix, kind in _NON_VOLUME_SOP_PREFIXES.items():
        if sop_class.startswith(prefix):
            return kind
    return None


@contextlib.contextmanager
def _quiet_pydicom() -> Iterator[None]:
    """Silence pydicom's validation chatter (e.g. non-numeric UIDs, common in real exports)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"pydicom(\.|$)")
        yield


def _read_header(path: str) -> Any:
    import pydicom

    return pydicom.dcmread(path, stop_before_pixels=True)


def _candidate_files(root: Path) -> tuple[list[str], int]:
    files: list[str] = []
    other = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith(".") or name.upper() == "DICOMDIR":
                continue
            p = os.path.join(dirpath, name)
            if Path(name).suffix.lower() in _SKIP_SUFFIXES:
                other += 1
                continue
            files.append(p)
    return files, other


def scan_dicom(path: str | os.PathLike[str]) -> DicomScan:
    """List every image stack, non-image DICOM file and unreadable DICOM file under ``path``.

    ``path`` is a folder (searched recursively) or a single file. Images are grouped by
    SeriesInstanceUID and, within a series, by image size, orientation and pixel spacing (a series
    that mixes geometries, e.g. with a localizer, becomes several stacks).
    """
    root = Path(path)
    if root.is_dir():
        candidates, other = _candidate_files(root)
    else:
        candidates, other = [str(root)], 0
    with _quiet_pydicom():
        return _scan(root, candidates, other)


def _scan(root: Path, candidates: list[str], other: int) -> DicomScan:
    import pydicom

    groups: dict[tuple[Any, ...], SeriesInfo] = {}
    non_image: dict[str, int] = defaultdict(int)
    broken: list[tuple[str, str]] = []
    for p in candidates:
        magic = _is_dicom_magic(p)
        if not magic and Path(p).suffix.lower() not in _MAYBE_DICOM_SUFFIXES:
            other += 1
            continue
        try:
            if magic:
                ds = _read_header(p)
            else:
                ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
                if "SOPClassUID" not in ds and "Rows" not in ds:
                    other += 1
                    continue
        except Exception as exc:  # any file pydicom cannot parse is listed as broken; the scan goes on
            if magic or Path(p).suffix.lower() in {".dcm", ".dicom", ".ima"}:
                broken.append((p, f"{type(exc).__name__}: {exc}"))
            else:
                other += 1
            continue
        sop_class = _uid(ds, "SOPClassUID") or _uid(getattr(ds, "file_meta", {}), "MediaStorageSOPClassUID")
        kind = _non_volume_kind(sop_class)
        if kind is None and ("Rows" not in ds or "Columns" not in ds):
            if sop_class and sop_class.startswith(_IMAGE_STORAGE_PREFIX):
                # an image storage object without image attributes: the header was cut short
                broken.append((p, f"{_sop_name(sop_class)} without Rows/Columns (truncated header?)"))
                continue
            kind = _sop_name(sop_class) if sop_class else "DICOM object without an image"
        if kind is not None:
            non_image[kind] += 1
            continue
        try:
            refs = _slice_refs(ds, p)
        except Exception as exc:  # malformed geometry tags of any kind
            broken.append((p, f"unreadable geometry: {exc}"))
            continue
        series_uid = _uid(ds, "SeriesInstanceUID")
        image_type = [str(t).upper() for t in (ds.get("ImageType") or [])]
        for ref in refs:
            iop_key = tuple(np.round(ref.iop, 3)) if ref.iop is not None else None
            ps_key = tuple(np.round(ref.pixel_spacing, 4)) if ref.pixel_spacing is not None else None
            key = (
                series_uid
                or f"<none:{ds.get('SeriesNumber')}:{_uid(ds, 'StudyInstanceUID')}:{_uid(ds, 'FrameOfReferenceUID')}>",
                int(ds.Rows),
                int(ds.Columns),
                iop_key,
                ps_key,
            )
            info = groups.get(key)
            if info is None:
                ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
                info = SeriesInfo(
                    series_uid=series_uid,
                    study_uid=_uid(ds, "StudyInstanceUID"),
                    modality=(str(ds.get("Modality")).strip() or None) if ds.get("Modality") else None,
                    description=(str(ds.get("SeriesDescription")).strip() or None)
                    if ds.get("SeriesDescription")
                    else None,
                    rows=int(ds.Rows),
                    cols=int(ds.Columns),
                    transfer_syntax=str(ts) if ts else None,
                    is_localizer="LOCALIZER" in image_type,
                    header=ds,
                )
                groups[key] = info
            info.slices.append(ref)
    return DicomScan(
        root=str(root), series=list(groups.values()), non_image=dict(non_image), broken=broken, other_files=other
    )


def _sop_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return str(name) if name and name != uid else f"SOP class {uid}"
    except Exception:  # pragma: no cover - pydicom always has UID
        return f"SOP class {uid}"


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
    if scan.other_files:
        raise DicomError(
            f"{scan.root}: no DICOM files among the {scan.other_files} file(s) found. For NIfTI, MHA/NRRD, "
            "NumPy or PNG/JPG input pass the file itself, not its folder."
        )
    raise DicomError(f"{scan.root}: the folder is empty (no files found, subfolders included)")


# --------------------------------------------------------------------------------------------- decoding
def _decode_file(path: str) -> np.ndarray:
    """Pixel data of one file as stored (no rescale): (rows, cols) or (frames, rows, cols)."""
    import pydicom

    with _quiet_pydicom():
        ds = pydicom.dcmread(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ValueError("the file has no pixel data (truncated before the image?)")
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if spp != 1:
        raise ValueError(f"SamplesPerPixel is {spp}: a colour image, not a CT slice")
    arr = ds.pixel_array
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "MONOCHROME1":
        bits = int(ds.get("BitsStored", 16))
        arr = ((1 << bits) - 1) - arr if ds.get("PixelRepresentation", 0) == 0 else -arr
    return np.asarray(arr)


def _decode_all(paths: Sequence[str], workers: int) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}

    def fail(p: str, exc: BaseException) -> DicomError:
        return DicomError(
            f"cannot decode the pixel data of {p}: {type(exc).__name__}: {exc}. The file may be truncated "
            "or corrupt (re-export it or remove it from the folder); for compressed transfer syntaxes "
            "make sure python-gdcm or pylibjpeg with pylibjpeg-libjpeg / pylibjpeg-openjpeg / "
            "pylibjpeg-rle is installed."
        )

    if workers > 1 and len(paths) > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            futures = {p: ex.submit(_decode_file, p) for p in paths}
            for p, fut in futures.items():
                try:
                    out[p] = fut.result()
                except Exception as exc:
                    raise fail(p, exc) from exc
        return out
    for p in paths:
        try:
            out[p] = _decode_file(p)
        except Exception as exc:
            raise fail(p, exc) from exc
    return out


def _auto_workers(n_files: int, transfer_syntax: str | None) -> int:
    uncompressed = transfer_syntax in (None, "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
    if uncompressed or n_files < 48:
        return 1
    return max(1, min(4, os.cpu_count() or 1))


# --------------------------------------------------------------------------------------------- geometry
def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v)


def _check_memory(n: int, rows: int, cols: int, path: str, sink: list[str]) -> None:
    need = n * rows * cols * 4 * 2  # float32 voxels plus the stored pixels while converting
    if n > LARGE_SERIES_SLICES:
        warn(
            f"{path}: {n} slices is unusually many for a chest CT; reading needs about {need / 2**30:.1f} GiB",
            sink,
        )
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return
    if need > avail:
        raise DicomError(
            f"{path}: {n} slices of {rows}x{cols} need about {need / 2**30:.1f} GiB but only "
            f"{avail / 2**30:.1f} GiB of memory is free; read a subset of the series or use a larger machine"
        )


def _order_and_dedupe(
    refs: list[_SliceRef], normal: np.ndarray
) -> tuple[list[_SliceRef], np.ndarray, list[list[_SliceRef]]]:
    """Sort by position along ``normal``; merge same-position slices. Returns refs, positions, groups."""
    pos = np.array([float(np.dot(r.ipp, normal)) for r in refs])  # type: ignore[arg-type]
    order = np.argsort(pos, kind="stable")
    refs = [refs[i] for i in order]
    pos = pos[order]
    groups: list[list[_SliceRef]] = [[refs[0]]]
    for r, p, prev in zip(refs[1:], pos[1:], pos[:-1], strict=True):
        if abs(p - prev) < 1e-3:
            groups[-1].append(r)
        else:
            groups.append([r])
    kept = [g[0] for g in groups]
    kept_pos = np.array([float(np.dot(r.ipp, normal)) for r in kept])  # type: ignore[arg-type]
    return kept, kept_pos, groups


def _resolve_duplicates(
    groups: list[list[_SliceRef]], pixels: dict[str, np.ndarray], positions: np.ndarray, path: str, sink: list[str]
) -> None:
    dup_positions = []
    for g, z in zip(groups, positions, strict=True):
        if len(g) < 2:
            continue
        first = _pixels_of(g[0], pixels)
        for other in g[1:]:
            same_uid = other.sop_uid is not None and other.sop_uid == g[0].sop_uid
            if not same_uid and not np.array_equal(first, _pixels_of(other, pixels)):
                raise DicomError(
                    f"{path}: two different images at the same position ({z:.2f} mm along the slice normal): "
                    f"{g[0].path} and {other.path}. The folder probably mixes two reconstructions of one "
                    "series (e.g. lung and soft-tissue kernels); keep one of them, or pass series_uid."
                )
        dup_positions.append(round(float(z), 2))
    if dup_positions:
        shown = ", ".join(f"{z:g}" for z in dup_positions[:10])
        warn(
            f"{path}: {len(dup_positions)} slice position(s) appear more than once with identical images "
            f"(duplicates dropped) at {shown} mm",
            sink,
        )


def _pixels_of(ref: _SliceRef, pixels: dict[str, np.ndarray]) -> np.ndarray:
    arr = pixels[ref.path]
    if ref.frame is not None and arr.ndim == 3:
        return arr[ref.frame]
    return arr


def _spacing_checks(positions: np.ndarray, path: str, sink: list[str]) -> float:
    """Median slice spacing; warns about uneven spacing and gaps with their positions."""
    diffs = np.diff(positions)
    med = float(np.median(diffs))
    tol = max(0.01, 0.01 * med)
    gaps = np.nonzero(diffs > 1.5 * med)[0]
    if gaps.size:
        shown = ", ".join(
            f"{positions[i]:.2f}→{positions[i + 1]:.2f} mm (~{round(diffs[i] / med) - 1} missing)" for i in gaps[:10]
        )
        warn(f"{path}: {gaps.size} gap(s) in the slice positions (spacing {med:g} mm): {shown}", sink)
    uneven = np.nonzero(np.abs(diffs - med) > tol)[0]
    uneven = np.setdiff1d(uneven, gaps)
    if uneven.size:
        shown = ", ".join(f"{positions[i]:.2f}→{positions[i + 1]:.2f} ({diffs[i]:.3f} mm)" for i in uneven[:10])
        warn(
            f"{path}: slice spacing is uneven at {uneven.size} place(s) (median {med:g} mm): {shown}; the exact "
            "positions are kept in CTVolume.slice_positions and used when resampling",
            sink,
        )
    return med


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
    skip_broken : warn about and skip files that look like DICOM but cannot be parsed, instead of
        raising.
    rescale : ``(slope, intercept)`` to use when the files lack RescaleSlope/RescaleIntercept.
    """
    sink: list[str] = []
    p = Path(path)
    if not p.exists():
        raise DicomError(f"{p}: no such file or folder")
    scan = scan_dicom(p)
    if scan.broken:
        listing = "; ".join(f"{bp} ({why})" for bp, why in scan.broken[:5])
        if not skip_broken and scan.series:
            raise DicomError(
                f"{p}: {len(scan.broken)} file(s) look like DICOM but cannot be read (truncated or corrupt): "
                f"{listing}. Remove them, or pass skip_broken=True (CLI: --skip-broken) to read the rest."
            )
        if scan.series:
            warn(f"{p}: skipped {len(scan.broken)} unreadable DICOM file(s): {listing}", sink)
    series = _choose_series(scan, series_uid, sink)
    return _build_volume(series, str(p), sink, anonymize=anonymize, workers=workers, rescale=rescale)


def _build_volume(
    series: SeriesInfo,
    path: str,
    sink: list[str],
    *,
    anonymize: bool,
    workers: int | None,
    rescale: tuple[float, float] | None,
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

    n = len(kept)
    _check_memory(n, series.rows, series.cols, path, sink)
    needed_paths = sorted({r.path for g in groups for r in g})
    n_workers = workers if workers is not None else _auto_workers(len(needed_paths), series.transfer_syntax)
    pixels = _decode_all(needed_paths, n_workers)
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

    first = kept[0]
    ps = first.pixel_spacing
    if ps is None:
        warn(f"{path}: PixelSpacing missing; assuming 1 mm", sink)
        ps = (1.0, 1.0)
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
    log.info("read %s: %s slices %sx%s, spacing %s", path, *vol.shape, vol.spacing)
    return vol.anonymize() if anonymize else vol
