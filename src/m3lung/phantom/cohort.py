"""Synthetic studies and cohorts: draw, finish (blur, noise, integer HU) and write them with their truth."""

from __future__ import annotations

import csv
import io
import json
import os
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from scipy import ndimage

from m3lung.errors import InputError
from m3lung.io import write_dicom_series, write_mask, write_nifti, write_text_atomic
from m3lung.io.volume import CTVolume, SourceInfo
from m3lung.phantom.anatomy import draw_anatomy
from m3lung.phantom.artefacts import add_artefact
from m3lung.phantom.config import CLASS_NAMES, CLASS_TAGS, PhantomConfig, PhantomStudy
from m3lung.phantom.geometry import Grid
from m3lung.phantom.lesions import LesionCanvas, add_cap, add_covid, add_h1n1
from m3lung.phantom.render import render_anatomy
from m3lung.phantom.trees import grow_trees, render_trees

Format = Literal["dicom", "nifti"]
MANIFEST_COLUMNS = (
    "patient_id",
    "label",
    "class_name",
    "n_slices",
    "n_lesion_slices",
    "spacing_z",
    "spacing_y",
    "spacing_x",
    "path",
)


def cohort_patient_id(index: int, label: int) -> str:
    """Deterministic synthetic patient id, e.g. ``syn-0003-cap``."""
    return f"syn-{index:04d}-{CLASS_TAGS[label]}"


def _finish(vox: np.ndarray, rng: np.random.Generator, sigma: float, noise: float, chunk: int = 16) -> None:
    """In-plane Gaussian blur, Gaussian noise, rounding to whole HU and clipping to [-1024, 3071], in place.

    The noise of each slice is a randomly shifted, randomly signed crop of one of 6 white Gaussian
    noise planes (the same statistics as fresh noise per slice, at a fraction of the cost).
    """
    n, h, w = vox.shape
    for k in range(0, n, chunk):
        slab = vox[k : k + chunk]
        if sigma > 0:
            slab[...] = ndimage.gaussian_filter(slab, (0.0, sigma, sigma), mode="nearest")
    if noise > 0:
        pad = 48
        bank: np.ndarray = rng.standard_normal((6, h + pad, w + pad), dtype=np.float32) * np.float32(noise)
        pick_arr: np.ndarray = rng.integers(0, 6, size=(n,))
        offs_arr: np.ndarray = rng.integers(0, pad + 1, size=(n, 2))
        pick = [int(v) for v in pick_arr]
        offs = [(int(a), int(b)) for a, b in offs_arr]
        signs = [float(v) for v in rng.choice(np.array([-1.0, 1.0]), size=n)]
        for k in range(n):
            oy, ox = offs[k]
            plane = bank[pick[k], oy : oy + h, ox : ox + w]
            if signs[k] > 0:
                vox[k] += plane
            else:
                vox[k] -= plane
    np.rint(vox, out=vox)
    np.clip(vox, -1024.0, 3071.0, out=vox)


