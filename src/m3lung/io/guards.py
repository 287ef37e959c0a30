"""Guards before reading: only regular files, sizes from headers within a limit, geometry that can exist.

* :func:`non_regular_kind` / :func:`require_regular_file`: a FIFO, a device (``/dev/zero``) or a socket
  would block or never end when opened; readers open regular files only.
* :func:`check_read_size`: the memory a volume needs is estimated from its header *before* anything is
  inflated or allocated, and refused above :data:`MAX_VOLUME_GIB` (environment variable
  ``M3LUNG_MAX_VOLUME_GIB`` overrides it) or above the memory that is free.
* :func:`check_spacing`: voxel sizes must be positive, finite millimetres.
"""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Sequence

from m3lung.errors import InputError, M3LungError

__all__ = [
    "MAX_VOLUME_GIB",
    "check_read_size",
    "check_spacing",
    "max_volume_gib",
    "non_regular_kind",
    "require_regular_file",
]

#: Default ceiling (GiB) on the memory one volume may need while it is read: a 512x512x2000 int16 CT
#: needs about 3 GiB (NIfTI) to 4 GiB (DICOM); a .nii.gz that inflates to 6.3 GB needs over 8 GiB
#: whatever its voxel type. Override with the environment variable ``M3LUNG_MAX_VOLUME_GIB``.
MAX_VOLUME_GIB = 8.0
_ENV = "M3LUNG_MAX_VOLUME_GIB"


def non_regular_kind(path: str | os.PathLike[str]) -> str | None:
    """What ``path`` is when it is not a regular file (``"FIFO"``, ``"character device"``, ...), else None.

    Symbolic links are followed (a link to ``/dev/zero`` is a character device). A path that cannot be
    stat'ed (missing, dangling link) gives None: the caller's own error handling applies.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode):
        return None
    for test, name in (
        (stat.S_ISDIR, "folder"),
        (stat.S_ISFIFO, "FIFO (named pipe)"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return "special file"  # pragma: no cover - every POSIX type is listed above


def require_regular_file(path: str | os.PathLike[str], error: type[M3LungError] = InputError) -> None:
    """Raise ``error`` when ``path`` exists but is not a regular file (folders are the caller's business)."""
    kind = non_regular_kind(path)
    if kind is not None and kind != "folder":
        raise error(f"{path}: a {kind}, not a regular file; m3lung reads only regular files: pass a file")


def max_volume_gib() -> float:
    """The limit in force: ``$M3LUNG_MAX_VOLUME_GIB`` when set to a positive number, else :data:`MAX_VOLUME_GIB`."""
    raw = os.environ.get(_ENV, "").strip()
    if not raw:
        return MAX_VOLUME_GIB
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"{_ENV}={raw!r} is not a positive number of GiB; set it to e.g. 32, or unset it")
    return value


def check_read_size(
    shape: Sequence[int],
    bytes_per_voxel: float,
    path: str,
    *,
    error: type[M3LungError] = InputError,
) -> float:
    """Refuse to read a volume of ``shape`` needing ``bytes_per_voxel`` bytes per voxel at its peak.

    Returns the estimate in GiB. Raises ``error`` when it exceeds :func:`max_volume_gib` or the memory
    that is free now (where the system says).
    """
    n_vox = 1
    for s in shape:
        n_vox *= int(s)
    need = n_vox * float(bytes_per_voxel) / 2**30
    dims = "x".join(str(int(s)) for s in shape)
    limit = max_volume_gib()
    if need > limit:
        raise error(
            f"{path}: this volume would need about {_gib(need)} GiB of memory to read ({dims} voxels per its "
            f"header), over the {limit:g} GiB limit; check the file (a corrupt header?), or raise the "
            f"limit with the environment variable {_ENV}"
        )
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE") / 2**30
    except (ValueError, OSError, AttributeError):  # pragma: no cover - non-POSIX
        return need
    if need > avail:
        raise error(
            f"{path}: {dims} voxels need about {_gib(need)} GiB but only {_gib(avail)} GiB of memory is free; "
            "read a subset of the series or use a larger machine"
        )
    return need


def _gib(x: float) -> str:
    return f"{x:.1f}" if x >= 0.1 else f"{x:.2g}"


def check_spacing(
    spacing: Sequence[float], path: str, *, what: str = "voxel spacing", error: type[M3LungError] = InputError
) -> None:
    """Raise ``error`` unless ``spacing`` holds positive, finite millimetres."""
    vals = [float(s) for s in spacing]
    if not all(math.isfinite(s) and s > 0 for s in vals):
        shown = ", ".join(f"{s:g}" for s in vals)
        raise error(
            f"{path}: {what} ({shown} mm) must be positive and finite; the header is wrong: fix it, or "
            "re-export the image"
        )
