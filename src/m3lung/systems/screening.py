"""``m3lung screen``: one answer per CT study, with the evidence behind it.

A study goes read → lung crop → slice network (three window centres, averaged) → patient network
and fusion rules → lesion map on the study's own grid → ``report.json``, ``report.html`` and
``lesion_map.nii.gz``. Slices go through in chunks of ``chunk`` slices, so memory stays bounded
for long studies (what is kept per slice is a few numbers, one feature vector and a uint8 map).

Choices (documented in the report schema, ``docs/report_schema.md``):

* the lesion map shown and written is the with-lesion map (§1.2) times the slice's P(with lesion),
  so slices the network finds lesion-free stay dark instead of showing a min-max-normalised map;
* the patient decision is the patient network's when the weights hold one, else the
  non-parametric assessment's (§1.4); both, and max pooling, are always reported;
* the infected share of the lung is |lesion| / |lung ∪ lesion|, lesion = weighted map ≥ 0.5 inside
  the slice's lung box, lung = the lung crop's air mask (an estimate, as the paper's clinicians make
  from the maps; consolidated lung is not air, so the lesion region is added to the lung).
"""

from __future__ import annotations

import csv
import datetime as _dt
import json
import logging
import math
import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from m3lung.classes import CLASSES
from m3lung.errors import InputError, M3LungError, M3LungWarning
from m3lung.explain import uncrop_maps
from m3lung.fusion import max_pooling, nonparametric_assessment
from m3lung.io import CTVolume, read_ct
from m3lung.io.atomic import atomic_dir, write_text_atomic
from m3lung.models import PatientNet, PatientNetConfig
from m3lung.train.checkpoint import WeightsError, load_system, patient_net_from

log = logging.getLogger(__name__)

REPORT_SCHEMA = "m3lung.report/1"
CLASS_NAMES = CLASSES
MAP_SLOPE = 1.0 / 255.0
#: slices shown in the HTML report when ``every`` is not given
DEFAULT_SHOWN = 24


def trained_on(provenance: dict[str, Any], kind: str) -> str:
    """A plain sentence on what a network was trained on, from its checkpoint provenance."""
    data = str(provenance.get("data_source") or provenance.get("data") or "unknown data")
    names = {
        "synthetic": "a synthetic cohort (m3lung.phantom; no real patient)",
        "covid-ct-md": "COVID-CT-MD scans",
    }
    text = f"{kind}: recipe {provenance.get('recipe', '?')}, trained on {names.get(data, data)}"
    if provenance.get("train_scans"):
        text += f", {provenance['train_scans']} training scans"
    init = provenance.get("init")
    if isinstance(init, dict) and init.get("init"):
        text += f", initialisation {init['init']}"
    return text


@dataclass
class Report:
    """The result of screening one study. ``to_dict()`` is ``report.json``; ``write()`` writes all outputs.

    lesion_map : (N, H, W) uint8 on the study's canonical grid, value x 1/255 = map x P(lesion).
    shown / crops / maps : the slices for the HTML report, their HU lung crops and weighted maps.
    """

    data: dict[str, Any]
    volume: CTVolume
    lesion_map: np.ndarray
    shown: np.ndarray
    crops: np.ndarray
    maps: np.ndarray | None

    @property
    def label(self) -> str:
        return str(self.data["patient"]["label"])

    @property
    def probs(self) -> dict[str, float]:
        p = self.data["patient"]
        src = p["network"] if p.get("network") else p["nonparametric"]
        return dict(zip(CLASS_NAMES, src["probs"], strict=True))

    def to_dict(self) -> dict[str, Any]:
        return self.data

    def write(self, out: str | os.PathLike[str], *, overwrite: bool = False) -> Path:
        """Write ``report.json``, ``report.html`` and ``lesion_map.nii.gz`` into ``out`` as one atomic folder."""
        from m3lung.io.write import write_nifti
        from m3lung.report.html import render_html

        t0 = time.perf_counter()
        with atomic_dir(out, overwrite=overwrite) as tmp:
            n_warn = len(self.volume.warnings)
            write_nifti(self.volume, tmp / "lesion_map.nii.gz", array=self.lesion_map, dtype="uint8", slope=MAP_SLOPE)
            for w in self.volume.warnings[n_warn:]:
                self.data["warnings"].append(w)
            html = render_html(self.data, crops=self.crops, maps=self.maps, shown=self.shown)
            (tmp / "report.html").write_text(html, encoding="utf-8")
            self.data["timings_s"]["write"] = round(time.perf_counter() - t0, 3)
            (tmp / "report.json").write_text(json.dumps(self.data, indent=1), encoding="utf-8")
        return Path(out)


