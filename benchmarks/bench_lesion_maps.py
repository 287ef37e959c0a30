"""Benchmark: what a finer lesion map costs at inference (``map_shifts``, ``map_flip``, ``layer3_stride``).

Run:  python benchmarks/bench_lesion_maps.py [--device cpu|cuda] [--repeat 5] [--write]

The CPU profile's network (quarter-width ResNet-10, 256 px, batch 16, fp32, ``torch.inference_mode``)
predicts slices with the lesion map drawn and upsampled to the input, as ``m3lung screen`` and
``m3lung evaluate slice`` do: the paper's map (one value per ResBlock-3 cell, 16 px), shift-and-stitch
with 2 and 4 shifts per axis (8 px and 4 px grids, same weights), the mirrored slice's map averaged in
(``map_flip``, alone and with 2 shifts), ``layer3_stride=1`` (8 px grid, a different network), and no
map at all (``draw_map=False``, what training and feature extraction run).
Each figure is a median of timed batches after a warm-up; ratios are against the paper's map in the
same run. Inputs are random tensors: throughput does not depend on the image content.
"""

from __future__ import annotations

import argparse
import sys

import torch

from _torchbench import device_name, median_seconds, write_device_section
from m3lung.models import SliceNet, SliceNetConfig


def _rate(net: SliceNet, x: torch.Tensor, draw_map: bool, repeat: int, device: torch.device) -> float:
    size = (x.shape[2], x.shape[3])

    def run() -> None:
        with torch.inference_mode():
            net(x, map_size=size if draw_map else None, draw_map=draw_map)

    return x.shape[0] / median_seconds(run, repeat, device)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    size, batch = 256, 16
    x = torch.rand(batch, 1, size, size, device=device)
    cases = [
        ("paper's map (16 px grid)", SliceNetConfig(backbone="resnet10n", input_size=size), True),
        ("no map (draw_map=False)", SliceNetConfig(backbone="resnet10n", input_size=size), False),
        ("map_shifts=2 (8 px grid)", SliceNetConfig(backbone="resnet10n", input_size=size, map_shifts=2), True),
        ("map_shifts=4 (4 px grid)", SliceNetConfig(backbone="resnet10n", input_size=size, map_shifts=4), True),
        ("map_flip", SliceNetConfig(backbone="resnet10n", input_size=size, map_flip=True), True),
        (
            "map_shifts=2 + map_flip",
            SliceNetConfig(backbone="resnet10n", input_size=size, map_shifts=2, map_flip=True),
            True,
        ),
        ("layer3_stride=1 (8 px grid)", SliceNetConfig(backbone="resnet10n", input_size=size, layer3_stride=1), True),
    ]
    rows = []
    for name, cfg, draw in cases:
        net = SliceNet(cfg).to(device).eval()
        rows.append((name, _rate(net, x, draw, args.repeat, device)))
    base = rows[0][1]
    dev = device_name(device)
    lines = [
        f"Device: {dev}; torch {torch.__version__}, {torch.get_num_threads()} threads. Command: "
        f"`python benchmarks/bench_lesion_maps.py --device {device.type} --repeat {args.repeat} --write`. "
        f"Quarter-width ResNet-10 at {size} px, batch {batch}, fp32, one window centre, map upsampled to the "
        f"input; medians of {args.repeat} timed batches after a warm-up.",
        "",
        "| lesion map | slices/s | time vs paper's map |",
        "|---|---:|---:|",
    ]
    lines += [f"| {name} | {v:.1f} | {base / v:.2f}x |" for name, v in rows]
    print("\n".join(lines))
    if args.write:
        write_device_section("bench_lesion_maps", device, lines, "Lesion-map resolution")
    return 0


if __name__ == "__main__":
    sys.exit(main())
