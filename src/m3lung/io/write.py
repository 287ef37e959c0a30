"""Write a :class:`CTVolume` (or a mask aligned with one) to NIfTI, MHA/NRRD, NumPy or a DICOM series."""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Literal

import numpy as np

from m3lung.errors import InputError, IntensityError
from m3lung.io.atomic import atomic_dir, atomic_file
from m3lung.io.formats import ITK_SUFFIXES, NIFTI_SUFFIXES, suffix_of
from m3lung.io.volume import CTVolume

_RAS_FROM_LPS = np.diag([-1.0, -1.0, 1.0])

TransferSyntax = Literal["explicit", "rle", "jpeg2000"]


def nifti_affine(volume: CTVolume) -> np.ndarray:
    """RAS affine for the NIfTI array ``voxels.transpose(2, 1, 0)`` (axes: cols, rows, slices)."""
    a = np.eye(4)
    lps = volume.affine()  # maps (k, i, j) -> LPS
    cols = lps[:3, [2, 1, 0]]  # reorder to (j, i, k)
    a[:3, :3] = _RAS_FROM_LPS @ cols
    a[:3, 3] = _RAS_FROM_LPS @ lps[:3, 3]
    return a


def _check_uneven(volume: CTVolume, what: str) -> None:
    pos = volume.slice_positions
    assert pos is not None
    if volume.n_slices > 2:
        expected = np.arange(volume.n_slices) * volume.spacing[0]
        if np.abs(pos - expected).max() > 0.05 * volume.spacing[0]:
            volume.warnings.append(
                f"{what} stores a regular slice spacing of {volume.spacing[0]:g} mm; the source's uneven slice "
                "positions are not kept (resample first to make them regular)"
            )


def _nifti_data(array: np.ndarray, dtype: str | None) -> np.ndarray:
    data = np.asarray(array).transpose(2, 1, 0)
    if dtype is not None:
        return data.astype(dtype)
    if data.dtype == np.bool_:
        return data.astype(np.uint8)
    if data.dtype.kind == "f" and data.size and np.array_equal(data, np.round(data)):
        lo, hi = float(data.min()), float(data.max())
        if lo >= -32768 and hi <= 32767:
            return data.astype(np.int16)
    return data


def write_nifti(
    volume: CTVolume,
    path: str | os.PathLike[str],
    *,
    array: np.ndarray | None = None,
    dtype: str | None = None,
    slope: float | None = None,
) -> Path:
    """Write ``volume`` (or ``array`` on its grid, e.g. a mask) as NIfTI-1 with scanner-space affine.

    Integer-valued float data is stored as int16, booleans as uint8, anything else as given.
    ``slope`` sets the header's scl_slope (viewers show stored value x slope), e.g. a map kept as
    uint8 0..255 with slope 1/255 reads as 0..1.
    """
    import nibabel as nib

    data = volume.voxels if array is None else np.asarray(array)
    if data.shape != volume.shape:
        raise InputError(f"array of shape {data.shape} does not match the volume's {volume.shape}")
    _check_uneven(volume, "NIfTI")
    img = nib.Nifti1Image(_nifti_data(data, dtype), nifti_affine(volume))
    img.set_sform(img.affine, code=1)
    img.set_qform(img.affine, code=1)
    img.header.set_xyzt_units("mm")
    if slope is not None:
        img.header.set_slope_inter(slope, 0.0)
    target = Path(path)
    with atomic_file(target) as tmp:
        nib.save(img, str(tmp))
    return target