@dataclass
class _Accumulator:
    p_multi: list[np.ndarray] = field(default_factory=list)
    p_lesion: list[np.ndarray] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    fallback: list[np.ndarray] = field(default_factory=list)
    crops: list[np.ndarray] = field(default_factory=list)
    maps: list[np.ndarray] = field(default_factory=list)
    lesion_px: int = 0
    lung_px: int = 0


class Screener:
    """Load the networks once; screen any number of studies.

    Parameters
    ----------
    weights : a system file (slice + patient network, written by ``m3lung train patient`` as
        ``system.pt``) or a slice-network checkpoint (then the decision is the non-parametric rule's).
    patient_weights : a ``patient_net`` checkpoint to use with a slice-network checkpoint.
    device : "auto", "cpu" or "cuda". batch_size : slices per forward pass (x 3 window centres).
    bf16 : bfloat16 autocast (CUDA, or CPUs with AVX512-BF16/AMX). chunk : slices per chunk.
    every : show every k-th slice in the HTML report (default: about 24 slices).
    threshold : T of the non-parametric assessment (paper 0.99). maxpool_threshold : see fusion.
    map_shifts : draw the lesion maps with this ``SliceNetConfig.map_shifts`` instead of the weights'
        own (finer maps at about K^2 times the network's cost up to ResBlock-3; same probabilities).
    map_flip : draw them with this ``SliceNetConfig.map_flip`` (also the mirrored slice's map, averaged;
        twice the map's cost) instead of the weights' own.
    """

    def __init__(
        self,
        weights: str | os.PathLike[str],
        *,
        patient_weights: str | os.PathLike[str] | None = None,
        device: str = "auto",
        batch_size: int = 32,
        bf16: bool = False,
        chunk: int = 32,
        every: int | None = None,
        threshold: float = 0.99,
        maxpool_threshold: float = 0.5,
        map_shifts: int | None = None,
        map_flip: bool | None = None,
    ) -> None:
        from m3lung.train.checkpoint import load_checkpoint

        if every is not None and every < 1:
            raise InputError(f"--every must be at least 1, got {every}")
        if chunk < 1 or batch_size < 1:
            raise InputError("chunk and batch size must be at least 1")
        slice_doc, patient_doc = load_system(weights)
        if patient_weights is not None:
            patient_doc = load_checkpoint(patient_weights, kind="patient_net")
        from m3lung.systems.m3lung import SlicePredictor

        self.predictor = SlicePredictor(
            weights,
            device=device,
            batch_size=batch_size,
            bf16=bf16,
            doc=slice_doc,
            map_shifts=map_shifts,
            map_flip=map_flip,
        )
        self.device = self.predictor.device
        self.slice_config = self.predictor.config
        if not self.slice_config.multitask:
            raise WeightsError(
                f"{weights}: a {self.slice_config.variant!r} slice network has no lesion head; screening needs "
                "lesion probabilities and maps (variant multitask, attention or full)"
            )
        self.patient_net: PatientNet | None = None
        self.patient_doc = patient_doc
        if patient_doc is not None:
            pcfg = PatientNetConfig(**patient_doc["config"])
            if pcfg.feature_dim != self.slice_config.feature_dim:
                raise WeightsError(
                    f"the patient network reads {pcfg.feature_dim}-d slice features but the slice network "
                    f"({self.slice_config.backbone}) gives {self.slice_config.feature_dim}-d ones: use weights "
                    "trained together (the system.pt of one `m3lung train patient` run)"
                )
            self.patient_net = patient_net_from(patient_doc, source=str(patient_weights or weights))
            self.patient_net.to(self.device).eval()
        self.slice_doc = slice_doc
        self.chunk = chunk
        self.every = every
        self.threshold = threshold
        self.maxpool_threshold = maxpool_threshold

    # ------------------------------------------------------------------ one study
    def screen(self, source: str | os.PathLike[str] | CTVolume, **read_options: Any) -> Report:
        """Screen one study (a path ``read_ct`` reads, with its options, or a :class:`CTVolume`)."""
        timings: dict[str, float] = {}
        t0 = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", M3LungWarning)
            vol = source if isinstance(source, CTVolume) else read_ct(source, **read_options)
        timings["read"] = round(time.perf_counter() - t0, 3)
        vol.require_hu("screening (the lung crop and the network's windows are in HU)")
        report_warnings = list(dict.fromkeys([*vol.warnings, *(str(w.message) for w in caught)]))
        n, h, w = vol.shape
        every = self.every or max(1, math.ceil(n / DEFAULT_SHOWN))
        shown = np.arange(0, n, every)
        lesion_map = np.zeros((n, h, w), dtype=np.uint8)
        acc = _Accumulator()
        t_crop = t_net = 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", M3LungWarning)  # fallback slices are reported once below
            for part in self.predictor.predict_chunks(vol, chunk=self.chunk):
                start, stop, crop, out = part.start, part.stop, part.crop, part.out
                t_crop += part.seconds_crop
                t_net += part.seconds_net
                assert out.p_lesion is not None and out.maps is not None
                weighted = out.maps * out.p_lesion[:, 1, None, None]
                full = uncrop_maps(weighted, crop.boxes, (h, w))
                lesion_map[start:stop] = np.rint(np.clip(full, 0, 1) * 255).astype(np.uint8)
                lesion = full >= 0.5
                acc.lesion_px += int(np.count_nonzero(lesion))
                acc.lung_px += int(np.count_nonzero(lesion | crop.masks))
                acc.p_multi.append(out.p_multi)
                acc.p_lesion.append(out.p_lesion[:, 1])
                acc.features.append(out.features)
                acc.fallback.append(crop.fallback)
                sel = shown[(shown >= start) & (shown < stop)] - start
                acc.crops.append(crop.crops[sel])
                acc.maps.append(weighted[sel])
        timings["lung_crop"] = round(t_crop, 3)
        timings["slice_network"] = round(t_net, 3)
        p_multi = np.concatenate(acc.p_multi)
        p_les = np.concatenate(acc.p_lesion)
        fallback = np.concatenate(acc.fallback)
        if fallback.all():
            report_warnings.append("no lung found on any slice: is this a chest CT? every slice was used whole")
        elif fallback.any():
            report_warnings.append(f"no lung found on {int(fallback.sum())} of {n} slice(s); those were used whole")
        t0 = time.perf_counter()
        p_lesion2 = np.stack([1 - p_les, p_les], axis=1)
        npa = nonparametric_assessment(p_lesion2, p_multi, threshold=self.threshold)
        mp = max_pooling(p_multi, threshold=self.maxpool_threshold)
        network = None
        if self.patient_net is not None:
            feats = torch.from_numpy(np.concatenate(acc.features)).float()[None].to(self.device)
            mask = torch.ones(1, n, dtype=torch.bool, device=self.device)
            with torch.inference_mode():
                probs = self.patient_net(feats, mask).probs.float().cpu().numpy()[0]
            network = {"probs": _r(probs), "label": CLASS_NAMES[int(probs.argmax())]}
        timings["patient"] = round(time.perf_counter() - t0, 3)
        share = acc.lesion_px / acc.lung_px if acc.lung_px else 0.0
        src = vol.source
        patient = {
            "classes": list(CLASS_NAMES),
            "label": network["label"] if network else CLASS_NAMES[npa.label],
            "decided_by": "network" if network else "nonparametric",
            "network": network,
            "nonparametric": {
                "probs": _r(npa.probs),
                "label": CLASS_NAMES[npa.label],
                "counts": [int(c) for c in npa.counts],
                "threshold": self.threshold,
            },
            "maxpool": {"probs": _r(mp.probs), "label": CLASS_NAMES[mp.label], "threshold": self.maxpool_threshold},
        }
        data: dict[str, Any] = {
            "schema": REPORT_SCHEMA,
            "m3lung_version": _version(),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "study": {
                "patient_id": src.patient_id,
                "study_uid": src.study_uid,
                "series_uid": src.series_uid,
                "source": src.path,
                "format": src.format,
                "modality": src.modality,
                "anonymized": src.anonymized,
                "n_slices": n,
                "rows": h,
                "cols": w,
                "spacing_mm": list(vol.spacing),
            },
            "patient": patient,
            "slices": {
                "order": "canonical: index 0 is the most inferior (feet) slice; source_index maps to the input order",
                "source_index": [int(i) for i in np.asarray(vol.source_index)],
                "p_multi": [_r(p) for p in p_multi],
                "p_lesion": _r(p_les),
                "p_slice": [_r(p) for p in npa.slice_probs],
                "predicted": [CLASS_NAMES[int(k)] for k in npa.slice_probs.argmax(1)],
                "lung_found": [bool(not f) for f in fallback],
            },
            "infected_share": round(float(share), 4),
            "infected_share_method": "lesion (map x P(lesion) >= 0.5 in the lung box) / (air lung mask | lesion)",
            "outputs": {"report_html": "report.html", "lesion_map": "lesion_map.nii.gz", "lesion_map_scale": MAP_SLOPE},
            "weights": {
                "slice_hash": self.slice_doc["weights_hash"],
                "patient_hash": self.patient_doc["weights_hash"] if self.patient_doc else None,
                "slice_config": self.slice_config.to_dict(),
                "trained_on": "; ".join(
                    [trained_on(self.slice_doc.get("provenance", {}), "slice network")]
                    + (
                        [trained_on(self.patient_doc.get("provenance", {}), "patient network")]
                        if self.patient_doc
                        else []
                    )
                ),
                "provenance": {
                    "slice": _brief(self.slice_doc.get("provenance", {})),
                    "patient": _brief(self.patient_doc.get("provenance", {})) if self.patient_doc else None,
                },
            },
            "device": str(self.device),
            "timings_s": timings,
            "warnings": report_warnings,
        }
        return Report(
            data=data,
            volume=vol,
            lesion_map=lesion_map,
            shown=shown,
            crops=np.concatenate(acc.crops),
            maps=np.concatenate(acc.maps),
        )


