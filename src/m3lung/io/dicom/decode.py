"""Decoding: the stored pixel data of DICOM files (uncompressed or compressed), in parallel when worth it."""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from m3lung.errors import DicomError
from m3lung.io.dicom.scan import _quiet_pydicom


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
