"""The ``m3lung`` command line: thin commands over the Python API.

* :mod:`m3lung.cli.inputs` — commands on inputs and data: ``info``, ``preprocess``, ``phantom``,
  ``features``, ``demo``;
* :mod:`m3lung.cli.systems` — commands generated from the system registry: ``systems``, ``screen``,
  ``train SYSTEM STAGE``, ``evaluate``.

Every error a user can cause is printed as one line (``m3lung: error: ...``) without a traceback and
exits with status 2; warnings go to stderr as ``m3lung: warning: ...``.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from m3lung._version import __version__
from m3lung.errors import M3LungError, M3LungWarning

__all__ = ["build_parser", "main"]

log = logging.getLogger("m3lung")


def _show_warning(
    message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None
) -> None:
    """Every warning as one line: ``m3lung: warning: ...``; a library's own (nibabel, pydicom...) names its kind."""
    text = " ".join(str(message).split())
    if issubclass(category, M3LungWarning):
        print(f"m3lung: warning: {text}", file=sys.stderr)
    else:
        origin = Path(filename).parent.name if filename else "?"
        print(f"m3lung: warning: {text} ({category.__name__} from {origin})", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    """The whole parser; the system commands come from the registry as it stands now."""
    from m3lung.cli import inputs, systems

    parser = argparse.ArgumentParser(
        prog="m3lung", description="Screen chest CT for pneumonia (M³Lung-Sys and related systems)."
    )
    parser.add_argument("--version", action="version", version=f"m3lung {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    inputs.add_input_commands(sub)
    systems.add_system_commands(sub)
    inputs.add_demo_command(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    if not args.verbose:
        # pydicom logs one line per file for tags it finds malformed but reads anyway (e.g. UUID-style
        # UIDs in COVID-CT-MD); they never change the image, so only --verbose shows them. pydicom sets
        # its logger's level when first imported, so import it before lowering the level.
        import pydicom  # noqa: F401

        logging.getLogger("pydicom").setLevel(logging.ERROR)
    warnings.showwarning = _show_warning
    try:
        return int(args.func(args))
    except M3LungError as exc:
        print(f"m3lung: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("m3lung: interrupted", file=sys.stderr)
        return 130