def _r(a: Any, nd: int = 4) -> list[float]:
    return [round(float(v), nd) for v in np.asarray(a).ravel()]


def _brief(prov: dict[str, Any]) -> dict[str, Any]:
    keys = ("recipe", "profile", "data", "data_source", "data_note", "train_scans", "epoch", "m3lung_version", "init")
    return {k: prov[k] for k in keys if k in prov}


def _version() -> str:
    from m3lung._version import __version__

    return __version__


# ------------------------------------------------------------------ many studies
@dataclass(frozen=True)
class Study:
    """One entry of a batch: where it is read from and the folder name its outputs go to."""

    path: str
    study_id: str


def _safe_name(text: str) -> str:
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "study"
    return name[:120]


def studies_from(paths: Sequence[str | os.PathLike[str]]) -> list[Study]:
    """Studies from paths; a ``.csv`` path is a manifest with a ``path`` column (and optionally ``study_id``).

    Relative paths in a manifest are relative to the manifest's folder. Output folder names are
    the study ids (default: the path's name without suffix), made unique with ``-2``, ``-3``...
    """
    out: list[Study] = []
    for p in paths:
        path = Path(p)
        if path.suffix.lower() == ".csv" and path.is_file():
            with path.open(newline="") as fh:
                reader = csv.DictReader(fh)
                if not reader.fieldnames or "path" not in reader.fieldnames:
                    raise InputError(f"{path}: a manifest needs a 'path' column (and optionally 'study_id')")
                for row in reader:
                    target = Path(row["path"].strip())
                    if not target.is_absolute():
                        target = path.parent / target
                    sid = (row.get("study_id") or "").strip() or _stem(target)
                    out.append(Study(str(target), _safe_name(sid)))
        else:
            out.append(Study(str(path), _safe_name(_stem(path))))
    # a name shared by several studies (DICOM folders all called "ct", say) gets its parent's name
    counts: dict[str, int] = {}
    for s in out:
        counts[s.study_id] = counts.get(s.study_id, 0) + 1
    out = [
        Study(s.path, _safe_name(f"{Path(s.path).parent.name}_{s.study_id}")) if counts[s.study_id] > 1 else s
        for s in out
    ]
    seen: dict[str, int] = {}
    unique = []
    for s in out:
        k = seen.get(s.study_id, 0) + 1
        seen[s.study_id] = k
        unique.append(s if k == 1 else Study(s.path, f"{s.study_id}-{k}"))
    return unique


