"""m3lung: screening chest CT for pneumonia with M³Lung-Sys and related published systems.

Class indices everywhere: 0 Healthy, 1 COVID-19, 2 H1N1 (influenza / other viral), 3 CAP.
"""

from __future__ import annotations

from typing import Any

from m3lung._version import __version__
from m3lung.classes import CLASSES
from m3lung.errors import M3LungError, M3LungWarning
from m3lung.io import CTVolume, read_ct, write_ct

__all__ = [
    "CLASSES",
    "CTVolume",
    "M3LungError",
    "M3LungWarning",
    "Report",
    "Screener",
    "__version__",
    "read_ct",
    "screen",
    "write_ct",
]

_LAZY = {"screen", "Screener", "Report"}  # these import torch: only when asked for


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from m3lung.systems import screening

        return getattr(screening, name)
    raise AttributeError(f"module 'm3lung' has no attribute {name!r}")
