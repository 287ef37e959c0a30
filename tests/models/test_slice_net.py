"""The M³Lung-Sys slice network: outputs, Table V switches, attention, coordinate maps, initialisation."""

from __future__ import annotations

import copy

import pytest
import torch
from torchvision import models as tvm

from m3lung.models import VARIANTS, SliceNet, SliceNetConfig, coordinate_maps

torch.set_num_threads(2)


@pytest.mark.parametrize("variant", VARIANTS)
def test_outputs_per_variant(variant):
    net = SliceNet(SliceNetConfig(backbone="resnet18", variant=variant)).eval()
    with torch.no_grad():
        out = net(torch.rand(3, 1, 96, 96))
    assert out.class_logits.shape == (3, 4) and out.features.shape == (3, 256 + 512)
    assert torch.allclose(out.p_multi.sum(1), torch.ones(3))
    if variant == "vanilla":
        assert out.lesion_logits is None and out.lesion_map is None and out.p_lesion is None
    else:
        assert out.p_lesion is not None and out.p_lesion.shape == (3, 2)
        assert out.lesion_map is not None and out.lesion_map.shape == (3, 6, 6)  # f3 grid: stride 16
        assert float(out.lesion_map.min()) >= 0 and float(out.lesion_map.max()) <= 1
    assert (out.attention is not None) == (variant in ("attention", "full"))


def test_resnet50_feature_is_3072_and_maps_upsample():
    net = SliceNet(SliceNetConfig()).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 3, 64, 64), map_size=(64, 64))
    assert out.features.shape == (1, 3072)
    assert out.lesion_map is not None and out.lesion_map.shape == (1, 64, 64)
    assert net.layer4[0].conv1.in_channels == 1024 + 4 and net.layer4[0].downsample[0].in_channels == 1028


@pytest.mark.parametrize(("backbone", "feature"), [("resnet10n", 192), ("resnet10h", 384), ("resnet10", 768)])
def test_narrow_resnet10s_give_their_feature_size(backbone, feature):
    net = SliceNet(SliceNetConfig(backbone=backbone)).eval()
    with torch.no_grad():
        out = net(torch.rand(2, 1, 64, 64))
    assert out.features.shape == (2, feature) == (2, net.config.feature_dim)
    assert net.layer4[0].conv1.in_channels == feature // 3 + 4  # f3's channels + attention + coordinates


