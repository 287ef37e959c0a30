"""Errors and warnings a user can cause.

Every problem that comes from the user's input (a bad file, a folder without images, a volume that
is not in Hounsfield units, weights that do not fit) raises a subclass of :class:`M3LungError` whose
message says what was wrong and what to do about it. The command line prints that message without a
traceback and exits with status 2.

Problems that still allow a correct answer (slices not evenly spaced, a missing ``Modality`` tag) are
reported as :class:`M3LungWarning` through :mod:`warnings` *and* collected on the object they concern
(``CTVolume.warnings``), so that reports can list them.
"""

from __future__ import annotations

import warnings

__all__ = [
    "DicomError",
    "InputError",
    "IntensityError",
    "M3LungError",
    "M3LungWarning",
    "MissingExtraError",
    "warn",
]


class M3LungError(Exception):
    """Base class of every error that the user's input or settings can cause."""


class InputError(M3LungError):
    """The input path, file or array cannot be used (missing, empty, unsupported, corrupt)."""


class DicomError(InputError):
    """A DICOM file or folder cannot be read as one CT volume."""


class IntensityError(M3LungError):
    """The voxel values are not what the step needs (not HU, NaN/inf, 8-bit where HU is required)."""


class MissingExtraError(M3LungError, ImportError):
    """An optional dependency a command needs is not installed; the message names the extra that brings it."""


class M3LungWarning(UserWarning):
    """Something is unusual about the input but a correct answer is still possible."""


def warn(message: str, sink: list[str] | None = None, *, stacklevel: int = 3) -> None:
    """Emit ``message`` as an :class:`M3LungWarning` and append it to ``sink`` when given."""
    if sink is not None:
        sink.append(message)
    warnings.warn(message, M3LungWarning, stacklevel=stacklevel)
