"""Decoding: the stored pixel data of DICOM files (uncompressed or compressed), in parallel when worth it."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from m3lung.errors import DicomError, warn
from m3lung.io.dicom.scan import _quiet_pydicom

#: exceptions that are the user's or the interpreter's own business, never a decoder's failure
_NOT_DECODER_FAILURES = (KeyboardInterrupt, SystemExit, GeneratorExit)


# --------------------------------------------------------------------------------------------- decoding
def _decode_file(path: str) -> tuple[np.ndarray, list[str]]:
    """Pixel data of one file as stored (no rescale): (rows, cols) or (frames, rows, cols).

    Also returns the warnings the decoder (pydicom, pylibjpeg, GDCM) raised while decoding, as text.
    """
    import pydicom

    with _quiet_pydicom():
        ds = pydicom.dcmread(path)
    if "PixelData" not in ds and "FloatPixelData" not in ds and "DoubleFloatPixelData" not in ds:
        raise ValueError("the file has no pixel data (truncated before the image?)")
    spp = int(ds.get("SamplesPerPixel", 1) or 1)
    if spp != 1:
        raise ValueError(f"SamplesPerPixel is {spp}: a colour image, not a CT slice")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        arr = ds.pixel_array
    said = list(
        dict.fromkeys(
            str(w.message).strip().replace("\n", " ")
            for w in caught
            if not issubclass(w.category, DeprecationWarning | PendingDeprecationWarning)
        )
    )
    photometric = str(ds.get("PhotometricInterpretation", "MONOCHROME2")).strip()
    if photometric == "MONOCHROME1":
        bits = int(ds.get("BitsStored", 16))
        arr = ((1 << bits) - 1) - arr if ds.get("PixelRepresentation", 0) == 0 else -arr
    return np.asarray(arr), said


def _decode_all(
    paths: Sequence[str], workers: int, sink: list[str], *, failed: dict[str, str] | None = None
) -> dict[str, np.ndarray]:
    """Decode ``paths``; the decoders' warnings become :class:`~m3lung.errors.M3LungWarning` s in ``sink``.

    A file whose pixel data cannot be decoded raises :class:`~m3lung.errors.DicomError`, unless
    ``failed`` is given: then the file is left out of the result and ``failed[path]`` says why.
    """
    out: dict[str, np.ndarray] = {}
    said: dict[str, list[str]] = {}

    def handle(p: str, exc: BaseException) -> None:
        if failed is None:
            raise fail(p, exc) from exc
        failed[p] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"

    def fail(p: str, exc: BaseException) -> DicomError:
        return DicomError(
            f"cannot decode the pixel data of {p}: {type(exc).__name__}: {exc}. The file may be truncated "
            "or corrupt (re-export it, remove it from the folder, or pass skip_broken=True (CLI: --skip-broken) "
            "to read the rest of the series); for compressed transfer syntaxes "
            "make sure python-gdcm or pylibjpeg with pylibjpeg-libjpeg / pylibjpeg-openjpeg / "
            "pylibjpeg-rle is installed."
        )

    if workers > 1 and len(paths) > 1:
        with ProcessPoolExecutor(max_workers=workers) as ex:
            futures = {p: ex.submit(_decode_file, p) for p in paths}
            for p, fut in futures.items():
                try:
                    out[p], said[p] = fut.result()
                except _NOT_DECODER_FAILURES:
                    raise
                except BaseException as exc:  # native decoders panic with BaseException subclasses
                    handle(p, exc)
    else:
        for p in paths:
            try:
                out[p], said[p] = _decode_file(p)
            except _NOT_DECODER_FAILURES:
                raise
            except BaseException as exc:  # e.g. pylibjpeg-rle's PanicException (a BaseException) on corrupt data
                handle(p, exc)
    noisy = [(p, msgs) for p, msgs in said.items() if msgs]
    if noisy:
        shown = "; ".join(f"{p}: {' / '.join(msgs)}" for p, msgs in noisy[:3])
        more = f" (and {len(noisy) - 3} more file(s))" if len(noisy) > 3 else ""
        warn(
            f"the pixel decoder warned about {len(noisy)} file(s): {shown}{more}; those images may be corrupt: "
            "check them by eye or re-export them",
            sink,
            stacklevel=4,
        )
    return out


def _auto_workers(n_files: int, transfer_syntax: str | None) -> int:
    uncompressed = transfer_syntax in (None, "1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2")
    if uncompressed or n_files < 48:
        return 1
    return max(1, min(4, os.cpu_count() or 1))
