"""Named backbones of the slice network: a small registry of torchvision ResNet factories.

Each entry says how to build the randomly initialised network and the channels of its ResBlock3 and
ResBlock4 outputs (C3, C4); :func:`list_backbones` names them, :func:`make_backbone` builds one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class BackboneSpec:
    """One registered backbone: ``factory()`` builds it (random weights); ``channels`` = (C3, C4)."""

    factory: Callable[[], nn.Module]
    channels: tuple[int, int]


def _narrow_resnet10(widths: tuple[int, int, int, int]) -> nn.Module:
    """torchvision's ResNet-10 layout (one basic block per stage) with other stage widths."""
    from torchvision import models as tvm

    net = tvm.resnet.ResNet(tvm.resnet.BasicBlock, [1, 1, 1, 1])
    net.conv1 = nn.Conv2d(3, widths[0], kernel_size=7, stride=2, padding=3, bias=False)
    net.bn1 = nn.BatchNorm2d(widths[0])
    layers = []
    inplanes = widths[0]
    for i, w in enumerate(widths):
        stride = 1 if i == 0 else 2
        down = None
        if stride != 1 or inplanes != w:
            down = nn.Sequential(nn.Conv2d(inplanes, w, 1, stride=stride, bias=False), nn.BatchNorm2d(w))
        layers.append(nn.Sequential(tvm.resnet.BasicBlock(inplanes, w, stride, down)))
        inplanes = w
    net.layer1, net.layer2, net.layer3, net.layer4 = layers
    net.fc = nn.Linear(widths[3], 1000)
    for m in net.modules():  # torchvision's initialisation
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
    return net


def _torchvision(name: str) -> Callable[[], nn.Module]:
    """A factory of torchvision's ``name`` ResNet without weights."""

    def build() -> nn.Module:
        from torchvision import models as tvm

        net: nn.Module = getattr(tvm, name)(weights=None)
        return net

    return build


def _resnet10() -> nn.Module:
    """torchvision's ResNet with one basic block per stage."""
    from torchvision import models as tvm

    return tvm.resnet.ResNet(tvm.resnet.BasicBlock, [1, 1, 1, 1])


BACKBONES: dict[str, BackboneSpec] = {
    "resnet10n": BackboneSpec(lambda: _narrow_resnet10((16, 32, 64, 128)), (64, 128)),
    "resnet10h": BackboneSpec(lambda: _narrow_resnet10((32, 64, 128, 256)), (128, 256)),
    "resnet10": BackboneSpec(_resnet10, (256, 512)),
    "resnet18": BackboneSpec(_torchvision("resnet18"), (256, 512)),
    "resnet34": BackboneSpec(_torchvision("resnet34"), (256, 512)),
    "resnet50": BackboneSpec(_torchvision("resnet50"), (1024, 2048)),
}


def list_backbones() -> tuple[str, ...]:
    """The registered backbone names, sorted."""
    return tuple(sorted(BACKBONES))


def backbone_spec(name: str) -> BackboneSpec:
    """The registry entry of ``name``; an unknown name is a ``ValueError`` listing the known ones."""
    try:
        return BACKBONES[name]
    except KeyError:
        raise ValueError(f"backbone must be one of {sorted(BACKBONES)}, got {name!r}") from None


def make_backbone(name: str) -> nn.Module:
    """A randomly initialised torchvision ResNet by name (``resnet10``: one basic block per stage)."""
    return backbone_spec(name).factory()
