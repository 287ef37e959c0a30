"""Shared by the torch benchmarks: the median time of a call, synchronised on CUDA, and the device's name."""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable

import torch

from _markdown import write_section


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall time of one call of ``fn()``, with the CUDA queue drained before and after it."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def median_seconds(fn: Callable[[], object], repeat: int, device: torch.device, warm_s: float = 1.0) -> float:
    """Median wall time of ``fn()`` over ``repeat`` calls after a warm-up of at least two calls and
    ``warm_s`` seconds (at most ten calls): one call was not enough for the first row of a run, which
    came out up to 1.7x slow (thread pool, allocator and oneDNN caches still warming) and skewed every
    ratio against it."""
    t_end = time.perf_counter() + warm_s
    for k in range(10):
        fn()
        if k >= 1 and time.perf_counter() >= t_end:
            break
    return statistics.median(_seconds(fn, device) for _ in range(repeat))


def paired_speedup(
    baseline: Callable[[], object], other: Callable[[], object], repeat: int, device: torch.device
) -> float:
    """How many times faster ``other`` runs than ``baseline``: the median, over ``repeat`` rounds, of the
    ratio of their times in the same round (each round runs both, the order alternating). Timed one
    after the other, two figures of a few percent apart drown in this machine's drift; paired, they
    do not."""
    median_seconds(baseline, 1, device)  # warm-up of both
    median_seconds(other, 1, device)
    ratios = []
    for k in range(repeat):
        pair = (baseline, other) if k % 2 == 0 else (other, baseline)
        times = [_seconds(fn, device) for fn in pair]
        t_base, t_other = times if k % 2 == 0 else times[::-1]
        ratios.append(t_base / t_other)
    return statistics.median(ratios)


def cpu_capability() -> str:
    """The widest vector instruction set torch's CPU kernels use here ("AVX2", "AVX512", ...): with the
    core count it decides CPU throughput, and whether bf16 helps (AVX512-BF16) or hurts (AVX2)."""
    return str(torch.backends.cpu.get_cpu_capability())


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's architecture, core count and vector instruction set."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.machine()} CPU, {os.cpu_count()} cores, {cpu_capability()}"


def section_key(bench: str, device: torch.device) -> str:
    """BENCHMARKS.md marker of one benchmark on one kind of device: CPUs with different vector
    instruction sets get sections of their own, so that a run on one never overwrites the other's."""
    if device.type == "cuda":
        return f"{bench}:cuda"
    return f"{bench}:cpu-{cpu_capability().lower()}"


def write_device_section(bench: str, device: torch.device, lines: list[str], title: str) -> None:
    """Write ``lines`` into BENCHMARKS.md as ``bench``'s section for this kind of device, under the
    heading "``title`` on CPU|CUDA (issue 3)"."""
    write_section(section_key(bench, device), lines, f"{title} on {device.type.upper()} (issue 3)")