def make_study(
    label: int,
    *,
    seed: int,
    config: PhantomConfig = PhantomConfig(),  # noqa: B008 (frozen dataclass)
    patient_id: str | None = None,
    index: int = 0,
) -> PhantomStudy:
    """Draw one synthetic chest CT of class ``label`` with its ground truth.

    Parameters
    ----------
    label : int
        0 Healthy, 1 COVID-19, 2 H1N1, 3 CAP.
    seed, index : int
        The anatomy, geometry and noise come from ``np.random.default_rng([seed, index, ...])`` and
        the lesions from a generator that also includes ``label``: the same ``(seed, index)`` with
        another label gives the same patient with other lesions (paired studies).
    config : PhantomConfig
    patient_id : str, optional
        Default: :func:`cohort_patient_id` of ``index`` and ``label``.

    Returns
    -------
    PhantomStudy
        Volume ``(N, rows, cols)`` float32 HU (integers) in canonical orientation, with masks.
    """
    if label not in range(len(CLASS_NAMES)):
        raise InputError(f"label must be 0..3 (Healthy, COVID-19, H1N1, CAP), got {label}")
    if seed < 0 or index < 0:
        raise InputError(f"seed and index must be non-negative, got seed={seed}, index={index}")
    pid = patient_id or cohort_patient_id(index, label)
    rng = np.random.default_rng([seed, index, 0])
    n = int(rng.integers(config.slices[0], config.slices[1] + 1))
    extent = rng.uniform(*config.z_extent_mm)
    sz = round(extent / n, 3)
    ps = round(float(rng.uniform(*config.pixel_spacing)), 4)
    sigma, noise = rng.uniform(*config.blur_sigma_px), rng.uniform(*config.noise_hu)
    grid = Grid((n, config.rows, config.cols), (sz, ps, ps))
    an = draw_anatomy(rng, grid)
    vox, lung = render_anatomy(an)
    trees = grow_trees(rng, an, lung, config.max_vessel_segments)
    render_trees(an, trees, vox, lung)
    lrng = np.random.default_rng([seed, index, 1, label])
    canvas = LesionCanvas.create(an, trees, vox, lung)
    lesions: list[dict[str, Any]] = []
    if label == 1:
        lesions = add_covid(canvas, lrng, config.covid_lesions)
    elif label == 2:
        lesions = add_h1n1(canvas, lrng)
    elif label == 3:
        lesions = add_cap(canvas, lrng)
    p_art = config.artefact_probability if label == 0 else config.diseased_artefact_probability
    artefacts = add_artefact(an, vox, lung, lrng) if lrng.random() < p_art else []
    _finish(vox, np.random.default_rng([seed, index, 2]), sigma, noise)
    origin = (round(float(grid.xs[0]), 4), round(float(grid.ys[0]), 4), round(-float(rng.uniform(150.0, 400.0)), 3))
    source = SourceInfo(
        path=f"phantom:{pid}",
        format="phantom",
        patient_id=pid,
        modality="CT",
        series_description=f"m3lung phantom {CLASS_NAMES[label]}",
        metadata={"noise_hu": f"{noise:.2f}", "blur_sigma_px": f"{sigma:.3f}"},
    )
    volume = CTVolume(vox, spacing=(sz, ps, ps), origin=origin, source=source)
    for les in lesions:
        les["centre_lps_mm"] = [round(float(v), 2) for v in volume.world(*les["centre_voxel"])]
    counts = np.count_nonzero(canvas.lesion.reshape(n, -1), axis=1)
    return PhantomStudy(
        patient_id=pid,
        label=int(label),
        class_name=CLASS_NAMES[label],
        volume=volume,
        lung_mask=lung,
        lesion_mask=canvas.lesion,
        slice_labels=(counts >= config.min_lesion_pixels).astype(np.uint8),
        lesions=lesions,
        artefacts=artefacts,
        seed=int(seed),
        index=int(index),
        config=config,
    )


def make_cohort(
    per_class: int,
    *,
    seed: int,
    config: PhantomConfig = PhantomConfig(),  # noqa: B008
) -> Iterator[PhantomStudy]:
    """Yield ``4 * per_class`` studies lazily, classes interleaved (index ``i`` has label ``i % 4``).

    Ids are :func:`cohort_patient_id` (``syn-0000-healthy``, ``syn-0001-covid``, ...); study ``i``
    is ``make_study(i % 4, seed=seed, index=i)``, so any study can be regenerated on its own.
    """
    for i in range(4 * per_class):
        yield make_study(i % 4, seed=seed, config=config, index=i)


def _dicom_names(n: int, seed: int, patient_id: str) -> list[str]:
    """``n`` distinct random 16-digit hex file names, drawn from ``seed`` and the patient id."""
    rng = np.random.default_rng([seed, zlib.crc32(patient_id.encode())])
    names: list[str] = []
    seen: set[str] = set()
    while len(names) < n:
        name = f"{int(rng.integers(0, 2**63)):016x}"
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def _json_default(obj: object) -> object:
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_study(
    study: PhantomStudy, out_dir: str | os.PathLike[str], *, format: Format = "dicom", seed: int = 0
) -> dict[str, Path]:
    """Write a study under ``out_dir/<patient_id>/`` with its masks and truth.

    Layout: ``ct/`` (DICOM series, one file per slice, random hex file names drawn from ``seed``)
    or ``ct.nii.gz``; ``lung_mask.nii.gz`` and ``lesion_mask.nii.gz`` on the volume's grid;
    ``truth.json`` (written last: its presence marks a complete study). Existing files are replaced.

    Returns
    -------
    dict
        Paths by name: ``ct``, ``lung_mask``, ``lesion_mask``, ``truth``.
    """
    if format not in ("dicom", "nifti"):
        raise InputError(f"format must be 'dicom' or 'nifti', got {format!r}")
    folder = Path(out_dir) / study.patient_id
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "truth.json").unlink(missing_ok=True)
    vol = study.volume
    if format == "dicom":
        from pydicom.uid import generate_uid

        ct = write_dicom_series(
            vol,
            folder / "ct",
            patient_id=study.patient_id,
            series_description=vol.source.series_description or "",
            study_uid=generate_uid(entropy_srcs=[study.patient_id, str(study.seed), "study"]),
            series_uid=generate_uid(entropy_srcs=[study.patient_id, str(study.seed), "series"]),
            file_names=_dicom_names(vol.n_slices, seed, study.patient_id),
            overwrite=True,
        )
    else:
        ct = write_nifti(vol, folder / "ct.nii.gz")
    paths = {
        "ct": ct,
        "lung_mask": write_mask(study.lung_mask, vol, folder / "lung_mask.nii.gz"),
        "lesion_mask": write_mask(study.lesion_mask, vol, folder / "lesion_mask.nii.gz"),
        "truth": folder / "truth.json",
    }
    truth = study.truth()
    truth.update(format=format, ct=ct.name, file_name_seed=int(seed))
    write_text_atomic(paths["truth"], json.dumps(truth, indent=1, default=_json_default) + "\n")
    return paths


