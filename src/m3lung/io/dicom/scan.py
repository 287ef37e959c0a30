"""Scanning: find every DICOM file under a path and group its images into stacks (series)."""

from __future__ import annotations

import contextlib
import os
import warnings
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.errors import DicomError, warn
from m3lung.io.dicom.tags import _float_list, _frame_attr, _image_size, _opt_float, _opt_int, _uid
from m3lung.io.guards import non_regular_kind, require_regular_file

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
    """What a folder holds: image stacks, DICOM files without images, unreadable DICOM files.

    ``skipped`` lists the entries that are not regular files (FIFOs, devices, sockets; links followed)
    with what they are: they are never opened.
    """

    root: str
    series: list[SeriesInfo]
    non_image: dict[str, int]
    broken: list[tuple[str, str]]
    other_files: int
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: files named like DICOM (``.dcm``, ``.dicom``, ``.ima``; or empty) that are not DICOM, with why
    not_dicom: list[tuple[str, str]] = field(default_factory=list)


# --------------------------------------------------------------------------------------------- scanning
def _is_dicom_magic(path: str) -> bool:
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    return len(head) == 132 and head[128:132] == b"DICM"


def _slice_refs(ds: Any, path: str, n_frames: int = 1) -> list[_SliceRef]:
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


def _candidate_files(root: Path) -> tuple[list[str], int, list[tuple[str, str]]]:
    """Files under ``root`` worth a look, the count of other files, and the non-regular entries skipped."""
    files: list[str] = []
    skipped: list[tuple[str, str]] = []
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
            kind = non_regular_kind(p)
            if kind is not None:
                skipped.append((p, kind))
                continue
            files.append(p)
    return files, other, skipped


def scan_dicom(path: str | os.PathLike[str]) -> DicomScan:
    """List every image stack, non-image DICOM file and unreadable DICOM file under ``path``.

    ``path`` is a folder (searched recursively) or a single file. Images are grouped by
    SeriesInstanceUID and, within a series, by image size, orientation and pixel spacing (a series
    that mixes geometries, e.g. with a localizer, becomes several stacks). Entries that are not
    regular files (a FIFO, a link to a device) are never opened: in a folder they are skipped with an
    :class:`~m3lung.errors.M3LungWarning` naming them; given directly they are a
    :class:`~m3lung.errors.DicomError`.
    """
    return _scan_path(Path(path), None)


def _scan_path(root: Path, sink: list[str] | None) -> DicomScan:
    """:func:`scan_dicom`, with the warning about skipped entries also appended to ``sink``."""
    if root.is_dir():
        candidates, other, skipped = _candidate_files(root)
    else:
        require_regular_file(root, DicomError)
        candidates, other, skipped = [str(root)], 0, []
    if skipped:
        shown = ", ".join(f"{p} ({kind})" for p, kind in skipped[:5])
        more = f" and {len(skipped) - 5} more" if len(skipped) > 5 else ""
        warn(
            f"{root}: skipped {len(skipped)} entr{'y' if len(skipped) == 1 else 'ies'} that are not regular "
            f"files: {shown}{more}; m3lung opens regular files only",
            sink,
            stacklevel=4,
        )
    with _quiet_pydicom():
        scan = _scan(root, candidates, other)
    scan.skipped = skipped
    return scan


def _uid_named(path: str) -> bool:
    """A file name that is a DICOM UID (digits and dots, e.g. ``CT.1.3.12.2.16585``: its "suffix" is digits)."""
    suffix = Path(path).suffix
    return len(suffix) > 1 and suffix[1:].isdigit()


def _scan(root: Path, candidates: list[str], other: int) -> DicomScan:
    import pydicom

    groups: dict[tuple[Any, ...], SeriesInfo] = {}
    non_image: dict[str, int] = defaultdict(int)
    broken: list[tuple[str, str]] = []
    not_dicom: list[tuple[str, str]] = []
    named_dicom = {".dcm", ".dicom", ".ima"}
    for p in candidates:
        magic = _is_dicom_magic(p)
        if not magic and Path(p).suffix.lower() not in named_dicom and os.path.getsize(p) == 0:
            not_dicom.append((p, "empty"))  # e.g. UID-named slices "CT.1.2.3"; an empty .dcm is broken, below
            other += 1
            continue
        if not magic and Path(p).suffix.lower() not in _MAYBE_DICOM_SUFFIXES and not _uid_named(p):
            other += 1
            continue
        try:
            if magic:
                ds = _read_header(p)
            else:
                ds = pydicom.dcmread(p, stop_before_pixels=True, force=True)
                if "SOPClassUID" not in ds and "Rows" not in ds:
                    if Path(p).suffix.lower() in named_dicom or _uid_named(p):
                        not_dicom.append((p, "not DICOM"))
                    other += 1
                    continue
        except Exception as exc:  # any file pydicom cannot parse is listed as broken; the scan goes on
            if magic or Path(p).suffix.lower() in named_dicom or _uid_named(p):
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
        size = _image_size(ds, p)
        if isinstance(size, str):
            broken.append((p, size))
            continue
        rows, cols, n_frames = size
        try:
            refs = _slice_refs(ds, p, n_frames)
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
                rows,
                cols,
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
                    rows=rows,
                    cols=cols,
                    transfer_syntax=str(ts) if ts else None,
                    is_localizer="LOCALIZER" in image_type,
                    header=ds,
                )
                groups[key] = info
            info.slices.append(ref)
    return DicomScan(
        root=str(root),
        series=list(groups.values()),
        non_image=dict(non_image),
        broken=broken,
        other_files=other,
        not_dicom=not_dicom,
    )


def _sop_name(uid: str) -> str:
    try:
        from pydicom.uid import UID

        name = UID(uid).name
        return str(name) if name and name != uid else f"SOP class {uid}"
    except Exception:  # pragma: no cover - pydicom always has UID
        return f"SOP class {uid}"
