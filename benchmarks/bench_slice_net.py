"""Benchmark: the M³Lung-Sys slice network, inference and training throughput.

Run:  python benchmarks/bench_slice_net.py [--device cpu|cuda] [--write]

* Inference: slices/s of the full network (ResNet-50, lesion head, attention, coordinate maps) at
  224, 256 and 512 pixels, batch 8, under ``torch.inference_mode``: fp32, bf16 autocast, channels-last
  and bf16 + channels-last. Each figure is a median of timed batches after a warm-up; ratios are
  against fp32 at the same size in the same run. One slice here is one forward pass (screening runs
  three window centres per slice, so a scan costs three times this). On a CPU without bf16
  instructions the bf16 rows are not run (torch emulates bf16 there, 6-70x slower than fp32, and those
  rows took most of an hour) unless ``--bf16 always``.
* Training: samples/s of forward + backward + SGD step for the paper's network (ResNet-50, 224 px,
  batch 8), the CPU profile's (``slice_cpu``: quarter-width ResNet-10, 256 px, batch 16), the same with
  ``model.layer3_stride=1``, and the former CPU profile's (``slice_cpu_r18``: ResNet-18, 128 px, batch 32).
* The stem's max pool in training: the ``slice_cpu`` step with the network's ``StemMaxPool``
  (channels-last forward on the CPU) against the same step with torch's own NCHW max pool, timed in
  alternating pairs (a gain of a few percent is below the drift between rows timed one after another).

Inputs are random tensors: throughput does not depend on the image content.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import torch

from _torchbench import device_name, median_seconds, paired_speedup, write_device_section
from m3lung.models import SliceNet, SliceNetConfig
from m3lung.train.inference import cpu_has_bf16


def native_stem_pool(net: SliceNet) -> SliceNet:
    """The network with torch's own NCHW stem max pool instead of ``StemMaxPool`` (before 2026-12-01)."""
    net.stem[3] = torch.nn.MaxPool2d(3, 2, 1)
    return net


