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

from m3lung.errors import InputError, warn
from m3lung.io.atomic import atomic_file
from m3lung.models.registry import (
    WeightsError,
    check_state,
    checkpoint_model_name,
    load_state_checked,
    model_from_checkpoint,
    unwrap,
)
from m3lung.models.slice_net import SliceNet, SliceNetConfig, make_backbone

log = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "m3lung.checkpoint/1"
#: torchvision's ImageNet weight files (IMAGENET1K_V1), looked up in ``torch.hub.get_dir()/checkpoints``.
TORCHVISION_FILES = {
    "resnet18": "resnet18-f37072fd.pth",
    "resnet34": "resnet34-b627a593.pth",
    "resnet50": "resnet50-0676ba61.pth",
}


__all__ = [
    "CHECKPOINT_FORMAT",
    "WeightsError",
    "build_slice_net",
    "check_state",
    "load_bundle",
    "load_checkpoint",
    "load_model",
    "load_state_checked",
    "load_system",
    "save_bundle",
    "save_model",
    "save_system",
    "weights_hash",
]


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
            f"{p}: cannot load as weights ({type(exc).__name__}: {(str(exc).splitlines() or ['no message'])[0]}). "
            "Only files of "
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
    """Write ``model``'s weights with its config and provenance (atomically); returns the weights hash.

    ``kind`` is the registered model family (:mod:`m3lung.models.registry`) the file holds; it is written
    as both ``model`` and ``kind`` (the key older files and readers use).
    """
    sd = {k: v.detach().cpu() for k, v in unwrap(model).state_dict().items()}
    digest = weights_hash(sd)
    doc = {
        "format": CHECKPOINT_FORMAT,
        "kind": kind,
        "model": kind,
        "config": plain(config),
        "provenance": plain(provenance),
        "weights_hash": digest,
        "state_dict": sd,
        **(dict(extra) if extra else {}),
    }
    with atomic_file(path) as tmp:
        torch.save(doc, tmp)
    return digest


def _checked(doc: Any, path: str | os.PathLike[str], kind: str | None, what: str = "weights") -> dict[str, Any]:
    """``doc`` (already read) as a checkpoint of ``kind``: format tag, model family and weights hash checked."""
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not an m3lung checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if kind is not None and checkpoint_model_name(doc) != kind:
        raise WeightsError(f"{path}: holds a {checkpoint_model_name(doc)!r} model, not a {kind!r} model")
    if not isinstance(doc.get("state_dict"), dict):
        raise WeightsError(f"{path}: the checkpoint holds no state_dict (file damaged or not written by m3lung)")
    if not isinstance(doc.get("config"), dict):
        raise WeightsError(f"{path}: the checkpoint holds no model config (file damaged or not written by m3lung)")
    digest = weights_hash(doc["state_dict"])
    if doc.get("weights_hash") not in (None, digest):
        raise WeightsError(f"{path}: the {what} do not match their recorded hash (file damaged or edited)")
    return {**doc, "weights_hash": digest}


def load_checkpoint(path: str | os.PathLike[str], *, kind: str | None = None) -> dict[str, Any]:
    """Load an m3lung checkpoint safely and check its format, model family (``kind``) and weights hash."""
    return _checked(_safe_load(path), path, kind)


def load_model(
    source: str | os.PathLike[str] | Mapping[str, Any], *, kind: str, name: str | None = None
) -> tuple[nn.Module, dict[str, Any]]:
    """The network of a checkpoint file (or of a checkpoint already loaded), in eval mode on the CPU, and its doc.

    ``kind``: the model family it must hold. ``name``: how messages name the source (default: the path).
    """
    doc = dict(source) if isinstance(source, Mapping) else load_checkpoint(source, kind=kind)
    label = name or (str(source) if not isinstance(source, Mapping) else f"a {kind} checkpoint")
    model = model_from_checkpoint(doc, source=label, expect=kind)
    return model.eval(), doc


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


#: the ``kind`` of a bundle file: several networks of one system in one file (``system.pt``)
SYSTEM_KIND = "m3lung_system"
_DOC_KEYS = ("format", "kind", "model", "config", "provenance", "weights_hash", "state_dict")


def save_bundle(path: str | os.PathLike[str], parts: Mapping[str, Mapping[str, Any] | None], *, system: str) -> Path:
    """One file holding the named networks of ``system`` (e.g. ``{"slice": doc, "patient": doc}``), atomically.

    A part may be None (absent). Each part is a loaded checkpoint (:func:`load_checkpoint`).
    """
    doc: dict[str, Any] = {"format": CHECKPOINT_FORMAT, "kind": SYSTEM_KIND, "system": system, "parts": list(parts)}
    for name, part in parts.items():
        doc[name] = None if part is None else {k: part[k] for k in _DOC_KEYS if k in part}
    with atomic_file(path) as tmp:
        torch.save(doc, tmp)
    return Path(path)


def load_bundle(
    path: str | os.PathLike[str], *, parts: Mapping[str, str], single: str | None = None, needs: str = ""
) -> dict[str, dict[str, Any] | None]:
    """The networks of a bundle file, read from disk once and each checked: ``{part: checkpoint or None}``.

    ``parts`` maps each part's name to the model family it must hold. A plain checkpoint of the model
    family of part ``single`` is accepted too: that part, the others None. ``needs`` ends the message for
    a file that is neither (what the caller needs).
    """
    doc = _safe_load(path)
    if not isinstance(doc, dict) or doc.get("format") != CHECKPOINT_FORMAT:
        raise WeightsError(f"{path}: not an m3lung checkpoint (no '{CHECKPOINT_FORMAT}' format tag)")
    if single is not None and doc.get("kind") != SYSTEM_KIND and checkpoint_model_name(doc) == parts[single]:
        return {name: (_checked(doc, path, kind) if name == single else None) for name, kind in parts.items()}
    if doc.get("kind") != SYSTEM_KIND:
        wanted = f"a {parts[single]} network or " if single else ""
        raise WeightsError(
            f"{path}: holds a {checkpoint_model_name(doc)!r} model; {needs or 'this needs'} {wanted}a system file"
        )
    out: dict[str, dict[str, Any] | None] = {}
    for name, kind in parts.items():
        part = doc.get(name)
        if part is None:
            out[name] = None
            continue
        if not isinstance(part, dict) or checkpoint_model_name(part) != kind:
            raise WeightsError(f"{path}: the system file holds no valid {kind!r} part")
        out[name] = _checked(part, path, kind, what=f"{kind} weights")
    return out


def save_system(
    path: str | os.PathLike[str], slice_doc: Mapping[str, Any], patient_doc: Mapping[str, Any] | None
) -> Path:
    """M³Lung-Sys's bundle: a slice-network checkpoint and, optionally, the patient network trained on it."""
    return save_bundle(path, {"slice": slice_doc, "patient": patient_doc}, system="m3lung")


#: M³Lung-Sys's bundle parts and the model family each holds
M3LUNG_PARTS = {"slice": "slice_net", "patient": "patient_net"}


def load_system(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """The slice-network and patient-network checkpoints of ``path`` (read once).

    ``path`` is either a system file (:func:`save_system`) or a plain ``slice_net`` checkpoint, in
    which case there is no patient network (``None``).
    """
    parts = load_bundle(path, parts=M3LUNG_PARTS, single="slice", needs="screening needs")
    if parts["slice"] is None:
        raise WeightsError(f"{path}: the system file holds no valid 'slice_net' part")
    return parts["slice"], parts["patient"]
