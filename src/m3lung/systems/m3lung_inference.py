"""M³Lung-Sys's slice-level inference: every slice of a volume through the slice network.

* :func:`predict_crops` runs lung crops at every window centre (-700/-600/-500 HU, §1.1; or the
  windows the checkpoint was trained with, :func:`slice_windows`) and averages probabilities, maps and
  features, batched, under ``torch.inference_mode``;
* :class:`SlicePredictor` loads a slice-network checkpoint once and predicts whole volumes chunk by chunk
  (lung crop, then the network), with the shared inference plumbing of :mod:`m3lung.train.inference`
  (device, bf16, channels-last, batching).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch

from m3lung.errors import InputError
from m3lung.io import CTVolume
from m3lung.models import SliceNet, SliceNetConfig
from m3lung.preprocess import PAPER_CENTRES, PAPER_WIDTH, LungCrop, LungCropConfig, lung_crop, window_torch
from m3lung.train.checkpoint import load_model
from m3lung.train.inference import autocast, batch_slices, ready

__all__ = [
    "SliceBatchPrediction",
    "SliceChunk",
    "SlicePredictions",
    "SlicePredictor",
    "predict_crops",
    "slice_windows",
    "with_map_options",
]


@dataclass
class SliceBatchPrediction:
    """Per-slice outputs averaged over the window centres.

    p_multi (N, 4); p_lesion (N, 2) or None; maps (N, h, w) with-lesion maps in [0, 1] (at
    ``map_size`` when asked) or None; features (N, F).
    """

    p_multi: np.ndarray
    p_lesion: np.ndarray | None
    maps: np.ndarray | None
    features: np.ndarray


def predict_crops(
    model: SliceNet,
    hu: np.ndarray,
    *,
    centres: Sequence[float] = PAPER_CENTRES,
    width: float = PAPER_WIDTH,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
    map_size: tuple[int, int] | None = None,
    maps: bool = True,
    bf16: bool = False,
    map_prototype: str | None = None,
    channels_last: bool = False,
) -> SliceBatchPrediction:
    """Run the slice network on lung crops ``hu`` (N, S, S) in HU at every window centre and average.

    Windowing happens on the device, batch by batch; nothing is kept but the averaged outputs.
    ``channels_last`` feeds the network channels-last input (convert the model itself beforehand).
    """
    dev = torch.device(device)
    model.eval()
    n = hu.shape[0]
    k = len(centres)
    pm, pl, mp, ft = [], [], [], []
    c = torch.tensor(list(centres), dtype=torch.float32, device=dev).view(1, k, 1, 1)
    with torch.inference_mode():
        for part in batch_slices(n, batch_size):
            x = torch.as_tensor(np.asarray(hu[part], dtype=np.float32), device=dev)
            b = x.shape[0]
            w = window_torch(x.unsqueeze(1), c, width).reshape(b * k, 1, *x.shape[1:])
            if channels_last:
                w = w.expand(-1, 3, -1, -1).contiguous(memory_format=torch.channels_last)
            with autocast(dev, bf16):
                out = model(w, map_size=map_size if maps else None, map_prototype=map_prototype, draw_map=maps)
            pm.append(out.p_multi.float().view(b, k, -1).mean(1).cpu())
            ft.append(out.features.float().view(b, k, -1).mean(1).cpu())
            if out.p_lesion is not None:
                pl.append(out.p_lesion.float().view(b, k, -1).mean(1).cpu())
            if maps and out.lesion_map is not None:
                mp.append(out.lesion_map.float().view(b, k, *out.lesion_map.shape[1:]).mean(1).cpu())
    return SliceBatchPrediction(
        p_multi=torch.cat(pm).numpy(),
        p_lesion=torch.cat(pl).numpy() if pl else None,
        maps=torch.cat(mp).numpy() if mp else None,
        features=torch.cat(ft).numpy(),
    )


@dataclass
class SlicePredictions:
    """Every slice of one CT volume (canonical order) through the slice network.

    p_multi (N, 4), p_lesion (N, 2) or None, maps (N, S, S) with-lesion maps on the lung crop (S = the
    model's input size), features (N, F), boxes (N, 4) crop boxes in the volume's pixels, fallback (N,).
    """

    p_multi: np.ndarray
    p_lesion: np.ndarray | None
    maps: np.ndarray | None
    features: np.ndarray
    boxes: np.ndarray
    fallback: np.ndarray
    weights_hash: str | None = None

    @property
    def predicted(self) -> np.ndarray:
        return self.p_multi.argmax(axis=1)


def slice_windows(doc: dict[str, Any]) -> tuple[tuple[float, ...], float]:
    """The window centres and width (HU) a slice-network checkpoint was trained and tested with.

    ``m3lung train slice`` stores them in the checkpoint's provenance (``windows``: ``centres``,
    ``width``); files written before that carry none and were all trained with the paper's windows.
    """
    w = (doc.get("provenance") or {}).get("windows") or {}
    centres = tuple(float(c) for c in w.get("centres", PAPER_CENTRES))
    width = float(w.get("width", PAPER_WIDTH))
    if not centres or not width > 0:
        raise InputError(f"the checkpoint's windows are impossible: centres {centres}, width {width}")
    return centres, width


def with_map_options(
    config: SliceNetConfig, *, map_shifts: int | None = None, map_flip: bool | None = None
) -> SliceNetConfig:
    """``config`` drawing its lesion maps with ``map_shifts`` and ``map_flip`` where given (only the maps
    change); a bad value is an :class:`InputError` naming the option."""
    if map_flip is not None:
        config = replace(config, map_flip=bool(map_flip))
    if map_shifts is None:
        return config
    try:
        return replace(config, map_shifts=map_shifts)
    except ValueError as exc:
        raise InputError(f"--map-shifts: {exc}") from exc


class SlicePredictor:
    """Load a slice-network checkpoint once; predict every slice of any number of volumes.

    ``bf16=True`` runs the network under bfloat16 autocast, on CUDA or on the CPU (about 2x faster on
    CPUs with AVX512-BF16 or AMX, see BENCHMARKS.md; slower on CPUs without); probabilities move by a
    few hundredths at most; asked for on a CPU without bf16 instructions it warns and runs anyway.
    ``channels_last`` (default on) runs the convolutions on channels-last
    tensors, 1.1–1.4x faster in fp32 on this project's CPU. ``doc``: the checkpoint already loaded
    (``weights`` then only names it in messages). ``map_shifts`` and ``map_flip`` draw the lesion maps
    with that :attr:`SliceNetConfig.map_shifts` / ``map_flip`` instead of the checkpoint's (other maps,
    same probabilities). The window centres and width are those the network was trained with
    (:func:`slice_windows`: stored in its checkpoint; the paper's -700/-600/-500, 1200 HU for older files).
    """

    def __init__(
        self,
        weights: str | os.PathLike[str],
        *,
        device: str = "auto",
        batch_size: int = 32,
        bf16: bool = False,
        channels_last: bool = True,
        doc: dict[str, Any] | None = None,
        map_shifts: int | None = None,
        map_flip: bool | None = None,
    ) -> None:
        model, doc = load_model(doc if doc is not None else weights, kind="slice_net", name=str(weights))
        assert isinstance(model, SliceNet)
        self.model = model
        self.model.config = with_map_options(self.model.config, map_shifts=map_shifts, map_flip=map_flip)
        self.config = self.model.config
        self.device = ready(self.model, device=device, bf16=bf16, channels_last=channels_last)
        self.channels_last = channels_last
        self.batch_size = batch_size
        self.bf16 = bf16
        self.centres, self.width = slice_windows(doc)
        self.doc = doc
        self.weights_hash: str = doc["weights_hash"]
        self.provenance: dict[str, Any] = doc.get("provenance", {})

    def predict_chunks(self, volume: CTVolume, *, chunk: int | None = None, maps: bool = True) -> Iterator[SliceChunk]:
        """Lung-crop and predict ``chunk`` slices at a time (all at once when None), in order.

        Memory then grows with the chunk, not with the volume. A single chunk's lung-crop warnings
        (slices without lung) name the volume; chunks of a part of it name "volume".
        """
        volume.require_hu("the slice network (the lung crop and the windows are in HU)")
        n = volume.n_slices
        step = n if chunk is None else chunk
        if step < 1:
            raise InputError(f"chunk must be at least 1, got {chunk}")
        s = self.config.input_size
        cfg = LungCropConfig(output_size=(s, s))
        for start in range(0, n, step):
            stop = min(n, start + step)
            t0 = time.perf_counter()
            crop = lung_crop(volume if stop - start == n else volume.voxels[start:stop], cfg)
            t1 = time.perf_counter()
            out = predict_crops(
                self.model,
                crop.crops,
                centres=self.centres,
                width=self.width,
                batch_size=self.batch_size,
                device=self.device,
                map_size=(s, s),
                maps=maps,
                bf16=self.bf16,
                channels_last=self.channels_last,
            )
            yield SliceChunk(start, stop, crop, out, t1 - t0, time.perf_counter() - t1)

    def predict(self, volume: CTVolume, *, maps: bool = True) -> SlicePredictions:
        """Lung-crop every slice at the model's input size and run all three window centres."""
        (c,) = self.predict_chunks(volume, maps=maps)
        return SlicePredictions(
            p_multi=c.out.p_multi,
            p_lesion=c.out.p_lesion,
            maps=c.out.maps,
            features=c.out.features,
            boxes=c.crop.boxes,
            fallback=c.crop.fallback,
            weights_hash=self.weights_hash,
        )


@dataclass
class SliceChunk:
    """Slices ``start:stop`` of a volume: their lung crop, the network's outputs, the seconds each took."""

    start: int
    stop: int
    crop: LungCrop
    out: SliceBatchPrediction
    seconds_crop: float
    seconds_net: float
