"""The model registry: named families, building from configs, and checkpoints that name their model."""

from __future__ import annotations

import pytest
import torch

from m3lung.models import PatientNet, PatientNetConfig, SliceNet, build_model, get_model, list_models
from m3lung.models.registry import WeightsError, model_from_checkpoint, register_model
from m3lung.train.checkpoint import load_checkpoint, load_model, save_model


def test_the_package_networks_are_registered_and_build_from_a_mapping():
    assert {"slice_net", "patient_net"} <= set(list_models())
    assert get_model("slice_net").description
    net = build_model("patient_net", {"feature_dim": 16, "heads": 2, "head_dim": 4})
    assert isinstance(net, PatientNet) and net.config.feature_dim == 16
    assert isinstance(build_model("slice_net", backbone="resnet10h", input_size=64), SliceNet)
    with pytest.raises(WeightsError, match=r"no model named 'nope'; known models: .*slice_net"):
        build_model("nope")
    with pytest.raises(WeightsError, match="unknown config field"):
        build_model("patient_net", {"feature_dim": 16, "colour": "red"})
    with pytest.raises(ValueError, match="registered already"):
        register_model("patient_net", PatientNetConfig)(lambda c: PatientNet(c))


def test_a_checkpoint_names_its_model_and_rebuilds_it(tmp_path):
    net = PatientNet(PatientNetConfig(feature_dim=16, heads=2, head_dim=4))
    save_model(tmp_path / "p.pt", net, kind="patient_net", config=net.config.to_dict(), provenance={"recipe": "t"})
    doc = load_checkpoint(tmp_path / "p.pt")
    assert doc["model"] == doc["kind"] == "patient_net"
    again, _ = load_model(tmp_path / "p.pt", kind="patient_net")
    x = torch.randn(1, 5, 16)
    assert torch.equal(again(x).logits, net.eval()(x).logits) and not again.training
    # files written before the registry name their family as "kind" only
    old = {k: v for k, v in doc.items() if k != "model"}
    assert isinstance(model_from_checkpoint(old, source="old.pt"), PatientNet)
    with pytest.raises(WeightsError, match="holds a 'patient_net' model, not a 'slice_net' model"):
        load_model(tmp_path / "p.pt", kind="slice_net")
    with pytest.raises(WeightsError, match="do not fit PatientNet"):
        model_from_checkpoint({**doc, "config": {**doc["config"], "heads": 4}}, source="edited.pt")
