"""M³Lung-Sys's slice network in training and testing: the training task and the held-out figures.

* :class:`SliceTask` — what the training engine needs: augmented batches (random window centre in
  [-700, -500] HU and random horizontal flips, drawn from the seed, the epoch and the row:
  :mod:`m3lung.train.augment`), the multi-task loss CE(4-class) + w·CE(lesion) and the validation figures;
* :func:`evaluate_slices` — the held-out slice figures (:mod:`m3lung.evaluate.slices`) of a network;
* :func:`evaluate_infnet` — its lesion maps against Inf-Net's expert masks.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from m3lung.data.infnet import read_infnet
from m3lung.data.sampling import height_matching_weights, relative_height, select_training_rows
from m3lung.data.slices import SliceTable
from m3lung.errors import InputError
from m3lung.evaluate import roc_auc
from m3lung.evaluate.slices import (
    accuracy_breakdown,
    class_figures,
    map_figures,
    pointing_game_by_class,
    pointing_game_chance,
    positions_in,
)
from m3lung.models import SliceNet
from m3lung.systems.m3lung_inference import predict_crops
from m3lung.systems.m3lung_recipes import SliceRecipe
from m3lung.train.augment import augment_slices, draw_augmentation, is_geometric


class SliceTask:
    """Training task of the slice network on a :class:`SliceTable` (see the module docstring)."""

    kind = "slice_net"

    def __init__(
        self,
        recipe: SliceRecipe,
        train: SliceTable,
        train_rows: np.ndarray,
        val: SliceTable | None = None,
        val_rows: np.ndarray | None = None,
    ) -> None:
        self.recipe = recipe
        self.table = train
        self.rows, self.cls, self.les = select_training_rows(train, train_rows)
        if self.rows.size == 0:
            raise InputError("no training slices: no healthy scan and no slice with a lesion in the training set")
        self.val = val
        self.val_rows = val_rows
        self._epoch_cache: tuple[int, dict[str, np.ndarray]] | None = None

    def train_size(self) -> int:
        return int(self.rows.size)

    def train_weights(self) -> np.ndarray:
        counts = np.bincount(self.cls, minlength=self.recipe.model.num_classes).astype(np.float64)
        w = 1.0 / counts[self.cls]
        if self.recipe.data.height_matched:
            w = w * height_matching_weights(self.table, self.rows, self.cls, self.recipe.data.height_bins)
        return w

    def _augment(self, epoch: int) -> dict[str, np.ndarray]:
        """Every training slice's random window centre, flip and geometry for ``epoch`` (drawn once)."""
        if self._epoch_cache is None or self._epoch_cache[0] != epoch:
            d = self.recipe.data
            draws = draw_augmentation(
                self.rows.size,
                seed=self.recipe.train.seed,
                epoch=epoch,
                centre_range=d.centre_range,
                flip=d.flip,
                rotate=d.rotate,
                scale=d.scale,
                shift=d.shift,
            )
            self._epoch_cache = (epoch, draws)
        return self._epoch_cache[1]

    @property
    def geometric(self) -> bool:
        d = self.recipe.data
        return is_geometric(rotate=d.rotate, scale=d.scale, shift=d.shift)

    def batch(
        self, rows: np.ndarray, epoch: int, device: torch.device
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        draws = {k: v[rows] for k, v in self._augment(epoch).items()}
        x = augment_slices(self.table.hu[self.rows[rows]], draws, width=self.recipe.data.width, device=device)
        if device.type == "cuda" and self.recipe.train.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.from_numpy(self.cls[rows]).to(device), torch.from_numpy(self.les[rows]).to(device)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, cls, les = batch
        out = model(x, draw_map=False)
        class_loss = F.cross_entropy(out.class_logits.float(), cls)
        figures = {
            "class_loss": float(class_loss.detach()),
            "acc": float((out.class_logits.argmax(1) == cls).float().mean()),
        }
        loss = class_loss
        if out.lesion_logits is not None:
            lesion_loss = F.cross_entropy(out.lesion_logits.float(), les)
            loss = loss + self.recipe.lesion_loss_weight * lesion_loss
            figures["lesion_loss"] = float(lesion_loss.detach())
        return loss, figures

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        if self.val is None or self.val_rows is None or self.val_rows.size == 0:
            return {}
        figures = evaluate_slices(
            model, self.val, self.val_rows, self.recipe, device, maps=False, centres=self.recipe.data.val_centres
        )
        return {f"val_{k}": v for k, v in figures.items() if isinstance(v, float)}


# ------------------------------------------------------------------------------------------ evaluation
def evaluate_slices(
    model: nn.Module,
    table: SliceTable,
    rows: np.ndarray,
    recipe: SliceRecipe,
    device: torch.device,
    *,
    maps: bool = True,
    centres: Sequence[float] | None = None,
) -> dict[str, Any]:
    """Slice-level figures on ``rows`` of ``table`` (every slice of held-out scans or blocks).

    * ``acc``, ``auc_<class>``, ``auc_macro``, ``confusion``: 4-class, on the annotation-rule slices
      (lesion slices of diseased scans, all slices of healthy scans), and where the errors fall
      (:func:`m3lung.evaluate.slices.accuracy_breakdown`);
    * ``lesion_auc``: the lesion head on *every* slice with a known label (P(with lesion) against
      the truth), diseased scans' lesion-free slices included;
    * ``pointing_game`` and ``dice@0.5``: the with-lesion maps against the lesion masks, on the
      slices with lesion, when masks are known, for the model's map prototype; the same figures for
      both prototypes as ``pointing_game[with_lesion]``, ``pointing_game[contrast]`` (and Dice);
      ``pointing_game_<class>`` per scan class and ``pointing_game_chance``, the mean lesion area
      fraction (how often a random point would hit); ``pointing_game_tolerant``, a hit within
      ``pointing_game_tolerance_px`` of the lesion (the 15 px at 224 px of the original pointing game,
      Zhang et al. 2016, scaled to the input; square neighbourhood), shows how near the misses fall.
    """
    assert isinstance(model, SliceNet) or hasattr(model, "config")
    centres = recipe.data.eval_centres if centres is None else centres
    pred = predict_crops(
        model,  # type: ignore[arg-type]
        table.hu[rows],
        centres=centres,
        width=recipe.data.width,
        batch_size=recipe.eval_batch_size,
        device=device,
        maps=False,  # drawn below for the lesion slices only
    )
    out: dict[str, Any] = {"n_slices": float(rows.size)}
    sel_rows, cls, _ = select_training_rows(table, rows)
    if sel_rows.size:
        p = pred.p_multi[positions_in(rows, sel_rows)]
        out.update(class_figures(cls, p, recipe.model.num_classes))
        out["n_rule_slices"] = float(sel_rows.size)
        area = None if table.masks is None else table.masks[sel_rows].reshape(sel_rows.size, -1).mean(1)
        out.update(accuracy_breakdown(cls, p.argmax(1), relative_height(table, sel_rows), area))
    known = table.lesion[rows] >= 0
    if pred.p_lesion is not None and known.any():
        out["lesion_auc"] = roc_auc(table.lesion[rows][known], pred.p_lesion[known, 1])
    if maps and pred.p_lesion is not None and table.masks is not None:
        has = (table.lesion[rows] == 1) & table.masks[rows].reshape(rows.size, -1).any(1)
        if has.any():
            masks = table.masks[rows][has]
            for prototype, main, one, _ in _prototype_maps(model, table.hu[rows][has], recipe, device, centres):
                out.update(map_figures(one, masks, prototype, main=main))
                if main:
                    main_maps = one
            out["n_map_slices"] = float(has.sum())
            out["pointing_game_chance"] = pointing_game_chance(masks)
            out.update(pointing_game_by_class(main_maps, masks, table.label[rows][has]))
    return out


def _prototype_maps(
    model: Any, hu: np.ndarray, recipe: SliceRecipe, device: torch.device, centres: Sequence[float]
) -> Iterator[tuple[str, bool, np.ndarray, np.ndarray | None]]:
    """The lesion maps (N, S, S) of lung crops ``hu`` drawn by the model's prototype, then by the other
    one, at the crops' size: (prototype, whether it is the model's, maps, p_lesion) one after the other."""
    configured = _configured_prototype(model)
    for prototype in (configured, "contrast" if configured == "with_lesion" else "with_lesion"):
        one = predict_crops(
            model,
            hu,
            centres=centres,
            width=recipe.data.width,
            batch_size=recipe.eval_batch_size,
            device=device,
            map_size=(hu.shape[1], hu.shape[2]),
            map_prototype=prototype,
        )
        assert one.maps is not None
        yield prototype, prototype == configured, one.maps, one.p_lesion


def _configured_prototype(model: Any) -> str:
    return str(getattr(model.config, "map_prototype", "with_lesion"))


def evaluate_infnet(
    model: SliceNet, folder: str | os.PathLike[str], recipe: SliceRecipe, device: torch.device
) -> dict[str, float]:
    """Pointing game and Dice of the with-lesion maps on Inf-Net's 8-bit slices and expert masks.

    The JPG slices are already cropped to the lungs; each is resized to the network's input and its
    grey values are mapped to HU with ``recipe.data.infnet_window`` (the window it is taken to have been
    exported with, :func:`m3lung.data.infnet.read_infnet`), then run at the three window centres like
    any CT slice.
    """
    hu, masks = read_infnet(folder, size=recipe.model.input_size, window=recipe.data.infnet_window)
    has = masks.reshape(len(masks), -1).any(1)
    out: dict[str, float] = {"n_slices": float(has.sum()), "pointing_game_chance": pointing_game_chance(masks[has])}
    for prototype, main, maps, p_lesion in _prototype_maps(model, hu[has], recipe, device, recipe.data.eval_centres):
        out.update(map_figures(maps, masks[has], prototype, main=main))
        if p_lesion is not None:
            out["p_lesion_mean"] = float(p_lesion[:, 1].mean())
    return out
