"""Reading DICOM header values safely: numbers and UIDs of any stored form, per-frame attributes, and
whether the image tags (size, frames, pixel format) can describe stored pixels at all."""

from __future__ import annotations

import os
from typing import Any


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


def _get(ds: Any, name: str) -> Any:
    """``ds.get(name)``, or None when pydicom cannot convert the stored value (``NaN`` in an IS, ...)."""
    try:
        return ds.get(name)
    except Exception:  # a value of the wrong form: the same as absent for the caller's checks
        return None


def _image_size(ds: Any, path: str) -> tuple[int, int, int] | str:
    """(rows, cols, frames) of an image header, or why they cannot be: not positive integers, or more
    frames than the file can hold (each frame takes at least min(8, rows x cols) bytes: an item header
    or one byte per pixel), which would make the reader list billions of frames."""
    rows, cols = _opt_int(_get(ds, "Rows")), _opt_int(_get(ds, "Columns"))
    if rows is None or cols is None or rows <= 0 or cols <= 0:
        return f"Rows/Columns ({_get(ds, 'Rows')!r} x {_get(ds, 'Columns')!r}) are not positive integers"
    raw = _get(ds, "NumberOfFrames")
    frames = 1 if raw is None or str(raw).strip() in ("", "0") else _opt_int(raw)
    if frames is None or frames < 1:
        return f"NumberOfFrames ({raw!r}) is not a positive integer"
    try:
        size = os.path.getsize(path)
    except OSError:
        size = 0
    if frames > 1 and frames * min(8, rows * cols) > size:
        return f"NumberOfFrames ({frames}) is more than a file of {size} bytes can hold"
    problem = _pixel_format_problem(ds)
    if problem is not None:
        return problem
    return rows, cols, frames


def _pixel_format_problem(ds: Any) -> str | None:
    """Why the pixel-format tags present cannot describe stored pixels (a decoder would read them wrongly), or None.

    BitsAllocated must be 1, 8, 16, 32 or 64; BitsStored 1..BitsAllocated; HighBit below BitsAllocated and,
    as the standard requires (PS3.5 8.1.1), BitsStored - 1; PixelRepresentation 0 or 1; SamplesPerPixel at
    least 1.
    """
    allocated = _opt_int(_get(ds, "BitsAllocated"))
    checks = {
        "BitsAllocated": lambda v: v in (1, 8, 16, 32, 64),
        "BitsStored": lambda v: 1 <= v <= (allocated or 64),
        "HighBit": lambda v: 0 <= v < (allocated or 64),
        "PixelRepresentation": lambda v: v in (0, 1),
        "SamplesPerPixel": lambda v: v >= 1,
    }
    for name, ok in checks.items():
        if name not in ds:
            continue
        value = _opt_int(_get(ds, name))
        if value is None or not ok(value):
            raw = ds.get_item(name).value if hasattr(ds, "get_item") and ds.get_item(name) is not None else None
            return f"{name} ({raw!r}) is not a valid value for stored pixels (BitsAllocated {allocated})"
    stored, high = _opt_int(_get(ds, "BitsStored")), _opt_int(_get(ds, "HighBit"))
    if stored is not None and high is not None and high != stored - 1:  # PS3.5 8.1.1: HighBit = BitsStored - 1
        return f"HighBit ({high}) is not BitsStored ({stored}) - 1: the pixel-format tags contradict each other"
    return None
