"""M³Lung-Sys's two training stages (``m3lung train m3lung slice|patient``), for the system registry.

The functions import the training code only when called, so that registering the system (and listing
systems) does not import torch.
"""

from __future__ import annotations

from typing import Any

from m3lung.systems.base import Stage, StageOption

__all__ = ["PATIENT_STAGE", "SLICE_STAGE"]


def _train_slice(
    recipe: Any,
    data: str,
    out: str,
    *,
    resume: bool = False,
    progress: bool = True,
    pretrained: str | None = None,
    cache: str | None = None,
) -> dict[str, Any]:
    from m3lung.systems.m3lung import train_slice

    return train_slice(recipe, data, out, resume=resume, pretrained=pretrained, progress=progress, cache_dir=cache)


def _evaluate_slice(
    run: str,
    *,
    data: str | None = None,
    progress: bool = True,
    weights: str | None = None,
    cache: str | None = None,
    map_shifts: int | None = None,
    map_flip: bool | None = None,
) -> dict[str, Any]:
    from m3lung.errors import InputError
    from m3lung.systems.m3lung import evaluate_slice_run

    if not data:
        raise InputError("m3lung evaluate slice RUN needs --data (the data the run trained on)")
    return evaluate_slice_run(
        run, data, weights=weights, cache_dir=cache, progress=progress, map_shifts=map_shifts, map_flip=map_flip
    )


def _train_patient(recipe: Any, data: str, out: str, *, resume: bool = False, progress: bool = True) -> dict[str, Any]:
    from m3lung.systems.m3lung_patient import train_patient

    return train_patient(recipe, data, out, resume=resume, progress=progress)


def _evaluate_patient(run: str, *, data: str | None = None, progress: bool = True) -> dict[str, Any]:
    from m3lung.systems.m3lung_patient import evaluate_patient_run

    return evaluate_patient_run(run, features=data)


def _summarise_slice(results: dict[str, Any]) -> str:
    from m3lung.systems.m3lung import summarise

    return summarise(results)


def _summarise_patient(results: dict[str, Any]) -> str:
    from m3lung.systems.m3lung_patient import summarise_patient

    return summarise_patient(results)


_MAP_OPTIONS = (
    StageOption(
        "--map-shifts",
        "draw the lesion maps with this many shifts per axis (shift-and-stitch; 1 = the paper's map) instead of "
        "the run's setting; writes results_map_shifts<K>.json, not results.json",
        commands=("evaluate",),
        kind="int",
    ),
    StageOption(
        "--map-flip",
        "average each lesion map with the mirrored slice's (or not: --no-map-flip) instead of the run's "
        "setting; writes results_map_flip.json (or results_no_map_flip.json)",
        commands=("evaluate",),
        kind="bool",
    ),
)


SLICE_STAGE = Stage(
    name="slice",
    help="the M³Lung-Sys slice network",
    recipe_type="m3lung.systems.m3lung_recipes:SliceRecipe",
    train=_train_slice,
    summarise=_summarise_slice,
    evaluate=_evaluate_slice,
    data_help="synthetic cohort folder (made if the recipe says so) or COVID-CT-MD",
    options=(
        StageOption("--pretrained", "initial weights: a torchvision ResNet state dict or an m3lung checkpoint"),
        StageOption(
            "--cache", "folder for preprocessed slices (default: OUT/cache or RUN/cache)", ("train", "evaluate")
        ),
        StageOption("--weights", "checkpoint to test (default: RUN/best.pt)", ("evaluate",)),
        *_MAP_OPTIONS,
    ),
)

PATIENT_STAGE = Stage(
    name="patient",
    help="the M³Lung-Sys patient network, on a feature cache",
    recipe_type="m3lung.systems.m3lung_patient:PatientRecipe",
    train=_train_patient,
    summarise=_summarise_patient,
    evaluate=_evaluate_patient,
    data_help="feature cache written by `m3lung features`",
    data_aliases=("--features",),
    options=(
        StageOption(
            "--split",
            "a slice run's split.json: use exactly its train/val/test scans",
            recipe_key="data.split_file",
        ),
    ),
)
