"""Benchmark: M³Lung-Sys lung crop + three windows, vectorised, against a per-slice scikit-image version.

Run:  python benchmarks/bench_preprocess.py [--slices 150] [--repeat 3] [--write]

* Volume: a synthetic 512x512 chest CT of ``--slices`` slices from ``m3lung.phantom`` (always
  available), and the real COVID-CT-MD volumes when ``../shared/data`` is present.
* Baseline: the same six steps written the straightforward way, one slice at a time with
  scikit-image (threshold, ``binary_opening`` 1x8, ``label`` 8-connected, drop border components and
  small ones, opening again, bounding box + 10 px, ``transform.resize`` to 512, three windows).
* Ours: ``m3lung.preprocess.prepare_slices`` in the paper's plain form (``body_only=False,
  reconstruct=False``: the same steps as the baseline) and with the default options.
* Also: the time to read each COVID-CT-MD volume with ``m3lung.io.read_ct``.

Figures are medians over ``--repeat`` runs in one process; ``--write`` replaces the section of
``BENCHMARKS.md`` between its markers. Timings are noisy: compare ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
from skimage import measure, morphology, segmentation, transform

from _markdown import write_section
from m3lung.io import read_ct
from m3lung.phantom import PhantomConfig, make_study
from m3lung.preprocess import LungCropConfig, prepare_slices

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("M3LUNG_SHARED_DATA", ROOT.parent / "shared" / "data"))
CENTRES = (-700.0, -600.0, -500.0)


def skimage_per_slice(hu: np.ndarray, size: int = 512, margin: int = 10) -> np.ndarray:
    """The six steps of the paper, slice by slice, the straightforward scikit-image way."""
    n, h, w = hu.shape
    out = np.empty((n, len(CENTRES), size, size), dtype=np.float32)
    fp = np.ones((1, 8), dtype=bool)
    for k in range(n):
        air = hu[k] < -300
        air = morphology.binary_opening(air, fp)
        lab = measure.label(air, connectivity=2)
        lab = segmentation.clear_border(lab)
        mask = morphology.remove_small_objects(lab > 0, max_size=int(5e-5 * h * w))
        mask = morphology.binary_opening(mask, fp)
        rows, cols = np.nonzero(mask)
        if rows.size:
            r0, r1 = max(rows.min() - margin, 0), min(rows.max() + 1 + margin, h)
            c0, c1 = max(cols.min() - margin, 0), min(cols.max() + 1 + margin, w)
        else:
            r0, r1, c0, c1 = 0, h, 0, w
        crop = transform.resize(hu[k, r0:r1, c0:c1], (size, size), order=1, preserve_range=True, anti_aliasing=False)
        for i, c in enumerate(CENTRES):
            out[k, i] = np.clip((crop - (c - 600.0)) / 1200.0, 0.0, 1.0)
    return out


def timed(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--slices", type=int, default=150)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    warnings.simplefilter("ignore")

    study = make_study(1, seed=7, config=PhantomConfig(slices=(args.slices, args.slices)))
    vol = study.volume
    paper = LungCropConfig(body_only=False, reconstruct=False)
    rows = []

    t_base = timed(lambda: skimage_per_slice(vol.voxels), max(1, args.repeat - 1))
    t_paper = timed(lambda: prepare_slices(vol, crop=paper), args.repeat)
    t_ours = timed(lambda: prepare_slices(vol), args.repeat)
    t_ours1 = timed(lambda: prepare_slices(vol, crop=LungCropConfig(workers=1)), args.repeat)
    n = vol.n_slices
    data = f"synthetic phantom (m3lung.phantom, COVID-19 class, seed 7), {n} slices 512x512"
    rows.append((data, "per-slice scikit-image (paper steps)", t_base, n / t_base, 1.0))
    rows.append((data, "m3lung vectorised, paper steps", t_paper, n / t_paper, t_base / t_paper))
    rows.append((data, "m3lung vectorised, default options", t_ours, n / t_ours, t_base / t_ours))
    rows.append((data, "m3lung default options, 1 thread", t_ours1, n / t_ours1, t_base / t_ours1))

    reads = []
    ctmd = SHARED / "covid-ct-md" / "Sample data"
    if ctmd.exists():
        for case in sorted(ctmd.glob("*/*")):
            t_read = timed(lambda c=case: read_ct(c), 1)
            v = read_ct(case)
            reads.append((case.name, v.n_slices, t_read))
            tb = timed(lambda v=v: skimage_per_slice(v.voxels), 1)
            to = timed(lambda v=v: prepare_slices(v), args.repeat)
            label = f"real COVID-CT-MD {case.name}, {v.n_slices} slices 512x512"
            rows.append((label, "per-slice scikit-image (paper steps)", tb, v.n_slices / tb, 1.0))
            rows.append((label, "m3lung vectorised, default options", to, v.n_slices / to, tb / to))

    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}. Command: `python benchmarks/bench_preprocess.py --slices {args.slices} "
        f"--repeat {args.repeat} --write`. Medians of {args.repeat} runs; ratio = baseline time / time, same run.",
        "",
        "| data | implementation | seconds | slices/s | speed-up vs per-slice |",
        "|---|---|---:|---:|---:|",
    ]
    lines += [f"| {d} | {impl} | {t:.2f} | {sps:.0f} | {r:.1f}x |" for d, impl, t, sps, r in rows]
    if reads:
        lines += ["", "| COVID-CT-MD volume (JPEG Lossless DICOM) | slices | read_ct seconds |", "|---|---:|---:|"]
        lines += [f"| {name} | {ns} | {t:.2f} |" for name, ns, t in reads]
    print("\n".join(lines))
    if args.write:
        write_section("bench_preprocess", lines, "Preprocessing (issue 2)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