def inference(size: int, batch: int, device: torch.device, bf16: bool, channels_last: bool, repeat: int) -> float:
    net = SliceNet(SliceNetConfig(input_size=size)).to(device).eval()
    x = torch.rand(batch, 1, size, size, device=device)
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)

    def run() -> None:
        with torch.inference_mode(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            net(x)

    return batch / median_seconds(run, repeat, device)


def training_step(
    backbone: str,
    size: int,
    batch: int,
    device: torch.device,
    layer3_stride: int = 2,
    native_pool: bool = False,
) -> Callable[[], None]:
    """One forward + backward + SGD step of the network on a random batch (fixed inputs)."""
    cfg = SliceNetConfig(backbone=backbone, input_size=size, layer3_stride=layer3_stride)  # type: ignore[arg-type]
    torch.manual_seed(0)
    net = SliceNet(cfg).to(device).train()
    if native_pool:
        native_stem_pool(net)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(batch, 1, size, size, device=device)
    y = torch.randint(0, 4, (batch,), device=device)
    les = (y != 0).long()

    def step() -> None:
        out = net(x)
        assert out.lesion_logits is not None
        loss = torch.nn.functional.cross_entropy(out.class_logits, y) + torch.nn.functional.cross_entropy(
            out.lesion_logits, les
        )
        opt.zero_grad()
        loss.backward()
        opt.step()

    return step


def training(backbone: str, size: int, batch: int, device: torch.device, repeat: int, layer3_stride: int = 2) -> float:
    """Samples/s of :func:`training_step`."""
    return batch / median_seconds(training_step(backbone, size, batch, device, layer3_stride), repeat, device)


def augmentation(size: int, batch: int, device: torch.device, repeat: int) -> float:
    """Slices/s of the optional random rotation/zoom/shift (``data.rotate/scale/shift``) on a batch."""
    from m3lung.train.augment import random_affine

    x = torch.rand(batch, 1, size, size, device=device)
    g = torch.Generator().manual_seed(0)
    angle = (torch.rand(batch, generator=g) - 0.5).to(device)
    zoom = (0.9 + 0.2 * torch.rand(batch, generator=g)).to(device)
    shift = (0.1 * torch.rand(batch, 2, generator=g) - 0.05).to(device)
    return batch / median_seconds(lambda: random_affine(x, angle, zoom, shift), repeat, device)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--write", action="store_true")
    ap.add_argument(
        "--bf16",
        choices=("auto", "always"),
        default="auto",
        help="auto: skip the bf16 rows on a CPU without bf16 instructions (emulated bf16 is 6-70x slower "
        "than fp32 there, and its rows took most of an hour); always: run them anyway",
    )
    args = ap.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    run_bf16 = args.bf16 == "always" or device.type != "cpu" or cpu_has_bf16()
    rows: list[tuple[int, str, float | None, float | None]] = []
    batch = 32 if device.type == "cuda" else 8
    for size in (224, 256, 512):
        base = inference(size, batch, device, False, False, args.repeat)
        rows.append((size, "fp32", base, 1.0))
        for name, bf16, cl in (
            ("bf16", True, False),
            ("channels-last", False, True),
            ("bf16 + channels-last", True, True),
        ):
            if bf16 and not run_bf16:
                rows.append((size, name, None, None))
                continue
            v = inference(size, batch, device, bf16, cl, args.repeat)
            rows.append((size, name, v, v / base))
    cpu_rate = training("resnet10n", 256, 16, device, args.repeat)
    train_rows = [
        ("paper network: ResNet-50, 224 px, batch 8", training("resnet50", 224, 8, device, args.repeat)),
        (
            "former CPU profile (slice_cpu_r18): ResNet-18, 128 px, batch 32",
            training("resnet18", 128, 32, device, args.repeat),
        ),
        ("CPU profile (slice_cpu): quarter-width ResNet-10, 256 px, batch 16", cpu_rate),
        (
            "the same with model.layer3_stride=1 (32x32 lesion map)",
            training("resnet10n", 256, 16, device, args.repeat, layer3_stride=1),
        ),
    ]
    pool_rounds = max(20, 10 * args.repeat)
    pool_gain = paired_speedup(
        training_step("resnet10n", 256, 16, device, native_pool=True),
        training_step("resnet10n", 256, 16, device),
        pool_rounds,
        device,
    )
    aug = augmentation(256, 16, device, args.repeat)
    dev = device_name(device)
    lines = [
        f"Device: {dev}; torch {torch.__version__}, {torch.get_num_threads()} threads. Command: "
        f"`python benchmarks/bench_slice_net.py --device {device.type} --repeat {args.repeat} --write`. "
        f"Random inputs, batch {batch} for inference; medians of {args.repeat} timed batches after a warm-up.",
        "",
        "| input | precision / layout | slices/s (one window) | vs fp32 |",
        "|---:|---|---:|---:|",
    ]
    # two significant digits under 1 slice/s (bf16 on a CPU without bf16 instructions), else one decimal
    for s, name, v, r in rows:
        if v is None or r is None:
            lines.append(f"| {s} | {name} | not run: no bf16 instructions on this CPU (`--bf16 always` runs it) | |")
        else:
            lines.append(f"| {s} | {name} | {f'{v:.1f}' if v >= 1 else f'{v:.2g}'} | {r:.2f}x |")
    lines += ["", "| training | samples/s | vs CPU profile |", "|---|---:|---:|"]
    lines += [f"| {name} | {v:.1f} | {v / cpu_rate:.2f}x |" for name, v in train_rows]
    lines += [
        "",
        f"Random rotation/zoom/shift of a batch of 16 slices at 256 px: {aug:.0f} slices/s, "
        f"{cpu_rate / aug:.3f}x the time of a training step of the quarter-width ResNet-10 at 256 px.",
        "",
        f"Stem max pool: the `slice_cpu` training step with `StemMaxPool` runs {pool_gain:.3f}x as fast as with "
        f"torch's own NCHW max pool (median of {pool_rounds} paired rounds, the two steps alternating).",
    ]
    print("\n".join(lines))
    if args.write:
        write_device_section("bench_slice_net", device, lines, "Slice network")
    return 0


if __name__ == "__main__":
    sys.exit(main())
