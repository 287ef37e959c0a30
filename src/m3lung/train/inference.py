"""Where networks run for inference, written once for every system: device choice, bf16, channels-last,
loading a checkpoint onto a device, batching and autocast.

* :func:`pick_device`: "auto" (CUDA when available; the local rank's GPU under torchrun), "cpu", "cuda";
* :func:`ready` puts a built network in eval mode on its device (channels-last when asked), warning
  when bf16 is asked for on a CPU that would emulate it; :func:`load_for_inference` does the same for
  a checkpoint (file or loaded doc) of a named model family;
* :func:`batch_slices` and :func:`autocast` are the batching and mixed-precision context of every
  inference loop.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from m3lung.errors import InputError, M3LungError, M3LungWarning

__all__ = ["autocast", "batch_slices", "cpu_has_bf16", "load_for_inference", "pick_device", "ready"]


def pick_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto``: CUDA when available (the local rank's GPU under torchrun), else CPU."""
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise M3LungError("device 'cuda' was asked for but no CUDA GPU is available; use --device cpu")
    if name not in ("auto", "cuda"):
        raise InputError(f"device must be auto, cpu or cuda, got {name!r}")
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def cpu_has_bf16() -> bool:
    """Whether this CPU runs bfloat16 in hardware (AVX512-BF16 or AMX, as oneDNN sees it). Without, torch
    emulates bf16 and autocast runs 6-70x *slower* than fp32 (BENCHMARKS.md, AVX2 table)."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch build without the query: assume the worst
        return False


def ready(
    model: nn.Module, *, device: str | torch.device = "auto", bf16: bool = False, channels_last: bool = False
) -> torch.device:
    """Put ``model`` in eval mode on ``device`` (channels-last when asked); returns the device it is on.

    bf16 asked for on a CPU without bf16 instructions warns (it runs, several times slower than fp32).
    """
    dev = device if isinstance(device, torch.device) else pick_device(device)
    model.to(dev).eval()
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if bf16 and dev.type == "cpu" and not cpu_has_bf16():
        warnings.warn(
            "bf16 asked for on a CPU without bf16 instructions (AVX512-BF16 / AMX): torch emulates it "
            "and inference runs several times slower than fp32 here (BENCHMARKS.md); leave --bf16 off",
            M3LungWarning,
            stacklevel=3,
        )
    return dev


def load_for_inference(
    weights: str | os.PathLike[str] | Mapping[str, Any],
    *,
    kind: str,
    device: str | torch.device = "auto",
    bf16: bool = False,
    channels_last: bool = False,
    name: str | None = None,
) -> tuple[nn.Module, dict[str, Any], torch.device]:
    """The network of a checkpoint of model family ``kind`` (a file, or a checkpoint already loaded),
    ready for inference: ``(model, checkpoint, device)``. ``name`` names the source in messages."""
    from m3lung.train.checkpoint import load_model

    model, doc = load_model(weights, kind=kind, name=name)
    return model, doc, ready(model, device=device, bf16=bf16, channels_last=channels_last)


def batch_slices(n: int, batch_size: int) -> Iterator[slice]:
    """``slice(start, stop)`` of consecutive batches of at most ``batch_size`` of ``n`` items."""
    if batch_size < 1:
        raise InputError(f"batch size must be at least 1, got {batch_size}")
    for start in range(0, n, batch_size):
        yield slice(start, min(n, start + batch_size))


def autocast(device: torch.device, bf16: bool) -> contextlib.AbstractContextManager[Any]:
    """bfloat16 autocast on ``device`` when ``bf16``, else a no-op context."""
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)
