"""Checkpoints and pretrained weights: loaded safely, identified by content, never downloaded.

* Every file is read with ``torch.load(..., weights_only=True)``: tensors, numbers, strings and
  containers only, never arbitrary pickled objects.
* A model file carries its architecture (``config``), its training provenance and a content hash
  of its weights (:func:`weights_hash`, the SHA-256 of every tensor's bytes in key order), so a
  report can name exactly which weights produced it.
* Pretrained backbones come from a local file (``pretrained=PATH``: a torchvision ResNet state dict
  or an m3lung checkpoint) or from torchvision's local cache (``pretrained="imagenet"``); when they
  are absent the model starts from random initialisation and says so.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from m3lung.errors import InputError, M3LungError, warn
from m3lung.io.atomic import atomic_file
from m3lung.models.patient_net import PatientNet, PatientNetConfig
from m3lung.models.slice_net import SliceNet, SliceNetConfig, make_backbone

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "m3lung.checkpoint/1"
#: torchvision's ImageNet weight files (IMAGENET1K_V1), looked up in ``torch.hub.get_dir()/checkpoints``.
TORCHVISION_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
}


class WeightsError(M3LungError):
    """Weights that cannot be loaded into the model they are meant for."""


def weights_hash(state_dict: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex, first 16 characters) of every tensor's name, shape, dtype and bytes, in key order."""
    h = hashlib.sha256()
    for key in sorted(state_dict):
        t = state_dict[key]
        if not isinstance(t, torch.Tensor):
            continue
        t = t.detach().cpu().contiguous()
        h.update(key.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()[:16]


def _safe_load(path: str | os.PathLike[str]) -> Any:
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: weights file not found")
    try:
        return torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise WeightsError(
            f"{p}: cannot load as weights ({type(exc).__name__}: {str(exc).splitlines()[0]}). Only files of "
            "tensors and plain values are accepted (torch.load weights_only=True); re-save the state dict."
        ) from exc


def plain(value: Any) -> Any:
    """A copy made only of dict/list/str/int/float/bool/None (what ``weights_only`` loading accepts)."""
    return json.loads(json.dumps(value, default=lambda o: o.item() if hasattr(o, "item") else str(o)))


def save_model(
    path: str | os.PathLike[str],
    model: nn.Module,
    *,
    kind: str,
    config: Mapping[str, Any],
    provenance: Mapping[str, Any],
    extra: Mapping[str, Any] | None = None,
) -> str:
    """Write ``model``'s weights with its config and provenance (atomically); returns the weights hash."""
    sd = {k: v.detach().cpu() for k, v in _unwrap(model).state_dict().items()}
    digest = weights_hash(sd)
    doc = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "config": plain(config),
        "provenance": plain(provenance),
        "weights_hash": digest,
        "state_dict": sd,
        **(dict(extra) if extra else {}),
    }
    with atomic_file(path) as tmp:
        torch.save(doc, tmp)
    return digest


def load_checkpoint(path: str | os.PathLike[str], *, kind: str | None = None) -> dict[str, Any]:
    """Load an m3lung checkpoint safely and check its format, kind and weights hash."""
    doc = _safe_load(path)
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not an m3lung checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if kind is not None and doc.get("kind") != kind:
        raise WeightsError(f"{path}: holds a {doc.get('kind')!r} model, not a {kind!r} model")
    digest = weights_hash(doc["state_dict"])
    if doc.get("weights_hash") not in (None, digest):
        raise WeightsError(f"{path}: the weights do not match their recorded hash (file damaged or edited)")
    doc["weights_hash"] = digest
    return doc


def _unwrap(model: nn.Module) -> nn.Module:
    return model.module if hasattr(model, "module") and isinstance(model.module, nn.Module) else model


def check_state(
    own: Mapping[str, torch.Tensor], state_dict: Mapping[str, torch.Tensor], *, source: str, target: str
) -> None:
    """Raise one clear :class:`WeightsError` naming both sides when keys or shapes do not fit."""
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    wrong = [k for k in own if k in state_dict and tuple(own[k].shape) != tuple(state_dict[k].shape)]
    if missing or unexpected or wrong:
        parts = []
        if wrong:
            k = wrong[0]
            parts.append(
                f"{len(wrong)} tensor(s) of another shape (e.g. {k}: {tuple(state_dict[k].shape)} in the file, "
                f"{tuple(own[k].shape)} in the model)"
            )
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[0]})")
        raise WeightsError(f"weights from {source} do not fit {target}: " + "; ".join(parts))


def load_state_checked(model: nn.Module, state_dict: Mapping[str, torch.Tensor], *, source: str, target: str) -> None:
    """``load_state_dict`` after :func:`check_state`."""
    check_state(_unwrap(model).state_dict(), state_dict, source=source, target=target)
    _unwrap(model).load_state_dict(state_dict)


def slice_net_from(doc: Mapping[str, Any], *, source: str) -> SliceNet:
    """The :class:`SliceNet` of a loaded ``slice_net`` checkpoint (its own config, weights checked to fit)."""
    model = SliceNet(SliceNetConfig(**doc["config"]))
    load_state_checked(model, doc["state_dict"], source=source, target="SliceNet")
    return model


