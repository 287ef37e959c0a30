"""Benchmark and calibration table of the input quality gate (``m3lung.preprocess.assess_chest``).

Run:  python benchmarks/bench_quality.py [--big-slices 500] [--write]

For every case it prints the verdict, the figures the thresholds of ``QualityConfig`` were set
from, and the time per volume (median of ``--repeat`` runs):

* real (when ``../shared/data`` is present): the 3 COVID-CT-MD volumes, the TotalSegmentator chest
  crop (NIfTI) and 20-slice DICOM series, the lungmask 2-file series, and a 256x256 centre crop and
  a single slice of P002;
* synthetic chests (``m3lung.phantom``): all four classes at 128 px (24-40 slices), 256 px (40-48,
  the demo's) and 512 px (60-90 slices), several seeds; a phantom's lowest 20 slices (lung bases)
  and one mid slice;
* garbage that must be refused: uniform noise -1024..3000, all 0, all -1024, all 1e30, all NaN,
  8-bit grey values (a phantom windowed to 0..255, kept as "HU"), a water cylinder, a head-like
  blob, a synthetic abdomen with gas and the phantom's own slices below the lung bases;
* speed: a 512x512x``--big-slices`` volume (P002 tiled, or a phantom when the data is absent).

``--write`` puts the table into BENCHMARKS.md. Timings are noisy; they never gate tests.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from _markdown import write_section
from m3lung.io import CTVolume, read_ct
from m3lung.phantom import PhantomConfig, make_study
from m3lung.preprocess import ChestQuality, QualityConfig, assess_chest

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("M3LUNG_SHARED_DATA", ROOT.parent / "shared" / "data"))
COVIDCTMD = {
    "P002": "covid-ct-md/Sample data/COVID-19 subjects/P002",
    "cap002": "covid-ct-md/Sample data/Cap subjects/cap002",
    "normal001": "covid-ct-md/Sample data/Normal subjects/normal001",
}
VARIANTS = {
    "ts-crop-nii": "dicom-variants/totalsegmentator/ct_cropped.nii.gz",
    "ts-20-dicom": "dicom-variants/totalsegmentator/example_ct_dicom",
    "lungmask-2": "dicom-variants/lungmask",
}


def vol(x: np.ndarray, spacing: tuple[float, float, float] = (2.0, 0.7, 0.7)) -> CTVolume:
    return CTVolume(voxels=np.asarray(x, dtype=np.float32), spacing=spacing)


def water_cylinder(n: int = 40, size: int = 256) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    x = np.full((n, size, size), -1000.0, np.float32)
    x[:, (yy - c) ** 2 + (xx - c) ** 2 <= (0.4 * size) ** 2] = 0.0
    return x + np.random.default_rng(0).normal(0, 10, x.shape).astype(np.float32)


def head_blob(n: int = 40, size: int = 256) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    r = np.sqrt(((yy - c) / 0.42) ** 2 + ((xx - c) / 0.34) ** 2) / size
    x = np.full((n, size, size), -1000.0, np.float32)
    x[:, r <= 1.0] = 1200.0  # skull
    x[:, r <= 0.92] = 35.0  # brain
    x[:, r <= 0.15] = 10.0  # ventricles
    # sinuses: small air pockets inside the head
    x[:, (yy - 0.25 * size) ** 2 + (xx - c) ** 2 <= (0.03 * size) ** 2] = -1000.0
    return x + np.random.default_rng(1).normal(0, 10, x.shape).astype(np.float32)


def abdomen(n: int = 40, size: int = 256) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    c = (size - 1) / 2
    x = np.full((n, size, size), -1000.0, np.float32)
    ell = ((yy - c) / (0.33 * size)) ** 2 + ((xx - c) / (0.45 * size)) ** 2
    x[:, ell <= 1.0] = -100.0  # subcutaneous fat
    x[:, ell <= 0.8] = 40.0  # muscle, organs
    x[:, ((yy - 0.45 * size) / (0.15 * size)) ** 2 + ((xx - 0.35 * size) / (0.2 * size)) ** 2 <= 1] = 60.0  # liver
    x[:, (yy - 0.7 * size) ** 2 + (xx - c) ** 2 <= (0.05 * size) ** 2] = 700.0  # vertebra
    rng = np.random.default_rng(2)
    for _ in range(8):  # bowel and stomach gas
        cy, cx, r = rng.uniform(0.35, 0.6) * size, rng.uniform(0.35, 0.7) * size, rng.uniform(0.01, 0.04) * size
        x[:, (yy - cy) ** 2 + (xx - cx) ** 2 <= r**2] = -1000.0
    return x + rng.normal(0, 10, x.shape).astype(np.float32)


def cases(with_real: bool, big_slices: int) -> Iterator[tuple[str, str, Callable[[], CTVolume]]]:
    """(name, expected 'yes'/'no', builder) for every case."""
    if with_real:
        for name, rel in {**COVIDCTMD, **VARIANTS}.items():
            yield name, "no" if name == "ts-20-dicom" else "yes", lambda rel=rel: read_ct(SHARED / rel)

        def p002_crop() -> CTVolume:
            v = read_ct(SHARED / COVIDCTMD["P002"])
            return v.with_voxels(np.ascontiguousarray(v.voxels[:, 128:384, 128:384]))

        def p002_slice() -> CTVolume:
            v = read_ct(SHARED / COVIDCTMD["P002"])
            return v.with_voxels(np.ascontiguousarray(v.voxels[66:67]), slice_positions=None, source_index=None)

        yield "P002-crop256", "yes", p002_crop
        yield "P002-1slice", "yes", p002_slice
    configs = {
        "ph128": PhantomConfig.small(),
        "ph256": PhantomConfig.small(size=256, slices=(40, 48)),
        "ph512": PhantomConfig(slices=(60, 90)),
    }
    for cname, cfg in configs.items():
        for label in range(4):
            for seed in (0, 1) if cname != "ph512" else (0,):
                yield (
                    f"{cname}-c{label}-s{seed}",
                    "yes",
                    lambda label=label, seed=seed, cfg=cfg: make_study(label, seed=seed, config=cfg).volume,
                )
    small = PhantomConfig.small(size=256, slices=(40, 48))

    def bases() -> CTVolume:
        v = make_study(3, seed=5, config=small).volume
        return v.with_voxels(np.ascontiguousarray(v.voxels[:20]), slice_positions=None, source_index=None)

    def one_slice() -> CTVolume:
        v = make_study(0, seed=5, config=small).volume
        k = v.n_slices // 2
        return v.with_voxels(np.ascontiguousarray(v.voxels[k : k + 1]), slice_positions=None, source_index=None)

    def below_bases() -> CTVolume:
        s = make_study(0, seed=5, config=small)
        none = ~s.lung_mask.reshape(s.lung_mask.shape[0], -1).any(axis=1)
        low = np.nonzero(none)[0]
        low = low[low < s.volume.n_slices // 2]
        return s.volume.with_voxels(np.ascontiguousarray(s.volume.voxels[low]), slice_positions=None, source_index=None)

    def eight_bit() -> CTVolume:
        v = make_study(1, seed=5, config=small).volume
        return v.with_voxels(np.round(np.clip((v.voxels + 1000.0) / 1400.0 * 255.0, 0, 255)))

    yield "ph256-bases20", "yes", bases
    yield "ph256-1slice", "yes", one_slice
    yield "noise-200x512", "no", lambda: vol(np.random.default_rng(0).uniform(-1024, 3000, (200, 512, 512)))
    yield "zeros", "no", lambda: vol(np.zeros((40, 256, 256)))
    yield "all-1024", "no", lambda: vol(np.full((40, 256, 256), -1024.0))
    yield "all-1e30", "no", lambda: vol(np.full((40, 256, 256), 1e30))
    yield "all-nan", "no", lambda: vol(np.full((40, 256, 256), np.nan))
    yield "8bit-as-HU", "no", eight_bit
    yield "water-cylinder", "no", lambda: vol(water_cylinder())
    yield "head-blob", "no", lambda: vol(head_blob())
    yield "abdomen-gas", "no", lambda: vol(abdomen())
    yield "ph256-below-bases", "no", below_bases

    def big() -> CTVolume:
        if with_real:
            v = read_ct(SHARED / COVIDCTMD["P002"])
            reps = -(-big_slices // v.n_slices)
            return vol(np.tile(v.voxels, (reps, 1, 1))[:big_slices], (1.0, *v.spacing[1:]))  # type: ignore[arg-type]
        v = make_study(0, seed=0, config=PhantomConfig(slices=(big_slices, big_slices))).volume
        return v

    yield f"big-{big_slices}x512", "yes", big


FIGS = (
    "n_slices",
    "air_fraction",
    "lung_fraction",
    "soft_tissue_fraction",
    "bone_fraction",
    "dense_fraction",
    "implausible_fraction",
    "lung_ml",
    "max_lung_share",
    "lung_slice_fraction",
    "crop_slice_fraction",
)


def fmt(q: ChestQuality, key: str) -> str:
    v = q.figures.get(key, float("nan"))
    if key in ("n_slices", "lung_ml"):
        return f"{v:.0f}"
    return f"{v:.3f}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--big-slices", type=int, default=500)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="update BENCHMARKS.md")
    args = ap.parse_args()
    with_real = SHARED.exists()
    warnings.simplefilter("ignore")
    head = "| case | expected | assessable | " + " | ".join(FIGS) + " | time s | reasons / notes |"
    lines = [head, "|" + "---|" * (len(FIGS) + 5)]
    print(head)
    wrong = 0
    extra: list[str] = []
    for name, expected, build in cases(with_real, args.big_slices):
        v = build()
        times = []
        for _ in range(args.repeat):
            t0 = time.perf_counter()
            q = assess_chest(v)
            times.append(time.perf_counter() - t0)
        got = "yes" if q.assessable else "no"
        wrong += got != expected
        why = "; ".join(q.reasons or q.notes).replace("|", "/")
        row = (
            f"| {name} | {expected} | {got}{'' if got == expected else ' (!)'} | "
            + " | ".join(fmt(q, k) for k in FIGS)
            + f" | {statistics.median(times):.2f} | {why} |"
        )
        lines.append(row)
        print(row, flush=True)
        if name.startswith("big-"):
            # baseline: the same gate on every slice and every voxel (no sampling)
            full = QualityConfig(max_mask_slices=10**9, max_histogram_voxels=10**15)
            t0 = time.perf_counter()
            qf = assess_chest(v, full)
            tf = time.perf_counter() - t0
            base = (
                f"Baseline on {name}: every slice masked and every voxel counted {tf:.2f} s, sampled gate "
                f"{statistics.median(times):.2f} s (x{tf / statistics.median(times):.1f} faster); same verdict: "
                f"{qf.assessable == q.assessable}; lung_ml {qf.figures['lung_ml']:.0f} vs {q.figures['lung_ml']:.0f}, "
                f"air_fraction {qf.figures['air_fraction']:.3f} vs {q.figures['air_fraction']:.3f}."
            )
            print(base)
            extra.append(base)
    machine = (
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
        f"numpy {np.__version__}; real data {'present' if with_real else 'absent'}. {wrong} verdict(s) differ "
        "from the expectation."
    )
    print(machine)
    lines += ["", *extra, "", machine]
    if args.write:
        write_section("bench_quality", lines, "Input quality gate (issue 17)")
    return 1 if wrong else 0


if __name__ == "__main__":
    sys.exit(main())
