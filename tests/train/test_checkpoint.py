"""Checkpoints: safe loading, content hashes, config and provenance, clear errors, no downloads."""

from __future__ import annotations

import pickle

import pytest
import torch
from torchvision import models as tvm

from m3lung.errors import InputError, M3LungWarning
from m3lung.models import SliceNet, SliceNetConfig
from m3lung.train.checkpoint import WeightsError, build_slice_net, load_checkpoint, save_model, weights_hash

CFG = SliceNetConfig(backbone="resnet18", input_size=64)


def test_save_load_roundtrip_and_hash(tmp_path):
    net = SliceNet(CFG)
    digest = save_model(tmp_path / "m.pt", net, kind="slice_net", config=CFG.to_dict(), provenance={"recipe": "t"})
    doc = load_checkpoint(tmp_path / "m.pt", kind="slice_net")
    assert doc["weights_hash"] == digest == weights_hash(net.state_dict())
    assert doc["config"]["backbone"] == "resnet18" and doc["provenance"] == {"recipe": "t"}
    other = SliceNet(CFG)
    assert weights_hash(other.state_dict()) != digest
    model, init = build_slice_net(CFG, tmp_path / "m.pt")
    assert init["init"] == "checkpoint" and weights_hash(model.state_dict()) == digest
    with pytest.raises(WeightsError, match="not a 'patient_net'"):
        load_checkpoint(tmp_path / "m.pt", kind="patient_net")


def test_tampered_weights_are_detected(tmp_path):
    net = SliceNet(CFG)
    save_model(tmp_path / "m.pt", net, kind="slice_net", config=CFG.to_dict(), provenance={})
    doc = torch.load(tmp_path / "m.pt", weights_only=True)
    doc["state_dict"]["classifier.bias"] += 1
    torch.save(doc, tmp_path / "m.pt")
    with pytest.raises(WeightsError, match="recorded hash"):
        load_checkpoint(tmp_path / "m.pt")


def test_pickled_objects_are_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(tmp_path / "evil.pt", "wb") as fh:
        pickle.dump({"format": "m3lung.checkpoint/1", "x": Evil()}, fh)
    with pytest.raises(WeightsError, match="weights_only"):
        load_checkpoint(tmp_path / "evil.pt")


def test_torchvision_state_dict_initialises_the_backbone(tmp_path):
    ref = tvm.resnet18(weights=None)
    torch.save(ref.state_dict(), tmp_path / "resnet18.pth")
    model, init = build_slice_net(CFG, tmp_path / "resnet18.pth")
    assert init["init"] == "pretrained"
    assert torch.equal(model.layer1[0].conv1.weight, ref.layer1[0].conv1.weight)
    assert torch.equal(model.layer4[0].conv1.weight[:, :256], ref.layer4[0].conv1.weight)


def test_weights_that_do_not_fit_name_both_sides(tmp_path):
    torch.save(tvm.resnet50(weights=None).state_dict(), tmp_path / "resnet50.pth")
    with pytest.raises(WeightsError, match=r"resnet50\.pth do not fit torchvision resnet18.*another shape"):
        build_slice_net(CFG, tmp_path / "resnet50.pth")
    full = SliceNet(SliceNetConfig(backbone="resnet18", variant="full"))
    save_model(tmp_path / "full.pt", full, kind="slice_net", config=full.config.to_dict(), provenance={})
    with pytest.raises(WeightsError, match="resnet18/full slice network cannot initialise a resnet18/vanilla"):
        build_slice_net(SliceNetConfig(backbone="resnet18", variant="vanilla"), tmp_path / "full.pt")
    with pytest.raises(InputError, match="not found"):
        build_slice_net(CFG, tmp_path / "nope.pt")


def test_imagenet_from_empty_cache_warns_and_never_downloads(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.warns(M3LungWarning, match="not in the local cache.*random initialisation"):
        _, init = build_slice_net(CFG, "imagenet")
    assert init == {"init": "random"}
    (tmp_path / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(tvm.resnet18(weights=None).state_dict(), tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth")
    _, init = build_slice_net(CFG, "imagenet")
    assert init["init"] == "pretrained" and init["path"].endswith("resnet18-f37072fd.pth")


def test_empty_or_incomplete_checkpoints_are_one_line_errors(tmp_path):
    from m3lung.train.checkpoint import CHECKPOINT_FORMAT

    (tmp_path / "empty.pt").write_bytes(b"")
    with pytest.raises(WeightsError, match="cannot load as weights"):
        load_checkpoint(tmp_path / "empty.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "kind": "slice_net", "state_dict": {}}, tmp_path / "noconf.pt")
    with pytest.raises(WeightsError, match="holds no model config"):
        load_checkpoint(tmp_path / "noconf.pt")
    torch.save({"format": CHECKPOINT_FORMAT, "kind": "slice_net", "config": {}}, tmp_path / "nosd.pt")
    with pytest.raises(WeightsError, match="holds no state_dict"):
        load_checkpoint(tmp_path / "nosd.pt")
