"""The backbone registry: every name builds a network with its registered channels; unknown names fail."""

from __future__ import annotations

import pytest
import torch

from m3lung.models import SliceNetConfig
from m3lung.models.backbones import BACKBONES, backbone_spec, list_backbones, make_backbone

torch.set_num_threads(2)


def test_list_backbones_is_the_registry_sorted():
    assert list_backbones() == tuple(sorted(BACKBONES))
    assert {"resnet10n", "resnet10h", "resnet10", "resnet18", "resnet34", "resnet50"} == set(list_backbones())


@pytest.mark.parametrize("name", list_backbones())
def test_every_backbone_has_its_registered_channels(name):
    net = make_backbone(name)
    c3, c4 = backbone_spec(name).channels
    assert net.layer4[0].conv1.in_channels == c3  # ResBlock4 reads ResBlock3
    assert net.fc.in_features == c4
    assert SliceNetConfig(backbone=name).feature_dim == c3 + c4


def test_unknown_backbone_names_the_known_ones():
    with pytest.raises(ValueError, match=r"backbone must be one of .*resnet10n.*got 'vgg16'"):
        make_backbone("vgg16")
    with pytest.raises(ValueError, match="backbone must be one of"):
        SliceNetConfig(backbone="vgg16")  # type: ignore[arg-type]
