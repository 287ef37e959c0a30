"""The M³Lung-Sys slice-level network (seed 001, §III-B, Fig. 5).

A torchvision ResNet whose ResBlock3 (``layer3``) output ``f3`` feeds

* a **lesion classifier** ``Linear(C3 -> 2)`` on GAP(f3) (index 0 *without lesion*, 1 *with lesion*),
* a **lesion attention map**: the lesion classifier's weight row of the *predicted* lesion class (a
  prototype) compared with ``f3`` at every position (dot product, min-max normalised per map;
  cosine similarity as an option),
* **coordinate maps** ``x = 2j/(W-1) - 1``, ``y = 2i/(H-1) - 1``, ``d = sqrt(x^2 + y^2)`` on the f3 grid,

and ResBlock4 reads ``concat[f3, A, x, y, d]``. Only ``layer4[0].conv1`` and
``layer4[0].downsample[0]`` see the extra channels: they are rebuilt wider, the pretrained weights fill
the first C3 input channels and the new ones start at zero, so the network starts as the backbone.
The 4-class classifier sits on GAP(ResBlock4); the slice feature is ``concat[GAP(f3), GAP(ResBlock4)]``
(3072-d for ResNet-50), the input of the patient-level network.

The Table V ablations are switches of :class:`SliceNetConfig`: ``variant`` = ``"vanilla"`` (ResNet
only), ``"multitask"`` (+ lesion head), ``"attention"`` (+ lesion attention map into ResBlock4),
``"full"`` (+ coordinate maps; the paper's network).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import nn

from m3lung.explain.lesion_maps import (
    flip_average,
    minmax_normalise,
    prototype_similarity,
    stitch_shifts,
    upsample_map,
)
from m3lung.models.backbones import backbone_spec, make_backbone
from m3lung.models.layers import stem_pool, widen_conv

Backbone = Literal["resnet10n", "resnet10h", "resnet10", "resnet18", "resnet34", "resnet50"]
Variant = Literal["vanilla", "multitask", "attention", "full"]
VARIANTS: tuple[str, ...] = ("vanilla", "multitask", "attention", "full")
MAP_PROTOTYPES: tuple[str, ...] = ("with_lesion", "contrast")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class SliceNetConfig:
    """Architecture of the slice network (defaults: the paper's).

    backbone : torchvision ResNet (paper: resnet50); "resnet10" is torchvision's ResNet with one basic
        block per stage (4.9 M parameters, no ImageNet weights); "resnet10n" the same at a quarter of the
        width (stages of 16/32/64/128 channels, 0.3 M parameters, feature 192-d), for the small demo
        weights m3lung ships; "resnet10h" at half the width (32/64/128/256, 1.2 M parameters, feature
        384-d; about 3x resnet10n's training step on a CPU). None changes the algorithm, only the size.
    variant : Table V switch: vanilla / multitask / attention / full (paper: full).
    num_classes : 4 (Healthy, COVID-19, H1N1, CAP).
    input_size : side of the square input in pixels (paper: 512). Informational: the network is
        fully convolutional up to the global pooling, so any size works.
    similarity : "dot" (CAM-like, choice) or "cosine" for the attention map.
    map_prototype : which prototype draws the lesion map users see (choice; it never changes training):
        "with_lesion" (the paper's: similarity to the with-lesion weight row) or "contrast" (the
        difference of the with-lesion and lesion-free rows, the part of the prototype the lesion
        logit actually depends on; the common part of the two rows is left at its random
        initialisation by the softmax loss and adds a class-independent pattern to the paper's map).
    imagenet_norm : normalise the grey input with ImageNet's mean/std inside the network (choice:
        always on, so that ImageNet weights and random weights see the same input).
    layer3_stride : 2 (the paper's ResNet: ResBlock3 at 1/16 of the input) or 1 (choice: ResBlock3
        keeps ResBlock2's 1/8 resolution, so the lesion map's grid doubles, e.g. 32x32 at 256 px;
        ResBlock4 still halves it). Only strides change, so pretrained weights load unchanged.
    map_shifts : K = 1 (the paper's lesion map: one value per ResBlock3 cell, every ``f3_stride``
        pixels) or 2, 4, 8 (choice, "shift-and-stitch", Long et al., CVPR 2015): the map is also drawn
        on the input shifted by multiples of ``f3_stride / K`` pixels and the K x K maps are
        interleaved, so the same network is evaluated on a grid K times finer. It changes only the map
        users see (and costs K^2 - 1 more passes up to ResBlock3 when a map is drawn); training, the
        attention map ResBlock4 reads and every probability are unchanged.
    map_flip : False (the paper's map) or True (choice, test-time flipping): the map is the mean of the
        slice's map and the mirrored map of the slice's mirror image (training flips slices at random,
        so the network knows both), min-max normalised again. The two maps' cells fall on different
        pixels, so they are averaged after resampling: with ``map_flip`` the map always comes at
        ``map_size``, or at the input's size when none is asked. Costs one more pass up to ResBlock3
        (times ``map_shifts``²) when a map is drawn; nothing else changes.
    head_pool : how the lesion head and the 4-class classifier pool their input over the image.
        "mean" (the paper's: the heads are linear on GAP(f3) and GAP(ResBlock4)) or "lse" (choice,
        log-sum-exp pooling as in Wang et al., CVPR 2017, ChestX-ray8): each head scores every
        position (its class activation map) and the logit is ``log(mean(exp(r * map))) / r``, between
        the maps' mean (r -> 0, exactly the paper's logit) and their maximum (r -> infinity), so a
        small lesion is not averaged away over the slice. The slice feature stays GAP (the patient
        network reads the same vector either way); the head weights keep their shapes. Measured once on
        the synthetic cohort (``slice_cpu``, r = 5; RESULTS.md): no gain in accuracy, and lesion maps
        that peak beside the lesions; so it is off in every recipe.
    lse_r : r of ``head_pool="lse"`` (choice).
    """

    backbone: Backbone = "resnet50"
    variant: Variant = "full"
    num_classes: int = 4
    input_size: int = 512
    similarity: Literal["dot", "cosine"] = "dot"
    imagenet_norm: bool = True
    map_prototype: Literal["with_lesion", "contrast"] = "with_lesion"
    layer3_stride: int = 2
    map_shifts: int = 1
    map_flip: bool = False
    head_pool: Literal["mean", "lse"] = "mean"
    lse_r: float = 5.0

    def __post_init__(self) -> None:
        if self.head_pool not in ("mean", "lse"):
            raise ValueError(f"head_pool must be 'mean' or 'lse', got {self.head_pool!r}")
        if not self.lse_r > 0:
            raise ValueError(f"lse_r must be positive, got {self.lse_r!r}")
        if self.layer3_stride not in (1, 2):
            raise ValueError(f"layer3_stride must be 1 or 2, got {self.layer3_stride!r}")
        if self.map_shifts not in (1, 2, 4, 8) or self.f3_stride % self.map_shifts:
            raise ValueError(
                f"map_shifts must be 1, 2, 4 or 8 and divide the ResBlock3 stride {self.f3_stride}, "
                f"got {self.map_shifts!r}"
            )
        backbone_spec(self.backbone)  # a ValueError naming the known backbones
        if self.variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.similarity not in ("dot", "cosine"):
            raise ValueError(f"similarity must be 'dot' or 'cosine', got {self.similarity!r}")
        if self.map_prototype not in MAP_PROTOTYPES:
            raise ValueError(f"map_prototype must be one of {MAP_PROTOTYPES}, got {self.map_prototype!r}")

    @property
    def f3_stride(self) -> int:
        """Input pixels per ResBlock3 cell: 16 for the paper's ResNet, 8 with ``layer3_stride=1``."""
        return 16 if self.layer3_stride == 2 else 8

    @property
    def multitask(self) -> bool:
        return self.variant != "vanilla"

    @property
    def attention(self) -> bool:
        return self.variant in ("attention", "full")

    @property
    def coords(self) -> bool:
        return self.variant == "full"

    @property
    def feature_dim(self) -> int:
        c3, c4 = backbone_spec(self.backbone).channels
        return c3 + c4

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SliceOutput:
    """What the slice network returns for a batch of B slices.

    class_logits (B, num_classes) and lesion_logits (B, 2) (None for the vanilla variant);
    p_multi / p_lesion are their softmax. lesion_map (B, h, w): the *with-lesion* prototype's map on the
    f3 grid, min-max normalised to [0, 1] per slice (None for vanilla); attention (B, h, w): the map of
    the *predicted* lesion class that ResBlock4 saw (None unless the variant uses attention).
    features (B, C3 + C4): concat[GAP(f3), GAP(ResBlock4)].
    """

    class_logits: torch.Tensor
    lesion_logits: torch.Tensor | None
    lesion_map: torch.Tensor | None
    attention: torch.Tensor | None
    features: torch.Tensor

    @property
    def p_multi(self) -> torch.Tensor:
        return self.class_logits.float().softmax(dim=1)  # float32 even under bf16 autocast

    @property
    def p_lesion(self) -> torch.Tensor | None:
        return None if self.lesion_logits is None else self.lesion_logits.float().softmax(dim=1)


def coordinate_maps(
    h: int, w: int, *, device: torch.device | None = None, dtype: torch.dtype | None = None
) -> torch.Tensor:
    """(3, h, w): x = 2j/(w-1) - 1, y = 2i/(h-1) - 1, d = sqrt(x^2 + y^2) (in [0, sqrt 2])."""
    xs = (
        torch.linspace(-1.0, 1.0, w, device=device, dtype=dtype)
        if w > 1
        else torch.zeros(1, device=device, dtype=dtype)
    )
    ys = (
        torch.linspace(-1.0, 1.0, h, device=device, dtype=dtype)
        if h > 1
        else torch.zeros(1, device=device, dtype=dtype)
    )
    y, x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([x, y, torch.sqrt(x * x + y * y)])


class SliceNet(nn.Module):
    """The slice-level network; ``forward(x)`` takes (B, 1 or 3, H, W) windowed slices in [0, 1]."""

    def __init__(self, config: SliceNetConfig = SliceNetConfig(), backbone: nn.Module | None = None) -> None:
        super().__init__()
        self.config = config
        net: Any = backbone if backbone is not None else make_backbone(config.backbone)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, stem_pool(net.maxpool))
        self.layer1: nn.Module = net.layer1
        self.layer2: nn.Module = net.layer2
        self.layer3: nn.Module = net.layer3
        self.layer4: nn.Module = net.layer4
        if config.layer3_stride == 1:
            for m in self.layer3[0].modules():
                if isinstance(m, nn.Conv2d) and m.stride == (2, 2):
                    m.stride = (1, 1)
        c3, c4 = backbone_spec(config.backbone).channels
        extra = (1 if config.attention else 0) + (3 if config.coords else 0)
        if extra:
            block: Any = net.layer4[0]
            block.conv1 = widen_conv(block.conv1, extra)
            if block.downsample is not None:
                block.downsample[0] = widen_conv(block.downsample[0], extra)
        self.lesion_head: nn.Linear | None = nn.Linear(c3, 2) if config.multitask else None
        self.classifier = nn.Linear(c4, config.num_classes)
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    @property
    def map_stride(self) -> int:
        """Input pixels per lesion-map cell: 16 for the paper's ResNet, 8 with ``layer3_stride=1``,
        divided by ``map_shifts``."""
        return self.config.f3_stride // self.config.map_shifts

    def _head(self, head: nn.Linear, f: torch.Tensor, pooled: torch.Tensor) -> torch.Tensor:
        """Logits of a linear head on the feature map ``f`` (B, C, h, w) whose mean is ``pooled`` (B, C):
        on the mean (the paper's) or log-sum-exp pooled over the head's per-position logits."""
        if self.config.head_pool == "mean":
            out: torch.Tensor = head(pooled)
            return out
        r = self.config.lse_r
        cam = torch.einsum("kc,bchw->bkhw", head.weight, f).flatten(2) + head.bias.view(1, -1, 1)
        return (torch.logsumexp(r * cam, dim=2) - math.log(cam.shape[2])) / r

    def _f3(self, x: torch.Tensor) -> torch.Tensor:
        """ResBlock3's output for the normalised 3-channel input ``x``."""
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def _prototype_map(self, f3: torch.Tensor, cls: torch.Tensor) -> torch.Tensor:
        """Similarity between the lesion head's weight row ``cls`` (B,) and f3 at every position: (B, h, w)."""
        assert self.lesion_head is not None
        return prototype_similarity(f3, self.lesion_head.weight[cls], similarity=self.config.similarity)

    def _map_similarity(self, f3: torch.Tensor, prototype: str) -> torch.Tensor:
        """The raw (not yet normalised) lesion map (B, h, w) drawn by ``prototype`` on ``f3``."""
        assert self.lesion_head is not None
        if prototype == "contrast":
            w = self.lesion_head.weight[1] - self.lesion_head.weight[0]
            return prototype_similarity(f3, w, similarity=self.config.similarity)
        with_lesion = torch.ones(f3.shape[0], dtype=torch.long, device=f3.device)
        return self._prototype_map(f3, with_lesion)

    def _lesion_map(self, x: torch.Tensor, f3: torch.Tensor, prototype: str) -> torch.Tensor:
        """The with-lesion map in [0, 1] drawn by ``prototype`` (see :class:`SliceNetConfig`): (B, h, w) on
        the f3 grid, or (B, K h, K w) with ``map_shifts`` K > 1, where fine cell (K i + a, K j + b) is the
        f3 cell (i, j) of the input moved up by ``a`` and left by ``b`` steps of ``f3_stride / K`` pixels
        (edge pixels repeated), i.e. centred on input pixel (step (K i + a), step (K j + b))."""
        k = self.config.map_shifts
        sim = self._map_similarity(f3, prototype).float()
        if (k > 1 or self.config.map_flip) and self.training:
            raise RuntimeError(
                "map_shifts > 1 and map_flip draw the lesion map with extra passes, which in training mode would "
                "update the BatchNorm statistics: call the network with draw_map=False while training, or eval() it"
            )
        fine = stitch_shifts(x, sim, k, self.map_stride, lambda xs: self._map_similarity(self._f3(xs), prototype))
        return minmax_normalise(fine)

    def forward(
        self,
        x: torch.Tensor,
        *,
        map_size: tuple[int, int] | None = None,
        map_prototype: str | None = None,
        draw_map: bool = True,
    ) -> SliceOutput:
        """Run the network; ``map_size`` upsamples the lesion map (bilinear) to that (h, w), e.g. the input's,
        with every map cell on the centre of its receptive field (:func:`upsample_map`).

        ``map_prototype`` overrides the config's choice of prototype for the lesion map of this call.
        ``draw_map=False`` skips the lesion map users see (``lesion_map`` is None; training and feature
        extraction need only the probabilities, and ``map_shifts`` > 1 makes the map cost extra passes).
        """
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if self.config.imagenet_norm:
            x = (x - self.mean) / self.std
        f3 = self._f3(x)
        g3 = f3.mean(dim=(2, 3))
        lesion_logits = self._head(self.lesion_head, f3, g3) if self.lesion_head is not None else None
        lesion_map = attention = mirrored = None
        inputs = [f3]
        if lesion_logits is not None:
            if draw_map:
                with torch.no_grad():  # the map users see; training never needs its gradient
                    prototype = map_prototype or self.config.map_prototype
                    lesion_map = self._lesion_map(x, f3, prototype)
                    if self.config.map_flip:
                        xm = x.flip(-1)
                        mirrored = self._lesion_map(xm, self._f3(xm), prototype)
            if self.config.attention:  # gradients flow through the map ResBlock4 reads (choice)
                predicted = lesion_logits.argmax(dim=1)
                attention = minmax_normalise(self._prototype_map(f3, predicted))
                inputs.append(attention.unsqueeze(1).to(f3.dtype))
        if self.config.coords:
            h, w = f3.shape[2:]
            cm = coordinate_maps(h, w, device=f3.device, dtype=f3.dtype)
            inputs.append(cm.unsqueeze(0).expand(f3.shape[0], -1, -1, -1))
        f4 = self.layer4(torch.cat(inputs, dim=1) if len(inputs) > 1 else f3)
        g4 = f4.mean(dim=(2, 3))
        class_logits = self._head(self.classifier, f4, g4)
        if lesion_map is not None and (map_size is not None or mirrored is not None):
            size = map_size or (x.shape[2], x.shape[3])
            lesion_map = upsample_map(lesion_map, size, (x.shape[2], x.shape[3]), self.map_stride)
            if mirrored is not None:
                lesion_map = flip_average(
                    lesion_map, upsample_map(mirrored, size, (x.shape[2], x.shape[3]), self.map_stride)
                )
        return SliceOutput(
            class_logits=class_logits,
            lesion_logits=lesion_logits,
            lesion_map=lesion_map,
            attention=attention,
            features=torch.cat([g3, g4], dim=1),
        )
