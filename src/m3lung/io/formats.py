"""Readers for the non-DICOM formats: NIfTI, MHA/NRRD (SimpleITK), NumPy, 2D PNG/JPG."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.errors import InputError, warn
from m3lung.io.guards import check_read_size, check_spacing
from m3lung.io.orientation import apply_reorientation, plan_reorientation
from m3lung.io.volume import CTVolume, SourceInfo, canonical_direction, check_finite

NIFTI_SUFFIXES = (".nii", ".nii.gz")
ITK_SUFFIXES = (".mha", ".mhd", ".nrrd", ".nhdr")
NUMPY_SUFFIXES = (".npy", ".npz")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")

_LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


def suffix_of(path: str | os.PathLike[str]) -> str:
    """Lower-case suffix, with ``.nii.gz`` kept whole."""
    name = Path(path).name.lower()
    if name.endswith(".nii.gz"):
        return ".nii.gz"
    return Path(name).suffix


def _intensity_of(voxels: np.ndarray, raw_dtype: np.dtype, path: str, sink: list[str]) -> str:
    """Decide HU vs 8-bit and warn about implausible HU."""
    lo = float(voxels.min())
    hi = float(voxels.max())
    if raw_dtype == np.uint8:
        warn(f"{path}: 8-bit voxels (0..255): treated as grey values, not HU", sink)
        return "uint8"
    if lo > -500:
        warn(
            f"{path}: no voxel below {lo:g}: a chest CT in HU always holds air (about -1000 HU); these values "
            f"({lo:g}..{hi:g}) may not be Hounsfield units",
            sink,
        )
    return "HU"


def _from_axes(
    data: np.ndarray,
    axis_dirs: np.ndarray,
    spacing: Sequence[float],
    origin: np.ndarray,
    path: str,
    fmt: str,
    sink: list[str],
) -> CTVolume:
    raw_dtype = data.dtype
    vox = np.asarray(data, dtype=np.float32)
    check_finite(vox, path)
    intensity = _intensity_of(vox, raw_dtype, path, sink)
    plan = plan_reorientation(axis_dirs)
    vox, direction, sp, org = apply_reorientation(vox, plan, axis_dirs, (spacing[0], spacing[1], spacing[2]), origin)
    if plan.obliquity_deg > 1.0:
        warn(
            f"{path}: the volume is oblique ({plan.obliquity_deg:.1f}° from the nearest axis); reoriented to "
            "the nearest axes without resampling",
            sink,
        )
    src_index = plan.index_map(0, vox.shape[0])
    if vox.shape[0] == 1:
        warn(f"{path}: a single slice; patient-level results need the whole scan", sink)
    return CTVolume(
        voxels=vox,
        spacing=sp,
        origin=(float(org[0]), float(org[1]), float(org[2])),
        direction=direction,
        source_index=src_index,
        intensity=intensity,  # type: ignore[arg-type]
        source=SourceInfo(path=path, format=fmt),
        warnings=sink,
    )


def _nifti_voxels(proxy: Any) -> np.ndarray:
    """The stored voxels, with the header's scl_slope / scl_inter applied in float32.

    nibabel scales in float64 (twice the memory of the float32 volume, on top of it); here the raw
    integers are read once and scaled in place, so the peak is the raw array plus one float32 copy.
    Unscaled data keep their stored type (8-bit detection needs it).
    """
    if not hasattr(proxy, "get_unscaled"):
        return np.asanyarray(proxy)
    slope, inter = float(proxy.slope), float(proxy.inter)
    raw = np.asanyarray(proxy.get_unscaled())
    if slope == 1.0 and inter == 0.0:
        return raw
    out = raw.astype(np.float32)
    del raw
    if slope != 1.0:
        out *= np.float32(slope)
    if inter != 0.0:
        out += np.float32(inter)
    return out


def read_nifti(path: str | os.PathLike[str]) -> CTVolume:
    """Read a NIfTI file (``.nii`` / ``.nii.gz``); the sform/qform affine gives the geometry."""
    import nibabel as nib

    p = str(path)
    sink: list[str] = []
    try:
        img: Any = nib.load(p)  # reads the header only
    except Exception as exc:
        raise InputError(f"{p}: cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    itemsize = np.dtype(img.header.get_data_dtype()).itemsize
    check_read_size(img.shape, itemsize + 4, p)  # stored voxels plus their float32 copy, before inflating
    try:
        data = _nifti_voxels(img.dataobj)
    except Exception as exc:
        raise InputError(f"{p}: cannot read as NIfTI ({type(exc).__name__}: {exc})") from exc
    if data.ndim == 4 and data.shape[3] == 1:
        data = data[..., 0]
    if data.ndim == 2:
        data = data[:, :, None]
    if data.ndim != 3:
        raise InputError(f"{p}: a {data.ndim}D image of shape {data.shape}; a CT volume is 3D")
    affine = np.asarray(img.affine, dtype=np.float64)
    if not np.all(np.isfinite(affine)):
        raise InputError(f"{p}: the NIfTI affine holds NaN or infinite values; fix the header (sform/qform)")
    m = _LPS_FROM_RAS @ affine[:3, :3]
    spacing = np.linalg.norm(m, axis=0)
    if np.any(spacing <= 0):
        raise InputError(f"{p}: the NIfTI affine is degenerate (zero voxel size)")
    axis_dirs = (m / spacing).T  # row a = direction of array axis a
    origin = _LPS_FROM_RAS @ affine[:3, 3]
    return _from_axes(data, axis_dirs, spacing, origin, p, "nifti", sink)


def read_itk(path: str | os.PathLike[str]) -> CTVolume:
    """Read MHA/MHD/NRRD through SimpleITK (LPS geometry as stored)."""
    import SimpleITK as sitk

    p = str(path)
    sink: list[str] = []
    try:
        reader = sitk.ImageFileReader()
        reader.SetFileName(p)
        reader.ReadImageInformation()  # the header only
        check_read_size(reader.GetSize()[::-1], 8 * reader.GetNumberOfComponents(), p)
        check_spacing(reader.GetSpacing()[::-1], p)
        img = reader.Execute()
    except RuntimeError as exc:
        raise InputError(f"{p}: cannot read ({exc})") from exc
    if img.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"{p}: {img.GetNumberOfComponentsPerPixel()} components per voxel; a CT has one")
    dim = img.GetDimension()
    if dim not in (2, 3):
        raise InputError(f"{p}: a {dim}D image; a CT volume is 3D")
    arr = sitk.GetArrayFromImage(img)  # (z, y, x) = reversed ITK index order
    d = np.asarray(img.GetDirection(), dtype=np.float64).reshape(dim, dim)
    sp = list(img.GetSpacing())
    org = list(img.GetOrigin())
    if dim == 2:
        arr = arr[None]
        d3 = np.eye(3)
        d3[:2, :2] = d
        d, sp, org = d3, [*sp, 1.0], [*org, 0.0]
    axis_dirs = np.stack([d[:, 2], d[:, 1], d[:, 0]])
    spacing = [sp[2], sp[1], sp[0]]
    return _from_axes(arr, axis_dirs, spacing, np.asarray(org), p, "itk", sink)


def _npy_header(fh: Any) -> tuple[tuple[int, ...], np.dtype[Any]]:
    """(shape, dtype) from the header of an open ``.npy`` stream, without reading the array."""
    fmt = np.lib.format
    version = fmt.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = fmt.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = fmt.read_array_header_2_0(fh)
    else:  # format 3.0 (UTF-8 field names) has no public header reader
        shape, _, dtype = getattr(fmt, "_read_array_header")(fh, version)  # noqa: B009
    return tuple(int(n) for n in shape), np.dtype(dtype)


def read_numpy(
    path: str | os.PathLike[str], *, spacing: Sequence[float] | None = None, intensity: str | None = None
) -> CTVolume:
    """Read ``.npy`` / ``.npz`` holding a canonical ``(slices, rows, cols)`` array.

    ``spacing`` (z, y, x) in mm is required unless the ``.npz`` carries a ``spacing`` array. An ``.npz``
    holds the voxels under ``voxels``, ``hu``, ``image`` or as its only array, and may carry
    ``origin`` (LPS) and ``direction`` (3x3, rows per axis). The array is taken to be in canonical
    orientation already (see :mod:`m3lung.io.volume`).
    """
    p = str(path)
    sink: list[str] = []
    origin = np.zeros(3)
    direction = canonical_direction()
    try:
        if suffix_of(p) == ".npz":
            with np.load(p, allow_pickle=False) as z:
                keys = list(z.keys())
                key = next((k for k in ("voxels", "hu", "image") if k in keys), None)
                if key is None:
                    arrays = [k for k in keys if k not in ("spacing", "origin", "direction")]
                    if len(arrays) != 1:
                        raise InputError(f"{p}: cannot tell which array holds the voxels among {keys}")
                    key = arrays[0]
                with z.zip.open(f"{key}.npy") as fh:  # the member's header first: size before inflating
                    shape, dtype = _npy_header(fh)
                check_read_size(shape, dtype.itemsize + 4, p)
                data = z[key]
                if spacing is None and "spacing" in keys:
                    spacing = [float(s) for s in z["spacing"]]
                if "origin" in keys:
                    origin = np.asarray(z["origin"], dtype=np.float64)
                if "direction" in keys:
                    direction = np.asarray(z["direction"], dtype=np.float64)
        else:
            with open(p, "rb") as fh:  # the header first: size before reading
                shape, dtype = _npy_header(fh)
            check_read_size(shape, dtype.itemsize + 4, p)
            data = np.load(p, allow_pickle=False)
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"{p}: cannot read as NumPy ({type(exc).__name__}: {exc})") from exc
    if spacing is None:
        raise InputError(f"{p}: a NumPy array carries no voxel spacing; pass spacing=(z, y, x) in mm (CLI: --spacing)")
    if len(spacing) != 3 or not all(np.isfinite(float(s)) and float(s) > 0 for s in spacing):
        raise InputError(f"{p}: spacing must be three positive, finite numbers (z, y, x) in mm, got {spacing}")
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise InputError(f"{p}: array of shape {data.shape}; expected (slices, rows, cols)")
    vox = np.asarray(data, dtype=np.float32)
    check_finite(vox, p)
    inten = intensity or _intensity_of(vox, data.dtype, p, sink)
    if vox.shape[0] == 1:
        warn(f"{p}: a single slice; patient-level results need the whole scan", sink)
    return CTVolume(
        voxels=vox,
        spacing=(float(spacing[0]), float(spacing[1]), float(spacing[2])),
        origin=(float(origin[0]), float(origin[1]), float(origin[2])),
        direction=direction,
        intensity=inten,  # type: ignore[arg-type]
        source=SourceInfo(path=p, format="numpy"),
        warnings=sink,
    )


def read_image(path: str | os.PathLike[str], *, spacing: Sequence[float] | None = None) -> CTVolume:
    """Read a 2D PNG/JPG/BMP/TIFF as a one-slice volume of 8-bit grey values (flagged: not HU).

    Colour images are converted to grey (ITU-R 601 luma); 16-bit images are scaled to 0..255.
    ``spacing`` is (z, y, x) in mm; pixels are 1 mm when it is not given.
    """
    from PIL import Image, UnidentifiedImageError

    p = str(path)
    sink: list[str] = []
    try:
        with Image.open(p) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I", "F"):
                a = np.asarray(im, dtype=np.float64)
                lo, hi = float(a.min()), float(a.max())
                a = (a - lo) / (hi - lo) * 255.0 if hi > lo else np.zeros_like(a)
                warn(f"{p}: a {im.mode} image scaled to 0..255 grey values", sink)
            else:
                a = np.asarray(im.convert("L"), dtype=np.float64)
    except (UnidentifiedImageError, OSError) as exc:
        raise InputError(f"{p}: cannot read as an image ({exc})") from exc
    warn(f"{p}: a 2D 8-bit image: grey values, not Hounsfield units", sink)
    sp = tuple(float(s) for s in spacing) if spacing is not None else (1.0, 1.0, 1.0)
    if len(sp) != 3:
        raise InputError(f"{p}: spacing must be three numbers (z, y, x) in mm, got {spacing}")
    check_spacing(sp, p)
    return CTVolume(
        voxels=a[None].astype(np.float32),
        spacing=(sp[0], sp[1], sp[2]),
        intensity="uint8",
        source=SourceInfo(path=p, format="image2d"),
        warnings=sink,
    )