def write_itk(volume: CTVolume, path: str | os.PathLike[str], *, array: np.ndarray | None = None) -> Path:
    """Write MHA/NRRD through SimpleITK (LPS geometry)."""
    import SimpleITK as sitk

    data = volume.voxels if array is None else np.asarray(array)
    img = sitk.GetImageFromArray(data.astype(np.uint8) if data.dtype == np.bool_ else data)
    img.SetSpacing((volume.spacing[2], volume.spacing[1], volume.spacing[0]))
    img.SetOrigin(volume.origin)
    d = volume.direction  # rows per array axis (k, i, j); ITK columns per index axis (x=j, y=i, z=k)
    img.SetDirection(tuple(np.stack([d[2], d[1], d[0]], axis=1).ravel()))
    target = Path(path)
    with atomic_file(target) as tmp:
        sitk.WriteImage(img, str(tmp), useCompression=True)
    return target


def write_numpy(volume: CTVolume, path: str | os.PathLike[str]) -> Path:
    """Write an ``.npz`` with ``voxels``, ``spacing``, ``origin``, ``direction`` (readable by read_ct)."""
    target = Path(path)
    with atomic_file(target) as tmp, open(tmp, "wb") as fh:
        np.savez(
            fh,
            voxels=volume.voxels,
            spacing=np.asarray(volume.spacing),
            origin=np.asarray(volume.origin),
            direction=volume.direction,
        )
    return target


def write_dicom_series(
    volume: CTVolume,
    folder: str | os.PathLike[str],
    *,
    series_uid: str | None = None,
    study_uid: str | None = None,
    patient_id: str = "ANONYMOUS",
    patient_name: str = "",
    series_description: str = "m3lung",
    transfer_syntax: TransferSyntax = "explicit",
    file_names: list[str] | None = None,
    instance_order: Literal["superior_first", "inferior_first"] = "superior_first",
    overwrite: bool = False,
) -> Path:
    """Write a HU volume as a CT Image Storage series, one file per slice, into a new folder.

    Voxels are rounded to whole HU and stored as signed 16-bit with RescaleIntercept -1024. Geometry
    tags (ImagePositionPatient from ``slice_positions``, ImageOrientationPatient, PixelSpacing) make
    the series read back in the same orientation. ``file_names`` (one per slice, canonical order)
    lets callers shuffle names; InstanceNumber counts from the head by default, as scanners do.
    The folder appears only when complete.
    """
    import pydicom
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.uid import (
        PYDICOM_IMPLEMENTATION_UID,
        CTImageStorage,
        ExplicitVRLittleEndian,
        JPEG2000Lossless,
        RLELossless,
        generate_uid,
    )

    volume.require_hu("writing a CT DICOM series")
    n = volume.n_slices
    if file_names is not None and (len(file_names) != n or len(set(file_names)) != n):
        raise InputError(f"file_names must hold {n} distinct names, one per slice")
    syntax = {"explicit": ExplicitVRLittleEndian, "rle": RLELossless, "jpeg2000": JPEG2000Lossless}.get(transfer_syntax)
    if syntax is None:
        raise InputError(f"unknown transfer syntax {transfer_syntax!r}; use explicit, rle or jpeg2000")
    intercept = -1024.0
    raw = np.round(volume.voxels - intercept)
    if raw.min() < -32768 or raw.max() > 32767:
        raise IntensityError("HU values outside what 16-bit DICOM can hold with intercept -1024")
    raw = raw.astype(np.int16)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = generate_uid()
    now = _dt.datetime.now()
    d = volume.direction
    iop = [*(float(v) for v in d[2]), *(float(v) for v in d[1])]
    origin = np.asarray(volume.origin)
    pos = volume.slice_positions
    assert pos is not None
    with atomic_dir(folder, overwrite=overwrite) as tmp:
        for k in range(n):
            sop_uid = generate_uid()
            meta = FileMetaDataset()
            meta.MediaStorageSOPClassUID = CTImageStorage
            meta.MediaStorageSOPInstanceUID = sop_uid
            meta.TransferSyntaxUID = ExplicitVRLittleEndian
            meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
            ds = Dataset()
            ds.file_meta = meta
            ds.preamble = b"\0" * 128
            ds.SpecificCharacterSet = "ISO_IR 100"
            ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
            ds.SOPClassUID = CTImageStorage
            ds.SOPInstanceUID = sop_uid
            ds.StudyDate = ds.SeriesDate = ds.ContentDate = now.strftime("%Y%m%d")
            ds.StudyTime = ds.SeriesTime = ds.ContentTime = now.strftime("%H%M%S")
            ds.Modality = "CT"
            ds.Manufacturer = "m3lung"
            ds.SeriesDescription = series_description
            ds.PatientName = patient_name
            ds.PatientID = patient_id
            ds.StudyInstanceUID = study_uid
            ds.SeriesInstanceUID = series_uid
            ds.FrameOfReferenceUID = frame_uid
            ds.SeriesNumber = 1
            ds.InstanceNumber = (n - k) if instance_order == "superior_first" else (k + 1)
            ipp = origin + float(pos[k]) * d[0]
            ds.ImagePositionPatient = [float(v) for v in ipp]
            ds.ImageOrientationPatient = iop
            ds.SliceLocation = float(ipp[2])
            ds.SliceThickness = float(volume.spacing[0])
            ds.PixelSpacing = [float(volume.spacing[1]), float(volume.spacing[2])]
            ds.PatientPosition = "HFS"
            ds.SamplesPerPixel = 1
            ds.PhotometricInterpretation = "MONOCHROME2"
            ds.Rows, ds.Columns = int(volume.shape[1]), int(volume.shape[2])
            ds.BitsAllocated = 16
            ds.BitsStored = 16
            ds.HighBit = 15
            ds.PixelRepresentation = 1
            ds.RescaleIntercept = intercept
            ds.RescaleSlope = 1.0
            ds.RescaleType = "HU"
            ds.WindowCenter = -600
            ds.WindowWidth = 1200
            ds.PixelData = raw[k].tobytes()
            if syntax != ExplicitVRLittleEndian:
                ds.compress(syntax, raw[k])
            name = file_names[k] if file_names is not None else f"IM{ds.InstanceNumber:05d}.dcm"
            pydicom.dcmwrite(tmp / name, ds, enforce_file_format=True)
    return Path(folder)


