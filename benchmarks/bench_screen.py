"""Benchmark: ``m3lung screen`` end to end, the lesion-map uncrop, and memory on a long study.

Run:  python benchmarks/bench_screen.py [--weights W] [--slices 150] [--long 500] [--write]

* Uncrop: putting 150 lesion maps (128x128) back into their 512x512 slices, vectorised
  (:func:`m3lung.explain.uncrop_maps`) against a per-slice loop of ``skimage.transform.resize`` into each
  box, in the same run (ratio; the outputs agree to 1e-4).
* Screening: a synthetic 512x512 study of ``--slices`` slices (``m3lung.phantom``, NIfTI) screened by a
  :class:`m3lung.Screener` with ``--weights`` (default: the shipped demo weights), fp32 and bf16:
  seconds per stage and slices/s (each slice runs the slice network at three window centres).
* Memory: a ``--long``-slice 512x512 study screened by the ``m3lung screen`` command in a child
  process; its peak resident memory (``ru_maxrss``) against the size of the volume itself (float32).

Every study is synthetic (m3lung.phantom); timings are medians of ``--repeat`` runs after a warm-up.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from _markdown import write_section
from m3lung.explain import uncrop_maps


def uncrop_loop(maps: np.ndarray, boxes: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """The straightforward version: one skimage resize per slice."""
    from skimage.transform import resize

    out = np.zeros((maps.shape[0], *shape), np.float32)
    for k, (r0, c0, r1, c1) in enumerate(boxes):
        out[k, r0:r1, c0:c1] = resize(maps[k], (r1 - r0, c1 - c0), order=1, mode="edge", anti_aliasing=False)
    return out


def _median(fn, repeat: int) -> float:
    fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def bench_uncrop(n: int, repeat: int) -> list[str]:
    rng = np.random.default_rng(0)
    maps = rng.random((n, 128, 128), dtype=np.float32)
    r0 = rng.integers(40, 120, n)
    c0 = rng.integers(20, 80, n)
    boxes = np.stack([r0, c0, r0 + rng.integers(250, 380, n), c0 + rng.integers(350, 420, n)], 1)
    fast = _median(lambda: uncrop_maps(maps, boxes, (512, 512)), repeat)
    slow = _median(lambda: uncrop_loop(maps, boxes, (512, 512)), repeat)
    diff = float(np.abs(uncrop_maps(maps, boxes, (512, 512)) - uncrop_loop(maps, boxes, (512, 512))).max())
    return [
        f"Uncrop of {n} lesion maps (128x128 → boxes in 512x512 slices), median of {repeat}:",
        "",
        "| version | seconds | slices/s | ratio |",
        "|---|---|---|---|",
        f"| per-slice `skimage.transform.resize` loop (baseline) | {slow:.3f} | {n / slow:.0f} | 1.00 |",
        f"| `uncrop_maps` (batched matrix products, chunks of 32) | {fast:.3f} | {n / fast:.0f} | {slow / fast:.2f} |",
        "",
        f"Largest difference between the two: {diff:.1e}.",
    ]


def make_study(path: Path, slices: int, seed: int) -> Path:
    from m3lung.phantom import PhantomConfig, make_study, write_study

    study = make_study(1, seed=seed, config=PhantomConfig(slices=(slices, slices)), patient_id=f"bench{slices}")
    return Path(write_study(study, path, format="nifti", seed=seed)["ct"])


def bench_screen(ct: Path, weights: str, repeat: int) -> list[str]:
    import m3lung
    from m3lung.io import read_ct

    vol = read_ct(ct)
    rows = []
    base = None
    for name, bf16 in (("fp32", False), ("bf16 autocast", True)):
        scr = m3lung.Screener(weights, device="cpu", bf16=bf16)
        stages: dict[str, list[float]] = {}

        def run(scr=scr, stages=stages) -> None:
            rep = scr.screen(vol)
            for k, v in rep.data["timings_s"].items():
                stages.setdefault(k, []).append(v)

        total = _median(run, repeat)
        base = base or total
        med = {k: statistics.median(v) for k, v in stages.items()}
        rows.append(
            f"| {name} | {total:.2f} | {vol.n_slices / total:.1f} | {med['lung_crop']:.2f} | "
            f"{med['slice_network']:.2f} | {med['patient']:.3f} | {base / total:.2f} |"
        )
    doc = m3lung.Screener(weights).system.slice_config
    return [
        f"Screening a synthetic {vol.n_slices}-slice {vol.shape[1]}x{vol.shape[2]} study (NIfTI, already in memory) "
        "with "
        f"`{Path(weights).name}` ({doc.backbone}, {doc.input_size} px; three window centres per slice), median of "
        f"{repeat}; writing the outputs is not included:",
        "",
        "| precision | seconds | slices/s | lung crop s | slice network + maps s | patient s | ratio |",
        "|---|---|---|---|---|---|---|",
        *rows,
    ]


_CHILD = """
import sys
from m3lung.cli import main
code = main(sys.argv[1:])
hwm = next(line for line in open('/proc/self/status') if line.startswith('VmHWM'))
print('VmHWM', int(hwm.split()[1]))
sys.exit(code)
"""


def bench_memory(ct: Path, weights: str, out: Path, n: int) -> list[str]:
    """Peak memory of ``m3lung screen`` in a fresh process (VmHWM: ru_maxrss would count this parent)."""
    cmd = [sys.executable, "-c", _CHILD, "screen", str(ct), "--out", str(out), "--weights", weights, "--quiet"]
    t0 = time.perf_counter()
    res = subprocess.run(cmd, check=True, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    peak_mb = int(res.stdout.split("VmHWM")[-1].split()[0]) / 1024
    volume_mb = n * 512 * 512 * 4 / 2**20
    return [
        f"Memory: `m3lung screen` of a synthetic {n}-slice 512x512 study (NIfTI) in a fresh process, chunks of 32 "
        f"slices: peak resident memory {peak_mb:.0f} MiB (VmHWM), against {volume_mb:.0f} MiB for the volume itself "
        f"in float32 ({peak_mb / volume_mb:.1f}x; the Python process with torch alone is about 300 MiB); "
        f"{wall:.0f} s wall time including the start-up, reading and writing the outputs.",
    ]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", help="system or slice checkpoint (default: the shipped demo weights)")
    ap.add_argument("--slices", type=int, default=150)
    ap.add_argument("--long", type=int, default=500, help="slices of the memory study (0: skip)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true", help="write the results into BENCHMARKS.md")
    args = ap.parse_args()
    import torch

    from m3lung.systems.demo import demo_weights

    torch.set_num_threads(os.cpu_count() or 1)
    weights = args.weights or str(demo_weights())
    body = [
        f"Machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
        "CPU only. Command: `python benchmarks/bench_screen.py --write`.",
        "",
        *bench_uncrop(args.slices, args.repeat),
        "",
    ]
    with tempfile.TemporaryDirectory() as tmp:
        ct = make_study(Path(tmp) / "study", args.slices, seed=3)
        body += [*bench_screen(ct, weights, args.repeat), ""]
        if args.long:
            long_ct = make_study(Path(tmp) / "long", args.long, seed=4)
            body += bench_memory(long_ct, weights, Path(tmp) / "out", args.long)
    text = "\n".join(body)
    print(text)
    if args.write:
        write_section("screen", body, "Screening (m3lung screen)")


if __name__ == "__main__":
    main()
