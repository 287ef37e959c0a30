"""Reading and writing CT volumes: DICOM (folders, files, compressed), NIfTI, MHA/NRRD, NumPy, 2D images.

Everything is read into one :class:`CTVolume` in one canonical orientation (see
:mod:`m3lung.io.volume`), in Hounsfield units, with its geometry and source metadata. This package does
not import torch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from m3lung.errors import InputError
from m3lung.io.atomic import atomic_dir, atomic_file, write_text_atomic
from m3lung.io.dicom import DicomScan, SeriesInfo, read_dicom, scan_dicom
from m3lung.io.formats import (
    IMAGE_SUFFIXES,
    ITK_SUFFIXES,
    NIFTI_SUFFIXES,
    NUMPY_SUFFIXES,
    read_image,
    read_itk,
    read_nifti,
    read_numpy,
    suffix_of,
)
from m3lung.io.resample import resample, resample_array
from m3lung.io.volume import CTVolume, SourceInfo, canonical_direction, grey_to_hu
from m3lung.io.write import nifti_affine, write_ct, write_dicom_series, write_mask, write_nifti

__all__ = [
    "CTVolume",
    "DicomScan",
    "SeriesInfo",
    "SourceInfo",
    "atomic_dir",
    "atomic_file",
    "canonical_direction",
    "grey_to_hu",
    "nifti_affine",
    "read_ct",
    "read_dicom",
    "resample",
    "resample_array",
    "scan_dicom",
    "write_ct",
    "write_dicom_series",
    "write_mask",
    "write_nifti",
    "write_text_atomic",
]


def read_ct(
    path: str | os.PathLike[str],
    *,
    spacing: Sequence[float] | None = None,
    series_uid: str | None = None,
    anonymize: bool = False,
    skip_broken: bool = False,
    rescale: tuple[float, float] | None = None,
    workers: int | None = None,
) -> CTVolume:
    """Read any supported CT input into a canonical :class:`CTVolume`.

    ``path`` may be a DICOM folder (searched recursively), a single DICOM file, a NIfTI file
    (``.nii``/``.nii.gz``), MHA/MHD/NRRD, ``.npy``/``.npz`` (give ``spacing`` (z, y, x) mm unless the
    ``.npz`` stores it), or a 2D PNG/JPG slice (flagged as 8-bit grey values, not HU).
    DICOM-only options: ``series_uid``, ``skip_broken``, ``rescale``, ``workers`` (see
    :func:`m3lung.io.dicom.read_dicom`). Every problem is an :class:`~m3lung.errors.M3LungError`
    with a message saying what to do; every oddity is a warning kept in ``CTVolume.warnings``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or folder")
    if p.is_dir():
        return read_dicom(
            p, series_uid=series_uid, anonymize=anonymize, skip_broken=skip_broken, rescale=rescale, workers=workers
        )
    if p.stat().st_size == 0:
        raise InputError(f"{p}: the file is empty")
    suf = suffix_of(p)
    if suf in NIFTI_SUFFIXES:
        vol = read_nifti(p)
    elif suf in ITK_SUFFIXES:
        vol = read_itk(p)
    elif suf in NUMPY_SUFFIXES:
        vol = read_numpy(p, spacing=spacing)
    elif suf in IMAGE_SUFFIXES:
        vol = read_image(p, spacing=spacing)
    else:
        return read_dicom(p, anonymize=anonymize, rescale=rescale, workers=workers)
    return vol.anonymize() if anonymize else vol
