"""Commands on inputs and data: ``info``, ``preprocess``, ``phantom``, ``features``, ``demo``."""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Any

from m3lung.cli.common import add_device, add_quiet, add_read_options, read_options
from m3lung.errors import InputError, M3LungWarning


def _read(args: argparse.Namespace) -> Any:
    from m3lung.io import read_ct

    return read_ct(args.path, **read_options(args))


def cmd_info(args: argparse.Namespace) -> int:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", M3LungWarning)  # every warning is printed in the summary below
        vol = _read(args)
        info = vol.summary()
        if Path(args.path).is_dir():
            from m3lung.io import scan_dicom

            info["series_found"] = [
                {"series_uid": s.series_uid, "description": s.description, "modality": s.modality, "images": s.n_slices}
                for s in scan_dicom(args.path).series
            ]
    if args.json:
        print(json.dumps(info, indent=2))
        return 0
    sp = info["spacing_mm"]
    lo, hi = info["value_range"]
    unit = "HU" if info["intensity"] == "HU" else "(8-bit grey, not HU)"
    lines = [
        f"path:        {info['path']}",
        f"format:      {info['format']}",
        f"voxels:      {info['slices']} slices x {info['rows']} rows x {info['cols']} cols",
        f"spacing:     z {sp['z']:g} mm, y {sp['y']:g} mm, x {sp['x']:g} mm",
        f"values:      {lo:g} .. {hi:g} {unit}",
        f"modality:    {info['modality'] or 'unknown'}",
    ]
    if info.get("series_uid") or info["format"] == "dicom":
        desc = f" ({info['series_description']})" if info.get("series_description") else ""
        lines.append(f"series:      {info.get('series_uid') or '<no SeriesInstanceUID>'}{desc}")
    if info.get("transfer_syntax"):
        lines.append(f"transfer:    {info['transfer_syntax']}")
    for s in info.get("series_found", []):
        if len(info["series_found"]) > 1:
            lines.append(f"  found:     {s['series_uid']} {s['modality'] or ''} {s['images']} image(s)")
    lines.append(f"warnings:    {len(info['warnings'])}")
    lines += [f"  - {w}" for w in info["warnings"]]
    print("\n".join(lines))
    return 0


def cmd_preprocess(args: argparse.Namespace) -> int:
    from m3lung.io import require_output_folder
    from m3lung.preprocess import LungCropConfig, prepare_slices
    from m3lung.report.preprocessed import write_preprocessed

    require_output_folder(args.out)  # before the reading and preprocessing, not after
    vol = _read(args)
    cfg = LungCropConfig(output_size=(args.size, args.size), margin=args.margin)
    t0 = time.perf_counter()
    prep = prepare_slices(vol, crop=cfg, centres=args.centres)
    dt = time.perf_counter() - t0
    out = write_preprocessed(vol, prep, args.out, png_centre=args.png_centre, overwrite=args.overwrite)
    print(
        f"{vol.n_slices} slices cropped and windowed at {', '.join(f'{c:g}' for c in prep.centres)} HU "
        f"in {dt:.2f} s ({vol.n_slices / max(dt, 1e-9):.0f} slices/s); "
        f"{int(prep.crop.fallback.sum())} slice(s) without lung used whole -> {out}"
    )
    return 0


def cmd_phantom(args: argparse.Namespace) -> int:
    from m3lung.phantom import PhantomConfig, write_cohort

    slices = (args.slices[0], args.slices[1])
    # other sizes keep the anatomy's size in mm (pixel spacing scaled by 512 / size)
    cfg = PhantomConfig(slices=slices) if args.size == 512 else PhantomConfig.small(size=args.size, slices=slices)
    manifest = write_cohort(
        args.out,
        per_class=args.per_class,
        seed=args.seed,
        format=args.format,
        config=cfg,
        progress=not args.quiet,
        overwrite=args.overwrite,
    )
    print(f"synthetic cohort ({4 * args.per_class} studies, seed {args.seed}) -> {manifest}")
    return 0