def write_ct(
    volume: CTVolume,
    path: str | os.PathLike[str],
    *,
    overwrite: bool = True,
    **dicom_options: object,
) -> Path:
    """Write ``volume`` by the target's suffix: ``.nii``/``.nii.gz``, ``.mha``/``.nrrd``, ``.npz``, or
    a folder (no suffix) for a DICOM series (``dicom_options`` go to :func:`write_dicom_series`)."""
    p = Path(path)
    suf = suffix_of(p)
    if suf in NIFTI_SUFFIXES:
        return write_nifti(volume, p)
    if suf in ITK_SUFFIXES:
        return write_itk(volume, p)
    if suf == ".npz":
        return write_numpy(volume, p)
    if suf in ("", ".dcm", ".dicom"):
        return write_dicom_series(volume, p, overwrite=overwrite, **dicom_options)  # type: ignore[arg-type]
    raise InputError(f"{p}: cannot tell the format from the suffix {suf!r}; use .nii.gz, .mha, .nrrd, .npz or a folder")


def write_mask(mask: np.ndarray, reference: CTVolume, path: str | os.PathLike[str]) -> Path:
    """Write a label map (same shape as ``reference``) as NIfTI/MHA on the reference's grid (uint8)."""
    m = np.asarray(mask)
    if m.shape != reference.shape:
        raise InputError(f"mask of shape {m.shape} does not match the volume's {reference.shape}")
    suf = suffix_of(path)
    if suf in NIFTI_SUFFIXES:
        return write_nifti(reference, path, array=m, dtype="uint8")
    if suf in ITK_SUFFIXES:
        return write_itk(reference, path, array=m.astype(np.uint8))
    raise InputError(f"{path}: masks are written as .nii.gz or .mha/.nrrd")
