"""The ``m3lung`` command line: thin commands over the Python API.

Every error a user can cause is printed as one line (``m3lung: error: ...``) without a traceback and
exits with status 2; warnings go to stderr as ``m3lung: warning: ...``.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from m3lung._version import __version__
from m3lung.errors import M3LungError, M3LungWarning

log = logging.getLogger("m3lung")


def _show_warning(
    message: Any, category: type[Warning], filename: str, lineno: int, file: Any = None, line: str | None = None
) -> None:
    if issubclass(category, M3LungWarning):
        print(f"m3lung: warning: {message}", file=sys.stderr)
    else:
        print(warnings.formatwarning(message, category, filename, lineno, line), file=sys.stderr, end="")


# --------------------------------------------------------------------------------------------- commands
def _read_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--series-uid", help="read this SeriesInstanceUID instead of the largest CT series")
    p.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"), help="voxel spacing in mm for .npy input")
    p.add_argument("--skip-broken", action="store_true", help="skip unreadable DICOM files instead of failing")
    p.add_argument(
        "--rescale", type=float, nargs=2, metavar=("SLOPE", "INTERCEPT"), help="rescale for DICOM files lacking it"
    )
    p.add_argument("--anonymize", action="store_true", help="drop identifying header fields from outputs")


def _read(args: argparse.Namespace) -> Any:
    from m3lung.io import read_ct

    return read_ct(
        args.path,
        spacing=args.spacing,
        series_uid=args.series_uid,
        anonymize=args.anonymize,
        skip_broken=args.skip_broken,
        rescale=tuple(args.rescale) if args.rescale else None,
    )


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
    from m3lung.preprocess import LungCropConfig, prepare_slices
    from m3lung.report.preprocessed import write_preprocessed

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
        args.out, per_class=args.per_class, seed=args.seed, format=args.format, config=cfg, progress=not args.quiet
    )
    print(f"synthetic cohort ({4 * args.per_class} studies, seed {args.seed}) -> {manifest}")
    return 0


def _recipe_overrides(args: argparse.Namespace) -> list[str]:
    """``--set key=value`` of a train command, with ``--device`` as ``train.device``."""
    overrides = list(args.set or [])
    if args.device:
        overrides.append(f"train.device={args.device}")
    return overrides


def cmd_train_slice(args: argparse.Namespace) -> int:
    from m3lung.systems.m3lung import load_slice_recipe, summarise, train_slice

    overrides = _recipe_overrides(args)
    recipe = load_slice_recipe(args.recipe, overrides)
    results = train_slice(
        recipe,
        args.data,
        args.out,
        resume=args.resume,
        pretrained=args.pretrained,
        progress=not args.quiet,
        cache_dir=args.cache,
    )
    if results:
        print(summarise(results))
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    from m3lung.errors import InputError

    first = args.inputs[0]
    if first in ("slice", "patient"):
        if len(args.inputs) != 2:
            raise InputError(f"m3lung evaluate {first} takes one run folder: m3lung evaluate {first} RUN")
        if first == "slice":
            from m3lung.systems.m3lung import evaluate_slice_run, summarise

            if not args.data:
                raise InputError("m3lung evaluate slice RUN needs --data (the data the run trained on)")
            results = evaluate_slice_run(
                args.inputs[1],
                args.data,
                weights=args.weights,
                cache_dir=args.cache,
                progress=not args.quiet,
                map_shifts=args.map_shifts,
                map_flip=args.map_flip,
            )
            print(summarise(results))
        else:
            from m3lung.systems.m3lung_patient import evaluate_patient_run, summarise_patient

            print(summarise_patient(evaluate_patient_run(args.inputs[1], features=args.features)))
        return 0
    from m3lung.evaluate.summary import evaluate_files

    if len(args.inputs) != 1:
        raise InputError("m3lung evaluate takes one predictions file or screen folder (use --compare for another)")
    result = evaluate_files(
        first,
        compare=args.compare,
        labels=args.labels,
        classes=args.classes,
        n_resamples=args.bootstrap,
        seed=args.seed,
        out=args.out,
    )
    print(json.dumps(result["json"], indent=1, allow_nan=False) if args.json else result["markdown"])
    return 0


def _cases(data: str) -> Any:
    from m3lung.data.slices import covidctmd_cases, synthetic_cases

    root = Path(data)
    if (root / "cohort.csv").exists():
        return synthetic_cases(root), "synthetic"
    if (root / "labels.csv").exists():
        return covidctmd_cases(root), "covid-ct-md"
    from m3lung.errors import InputError

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


def cmd_train_patient(args: argparse.Namespace) -> int:
    from m3lung.systems.m3lung_patient import load_patient_recipe, summarise_patient, train_patient

    overrides = _recipe_overrides(args)
    if args.split:
        overrides.append(f"data.split_file={args.split}")
    recipe = load_patient_recipe(args.recipe, overrides)
    results = train_patient(recipe, args.features, args.out, resume=args.resume, progress=not args.quiet)
    print(summarise_patient(results))
    return 0


def cmd_screen(args: argparse.Namespace) -> int:
    from m3lung.systems.screening import Screener, parse_shard, screen_many, studies_from

    shard = parse_shard(args.shard)
    studies = studies_from(args.paths)
    screener = Screener(
        args.weights or _default_weights(),
        patient_weights=args.patient_weights,
        device=args.device,
        batch_size=args.batch_size,
        bf16=args.bf16,
        every=args.every,
        threshold=args.threshold,
        map_shifts=args.map_shifts,
        map_flip=args.map_flip,
    )
    read_options = {
        "series_uid": args.series_uid,
        "anonymize": args.anonymize,
        "skip_broken": args.skip_broken,
        "spacing": args.spacing,
        "rescale": tuple(args.rescale) if args.rescale else None,
    }
    result = screen_many(
        screener,
        studies,
        args.out,
        shard=shard,
        overwrite=args.overwrite,
        progress=not args.quiet,
        read_options=read_options,
    )
    for row in result["screened"]:
        print(
            f"{row['study_id']}: {row['label']} (p {row['p_' + row['label']]}), infected share "
            f"{float(row['infected_share']):.1%}, {row['n_slices']} slices in {row['seconds']} s"
        )
    if result["skipped"]:
        print(f"{len(result['skipped'])} study(ies) already screened in {args.out}, skipped (--overwrite redoes them)")
    for f in result["failed"]:
        print(f"m3lung: error: {f['study_id']}: {f['error']}", file=sys.stderr)
    print(f"outputs: {args.out}/<study>/report.json, report.html, lesion_map.nii.gz; summary.csv")
    return 2 if result["failed"] else 0


def _default_weights() -> str:
    from m3lung.systems.demo import demo_weights

    path = demo_weights()
    print(
        f"m3lung: note: no --weights given; using the demo weights shipped with m3lung ({path}), trained on "
        "synthetic phantoms only",
        file=sys.stderr,
    )
    return str(path)


def cmd_demo(args: argparse.Namespace) -> int:
    from m3lung.systems.demo import make_demo_weights, run_demo

    if args.make_weights:
        path = make_demo_weights(args.make_weights, data=args.data, progress=not args.quiet)
        print(f"demo weights (recipes slice_demo + patient_demo, synthetic cohort) -> {path}")
        return 0
    if args.out is None:
        from m3lung.errors import InputError

        raise InputError("m3lung demo needs --out DIR (or --make-weights DIR)")
    summary = run_demo(args.out, seed=args.seed, quiet=args.quiet, weights=args.weights)
    print(summary)
    return 0


# --------------------------------------------------------------------------------------------- parser
def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="m3lung", description="Screen chest CT for pneumonia (M³Lung-Sys and related systems)."
    )
    parser.add_argument("--version", action="version", version=f"m3lung {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("info", help="describe a CT input (DICOM folder/file, NIfTI, MHA/NRRD, NumPy, PNG/JPG)")
    p.add_argument("path")
    p.add_argument("--json", action="store_true", help="print JSON")
    _read_options(p)
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
    _read_options(p)
    p.set_defaults(func=cmd_preprocess)

    p = sub.add_parser("phantom", help="write a synthetic chest-CT cohort with known lesions")
    p.add_argument("--out", required=True)
    p.add_argument("--per-class", type=int, required=True, help="studies per class (4 classes)")
    p.add_argument("--format", choices=["dicom", "nifti"], default="dicom")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=512, help="rows and columns of every slice")
    p.add_argument("--slices", type=int, nargs=2, default=[24, 495], metavar=("MIN", "MAX"))
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_phantom)

    p = sub.add_parser("train", help="train a network from a recipe")
    tsub = p.add_subparsers(dest="what", required=True, metavar="NETWORK")
    t = tsub.add_parser("slice", help="the M³Lung-Sys slice network")
    t.add_argument("--recipe", required=True, help="recipe YAML, or a shipped one: slice_paper, slice_cpu, ...")
    t.add_argument("--data", required=True, help="synthetic cohort folder (made if the recipe says so) or COVID-CT-MD")
    t.add_argument("--out", required=True, help="run folder: checkpoints, log.csv, best.pt, results.json")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    t.add_argument("--pretrained", help="initial weights: a torchvision ResNet state dict or an m3lung checkpoint")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides the recipe's train.device")
    t.add_argument("--cache", help="folder for preprocessed slices (default: OUT/cache)")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value, e.g. train.epochs=3")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train_slice)

    t = tsub.add_parser("patient", help="the M³Lung-Sys patient network, on a feature cache")
    t.add_argument("--recipe", required=True, help="recipe YAML, or a shipped one: patient_paper, patient_cpu, ...")
    t.add_argument("--features", required=True, help="feature cache written by `m3lung features`")
    t.add_argument("--out", required=True, help="run folder: best.pt, system.pt, log.csv, results.json")
    t.add_argument("--split", help="a slice run's split.json: use exactly its train/val/test scans")
    t.add_argument("--resume", action="store_true", help="continue the run in --out exactly where it stopped")
    t.add_argument("--device", choices=["auto", "cpu", "cuda"], help="overrides the recipe's train.device")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a recipe value, e.g. train.epochs=3")
    t.add_argument("--quiet", action="store_true", help="no progress bars")
    t.set_defaults(func=cmd_train_patient)

    p = sub.add_parser("features", help="cache every scan's slice features for patient-level training")
    p.add_argument("--weights", required=True, help="slice-network checkpoint (best.pt of `m3lung train slice`)")
    p.add_argument("--data", required=True, help="synthetic cohort folder or COVID-CT-MD")
    p.add_argument("--out", required=True, help="feature cache folder (an interrupted run resumes)")
    p.add_argument("--cache", help="folder of preprocessed slices to share with slice training (default: OUT/slices)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_features)

    p = sub.add_parser("screen", help="screen CT studies: report.json, report.html and lesion_map.nii.gz each")
    p.add_argument("paths", nargs="+", metavar="PATH", help="studies (DICOM folder, NIfTI, ...) or CSV manifests")
    p.add_argument("--out", required=True, help="output folder: one sub-folder per study, summary.csv")
    p.add_argument("--weights", help="system.pt or slice checkpoint (default: the shipped demo weights)")
    p.add_argument("--patient-weights", help="patient-network checkpoint to use with a slice checkpoint")
    p.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    p.add_argument("--batch-size", type=int, default=32, help="slices per forward pass")
    p.add_argument("--bf16", action="store_true", help="bfloat16 inference (CUDA, or CPUs with AVX512-BF16/AMX)")
    p.add_argument(
        "--map-shifts",
        type=int,
        help="draw the lesion maps with K shifts per axis (shift-and-stitch: a K times finer map, about "
        "K^2 times the network's cost; 1 = the paper's map) instead of the weights' own setting",
    )
    p.add_argument(
        "--map-flip",
        action=argparse.BooleanOptionalAction,
        help="average each lesion map with the mirrored map of the mirrored slice (twice the map's cost), or "
        "not (--no-map-flip), instead of the weights' own setting",
    )
    p.add_argument("--every", type=int, help="show every k-th slice in report.html (default: about 24 slices)")
    p.add_argument("--threshold", type=float, default=0.99, help="T of the non-parametric assessment (paper 0.99)")
    p.add_argument("--shard", help="i/n: screen only the i-th of n interleaved parts of the list (1-based)")
    p.add_argument("--overwrite", action="store_true", help="screen again studies that already have a report")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _read_options(p)
    p.set_defaults(func=cmd_screen)

    p = sub.add_parser(
        "evaluate",
        help="figures with bootstrap CIs from predictions; or re-test a training run (evaluate slice|patient RUN)",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="PRED.csv (patient_id,label,pred[,p_<class>...]), an `m3lung screen` folder (with --labels), "
        "or `slice RUN` / `patient RUN` to re-test a training run on its held-out data",
    )
    p.add_argument("--compare", help="a second system's predictions (same patients): paired-bootstrap p-values")
    p.add_argument("--labels", help="labels CSV (study_id,label) for `m3lung screen` folders")
    p.add_argument("--classes", help="class names in index order (default Healthy,COVID-19,H1N1,CAP)")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples over patients (default 1000)")
    p.add_argument("--seed", type=int, default=0, help="seed of the bootstrap")
    p.add_argument("--json", action="store_true", help="print the figures as JSON instead of Markdown tables")
    p.add_argument("--out", help="folder for figures (ROC, confusion matrix, calibration; PNG and SVG) and JSON")
    p.add_argument("--data", help="evaluate slice: the data the run trained on")
    p.add_argument("--weights", help="evaluate slice: checkpoint to test (default: RUN/best.pt)")
    p.add_argument("--cache", help="evaluate slice: folder for preprocessed slices (default: RUN/cache)")
    p.add_argument(
        "--map-shifts",
        type=int,
        help="evaluate slice: draw the lesion maps with this many shifts per axis (shift-and-stitch; 1 = the "
        "paper's map) instead of the run's setting; writes results_map_shifts<K>.json, not results.json",
    )
    p.add_argument(
        "--map-flip",
        action=argparse.BooleanOptionalAction,
        help="evaluate slice: average each lesion map with the mirrored slice's (or not: --no-map-flip) "
        "instead of the run's setting; writes results_map_flip.json (or results_no_map_flip.json)",
    )
    p.add_argument("--features", help="evaluate patient: feature cache (default: the one the run used)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("demo", help="make a synthetic study and screen it with the shipped demo weights (no downloads)")
    p.add_argument("--out", help="output folder")
    p.add_argument("--weights", help="screen with these weights instead of the shipped demo weights")
    p.add_argument("--make-weights", metavar="DIR", help="reproduce the shipped demo weights in DIR (about 15 min)")
    p.add_argument("--data", help="with --make-weights: the synthetic cohort to train on (made when missing)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_demo)
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


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
