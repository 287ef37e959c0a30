"""M³Lung-Sys (seed 001), patient level: slice features cached once, the patient network, the fusion rules.

* :func:`extract_features` — the ``m3lung features`` command: every scan of a data folder through a
  slice-network checkpoint at each window centre, into a :class:`m3lung.data.features.FeatureCache`.
* :class:`PatientRecipe` / :class:`PatientTask` / :func:`train_patient` — ``m3lung train patient``: the
  patient-level network (§1.3) trained on the cache with the project's training engine.
* :func:`evaluate_patients` — patient-level figures of the network, the non-parametric assessment
  (§1.4) and max pooling on the same scans: 4-class accuracy, FPE, FNE, FDPE and the confusion matrix.

Windows: training draws one of the cached window centres per scan and epoch (``train_windows:
random``, augmentation, a choice) or averages them (``mean``); evaluation always averages the
centres' features and probabilities, as slice-level inference does (§1.1).
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from m3lung.data.features import FeatureCache, ScanFeatures, mean_windows
from m3lung.data.slices import Case, build_case_cache
from m3lung.data.splits import split_scan_ids
from m3lung.errors import InputError
from m3lung.evaluate.patients import decision_table, fusion_decisions, rule_figures, write_rule_predictions
from m3lung.io.atomic import require_output_folder
from m3lung.models import PatientNet, PatientNetConfig, SliceNet, pad_features
from m3lung.preprocess import LungCropConfig
from m3lung.systems.base import load_recipe
from m3lung.train.augment import draw_window
from m3lung.train.checkpoint import load_checkpoint, save_system
from m3lung.train.config import TrainConfig, from_dict, to_dict
from m3lung.train.engine import seed_everything
from m3lung.train.inference import load_for_inference
from m3lung.train.run import TrainingRun, write_results

RULES = ("network", "nonparametric", "maxpool")


# ------------------------------------------------------------------------------------------ features
def extract_features(
    weights: str | os.PathLike[str],
    cases: Sequence[Case],
    out: str | os.PathLike[str],
    *,
    slice_cache: str | os.PathLike[str] | None = None,
    centres: Sequence[float] | None = None,
    width: float | None = None,
    batch_size: int = 32,
    device: str = "auto",
    progress: bool = True,
    data_note: str = "",
) -> FeatureCache:
    """Run every case through the slice network at each window centre; cache features and probabilities.

    Cases already in the cache are skipped (an interrupted run resumes). ``slice_cache`` holds the
    preprocessed lung crops (shared with slice training; default ``out/slices``).
    """
    from tqdm import tqdm

    from m3lung.systems.m3lung_inference import predict_crops, slice_windows

    require_output_folder(out, what="the feature cache folder (--out)")
    model, doc, dev = load_for_inference(weights, kind="slice_net", device=device)
    assert isinstance(model, SliceNet)
    config = model.config
    trained_centres, trained_width = slice_windows(doc)
    centres = trained_centres if centres is None else tuple(centres)
    width = trained_width if width is None else width
    cache = FeatureCache(out)
    cache.bind(
        {
            "slice_weights_hash": doc["weights_hash"],
            "slice_weights": str(Path(weights).resolve()),
            "slice_config": config.to_dict(),
            "centres": [float(c) for c in centres],
            "width": float(width),
            "feature_dim": config.feature_dim,
            "data": data_note,
        }
    )
    done = cache.done()
    todo = [c for c in cases if c.patient_id not in done]
    crops_dir = Path(slice_cache) if slice_cache is not None else Path(out) / "slices"
    for case in tqdm(todo, desc="slice features", unit="scan", disable=None if progress else True):
        with np.load(build_case_cache(case, config.input_size, crops_dir, LungCropConfig())) as z:
            hu, lesion = z["hu"], z["lesion"]
        per = [
            predict_crops(model, hu, centres=(c,), width=width, batch_size=batch_size, device=dev, maps=False)
            for c in centres
        ]
        lesion_probs = [p.p_lesion for p in per if p.p_lesion is not None] or None
        cache.add(
            ScanFeatures(
                patient_id=case.patient_id,
                label=case.label,
                features=np.stack([p.features for p in per]),
                p_multi=np.stack([p.p_multi for p in per]),
                p_lesion=None if lesion_probs is None else np.stack(lesion_probs),
                slice_lesion=lesion,
            )
        )
    return cache


# ------------------------------------------------------------------------------------------ recipe
@dataclass(frozen=True)
class PatientDataConfig:
    """Which cached scans train, validate and test the patient network.

    split / split_seed : by patient, stratified by class — with the slice run's defaults this is the
        very split the slice network used (:func:`m3lung.data.slices.split_by_patient`), so test
        patients stay unseen at both levels. ``split_file`` (a slice run's ``split.json``) pins it.
    train_windows : "random" (one cached window centre per scan and epoch) or "mean" (their average).
    """

    split: tuple[float, float, float] = (0.7, 0.15, 0.15)
    split_seed: int = 0
    split_file: str | None = None
    train_windows: Literal["random", "mean"] = "random"


@dataclass(frozen=True)
class PatientRecipe:
    """One training run of the patient-level network on a feature cache."""

    name: str = "patient"
    profile: Literal["paper", "cpu", "tiny"] = "paper"
    description: str = ""
    model: PatientNetConfig = field(default_factory=PatientNetConfig)
    data: PatientDataConfig = field(default_factory=PatientDataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    nonparametric_threshold: float = 0.99
    maxpool_threshold: float = 0.5


def load_patient_recipe(path: str | os.PathLike[str], overrides: Sequence[str] = ()) -> PatientRecipe:
    """Read a recipe YAML (or the name of a shipped one) and apply ``key=value`` overrides."""
    return load_recipe(PatientRecipe, path, overrides)


# ------------------------------------------------------------------------------------------ batches
class PatientTask:
    """Training task of the patient network on cached scans (one sample = one scan)."""

    kind = "patient_net"

    def __init__(self, recipe: PatientRecipe, train: Sequence[ScanFeatures], val: Sequence[ScanFeatures] = ()) -> None:
        if not train:
            raise InputError("no training scans in the feature cache for this split")
        self.recipe = recipe
        self.scans = list(train)
        self.labels = np.array([s.label for s in self.scans], dtype=np.int64)
        self.val = list(val)

    def train_size(self) -> int:
        return len(self.scans)

    def train_weights(self) -> np.ndarray:
        counts = np.bincount(self.labels, minlength=self.recipe.model.num_classes).astype(np.float64)
        return 1.0 / counts[self.labels]

    def batch(self, rows: np.ndarray, epoch: int, device: torch.device) -> tuple[torch.Tensor, ...]:
        items = []
        for r in rows:
            s = self.scans[int(r)]
            if self.recipe.data.train_windows == "random":
                w = draw_window(s.features.shape[0], seed=self.recipe.train.seed, epoch=epoch, row=int(r))
                items.append(s.features[w].astype(np.float32))
            else:
                items.append(s.features.astype(np.float32).mean(0))
        x, mask = pad_features([torch.from_numpy(a) for a in items])
        return x.to(device), mask.to(device), torch.from_numpy(self.labels[rows]).to(device)

    def loss(self, model: nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        x, mask, y = batch
        logits = model(x, mask).logits.float()
        loss = F.cross_entropy(logits, y)
        return loss, {"acc": float((logits.argmax(1) == y).float().mean())}

    def evaluate(self, model: nn.Module, device: torch.device) -> dict[str, float]:
        if not self.val:
            return {}
        probs = network_probs(model, self.val, device)  # type: ignore[arg-type]
        y = np.array([s.label for s in self.val])
        return {"val_acc": float(np.mean(probs.argmax(1) == y)), "val_n_scans": float(len(y))}


def network_probs(model: PatientNet, scans: Sequence[ScanFeatures], device: torch.device, batch: int = 8) -> np.ndarray:
    """(S, 4) patient probabilities of the network, window-averaged features, in batches of padded scans."""
    model.eval()
    out = []
    with torch.inference_mode():
        for i in range(0, len(scans), batch):
            x, mask = pad_features([torch.from_numpy(mean_windows(s)[0]) for s in scans[i : i + batch]])
            out.append(model(x.to(device), mask.to(device)).probs.float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, 4), np.float32)


# ------------------------------------------------------------------------------------------ evaluation
def evaluate_patients(
    model: PatientNet | None,
    scans: Sequence[ScanFeatures],
    recipe: PatientRecipe,
    device: torch.device,
    *,
    predictions_dir: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """Table IV-style figures of every rule on ``scans``, plus each scan's decisions.

    With ``predictions_dir``, each rule's decisions are also written as ``predictions_<rule>.csv`` in
    the format ``m3lung evaluate`` reads (bootstrap intervals, p-values between rules, figures).
    """
    y = np.array([s.label for s in scans], dtype=np.int64)
    decisions = fusion_decisions(
        scans, threshold=recipe.nonparametric_threshold, maxpool_threshold=recipe.maxpool_threshold
    )
    if model is not None:
        p = network_probs(model, scans, device)
        decisions = {"network": (p.argmax(1), p), **decisions}
    out: dict[str, Any] = {name: rule_figures(y, pred) for name, (pred, _) in decisions.items()}
    if predictions_dir is not None:
        write_rule_predictions(predictions_dir, scans, y, decisions)
    out["scans"] = decision_table(scans, decisions)
    return out


# ------------------------------------------------------------------------------------------ training
def train_patient(
    recipe: PatientRecipe,
    features: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    resume: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train the patient network on a feature cache; test it and the fusion rules on held-out scans.

    Writes into ``out``: ``recipe.json``, ``split.json``, ``log.csv``, ``checkpoints/last.pt``,
    ``best.pt`` (kind ``patient_net``), ``system.pt`` (slice + patient networks in one file, when the
    cache's slice weights are still where they were) and ``results.json``.
    """
    run = TrainingRun(out)
    cache = FeatureCache(features)
    meta = cache.meta()
    if recipe.model.feature_dim != int(meta["feature_dim"]):
        recipe = from_dict(
            PatientRecipe,
            {**to_dict(recipe), "model": {**to_dict(recipe.model), "feature_dim": int(meta["feature_dim"])}},
            where="recipe",
        )
    d = recipe.data
    split = split_scan_ids(cache.index(), fractions=d.split, seed=d.split_seed, split_file=d.split_file)
    scans = {name: [cache.load(p) for p in ids] for name, ids in split.items()}
    run.write_setup(recipe, split)
    seed_everything(recipe.train.seed, recipe.train.deterministic)
    model = PatientNet(recipe.model)
    task = PatientTask(recipe, scans["train"], scans["val"])
    provenance = {
        "features": str(features),
        "slice_weights_hash": meta["slice_weights_hash"],
        "data": meta.get("data", ""),
        "train_scans": len(scans["train"]),
    }
    result, _ = run.fit(model, task, recipe, provenance=provenance, resume=resume, progress=progress)
    t_train = run.elapsed()
    best, doc, device = load_for_inference(result.best_path, kind="patient_net", device=recipe.train.device)
    assert isinstance(best, PatientNet)
    results: dict[str, Any] = {
        "recipe": recipe.name,
        "profile": recipe.profile,
        "features": str(features),
        "data_note": meta.get("data", ""),
        "slice_weights_hash": meta["slice_weights_hash"],
        "weights": str(result.best_path),
        "weights_hash": doc["weights_hash"],
        "best_epoch": doc["provenance"].get("epoch"),
        "n_scans": {k: len(v) for k, v in scans.items()},
    }
    if scans["test"]:
        results["test"] = evaluate_patients(best, scans["test"], recipe, device, predictions_dir=run.out_dir)
    slice_file = Path(meta.get("slice_weights", ""))
    if slice_file.is_file():
        slice_doc = load_checkpoint(slice_file, kind="slice_net")
        if slice_doc["weights_hash"] == meta["slice_weights_hash"]:
            results["system"] = str(save_system(run.out_dir / "system.pt", slice_doc, doc))
    results["seconds"] = {"train": round(t_train, 1), "total": round(run.elapsed(), 1)}
    run.write_results(results)
    return results


def summarise_patient(results: dict[str, Any]) -> str:
    """A few lines for the terminal: the held-out figures of every rule."""
    lines = [
        f"recipe {results.get('recipe')} on {results.get('features')} ({results.get('data_note')}), "
        f"weights {results.get('weights_hash')}, scans {results.get('n_scans')}"
    ]
    for name, figs in results.get("test", {}).items():
        if name in RULES:
            lines.append(
                f"test {name:>13}: acc {figs['acc']:.3f}  FPE {figs['fpe']:.3f}  FNE {figs['fne']:.3f}  "
                f"FDPE {figs['fdpe']:.3f}  ({figs['n_scans']} scans)"
            )
    if results.get("system"):
        lines.append(f"system file (slice + patient network): {results['system']}")
    lines.append(f"seconds: {results.get('seconds')}")
    return "\n".join(lines)


def evaluate_patient_run(
    run: str | os.PathLike[str], *, features: str | os.PathLike[str] | None = None
) -> dict[str, Any]:
    """Re-test a finished patient run (its ``best.pt``) on its own held-out scans; rewrite ``results.json``.

    Also writes ``predictions_<rule>.csv`` for ``m3lung evaluate``. ``features`` defaults to the cache
    the run trained on.
    """
    run_dir = Path(run)
    if not (run_dir / "recipe.json").exists() or not (run_dir / "results.json").exists():
        raise InputError(f"{run_dir}: not a finished patient run (recipe.json and results.json expected)")
    recipe = from_dict(PatientRecipe, json.loads((run_dir / "recipe.json").read_text()), where=str(run_dir))
    results = json.loads((run_dir / "results.json").read_text())
    cache = FeatureCache(features or results["features"])
    split = json.loads((run_dir / "split.json").read_text())
    model, _, device = load_for_inference(run_dir / "best.pt", kind="patient_net", device=recipe.train.device)
    assert isinstance(model, PatientNet)
    scans = [cache.load(p) for p in split["test"]]
    results["test"] = evaluate_patients(model, scans, recipe, device, predictions_dir=run_dir)
    write_results(run_dir, results)
    return results