def _stem(path: Path) -> str:
    """The file or folder name without its format suffix (``.nii.gz`` as one)."""
    from m3lung.io.formats import suffix_of

    suffix = suffix_of(path)
    return path.name[: -len(suffix)] if suffix else path.name


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (1 ≤ i ≤ n) → (i, n); ``None`` → (1, 1)."""
    if text is None:
        return 1, 1
    m = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not m or not (1 <= int(m.group(1)) <= int(m.group(2))):
        raise InputError(f"--shard must be i/n with 1 <= i <= n (e.g. 1/4), got {text!r}")
    return int(m.group(1)), int(m.group(2))


def screen_many(
    screener: Screener,
    studies: Sequence[Study],
    out: str | os.PathLike[str],
    *,
    shard: tuple[int, int] = (1, 1),
    overwrite: bool = False,
    progress: bool = True,
    read_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Screen every study of this shard into ``out/<study_id>/``; skip studies whose report exists.

    A study that fails (a broken file, a non-CT image...) is recorded with its error and the batch
    goes on. ``out/summary.csv`` gets one line per study of this run. Returns counts and failures.
    """
    from tqdm import tqdm

    i, n = shard
    mine = [s for k, s in enumerate(studies) if k % n == i - 1]
    root = Path(out)
    root.mkdir(parents=True, exist_ok=True)
    done, skipped, failed = [], [], []
    for study in tqdm(mine, desc="screening", unit="study", disable=None if progress else True):
        target = root / study.study_id
        if (target / "report.json").exists() and not overwrite:
            skipped.append(study.study_id)
            continue
        t0 = time.perf_counter()
        try:
            report = screener.screen(study.path, **(read_options or {}))
            report.data["timings_s"]["total"] = round(time.perf_counter() - t0, 3)
            report.write(target, overwrite=True)
        except M3LungError as exc:
            log.error("%s: %s", study.path, exc)
            failed.append({"study_id": study.study_id, "path": study.path, "error": str(exc)})
            continue
        p = report.probs
        done.append(
            {
                "study_id": study.study_id,
                "path": study.path,
                "label": report.label,
                **{f"p_{k}": f"{v:.4f}" for k, v in p.items()},
                "infected_share": f"{report.data['infected_share']:.4f}",
                "n_slices": str(report.volume.n_slices),
                "seconds": f"{report.data['timings_s']['total']:.2f}",
            }
        )
    _append_summary(root / "summary.csv", done)
    if failed:
        old = json.loads((root / "failures.json").read_text()) if (root / "failures.json").exists() else []
        keep = [f for f in old if f["study_id"] not in {x["study_id"] for x in failed}]
        write_text_atomic(root / "failures.json", json.dumps(keep + failed, indent=1))
    return {"screened": done, "skipped": skipped, "failed": failed, "shard": f"{i}/{n}", "in_shard": len(mine)}


def _append_summary(path: Path, rows: list[dict[str, str]]) -> None:
    if not rows:
        return
    fields = list(rows[0])
    old: list[dict[str, str]] = []
    if path.exists():
        with path.open(newline="") as fh:
            old = [r for r in csv.DictReader(fh) if r.get("study_id") not in {x["study_id"] for x in rows}]
    import io

    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(old + rows)
    write_text_atomic(path, buf.getvalue())


def screen(
    path: str | os.PathLike[str] | CTVolume,
    *,
    weights: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    **options: Any,
) -> Report:
    """Screen one study: ``m3lung.screen(path, weights=...) -> Report`` (writes to ``out`` when given).

    ``options`` are :class:`Screener`'s (patient_weights, device, batch_size, bf16, chunk, every,
    threshold, maxpool_threshold).
    """
    report = Screener(weights, **options).screen(path)
    if out is not None:
        report.write(out, overwrite=True)
    return report