def patient_net_from(doc: Mapping[str, Any], *, source: str) -> PatientNet:
    """The :class:`PatientNet` of a loaded ``patient_net`` checkpoint (its own config, weights checked to fit)."""
    model = PatientNet(PatientNetConfig(**doc["config"]))
    load_state_checked(model, doc["state_dict"], source=source, target="PatientNet")
    return model


def _torchvision_cache_file(backbone: str) -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / TORCHVISION_FILES[backbone]


def build_slice_net(
    config: SliceNetConfig, pretrained: str | os.PathLike[str] | None = None, *, sink: list[str] | None = None
) -> tuple[SliceNet, dict[str, Any]]:
    """Build a :class:`SliceNet` and initialise it.

    ``pretrained``: ``None`` (random initialisation), ``"imagenet"`` (torchvision's ImageNet file from
    the local torch hub cache, if present), or a path to a torchvision ResNet state dict or an m3lung
    ``slice_net`` checkpoint. Returns the model and a description of its initialisation.
    """
    backbone = make_backbone(config.backbone)
    init: dict[str, Any] = {"init": "random"}
    if pretrained is not None and str(pretrained) == "imagenet" and config.backbone not in TORCHVISION_FILES:
        warn(
            f"there are no ImageNet weights for {config.backbone}; the network starts from random initialisation", sink
        )
        pretrained = None
    if pretrained is not None and str(pretrained) == "imagenet":
        f = _torchvision_cache_file(config.backbone)
        if f.exists():
            pretrained = f
        else:
            warn(
                f"ImageNet weights for {config.backbone} are not in the local cache ({f}); the network starts "
                "from random initialisation. Nothing is downloaded: put torchvision's file there, or pass "
                "--pretrained PATH.",
                sink,
            )
            pretrained = None
    if pretrained is not None:
        doc = _safe_load(pretrained)
        if isinstance(doc, dict) and doc.get("format") == CHECKPOINT_FORMAT:
            ck = load_checkpoint(pretrained, kind="slice_net")
            ck_cfg = SliceNetConfig(**ck["config"])
            if ck_cfg.backbone != config.backbone or ck_cfg.variant != config.variant:
                raise WeightsError(
                    f"{pretrained}: a {ck_cfg.backbone}/{ck_cfg.variant} slice network cannot initialise a "
                    f"{config.backbone}/{config.variant} one"
                )
            model = SliceNet(config, backbone)
            load_state_checked(model, ck["state_dict"], source=str(pretrained), target=f"SliceNet({config.backbone})")
            return model, {"init": "checkpoint", "path": str(pretrained), "weights_hash": ck["weights_hash"]}
        if not isinstance(doc, dict) or not all(isinstance(v, torch.Tensor) for v in doc.values()):
            raise WeightsError(f"{pretrained}: expected a state dict of tensors or an m3lung checkpoint")
        sd = {k.removeprefix("module."): v for k, v in doc.items() if not k.startswith("fc.")}
        own = {k: v for k, v in backbone.state_dict().items() if not k.startswith("fc.")}
        check_state(own, sd, source=str(pretrained), target=f"torchvision {config.backbone}")
        backbone.load_state_dict(sd, strict=False)  # all but the ImageNet fc head, checked above
        init = {"init": "pretrained", "path": str(pretrained), "weights_hash": weights_hash(sd)}
    else:
        log.info("slice network %s/%s: random initialisation", config.backbone, config.variant)
    return SliceNet(config, backbone), init


SYSTEM_KIND = "m3lung_system"
_DOC_KEYS = ("format", "kind", "config", "provenance", "weights_hash", "state_dict")


def save_system(
    path: str | os.PathLike[str], slice_doc: Mapping[str, Any], patient_doc: Mapping[str, Any] | None
) -> Path:
    """One file holding a slice-network checkpoint and, optionally, the patient network trained on it."""
    doc = {
        "format": CHECKPOINT_FORMAT,
        "kind": SYSTEM_KIND,
        "slice": {k: slice_doc[k] for k in _DOC_KEYS},
        "patient": None if patient_doc is None else {k: patient_doc[k] for k in _DOC_KEYS},
    }
    with atomic_file(path) as tmp:
        torch.save(doc, tmp)
    return Path(path)


def _check_part(doc: Any, kind: str, path: str | os.PathLike[str]) -> dict[str, Any]:
    if not isinstance(doc, dict) or doc.get("kind") != kind or "state_dict" not in doc:
        raise WeightsError(f"{path}: the system file holds no valid {kind!r} part")
    digest = weights_hash(doc["state_dict"])
    if doc.get("weights_hash") not in (None, digest):
        raise WeightsError(f"{path}: the {kind} weights do not match their recorded hash (file damaged or edited)")
    return {**doc, "weights_hash": digest}


def load_system(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The slice-network and patient-network checkpoints of ``path``.

    ``path`` is either a system file (:func:`save_system`) or a plain ``slice_net`` checkpoint, in
    which case there is no patient network (``None``).
    """
    doc = _safe_load(path)
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not an m3lung checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if doc.get("kind") == "slice_net":
        return load_checkpoint(path, kind="slice_net"), None
    if doc.get("kind") != SYSTEM_KIND:
        raise WeightsError(
            f"{path}: holds a {doc.get('kind')!r} model; screening needs a slice network or an m3lung system file"
        )
    patient = doc.get("patient")
    return _check_part(doc.get("slice"), "slice_net", path), (
        None if patient is None else _check_part(patient, "patient_net", path)
    )
