"""Optional dependencies, imported only where a command needs them (MONAI's way: a small core, extras lazily).

The core install (``pip install m3lung``) runs ``demo``, ``info``, ``preprocess``, ``phantom``, ``screen``,
``features``, ``train`` and ``evaluate`` without ``--out``. The extras (``pyproject.toml``) add:

* ``figures``: matplotlib, for the figures ``m3lung evaluate --out`` draws (:mod:`m3lung.evaluate.figures`);
* ``survival``: lifelines, for the survival statistics (:mod:`m3lung.evaluate.survival`);
* ``all``: every extra; ``test``: every extra and what the tests and benchmarks need.

Every lazy import of an optional package goes through :func:`require`, so a missing one is one line that
names the extra, never a traceback.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from m3lung.errors import MissingExtraError

__all__ = ["EXTRAS", "require"]

#: extra -> the top-level packages it brings
EXTRAS: dict[str, tuple[str, ...]] = {
    "figures": ("matplotlib",),
    "survival": ("lifelines",),
}


def require(module: str, extra: str, what: str) -> ModuleType:
    """Import ``module`` (e.g. ``"matplotlib.figure"``) and return it, or say which extra installs it.

    ``what`` names what needs it, as the subject of "need" (``"figures"``, ``"survival statistics"``).
    Raises :class:`~m3lung.errors.MissingExtraError` (an :class:`~m3lung.errors.M3LungError` and an
    ``ImportError``) with one line, e.g. ``figures need matplotlib, an optional extra: pip install
    'm3lung[figures]'``.
    """
    if extra not in EXTRAS:
        raise ValueError(f"unknown extra {extra!r}; known: {', '.join(EXTRAS)}")
    top = module.partition(".")[0]
    try:
        importlib.import_module(top)  # first: a submodule already imported would hide an absent package
        return importlib.import_module(module)
    except ImportError as exc:
        missing = exc.name or ""
        # the package itself is absent, or something it imports (then the reason follows)
        why = "" if missing.partition(".")[0] == top else f" ({exc})"
        raise MissingExtraError(f"{what} need {top}, an optional extra: pip install 'm3lung[{extra}]'{why}") from exc