def _finished(folder: Path, format: Format, seed: int, index: int, config: PhantomConfig) -> dict[str, Any] | None:
    """The truth of a study already complete on disk with these settings, else None."""
    try:
        truth = json.loads((folder / "truth.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ct = folder / ("ct" if format == "dicom" else "ct.nii.gz")
    same = (
        truth.get("format") == format
        and truth.get("seed") == seed
        and truth.get("index") == index
        and truth.get("config") == config.to_dict()
        and truth.get("file_name_seed") == seed
    )
    masks = (folder / "lung_mask.nii.gz").is_file() and (folder / "lesion_mask.nii.gz").is_file()
    return truth if same and ct.exists() and masks else None


#: the settings file of a cohort folder, beside ``cohort.csv``
SETTINGS_FILE = "cohort.json"


def _cohort_settings(per_class: int, seed: int, format: Format, config: PhantomConfig) -> dict[str, Any]:
    """The settings recorded in ``cohort.json``, as JSON reads them back (lists, not tuples)."""
    settings = {"per_class": int(per_class), "seed": int(seed), "format": format, "config": config.to_dict()}
    return dict(json.loads(json.dumps(settings, default=_json_default)))


def _describe(settings: dict[str, Any], other: dict[str, Any] | None = None) -> str:
    """``per class 1, seed 0, dicom, 32x32 px, 4-6 slices`` (plus the other phantom settings that differ)."""
    cfg = settings.get("config") or {}
    sl = cfg.get("slices") or ["?", "?"]
    text = (
        f"per class {settings.get('per_class', '?')}, seed {settings.get('seed', '?')}, {settings.get('format', '?')}, "
        f"{cfg.get('rows', '?')}x{cfg.get('cols', '?')} px, {sl[0]}-{sl[1]} slices"
    )
    if other is not None:
        shown = {"rows", "cols", "slices"}
        ocfg = other.get("config") or {}
        differ = sorted(k for k in set(cfg) | set(ocfg) if k not in shown and cfg.get(k) != ocfg.get(k))
        text += "".join(f", {k} {cfg.get(k)}" for k in differ)
    return text


def _expected_rows(settings: dict[str, Any]) -> list[tuple[str, str]]:
    """``(patient_id, path)`` of every study of a cohort with these settings, in manifest order."""
    rows = []
    for i in range(4 * int(settings["per_class"])):
        pid = cohort_patient_id(i, i % 4)
        rows.append((pid, f"{pid}/ct" if settings["format"] == "dicom" else f"{pid}/ct.nii.gz"))
    return rows


def _legacy_settings_match(out: Path, settings: dict[str, Any]) -> bool:
    """Whether a cohort without ``cohort.json`` (made before it existed) is the one ``settings`` make.

    Its ``cohort.csv`` must list the same studies (ids and paths, in order), and every study already
    complete on disk must have been made with the same seed, format and phantom config.
    """
    try:
        with (out / "cohort.csv").open(newline="", encoding="utf-8") as fh:
            listed = [(r.get("patient_id"), r.get("path")) for r in csv.DictReader(fh)]
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return listed == _expected_rows(settings) and _studies_match(out, settings)


def _check_cohort_folder(out: Path, settings: dict[str, Any]) -> None:
    """Refuse to write a cohort with ``settings`` into ``out`` when that would replace something else.

    Allowed: a missing or empty folder; a cohort made with the same settings (complete or interrupted);
    a cohort from before ``cohort.json`` whose manifest and studies fit ``settings``; a folder holding
    only study folders of this cohort (an interrupted run from before ``cohort.json``).
    """
    again = (
        "use another folder (--out, or --data for training), delete that cohort, or replace it with "
        "`m3lung phantom --overwrite` (Python: write_cohort(..., overwrite=True))"
    )
    if not out.is_dir():
        return
    settings_path = out / SETTINGS_FILE
    if settings_path.exists():
        try:
            old = json.loads(settings_path.read_text(encoding="utf-8"))
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as exc:
            raise InputError(f"{settings_path}: cannot be read ({exc}); {again}") from exc
        if old != settings:
            raise InputError(
                f"{out} holds a synthetic cohort made with {_describe(old, settings)}, not the "
                f"{_describe(settings, old)} asked for; {again}"
            )
        return
    if (out / "cohort.csv").exists():
        if not _legacy_settings_match(out, settings):
            raise InputError(
                f"{out} holds a synthetic cohort (cohort.csv, no {SETTINGS_FILE}) that is not the one made with "
                f"{_describe(settings)}; {again}"
            )
        return
    ours = {pid for pid, _ in _expected_rows(settings)}
    others = sorted(e.name for e in out.iterdir() if e.name not in ours)
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise InputError(
            f"{out} is not empty and holds no synthetic cohort ({shown}); a cohort is written into a new or "
            "empty folder: pass another one, or write into this one anyway with `m3lung phantom --overwrite` "
            "(existing files are kept; study folders of the same name are replaced)"
        )
    if not _studies_match(out, settings):
        raise InputError(
            f"{out} holds study folders of a synthetic cohort made with other settings than {_describe(settings)}; "
            f"{again}"
        )


def _studies_match(out: Path, settings: dict[str, Any]) -> bool:
    """Whether every study of ``settings`` that has a ``truth.json`` in ``out`` was made with them."""
    for i, (pid, _) in enumerate(_expected_rows(settings)):
        try:
            truth = json.loads((out / pid / "truth.json").read_text(encoding="utf-8"))
        except FileNotFoundError:
            continue
        except (OSError, ValueError):
            return False
        same = (
            truth.get("seed") == settings["seed"]
            and truth.get("index") == i
            and truth.get("format") == settings["format"]
            and truth.get("config") == settings["config"]
        )
        if not same:
            return False
    return True


def write_cohort(
    out_dir: str | os.PathLike[str],
    *,
    per_class: int,
    seed: int,
    format: Format = "dicom",
    config: PhantomConfig = PhantomConfig(),  # noqa: B008
    progress: bool = True,
    overwrite: bool = False,
) -> Path:
    """Write ``4 * per_class`` studies (see :func:`make_cohort`) and the manifest ``out_dir/cohort.csv``.

    The settings (``per_class``, ``seed``, ``format``, ``config``) are recorded first in
    ``out_dir/cohort.json``. Studies already complete on disk with the same settings are kept as they
    are (resume after an interruption). ``out_dir`` must be new, empty, or hold a cohort made with the
    same settings; anything else (a cohort made with other settings, or other files) is an
    :class:`InputError` unless ``overwrite``: then the cohort is written into the folder anyway,
    replacing ``cohort.csv``, ``cohort.json`` and the study folders it writes; other files are never
    deleted. A cohort from before ``cohort.json`` is accepted when its ``cohort.csv`` lists the studies
    these settings make and its studies were made with them. The manifest has the columns
    :data:`MANIFEST_COLUMNS`; ``path`` is the CT input relative to ``out_dir`` (``<patient_id>/ct`` or
    ``<patient_id>/ct.nii.gz``).

    Returns
    -------
    Path
        The manifest.
    """
    from tqdm import tqdm

    from m3lung.io.atomic import require_output_folder

    if per_class < 0:
        raise InputError(f"per_class must be >= 0, got {per_class}")
    if format not in ("dicom", "nifti"):
        raise InputError(f"format must be 'dicom' or 'nifti', got {format!r}")
    out = require_output_folder(out_dir, what="the cohort folder")
    settings = _cohort_settings(per_class, seed, format, config)
    if not overwrite:
        _check_cohort_folder(out, settings)
    out.mkdir(parents=True, exist_ok=True)
    settings_path = out / SETTINGS_FILE
    if overwrite:
        (out / "cohort.csv").unlink(missing_ok=True)  # it lists the cohort being replaced
    if overwrite or not settings_path.exists():
        write_text_atomic(settings_path, json.dumps(settings, indent=1) + "\n")
    rows = []
    # disable=None: tqdm turns itself off when stderr is not a terminal
    for i in tqdm(range(4 * per_class), desc="phantom cohort", unit="study", disable=None if progress else True):
        label = i % 4
        pid = cohort_patient_id(i, label)
        truth = _finished(out / pid, format, seed, i, config)
        if truth is None:
            study = make_study(label, seed=seed, config=config, patient_id=pid, index=i)
            write_study(study, out, format=format, seed=seed)
            truth = study.truth()
        sz, sy, sx = truth["spacing_mm"]
        ct = f"{pid}/ct" if format == "dicom" else f"{pid}/ct.nii.gz"
        rows.append([pid, label, CLASS_NAMES[label], truth["n_slices"], truth["n_lesion_slices"], sz, sy, sx, ct])
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(MANIFEST_COLUMNS)
    writer.writerows(rows)
    manifest = out / "cohort.csv"
    write_text_atomic(manifest, buf.getvalue())
    return manifest
