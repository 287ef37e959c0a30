"""Reading and writing CT volumes: DICOM (folders, files, compressed), NIfTI, MHA/NRRD, NumPy, 2D images.

Everything is read into one :class:`CTVolume` in one canonical orientation (see
:mod:`m3lung.io.volume`), in Hounsfield units, with its geometry and source metadata. This package does
not import torch.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from m3lung.errors import InputError, M3LungWarning, warn
from m3lung.io.atomic import (
    atomic_dir,
    atomic_file,
    require_input_folder,
    require_output_folder,
    write_text_atomic,
)
from m3lung.io.checks import check_slices
from m3lung.io.dicom import LARGE_SERIES_SLICES, DicomScan, SeriesInfo, read_dicom, scan_dicom
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
from m3lung.io.guards import MAX_VOLUME_GIB, require_regular_file
from m3lung.io.resample import resample, resample_array
from m3lung.io.volume import CTVolume, SourceInfo, canonical_direction, grey_to_hu
from m3lung.io.write import nifti_affine, write_ct, write_dicom_series, write_mask, write_nifti

__all__ = [
    "MAX_VOLUME_GIB",
    "CTVolume",
    "DicomScan",
    "SeriesInfo",
    "SourceInfo",
    "atomic_dir",
    "atomic_file",
    "canonical_direction",
    "check_slices",
    "grey_to_hu",
    "nifti_affine",
    "read_ct",
    "read_dicom",
    "read_mask",
    "require_input_folder",
    "require_output_folder",
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
    require_regular_file(p)
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
    if vol.n_slices > LARGE_SERIES_SLICES:
        warn(f"{p}: {vol.n_slices} slices is unusually many for a chest CT", vol.warnings)
    check_slices(vol)  # DICOM volumes are checked by read_dicom
    return vol.anonymize() if anonymize else vol


def read_mask(path: str | os.PathLike[str], *, like: CTVolume | None = None) -> np.ndarray:
    """Read a label map (NIfTI, MHA/NRRD) into the canonical orientation as an integer array.

    Labels are returned as uint8 (int32 when they exceed 255). With ``like``, the mask must lie on that
    volume's grid (same shape, spacing and origin within 0.01 mm), else :class:`InputError`.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file")
    require_regular_file(p)
    suf = suffix_of(p)
    if suf not in NIFTI_SUFFIXES + ITK_SUFFIXES:
        raise InputError(f"{p}: label maps are read from .nii/.nii.gz/.mha/.nrrd files")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M3LungWarning)  # grey-value/HU warnings do not apply to labels
        vol = read_nifti(p) if suf in NIFTI_SUFFIXES else read_itk(p)
    v = vol.voxels
    if not np.array_equal(v, np.round(v)) or v.min() < 0:
        raise InputError(f"{p}: not a label map (values must be non-negative integers)")
    if like is not None:
        same = (
            vol.shape == like.shape
            and np.allclose(vol.spacing, like.spacing, atol=1e-3)
            and np.allclose(vol.origin, like.origin, atol=1e-2)
        )
        if not same:
            raise InputError(
                f"{p}: the mask's grid ({vol.shape}, spacing {vol.spacing}, origin {vol.origin}) does not "
                f"match the volume's ({like.shape}, spacing {like.spacing}, origin {like.origin})"
            )
    return v.astype(np.uint8 if v.max() <= 255 else np.int32)
