"""M³Lung-Sys (seed 001) as a :class:`~m3lung.systems.base.System`: the first system on the common shape.

A study goes lung crop → slice network (three window centres, averaged) → patient network and the
fusion rules → lesion map on the study's own grid. Slices go through in chunks of ``chunk`` slices,
so memory stays bounded for long studies (what is kept per slice is a few numbers, one feature
vector and a uint8 map row).

Choices (documented in ``docs/report_schema.md``):

* the lesion map shown and written is the with-lesion map (§1.2) times the slice's P(with lesion),
  so slices the network finds lesion-free stay dark instead of showing a min-max-normalised map;
* the patient decision is the patient network's when the weights hold one, else the
  non-parametric assessment's (§1.4); both, and max pooling, are always reported;
* the infected share of the lung is |lesion| / |lung ∪ lesion|, lesion = weighted map ≥ 0.5 inside
  the slice's lung box, lung = the lung crop's air mask (an estimate, as the paper's clinicians make
  from the maps; consolidated lung is not air, so the lesion region is added to the lung).
"""

from __future__ import annotations

import math
import os
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from m3lung.classes import CLASSES
from m3lung.errors import InputError, M3LungWarning
from m3lung.explain import uncrop_maps
from m3lung.fusion import max_pooling, nonparametric_assessment
from m3lung.io import CTVolume
from m3lung.report.charts import RULE_NOTES, RULE_TITLES
from m3lung.report.result import rounded
from m3lung.systems.base import (
    RuleResult,
    SliceViews,
    StudyResult,
    System,
    check_options,
    register_system,
)
from m3lung.systems.m3lung_stages import PATIENT_STAGE, SLICE_STAGE

#: slices shown in the HTML report when ``every`` is not given
DEFAULT_SHOWN = 24


