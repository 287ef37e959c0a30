"""Write the result of :func:`m3lung.preprocess.prepare_slices` to a folder a user can inspect."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np

from m3lung.io import CTVolume, atomic_dir, write_mask
from m3lung.preprocess.pipeline import PreparedSlices

#: Version of the ``crop.json`` layout written by :func:`write_preprocessed`.
PREPROCESSED_SCHEMA = "m3lung.preprocessed/1"


def write_preprocessed(
    volume: CTVolume,
    prepared: PreparedSlices,
    out: str | os.PathLike[str],
    *,
    png_centre: float | None = None,
    overwrite: bool = False,
) -> Path:
    """Write prepared slices into ``out`` (created atomically).

    Layout:

    * ``slices/slice_XXXX.png``: every cropped slice, 8-bit, at ``png_centre`` (default: the middle centre);
      ``XXXX`` is the canonical slice index (inferior → superior);
    * ``slices.npz``: ``windowed`` (N, K, S, S) uint8 (the window mapped to 0..255; divide by 255 for the
      network's [0, 1] input), ``centres``, ``width``, ``boxes``, ``fallback``, ``source_index``,
      ``slice_positions``;
    * ``crop.json``: schema version, the source summary, crop parameters, window centres and, per slice,
      its source index, box (half-open ``row0, col0, row1, col1``) and fallback flag;
    * ``lung_mask.nii.gz``: the crop's lung mask on the input grid (opens over the scan in a viewer).
    """
    from PIL import Image

    centres = prepared.centres
    ci = len(centres) // 2 if png_centre is None else int(np.argmin(np.abs(np.asarray(centres) - png_centre)))
    windowed8 = np.round(prepared.windowed * 255.0).astype(np.uint8)
    if png_centre is not None and abs(centres[ci] - png_centre) > 1e-6:
        from m3lung.preprocess.window import window

        png8 = np.round(window(prepared.crop.crops, png_centre, prepared.width) * 255.0).astype(np.uint8)
    else:
        png8 = windowed8[:, ci]
    crop = prepared.crop
    with atomic_dir(out, overwrite=overwrite) as tmp:
        (tmp / "slices").mkdir()
        for k in range(png8.shape[0]):
            Image.fromarray(png8[k]).save(tmp / "slices" / f"slice_{k:04d}.png", compress_level=1)
        with open(tmp / "slices.npz", "wb") as fh:
            np.savez(
                fh,
                windowed=windowed8,
                centres=np.asarray(centres),
                width=np.asarray(prepared.width),
                boxes=crop.boxes,
                fallback=crop.fallback,
                source_index=np.asarray(volume.source_index),
                slice_positions=np.asarray(volume.slice_positions),
            )
        doc = {
            "schema": PREPROCESSED_SCHEMA,
            "source": volume.summary(),
            "crop_config": asdict(crop.config),
            "window": {
                "centres": list(centres),
                "width": prepared.width,
                "png_centre": float(png_centre if png_centre is not None else centres[ci]),
            },
            "box_convention": (
                "half-open (row0, col0, row1, col1) in input pixels; slice index = canonical (inferior to superior)"
            ),
            "slices": [
                {
                    "index": k,
                    "source_index": int(volume.source_index[k]),  # type: ignore[index]
                    "box": [int(v) for v in crop.boxes[k]],
                    "fallback": bool(crop.fallback[k]),
                }
                for k in range(crop.boxes.shape[0])
            ],
            "warnings": list(volume.warnings) + list(crop.warnings),
        }
        (tmp / "crop.json").write_text(json.dumps(doc, indent=1), encoding="utf-8")
        write_mask(crop.masks, volume, tmp / "lung_mask.nii.gz")
    return Path(out)