def test_full_network_starts_as_the_backbone():
    """New input channels of ResBlock4 start at zero: the full network computes what vanilla computes."""
    base = tvm.resnet18(weights=None)
    vanilla = SliceNet(SliceNetConfig(backbone="resnet18", variant="vanilla"), copy.deepcopy(base)).eval()
    full = SliceNet(SliceNetConfig(backbone="resnet18", variant="full"), copy.deepcopy(base)).eval()
    full.classifier.load_state_dict(vanilla.classifier.state_dict())
    assert torch.equal(full.layer4[0].conv1.weight[:, :256], vanilla.layer4[0].conv1.weight)
    assert torch.count_nonzero(full.layer4[0].conv1.weight[:, 256:]) == 0
    x = torch.rand(2, 1, 80, 80)
    with torch.no_grad():
        a, b = vanilla(x), full(x)
    torch.testing.assert_close(a.class_logits, b.class_logits, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(a.features, b.features, rtol=1e-5, atol=1e-5)


def test_coordinate_maps():
    cm = coordinate_maps(4, 5)
    assert cm.shape == (3, 4, 5)
    x, y, d = cm
    assert x[0, 0] == -1 and x[0, -1] == 1 and y[0, 0] == -1 and y[-1, 0] == 1
    torch.testing.assert_close(x[0], torch.tensor([-1.0, -0.5, 0.0, 0.5, 1.0]))
    torch.testing.assert_close(d[0, 0], torch.tensor(2.0).sqrt())
    assert coordinate_maps(1, 1).abs().sum() == 0


def test_attention_uses_the_predicted_prototype():
    net = SliceNet(SliceNetConfig(backbone="resnet18", variant="attention")).eval()
    captured = {}
    net.layer3.register_forward_hook(lambda m, i, o: captured.update(f3=o))
    for forced in (0, 1):
        with torch.no_grad():
            assert net.lesion_head is not None
            net.lesion_head.bias.copy_(torch.tensor([100.0, -100.0]) * (1 if forced == 0 else -1))
            out = net(torch.rand(2, 1, 64, 64))
        assert out.lesion_logits is not None and (out.lesion_logits.argmax(1) == forced).all()
        w = net.lesion_head.weight[forced]
        raw = torch.einsum("c,bchw->bhw", w, captured["f3"])
        lo = raw.flatten(1).min(1).values.view(-1, 1, 1)
        hi = raw.flatten(1).max(1).values.view(-1, 1, 1)
        assert out.attention is not None
        torch.testing.assert_close(out.attention, (raw - lo) / (hi - lo), rtol=1e-4, atol=1e-5)
        # the map users see is always the with-lesion prototype's
        w1 = net.lesion_head.weight[1]
        raw1 = torch.einsum("c,bchw->bhw", w1, captured["f3"])
        assert out.lesion_map is not None
        assert torch.equal(out.lesion_map.flatten(1).argmax(1), raw1.flatten(1).argmax(1))


def test_cosine_similarity_option():
    net = SliceNet(SliceNetConfig(backbone="resnet18", similarity="cosine")).eval()
    with torch.no_grad():
        out = net(torch.rand(1, 1, 64, 64))
    assert out.lesion_map is not None and 0 <= float(out.lesion_map.min()) <= float(out.lesion_map.max()) <= 1
    with pytest.raises(ValueError):
        SliceNetConfig(similarity="l2")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        SliceNetConfig(variant="bogus")  # type: ignore[arg-type]


def test_class_loss_reaches_the_lesion_head_through_the_attention_map():
    net = SliceNet(SliceNetConfig(backbone="resnet18", variant="attention")).train()
    with torch.no_grad():  # the new input channel starts at zero; once trained it carries the gradient
        net.layer4[0].conv1.weight[:, 256:].normal_()
    out = net(torch.rand(2, 1, 64, 64))
    out.class_logits.sum().backward()
    assert net.lesion_head is not None and net.lesion_head.weight.grad is not None
    assert float(net.lesion_head.weight.grad.abs().sum()) > 0


def test_contrast_map_depends_only_on_what_the_lesion_logit_depends_on():
    """Adding one vector to both lesion-head rows leaves P(lesion) and the contrast map unchanged, not the paper's."""
    torch.manual_seed(0)
    net = SliceNet(SliceNetConfig(backbone="resnet18", variant="multitask")).eval()
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        before = net(x, map_prototype="contrast")
        paper_before = net(x)
        shift = torch.randn(net.lesion_head.weight.shape[1])
        net.lesion_head.weight += shift  # broadcast over both rows
        after = net(x, map_prototype="contrast")
        paper_after = net(x)
    torch.testing.assert_close(after.p_lesion, before.p_lesion)
    torch.testing.assert_close(after.lesion_map, before.lesion_map)
    assert not torch.allclose(paper_after.lesion_map, paper_before.lesion_map, atol=1e-3)
    configured = SliceNet(SliceNetConfig(backbone="resnet18", variant="multitask", map_prototype="contrast")).eval()
    configured.load_state_dict(net.state_dict())
    with torch.no_grad():
        torch.testing.assert_close(configured(x).lesion_map, after.lesion_map)
    with pytest.raises(ValueError, match="map_prototype"):
        SliceNetConfig(map_prototype="other")  # type: ignore[arg-type]


@pytest.mark.parametrize("backbone", ["resnet10n", "resnet18", "resnet50"])
def test_layer3_stride_one_doubles_the_map_grid_with_the_same_weights(backbone):
    paper = SliceNet(SliceNetConfig(backbone=backbone)).eval()
    fine = SliceNet(SliceNetConfig(backbone=backbone, layer3_stride=1)).eval()
    fine.load_state_dict(paper.state_dict())  # only strides differ: every weight fits
    x = torch.rand(2, 1, 64, 64)
    with torch.no_grad():
        a, b = paper(x), fine(x)
    assert a.lesion_map is not None and b.lesion_map is not None
    assert a.lesion_map.shape == (2, 4, 4) and b.lesion_map.shape == (2, 8, 8)
    assert a.features.shape == b.features.shape and a.class_logits.shape == b.class_logits.shape
    with pytest.raises(ValueError, match="layer3_stride"):
        SliceNetConfig(layer3_stride=4)


@pytest.mark.parametrize("layer3_stride", [2, 1])
def test_map_cells_sit_on_their_receptive_field_centres(layer3_stride):
    """A ResBlock-3 cell's receptive field is centred on input pixel stride*i, and the upsampled map puts
    that cell's value there (F.interpolate would put it (stride-1)/2 pixels further down and right)."""
    from m3lung.explain.lesion_maps import upsample_map

    net = SliceNet(SliceNetConfig(backbone="resnet10n", layer3_stride=layer3_stride)).eval()
    with torch.no_grad():  # positive weights on a positive input: every ReLU passes, the support is exact
        for m in net.modules():
            if isinstance(m, torch.nn.Conv2d):
                m.weight.abs_()
    net.stem[3] = torch.nn.AvgPool2d(3, 2, 1)  # the max pool's geometry; its gradient reaches every input
    s = net.map_stride
    x = torch.ones(1, 3, 256, 256, requires_grad=True)
    f3 = net.layer3(net.layer2(net.layer1(net.stem(x))))
    i, j = 96 // s, 128 // s
    f3[0, :, i, j].sum().backward()
    assert x.grad is not None
    rows = torch.nonzero(x.grad[0].abs().sum((0, 2)))[:, 0]
    cols = torch.nonzero(x.grad[0].abs().sum((0, 1)))[:, 0]
    assert (rows.min() + rows.max()) / 2 == s * i and (cols.min() + cols.max()) / 2 == s * j
    one = torch.zeros(1, *f3.shape[2:])
    one[0, i, j] = 1
    up = upsample_map(one, (256, 256), (256, 256), s)
    assert divmod(int(up[0].argmax()), 256) == (s * i, s * j) and float(up.max()) == 1.0
    half = upsample_map(one, (128, 128), (256, 256), s)  # a coarser output grid keeps the same place
    r, c = divmod(int(half[0].argmax()), 128)
    assert abs((r + 0.5) * 2 - 0.5 - s * i) <= 1 and abs((c + 0.5) * 2 - 0.5 - s * j) <= 1


def _affine_fit_residual(a: torch.Tensor, b: torch.Tensor) -> float:
    """Largest residual of the least-squares fit b ~ alpha a + beta (0 when b is an affine image of a)."""
    design = torch.stack([a.flatten(), torch.ones(a.numel(), dtype=a.dtype)], 1).double()
    coef = torch.linalg.lstsq(design, b.flatten().double().unsqueeze(1)).solution
    return float((design @ coef - b.flatten().double().unsqueeze(1)).abs().max())


@pytest.mark.parametrize("layer3_stride", [2, 1])
def test_shift_and_stitch_draws_the_same_network_on_a_finer_grid(layer3_stride):
    """map_shifts=2: fine cell (2i + a, 2j + b) is cell (i, j) of the map of the input moved up by a and left
    by b half-cells (edges repeated), normalised together; probabilities and features do not change."""
    import torch.nn.functional as F

    paper = SliceNet(SliceNetConfig(backbone="resnet10n", layer3_stride=layer3_stride)).eval()
    fine = SliceNet(SliceNetConfig(backbone="resnet10n", layer3_stride=layer3_stride, map_shifts=2)).eval()
    fine.load_state_dict(paper.state_dict())
    assert fine.map_stride == paper.map_stride // 2
    torch.manual_seed(0)
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        a, b = paper(x), fine(x)
        torch.testing.assert_close(a.class_logits, b.class_logits)
        torch.testing.assert_close(a.features, b.features)
        assert a.lesion_map is not None and b.lesion_map is not None
        h = 96 // paper.map_stride
        assert a.lesion_map.shape == (2, h, h) and b.lesion_map.shape == (2, 2 * h, 2 * h)
        assert float(b.lesion_map.min()) == 0.0 and float(b.lesion_map.max()) == 1.0
        step = paper.map_stride // 2
        for dy in (0, 1):
            for dx in (0, 1):
                xs = F.pad(x, (0, dx * step, 0, dy * step), mode="replicate")[:, :, dy * step :, dx * step :]
                ref = paper(xs).lesion_map
                assert ref is not None
                for k in range(2):
                    assert _affine_fit_residual(ref[k], b.lesion_map[k, dy::2, dx::2]) < 1e-5
        up = fine(x, map_size=(96, 96)).lesion_map
        assert up is not None and up.shape == (2, 96, 96)
        # every fine cell lands on its own pixel: the upsampled map there equals the cell's value
        torch.testing.assert_close(up[:, ::step, ::step], b.lesion_map)
    fine.train()  # training draws no map (the extra passes would move BatchNorm's statistics)
    assert fine(x, draw_map=False).lesion_map is None
    with pytest.raises(RuntimeError, match="draw_map=False"):
        fine(x)
    with pytest.raises(ValueError, match="map_shifts"):
        SliceNetConfig(map_shifts=3)
    SliceNetConfig(layer3_stride=1, map_shifts=8)  # one-pixel steps on the stride-8 grid


@pytest.mark.parametrize("map_shifts", [1, 2])
def test_map_flip_averages_the_map_with_the_mirrored_slices_map(map_shifts):
    """map_flip: the min-max normalised mean of the map and the mirrored map of the mirrored slice,
    both resampled to the output before averaging (their cells sit on different pixels); nothing else
    changes."""
    from m3lung.explain.lesion_maps import minmax_normalise as _minmax

    cfg = SliceNetConfig(backbone="resnet10n", map_shifts=map_shifts)
    plain = SliceNet(cfg).eval()
    flip = SliceNet(SliceNetConfig(backbone="resnet10n", map_shifts=map_shifts, map_flip=True)).eval()
    flip.load_state_dict(plain.state_dict())
    torch.manual_seed(1)
    x = torch.rand(3, 1, 80, 96)
    with torch.no_grad():
        a, b = plain(x, map_size=(60, 70)), flip(x, map_size=(60, 70))
        torch.testing.assert_close(a.class_logits, b.class_logits)
        torch.testing.assert_close(a.lesion_logits, b.lesion_logits)
        torch.testing.assert_close(a.features, b.features)
        mirrored = plain(x.flip(-1), map_size=(60, 70)).lesion_map
        assert a.lesion_map is not None and b.lesion_map is not None and mirrored is not None
        expected = _minmax((a.lesion_map + mirrored.flip(-1)) / 2)
        torch.testing.assert_close(b.lesion_map, expected)
        assert not torch.allclose(b.lesion_map, a.lesion_map)
        # no map_size: the map comes at the input's size (the two grids do not coincide)
        at_input = flip(x).lesion_map
        assert at_input is not None and at_input.shape == (3, 80, 96)
    flip.train()
    with pytest.raises(RuntimeError, match="draw_map=False"):
        flip(x)
