"""Guards before reading: regular files only, header size limits, impossible geometry."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pydicom
import pytest

import m3lung
from helpers import make_volume, synthetic_chest
from m3lung.errors import DicomError, InputError, IntensityError, M3LungWarning
from m3lung.io import CTVolume, read_ct, read_mask, write_dicom_series, write_nifti
from m3lung.io.guards import MAX_VOLUME_GIB, check_read_size, max_volume_gib

SRC = str(Path(m3lung.__file__).resolve().parents[1])
GUARD_S = 120  # a hang guard, not a timing: a blocked open() would otherwise hang CI for ever


@pytest.fixture
def vol() -> CTVolume:
    return make_volume(synthetic_chest(n=8, size=64))


def _edit(folder: Path, fn) -> None:
    for f in sorted(folder.iterdir()):
        ds = pydicom.dcmread(f)
        fn(ds, f)
        ds.save_as(f, enforce_file_format=True)


def _run(code: str) -> dict:
    """Run ``code`` in a fresh interpreter (killed after GUARD_S seconds); it prints one JSON object."""
    env = {**os.environ, "PYTHONPATH": SRC}
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=GUARD_S, env=env, check=False
        )
    except subprocess.TimeoutExpired:
        pytest.fail("reading blocked on a non-regular file (FIFO or device)")
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


_READ_FOLDER = """
import json, warnings
from m3lung.io import read_ct, scan_dicom
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    v = read_ct({folder!r})
    s = scan_dicom({folder!r})
print(json.dumps({{"shape": list(v.shape), "warnings": v.warnings, "skipped": s.skipped,
                  "emitted": [str(w.message) for w in caught]}}))
"""

_READ_FILE = """
import json
from m3lung.errors import M3LungError
from m3lung.io import read_ct, read_dicom, scan_dicom
out = {{}}
for name, fn in (("read_ct", read_ct), ("read_dicom", read_dicom), ("scan_dicom", scan_dicom)):
    try:
        fn({path!r})
        out[name] = None
    except M3LungError as exc:
        out[name] = [type(exc).__name__, str(exc)]
