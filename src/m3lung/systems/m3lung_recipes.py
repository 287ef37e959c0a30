"""The recipe of M³Lung-Sys's slice network: a whole training run as typed configuration (YAML under ``recipes/``)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

from m3lung.models import SliceNetConfig
from m3lung.preprocess import PAPER_CENTRE_RANGE, PAPER_CENTRES, PAPER_WIDTH
from m3lung.systems.base import load_recipe
from m3lung.train.config import TrainConfig

__all__ = ["SliceDataConfig", "SliceRecipe", "load_slice_recipe"]


@dataclass(frozen=True)
class SliceDataConfig:
    """Where the slices come from and how they are held out.

    source : "synthetic" (a cohort from ``m3lung phantom``) or "covid-ct-md" (the sample layout).
    synthetic_per_class / synthetic_size / synthetic_slices / synthetic_seed : when the data folder
        holds no cohort yet, make one with these settings first (0: require an existing cohort).
    holdout : "patients" (split by patient: train / val / test fractions ``split``) or "slice_blocks"
        (for a handful of real scans: blocks of ``block`` consecutive slices rotate between train,
        val and test, with ``gap`` slices dropped between blocks so that neighbours never straddle).
    centre_range / width / eval_centres / flip : the paper's window-levelling and flips.
    rotate / scale / shift : random in-plane geometry on top of the paper's flips (*choice*, off in
        the paper recipe): each training slice is rotated by up to ``rotate`` degrees, zoomed by a
        factor drawn log-uniformly from ``scale`` and moved by up to ``shift`` of its side, in one
        bilinear resampling per batch (air fills what comes in from outside). They keep a small
        cohort's network from memorising its training scans' anatomy.
    val_centres : the window centres of the per-epoch validation (a profile may use only -600 to save
        time; the final test always uses ``eval_centres``).
    infnet : a folder of the Inf-Net layout (8-bit slices with expert masks) to score lesion maps on.
    infnet_window : (centre, width) the 8-bit slices are taken to have been exported with.
    """

    source: Literal["synthetic", "covid-ct-md"] = "synthetic"
    size: int = 512
    holdout: Literal["patients", "slice_blocks"] = "patients"
    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    block: int = 10
    gap: int = 2
    synthetic_per_class: int = 0
    synthetic_size: int = 512
    synthetic_slices: tuple[int, int] = (24, 495)
    synthetic_seed: int = 0
    centre_range: tuple[float, float] = PAPER_CENTRE_RANGE
    width: float = PAPER_WIDTH
    eval_centres: tuple[float, ...] = PAPER_CENTRES
    val_centres: tuple[float, ...] = PAPER_CENTRES
    flip: bool = True
    rotate: float = 0.0
    scale: tuple[float, float] = (1.0, 1.0)
    shift: float = 0.0
    height_matched: bool = False
    height_bins: int = 5
    infnet: str | None = None
    infnet_window: tuple[float, float] = (PAPER_CENTRES[1], PAPER_WIDTH)


@dataclass(frozen=True)
class SliceRecipe:
    """One training run of the slice network. ``profile`` changes sizes and epochs, never the algorithm."""

    name: str = "slice"
    profile: Literal["paper", "cpu", "tiny"] = "paper"
    description: str = ""
    model: SliceNetConfig = field(default_factory=SliceNetConfig)
    pretrained: str | None = "imagenet"
    lesion_loss_weight: float = 1.0
    data: SliceDataConfig = field(default_factory=SliceDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval_batch_size: int = 32


def load_slice_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> SliceRecipe:
    """Read a recipe YAML (or the name of a shipped one) and apply ``key=value`` overrides."""
    return load_recipe(SliceRecipe, path, overrides)
