"""``m3lung demo``: the main job on a fresh machine, with no data and no downloads.

The demo makes one synthetic chest CT with known lesions (``m3lung.phantom``), writes it as a DICOM
series with shuffled file names, reads it back through the reader users' scans go through, and
screens it end to end with the small demo weights shipped in the package
(``m3lung/weights/demo_system.pt``): report.json, report.html and lesion_map.nii.gz, as
``m3lung screen`` writes them. The demo weights were trained on synthetic phantoms only, by the
committed recipes ``slice_demo`` and ``patient_demo``; :func:`make_demo_weights` (CLI
``m3lung demo --make-weights DIR``) reproduces them.
"""

from __future__ import annotations

import json
import os
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.errors import M3LungError
from m3lung.systems.m3lung_system import DEMO_WEIGHTS, demo_weights


def run_demo(
    out: str | os.PathLike[str], *, seed: int = 0, quiet: bool = False, weights: str | os.PathLike[str] | None = None
) -> str:
    """Run the demo into ``out``; returns a plain-text summary. Figures come from a synthetic study."""
    from m3lung.io import read_ct
    from m3lung.phantom import PhantomConfig, make_study, write_study
    from m3lung.systems.screening import Screener

    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    label = 1 + seed % 3  # a diseased study: COVID-19 for seed 0, then H1N1, CAP
    config = PhantomConfig.small(size=256, slices=(40, 48))
    study = make_study(label, seed=seed, config=config, patient_id=f"demo-{seed:04d}")
    paths = write_study(study, out_dir / "study", format="dicom", seed=seed)
    t_make = time.perf_counter() - t0

    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        vol = read_ct(paths["ct"])
    t_read = time.perf_counter() - t0
    if not np.array_equal(vol.voxels, study.volume.voxels):
        raise M3LungError("demo: the DICOM round trip changed the voxels; please report this")

    t0 = time.perf_counter()
    screener = Screener(weights or demo_weights(), device="cpu")
    t_load = time.perf_counter() - t0
    report = screener.screen(vol)
    target = report.write(out_dir / "screen" / study.patient_id, overwrite=True)
    t_screen = report.data["timings_s"]["total"]

    probs = report.probs
    truth_share = _true_share(study)
    lines = [
        "m3lung demo (synthetic data: m3lung.phantom, not a real patient; demo weights trained on phantoms only)",
        f"  study      {study.patient_id}: truth {study.class_name}, {vol.n_slices} slices "
        f"{vol.shape[1]}x{vol.shape[2]}, "
        f"{len(study.lesions)} lesion(s) on {int(study.slice_labels.sum())} slice(s)",
        f"  written    {paths['ct']} (DICOM, shuffled file names) in {t_make:.1f} s; read back identical in "
        f"{t_read:.2f} s",
        f"  screened   in {t_screen:.1f} s (weights loaded in {t_load:.1f} s): {report.label} ("
        + ", ".join(f"{k} {v:.2f}" for k, v in probs.items())
        + f"; decided by the {report.data['patient']['decided_by']})",
        f"  rules      non-parametric: {report.data['patient']['nonparametric']['label']}, "
        f"max pooling: {report.data['patient']['maxpool']['label']}",
        f"  infected   {report.data['infected_share']:.1%} of the lung by the lesion maps (phantom truth "
        f"{truth_share:.1%}; an estimate read off weakly supervised maps, which the small demo weights draw "
        "coarse and faint, so it falls well under the truth here)"
        if report.data["infected_share"] < 0.5 * truth_share
        else f"  infected   {report.data['infected_share']:.1%} of the lung by the lesion maps (phantom truth "
        f"{truth_share:.1%}; an estimate read off weakly supervised maps)",
        f"  outputs    {target}/report.html, report.json, lesion_map.nii.gz",
    ]
    return "\n".join(lines)


def _true_share(study: Any) -> float:
    les = np.asarray(study.lesion_mask) > 0
    lung = np.asarray(study.lung_mask) > 0
    total = np.count_nonzero(les | lung)
    return float(np.count_nonzero(les)) / total if total else 0.0


def make_demo_weights(
    workdir: str | os.PathLike[str], *, data: str | os.PathLike[str] | None = None, progress: bool = True
) -> Path:
    """Reproduce the shipped demo weights: recipes ``slice_demo`` then ``patient_demo``, into ``workdir``.

    ``data`` is the synthetic cohort (made there when missing; default ``workdir/cohort``). Writes
    ``workdir/demo_system.pt`` (float16 tensors, to keep the shipped file small) and returns it.
    """
    import torch

    from m3lung.data.slices import synthetic_cases
    from m3lung.systems.m3lung import train_slice
    from m3lung.systems.m3lung_patient import extract_features, load_patient_recipe, train_patient
    from m3lung.systems.m3lung_recipes import load_slice_recipe
    from m3lung.train.checkpoint import load_checkpoint, save_system

    work = Path(workdir)
    cohort = Path(data) if data is not None else work / "cohort"
    slice_dir, patient_dir = work / "slice", work / "patient"
    resume = (slice_dir / "checkpoints" / "last.pt").exists()
    if not (slice_dir / "results.json").exists():
        train_slice(
            load_slice_recipe("slice_demo"),
            cohort,
            slice_dir,
            resume=resume,
            progress=progress,
            cache_dir=work / "cache",
        )
    extract_features(
        slice_dir / "best.pt",
        synthetic_cases(cohort),
        work / "features",
        slice_cache=work / "cache",
        progress=progress,
        data_note="synthetic",
    )
    if not (patient_dir / "results.json").exists():
        recipe = load_patient_recipe("patient_demo", [f"data.split_file={slice_dir / 'split.json'}"])
        train_patient(
            recipe, work / "features", patient_dir, resume=(patient_dir / "checkpoints").exists(), progress=progress
        )
    half = []
    for f in (slice_dir / "best.pt", patient_dir / "best.pt"):
        doc = load_checkpoint(f)
        sd = {k: v.half() if v.is_floating_point() else v for k, v in doc["state_dict"].items()}
        half.append({**doc, "state_dict": sd, "weights_hash": None})
    from m3lung.train.checkpoint import weights_hash

    for doc in half:
        doc["weights_hash"] = weights_hash(doc["state_dict"])
    target = save_system(work / DEMO_WEIGHTS, half[0], half[1])
    summary = {
        "slice": json.loads((slice_dir / "results.json").read_text()).get("test", {}),
        "patient": json.loads((patient_dir / "results.json").read_text()).get("test", {}),
        "torch": torch.__version__,
    }
    (work / "demo_weights_results.json").write_text(json.dumps(summary, indent=1, default=float))
    return target