print(json.dumps(out))
"""


@pytest.mark.parametrize("kind", ["fifo", "devzero"])
def test_non_regular_entries_in_a_folder_are_skipped_with_a_warning(vol, tmp_path, kind):
    folder = tmp_path / "s"
    write_dicom_series(vol, folder)
    odd = folder / ("pipe.dcm" if kind == "fifo" else "zero.dcm")
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.symlink_to("/dev/zero")
    got = _run(_READ_FOLDER.format(folder=str(folder)))
    assert got["shape"] == list(vol.shape)
    assert [p for p, _ in got["skipped"]] == [str(odd)]
    assert any(str(odd) in w and "not regular" in w for w in got["warnings"])
    assert any(str(odd) in w for w in got["emitted"])
    # the command line's info does not block either
    env = {**os.environ, "PYTHONPATH": SRC}
    try:
        info = subprocess.run(
            [sys.executable, "-m", "m3lung", "info", str(folder)],
            capture_output=True,
            text=True,
            timeout=GUARD_S,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("m3lung info blocked on a non-regular file")
    assert info.returncode == 0, info.stderr[-2000:]
    assert str(odd) in info.stdout


@pytest.mark.parametrize("kind", ["fifo", "devzero"])
def test_non_regular_file_given_directly_is_refused(tmp_path, kind):
    odd = tmp_path / ("pipe.dcm" if kind == "fifo" else "zero.nii.gz")
    if kind == "fifo":
        os.mkfifo(odd)
    else:
        odd.symlink_to("/dev/zero")
    got = _run(_READ_FILE.format(path=str(odd)))
    what = "FIFO" if kind == "fifo" else "character device"
    for name, cls in (("read_ct", "InputError"), ("read_dicom", "DicomError"), ("scan_dicom", "DicomError")):
        assert got[name] is not None, f"{name} accepted a {what}"
        err, msg = got[name]
        assert err == cls and what in msg and "not a regular file" in msg and "\n" not in msg


def test_folder_of_only_non_regular_entries(tmp_path):
    os.mkfifo(tmp_path / "pipe.dcm")
    with pytest.warns(M3LungWarning, match="not regular"), pytest.raises(DicomError, match="no regular file"):
        read_ct(tmp_path)


def test_mask_from_a_device_is_refused(tmp_path):
    (tmp_path / "m.nii.gz").symlink_to("/dev/zero")
    with pytest.raises(InputError, match="character device"):
        read_mask(tmp_path / "m.nii.gz")


# ------------------------------------------------------------------------------------------ geometry
@pytest.mark.parametrize("value", [0.0, -0.7])
def test_dicom_pixel_spacing_not_positive_is_an_error(vol, tmp_path, value):
    write_dicom_series(vol, tmp_path / "s")
    _edit(tmp_path / "s", lambda ds, f: setattr(ds, "PixelSpacing", [value, value]))
    with pytest.raises(DicomError, match=r"PixelSpacing .* must be positive"):
        read_ct(tmp_path / "s")


def test_dicom_slice_spacing_not_positive_is_an_error(vol, tmp_path):
    write_dicom_series(vol, tmp_path / "s")

    def drop_position(ds, f):
        del ds.ImagePositionPatient
        ds.SpacingBetweenSlices = -2.0

    _edit(tmp_path / "s", drop_position)
    with pytest.warns(M3LungWarning), pytest.raises(DicomError, match=r"slice spacing .* must be positive"):
        read_ct(tmp_path / "s")


def test_rescale_slope_zero_is_an_error(vol, tmp_path):
    write_dicom_series(vol, tmp_path / "s")
    _edit(tmp_path / "s", lambda ds, f: setattr(ds, "RescaleSlope", 0))
    with pytest.raises(IntensityError, match="RescaleSlope 0"):
        read_ct(tmp_path / "s")
    with pytest.raises(IntensityError, match="RescaleSlope 0"):
        read_ct(tmp_path / "s", rescale=(0.0, -1024.0))  # a given rescale does not override present tags


def test_nifti_with_nan_voxel_size_is_an_error(tmp_path):
    hdr = nib.Nifti1Header()
    hdr.set_data_shape((4, 4, 4))
    hdr.set_data_dtype(np.int16)
    hdr["pixdim"][1:4] = [np.nan, 1, 1]
    nib.save(nib.Nifti1Image(np.full((4, 4, 4), -1000, np.int16), None, header=hdr), tmp_path / "nan.nii")
    with pytest.raises(InputError, match="NaN or infinite"):
        read_ct(tmp_path / "nan.nii")


def test_mha_with_zero_spacing_is_an_error(tmp_path):
    head = (
        b"ObjectType = Image\nNDims = 3\nDimSize = 4 4 4\nElementType = MET_SHORT\n"
        b"ElementSpacing = 0 1 1\nElementDataFile = LOCAL\n"
    )
    (tmp_path / "z.mha").write_bytes(head + np.full(64, -1000, np.int16).tobytes())
    with pytest.raises(InputError, match="must be positive and finite"):
        read_ct(tmp_path / "z.mha")


@pytest.mark.parametrize("spacing", [(np.nan, 1.0, 1.0), (2.0, np.inf, 1.0), (0.0, 1.0, 1.0)])
def test_numpy_spacing_not_positive_finite_is_an_error(tmp_path, spacing):
    np.savez(tmp_path / "v.npz", voxels=np.full((3, 8, 8), -1000.0, np.float32), spacing=np.array(spacing))
    with pytest.raises(InputError, match="positive, finite"):
        read_ct(tmp_path / "v.npz")
    np.save(tmp_path / "v.npy", np.full((3, 8, 8), -1000.0, np.float32))
    with pytest.raises(InputError, match="positive, finite"):
        read_ct(tmp_path / "v.npy", spacing=spacing)


def test_image_spacing_not_positive_is_an_error(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "a.png")
    with pytest.raises(InputError, match="must be positive"):
        read_ct(tmp_path / "a.png", spacing=(1.0, 0.0, 1.0))


# ------------------------------------------------------------------------------------------ size limits
def _huge_nifti(path: Path, shape: tuple[int, int, int]) -> None:
    """A .nii.gz whose header claims ``shape`` int16 voxels, holding only a few bytes of them."""
    hdr = nib.Nifti1Header()
    hdr.set_data_shape(shape)
    hdr.set_data_dtype(np.int16)
    hdr.set_sform(np.eye(4), code=1)
    raw = hdr.binaryblock + b"\0" * 4  # the 352-byte offset, then (too few) voxels
    with gzip.open(path, "wb") as fh:
        fh.write(raw + b"\0" * 4096)


def test_huge_nifti_header_refused_before_inflating(tmp_path, monkeypatch):
    import m3lung.io.formats as formats

    _huge_nifti(tmp_path / "big.nii.gz", (512, 512, 20000))
    assert (tmp_path / "big.nii.gz").stat().st_size < 100_000

    def never(proxy):
        raise AssertionError("the voxels were inflated before the size check")

    monkeypatch.setattr(formats, "_nifti_voxels", never)
    with pytest.raises(InputError, match=r"would need about 29\.3 GiB .* over the 8 GiB limit") as err:
        read_ct(tmp_path / "big.nii.gz")
    assert "\n" not in str(err.value) and "M3LUNG_MAX_VOLUME_GIB" in str(err.value)


def test_size_limit_from_the_environment(tmp_path, monkeypatch, vol):
    write_nifti(vol, tmp_path / "v.nii.gz")
    assert read_ct(tmp_path / "v.nii.gz").shape == vol.shape
    monkeypatch.setenv("M3LUNG_MAX_VOLUME_GIB", "0.0001")
    assert max_volume_gib() == 0.0001
    with pytest.raises(InputError, match="would need"):
        read_ct(tmp_path / "v.nii.gz")
    monkeypatch.setenv("M3LUNG_MAX_VOLUME_GIB", "lots")
    with pytest.raises(InputError, match="not a positive number"):
        read_ct(tmp_path / "v.nii.gz")


def test_dicom_size_limit_checked_from_headers_before_decoding(tmp_path, monkeypatch, vol):
    import m3lung.io.dicom.read as dicom_read

    write_dicom_series(vol, tmp_path / "s")
    monkeypatch.setenv("M3LUNG_MAX_VOLUME_GIB", "0.0001")  # 8 x 64 x 64 x 8 bytes is 0.00025 GiB

    def never(*args, **kwargs):
        raise AssertionError("pixels decoded before the size check")

    monkeypatch.setattr(dicom_read, "_decode_all", never)
    with pytest.raises(DicomError, match=r"would need about 0\.00024 GiB .*\(8x64x64 voxels"):
        read_ct(tmp_path / "s")


def test_a_real_size_ct_is_within_the_default_limit(monkeypatch):
    monkeypatch.delenv("M3LUNG_MAX_VOLUME_GIB", raising=False)
    monkeypatch.setattr(os, "sysconf", lambda name: 2**30 if name == "SC_AVPHYS_PAGES" else 4096)
    assert max_volume_gib() == MAX_VOLUME_GIB
    assert check_read_size((2000, 512, 512), 8, "ct") == pytest.approx(3.9, abs=0.01)  # DICOM's estimate
    assert check_read_size((2000, 512, 512), 2 + 4, "ct") == pytest.approx(2.93, abs=0.01)  # NIfTI int16
    with pytest.raises(InputError, match="would need"):
        check_read_size((6300, 1024, 1024), 2 + 4, "ct")  # a 6.3 GB int16 NIfTI once inflated


def test_atomic_dir_never_replaces_a_file(tmp_path):
    from m3lung.io import atomic_dir, require_input_folder, require_output_folder

    (tmp_path / "f").write_text("mine")
    for overwrite in (False, True):
        guard = atomic_dir(tmp_path / "f", overwrite=overwrite)
        with pytest.raises(InputError, match="is a file, not a folder"), guard:
            pass
    assert (tmp_path / "f").read_text() == "mine" and sorted(os.listdir(tmp_path)) == ["f"]
    with pytest.raises(InputError, match=r"cannot be made: .*f is a file"):
        require_output_folder(tmp_path / "f" / "a" / "b")
    assert require_output_folder(tmp_path / "new" / "a") == tmp_path / "new" / "a"
    with pytest.raises(InputError, match="is a file, not a folder"):
        require_input_folder(tmp_path / "f")
    with pytest.raises(InputError, match="no such folder"):
        require_input_folder(tmp_path / "new")


@pytest.mark.parametrize("suffix", [".npy", ".npz"])
def test_numpy_headers_claiming_a_huge_array_are_refused_before_reading(tmp_path, suffix):
    """A .npy or .npz member whose header says 512 x 512 x 20000 float32 (20 GB), holding a few bytes."""
    import io
    import zipfile

    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False, "shape": (20000, 512, 512)})
    raw = buf.getvalue() + b"\0" * 64
    path = tmp_path / f"big{suffix}"
    if suffix == ".npy":
        path.write_bytes(raw)
    else:
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("voxels.npy", raw)
    with pytest.raises(InputError, match="would need about"):
        read_ct(path, spacing=(1.0, 1.0, 1.0))