@dataclass(frozen=True)
class M3LungOptions:
    """Inference options of M³Lung-Sys (each is an ``m3lung screen`` flag of the same name)."""

    patient_weights: str | None = field(
        default=None, metadata={"help": "patient-network checkpoint to use with a slice checkpoint"}
    )
    batch_size: int = field(default=32, metadata={"help": "slices per forward pass (x 3 window centres)"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 inference (CUDA, or CPUs with AVX512-BF16/AMX)"})
    chunk: int = field(default=32, metadata={"help": "slices lung-cropped and screened at a time (memory bound)"})
    every: int | None = field(
        default=None, metadata={"help": "show every k-th slice in report.html (default: about 24 slices)"}
    )
    threshold: float = field(default=0.99, metadata={"help": "T of the non-parametric assessment (paper 0.99)"})
    maxpool_threshold: float = field(default=0.5, metadata={"help": "disease threshold of max pooling"})
    map_shifts: int | None = field(
        default=None,
        metadata={
            "help": "draw the lesion maps with K shifts per axis (shift-and-stitch: a K times finer map, about "
            "K^2 times the network's cost; 1 = the paper's map) instead of the weights' own setting"
        },
    )
    map_flip: bool | None = field(
        default=None,
        metadata={
            "help": "average each lesion map with the mirrored map of the mirrored slice (twice the map's cost), "
            "or not (--no-map-flip), instead of the weights' own setting"
        },
    )

    def __post_init__(self) -> None:
        check_options(
            "M³Lung-Sys",
            {
                "every": (self.every is None or self.every >= 1, "must be at least 1"),
                "chunk": (self.chunk >= 1, "must be at least 1"),
                "batch_size": (self.batch_size >= 1, "must be at least 1"),
                "threshold": (0.0 <= self.threshold < 1.0, "must be in [0, 1)"),
                "maxpool_threshold": (0.0 <= self.maxpool_threshold <= 1.0, "must be in [0, 1]"),
            },
        )


#: the demo weights shipped in the package (slice + patient network, trained on synthetic phantoms only)
DEMO_WEIGHTS = "demo_system.pt"


def demo_weights() -> Path:
    """The shipped demo weights (recipes ``slice_demo`` + ``patient_demo``, synthetic phantoms only)."""
    path = Path(__file__).resolve().parents[1] / "weights" / DEMO_WEIGHTS
    if not path.exists():
        raise InputError(
            f"{path}: the demo weights are missing from this installation; reinstall m3lung, or make them with "
            "`m3lung demo --make-weights DIR` and pass --weights DIR/demo_system.pt"
        )
    return path


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


def _brief(prov: dict[str, Any]) -> dict[str, Any]:
    keys = ("recipe", "profile", "data", "data_source", "data_note", "train_scans", "epoch", "m3lung_version", "init")
    return {k: prov[k] for k in keys if k in prov}


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


# ------------------------------------------------------------------------------------------ the system
@register_system
class M3LungSystem(System):
    """M³Lung-Sys: slice network + patient network + the non-parametric rule and max pooling (seed 001)."""

    name = "m3lung"
    title = "M³Lung-Sys"
    description = "slice-level ResNet with lesion head and lesion maps, patient-level attention network (seed 001)"
    classes = CLASSES
    Options = M3LungOptions
    default_weights_note = "the demo weights, trained on synthetic phantoms only"
    stages = (SLICE_STAGE, PATIENT_STAGE)

    def __init__(
        self,
        slice_doc: dict[str, Any],
        patient_doc: dict[str, Any] | None,
        options: M3LungOptions,
        device: str,
        source: str,
    ) -> None:
        from m3lung.models import PatientNetConfig
        from m3lung.systems.m3lung_inference import SlicePredictor
        from m3lung.train.checkpoint import WeightsError
        from m3lung.train.inference import load_for_inference

        self.options = options
        self.predictor = SlicePredictor(
            source,
            device=device,
            batch_size=options.batch_size,
            bf16=options.bf16,
            doc=slice_doc,
            map_shifts=options.map_shifts,
            map_flip=options.map_flip,
        )
        self.device = self.predictor.device
        self.slice_config = self.predictor.config
        if not self.slice_config.multitask:
            raise WeightsError(
                f"{source}: a {self.slice_config.variant!r} slice network has no lesion head; screening needs "
                "lesion probabilities and maps (variant multitask, attention or full)"
            )
        self.patient_net: Any = None
        self.patient_doc = patient_doc
        if patient_doc is not None:
            pcfg = PatientNetConfig(**patient_doc["config"])
            if pcfg.feature_dim != self.slice_config.feature_dim:
                raise WeightsError(
                    f"the patient network reads {pcfg.feature_dim}-d slice features but the slice network "
                    f"({self.slice_config.backbone}) gives {self.slice_config.feature_dim}-d ones: use weights "
                    "trained together (the system.pt of one `m3lung train patient` run)"
                )
            self.patient_net, _, _ = load_for_inference(
                patient_doc, kind="patient_net", device=self.device, name=str(options.patient_weights or source)
            )
        self.slice_doc = slice_doc

    @classmethod
    def default_weights(cls) -> Path | None:
        return demo_weights()

    @classmethod
    def load(cls, weights: str | os.PathLike[str], options: Any, device: str = "auto") -> M3LungSystem:
        """``weights``: a system file (``system.pt`` of ``m3lung train patient``) or a slice-network checkpoint
        (then the decision is the non-parametric rule's, unless ``options.patient_weights`` names one)."""
        from m3lung.train.checkpoint import load_checkpoint, load_system

        slice_doc, patient_doc = load_system(weights)
        if options.patient_weights is not None:
            patient_doc = load_checkpoint(options.patient_weights, kind="patient_net")
        return cls(slice_doc, patient_doc, options, device, str(weights))

    def predict(self, volume: CTVolume) -> StudyResult:
        """Screen one study in HU: every slice through the slice network, the patient rules, the lesion map."""
        import torch

        vol = volume
        vol.require_hu("screening (the lung crop and the network's windows are in HU)")
        timings: dict[str, float] = {}
        result_warnings: list[str] = []
        n, h, w = vol.shape
        every = self.options.every or max(1, math.ceil(n / DEFAULT_SHOWN))
        shown = np.arange(0, n, every)
        lesion_map = np.zeros((n, h, w), dtype=np.uint8)
        acc = _Accumulator()
        t_crop = t_net = 0.0
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", M3LungWarning)  # fallback slices are reported once below
            for part in self.predictor.predict_chunks(vol, chunk=self.options.chunk):
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
            result_warnings.append("no lung found on any slice: is this a chest CT? every slice was used whole")
        elif fallback.any():
            result_warnings.append(f"no lung found on {int(fallback.sum())} of {n} slice(s); those were used whole")
        t0 = time.perf_counter()
        p_lesion2 = np.stack([1 - p_les, p_les], axis=1)
        npa = nonparametric_assessment(p_lesion2, p_multi, threshold=self.options.threshold)
        mp = max_pooling(p_multi, threshold=self.options.maxpool_threshold)
        rules: dict[str, RuleResult | None] = {"network": None}
        if self.patient_net is not None:
            feats = torch.from_numpy(np.concatenate(acc.features)).float()[None].to(self.device)
            mask = torch.ones(1, n, dtype=torch.bool, device=self.device)
            with torch.inference_mode():
                probs = self.patient_net(feats, mask).probs.float().cpu().numpy()[0]
            rules["network"] = self._rule("network", probs, CLASSES[int(probs.argmax())])
        timings["patient"] = round(time.perf_counter() - t0, 3)
        t = self.options.threshold
        healthy = float(npa.probs[0])
        rules["nonparametric"] = self._rule(
            "nonparametric",
            npa.probs,
            CLASSES[npa.label],
            counts=[int(c) for c in npa.counts],
            threshold=t,
            why=f"{healthy:.0%} of the {n} slices vote Healthy, more than T = {t:.0%}: Healthy"
            if npa.label == 0
            else f"only {healthy:.0%} of the {n} slices vote Healthy, not more than T = {t:.0%}, so the scan is "
            f"not Healthy: the disease with the most slice votes is the answer, {CLASSES[npa.label]}",
        )
        m = self.options.maxpool_threshold
        rules["maxpool"] = self._rule(
            "maxpool",
            mp.probs,
            CLASSES[mp.label],
            threshold=m,
            why=f"no disease reaches {m:g} on any slice: Healthy"
            if mp.label == 0
            else f"{CLASSES[mp.label]} has the highest slice probability of the diseases, above {m:g}",
        )
        decided_by = "network" if rules["network"] is not None else "nonparametric"
        decision = rules[decided_by]
        assert decision is not None
        share = acc.lesion_px / acc.lung_px if acc.lung_px else 0.0
        return StudyResult(
            system=self.name,
            classes=CLASSES,
            label=decision.label,
            probs=decision.probs,
            decided_by=decided_by,
            rules=rules,
            slices={
                "p_multi": [rounded(p) for p in p_multi],
                "p_lesion": rounded(p_les),
                "p_slice": [rounded(p) for p in npa.slice_probs],
                "predicted": [CLASSES[int(k)] for k in npa.slice_probs.argmax(1)],
                "lung_found": [bool(not f) for f in fallback],
            },
            lesion_map=lesion_map,
            extras={
                "infected_share": round(float(share), 4),
                "infected_share_method": "lesion (map x P(lesion) >= 0.5 in the lung box) / (air lung mask | lesion)",
            },
            weights=self._weights(),
            timings=timings,
            warnings=result_warnings,
            views=SliceViews(indices=shown, images=np.concatenate(acc.crops), overlays=np.concatenate(acc.maps)),
            device=str(self.device),
        )

    @staticmethod
    def _rule(name: str, probs: np.ndarray, label: str, *, why: str = "", **details: Any) -> RuleResult:
        p = np.asarray(probs)
        return RuleResult(p, label, title=RULE_TITLES[name], note=RULE_NOTES[name], details=details, why=why)

    def _weights(self) -> dict[str, Any]:
        slice_prov = self.slice_doc.get("provenance", {})
        patient_prov = self.patient_doc.get("provenance", {}) if self.patient_doc else {}
        return {
            "hashes": {
                "slice": self.slice_doc["weights_hash"],
                "patient": self.patient_doc["weights_hash"] if self.patient_doc else None,
            },
            "slice_hash": self.slice_doc["weights_hash"],
            "patient_hash": self.patient_doc["weights_hash"] if self.patient_doc else None,
            "slice_config": self.slice_config.to_dict(),
            "slice_windows": {"centres": list(self.predictor.centres), "width": self.predictor.width},
            "trained_on": "; ".join(
                [trained_on(slice_prov, "slice network")]
                + ([trained_on(patient_prov, "patient network")] if self.patient_doc else [])
            ),
            "provenance": {
                "slice": _brief(slice_prov),
                "patient": _brief(patient_prov) if self.patient_doc else None,
            },
        }
