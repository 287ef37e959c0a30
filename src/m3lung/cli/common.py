"""Flags several commands share, each defined once."""

from __future__ import annotations

import argparse
from typing import Any

DEVICES = ("auto", "cpu", "cuda")


def add_quiet(p: argparse.ArgumentParser) -> None:
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def add_device(p: argparse.ArgumentParser, *, default: str | None = "auto", help: str | None = None) -> None:
    p.add_argument("--device", choices=DEVICES, default=default, help=help or "where the networks run")


def add_read_options(p: argparse.ArgumentParser) -> None:
    """How a study is read (``m3lung.io.read_ct``'s keywords)."""
    p.add_argument("--series-uid", help="read this SeriesInstanceUID instead of the largest CT series")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), help="voxel spacing in mm for .npy input")
    p.add_argument("--skip-broken", action="store_true", help="skip unreadable DICOM files instead of failing")
    p.add_argument(
        "--rescale", type=float, nargs=2, metavar=("SLOPE", "INTERCEPT"), help="rescale for DICOM files lacking it"
    )
    p.add_argument("--anonymize", action="store_true", help="drop identifying header fields from outputs")


def read_options(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``read_ct`` given by :func:`add_read_options`'s flags."""
    return {
        "series_uid": args.series_uid,
        "anonymize": args.anonymize,
        "skip_broken": args.skip_broken,
        "spacing": args.spacing,
        "rescale": tuple(args.rescale) if args.rescale else None,
    }