def _cases(data: str) -> Any:
    from m3lung.data.slices import covidctmd_cases, synthetic_cases
    from m3lung.io import require_input_folder

    root = require_input_folder(data)
    if (root / "cohort.csv").exists():
        return synthetic_cases(root), "synthetic"
    if (root / "labels.csv").exists():
        return covidctmd_cases(root), "covid-ct-md"
    raise InputError(f"{root}: neither a synthetic cohort (cohort.csv) nor the COVID-CT-MD layout (labels.csv)")


def cmd_features(args: argparse.Namespace) -> int:
    from m3lung.systems.m3lung_patient import extract_features

    cases, source = _cases(args.data)
    cache = extract_features(
        args.weights,
        cases,
        args.out,
        slice_cache=args.cache,
        batch_size=args.batch_size,
        device=args.device,
        progress=not args.quiet,
        data_note=source,
    )
    print(f"slice features of {len(cache.index())} scans -> {cache.root} (index.csv, cache.json)")
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from m3lung.systems.demo import make_demo_weights, run_demo

    if args.make_weights:
        path = make_demo_weights(args.make_weights, data=args.data, progress=not args.quiet)
        print(f"demo weights (recipes slice_demo + patient_demo, synthetic cohort) -> {path}")
        return 0
    if args.out is None:
        raise InputError("m3lung demo needs --out DIR (or --make-weights DIR)")
    summary = run_demo(args.out, seed=args.seed, quiet=args.quiet, weights=args.weights)
    print(summary)
    return 0


def add_input_commands(sub: Any) -> None:
    """``info``, ``preprocess``, ``phantom`` and ``features``."""
    p = sub.add_parser("info", help="describe a CT input (DICOM folder/file, NIfTI, MHA/NRRD, NumPy, PNG/JPG)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_read_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("preprocess", help="lung-crop and window every slice; write PNG, NPZ and JSON")
    p.add_argument("path")
    p.add_argument("--out", required=True, help="output folder (created atomically)")
    p.add_argument("--size", type=int, default=512, help="crop size in pixels (paper: 512)")
    p.add_argument("--margin", type=int, default=10, help="margin around the lungs in pixels (paper: 10)")
    p.add_argument(
        "--centres", type=float, nargs="+", default=[-700.0, -600.0, -500.0], help="window centres in HU (width 1200)"
    )
    p.add_argument("--png-centre", type=float, default=None, help="window centre of the PNGs (default: the middle)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output folder")
    add_read_options(p)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("phantom", help="write a synthetic chest-CT cohort with known lesions")
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=int, required=True, help="studies per class (4 classes)")
    p.add_argument("--format", choices=["dicom", "nifti"], default="dicom")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=512, help="rows and columns of every slice")
    p.add_argument("--slices", type=int, nargs=2, default=[24, 495], metavar=("MIN", "MAX"))
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="write into --out even when it holds a cohort made with other settings, or other files "
        "(its cohort and study folders are replaced; other files are kept)",
    )
    add_quiet(p)
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("features", help="cache every scan's M³Lung-Sys slice features for patient-level training")
    p.add_argument("--weights", required=True, help="slice-network checkpoint (best.pt of `m3lung train slice`)")
    p.add_argument("--data", required=True, help="synthetic cohort folder or COVID-CT-MD")
    p.add_argument("--out", required=True, help="feature cache folder (an interrupted run resumes)")
    p.add_argument("--cache", help="folder of preprocessed slices to share with slice training (default: OUT/slices)")
    p.add_argument("--batch-size", type=int, default=32)
    add_device(p)
    add_quiet(p)
    p.set_defaults(func=cmd_features)


def add_demo_command(sub: Any) -> None:
    p = sub.add_parser("demo", help="make a synthetic study and screen it with the shipped demo weights (no downloads)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--weights", help="screen with these weights instead of the shipped demo weights")
    p.add_argument("--make-weights", metavar="DIR", help="reproduce the shipped demo weights in DIR (about 15 min)")
    p.add_argument("--data", help="with --make-weights: the synthetic cohort to train on (made when missing)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
