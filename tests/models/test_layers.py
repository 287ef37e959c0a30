"""Layers of the slice network: the fast stem max pool against torch's own."""

from __future__ import annotations

import pytest
import torch
from torchvision import models as tvm

from m3lung.models import SliceNet, SliceNetConfig

torch.set_num_threads(2)


@pytest.mark.parametrize("shape", [(2, 16, 64, 64), (3, 8, 37, 51)])
def test_stem_max_pool_matches_the_native_op_values_and_gradients(shape):
    import torch.nn.functional as F

    from m3lung.models.layers import StemMaxPool

    torch.manual_seed(0)
    x = torch.randn(*shape, requires_grad=True)
    ref = x.detach().clone().requires_grad_()
    y, y_ref = StemMaxPool()(x), F.max_pool2d(ref, 3, 2, 1)
    g = torch.randn_like(y_ref)
    y.backward(g)
    y_ref.backward(g)
    assert y.is_contiguous() and torch.equal(y, y_ref) and torch.equal(x.grad, ref.grad)
    with torch.inference_mode():
        assert torch.equal(StemMaxPool()(x.detach()), y_ref.detach())
    cl = ref.detach().contiguous(memory_format=torch.channels_last).requires_grad_()  # the native op
    assert torch.equal(StemMaxPool()(cl), y_ref)
    assert torch.autograd.gradcheck(StemMaxPool(), torch.randn(1, 2, 9, 9, dtype=torch.double, requires_grad=True))


def test_torchvision_stems_get_the_fast_pool_and_the_weights_load_both_ways():
    from m3lung.models.layers import StemMaxPool

    net = SliceNet(SliceNetConfig(backbone="resnet18"))
    assert isinstance(net.stem[3], StemMaxPool)
    plain = tvm.resnet18(weights=None)
    plain.maxpool = torch.nn.MaxPool2d(3, 2, 1)
    other = SliceNet(SliceNetConfig(backbone="resnet18"), backbone=plain)
    assert isinstance(other.stem[3], StemMaxPool)
    odd = tvm.resnet18(weights=None)
    odd.maxpool = torch.nn.MaxPool2d(2, 2)  # not the stem geometry: left alone
    assert isinstance(SliceNet(SliceNetConfig(backbone="resnet18"), backbone=odd).stem[3], torch.nn.MaxPool2d)
    other.load_state_dict(net.state_dict())  # the pool has no state: checkpoints are unchanged


def test_lse_head_pooling_lies_between_the_papers_mean_and_the_maximum():
    torch.manual_seed(0)
    paper = SliceNet(SliceNetConfig(backbone="resnet10n")).eval()
    x = torch.rand(2, 1, 96, 96)
    with torch.no_grad():
        ref = paper(x, draw_map=False)
        outs = {}
        for r in (1e-2, 5.0, 1e4):
            net = SliceNet(SliceNetConfig(backbone="resnet10n", head_pool="lse", lse_r=r)).eval()
            net.load_state_dict(paper.state_dict())  # same weights: only the pooling differs
            outs[r] = net(x, draw_map=False)
        f3 = paper._f3((x.expand(-1, 3, -1, -1) - paper.mean) / paper.std)
        cam = torch.einsum("kc,bchw->bkhw", paper.lesion_head.weight, f3).flatten(2)
        cam = cam + paper.lesion_head.bias.view(1, -1, 1)
    # r -> 0: the paper's logits (a linear head on the mean is the mean of its per-position logits)
    assert torch.allclose(outs[1e-2].lesion_logits, ref.lesion_logits, atol=5e-3)
    assert torch.allclose(outs[1e-2].class_logits, ref.class_logits, atol=5e-3)
    # r -> infinity: the maximum of the class activation map
    assert torch.allclose(outs[1e4].lesion_logits, cam.amax(dim=2), atol=1e-3)
    mid = outs[5.0].lesion_logits
    assert torch.all(mid >= ref.lesion_logits - 1e-5) and torch.all(mid <= cam.amax(dim=2) + 1e-5)
    # the slice feature the patient network reads stays GAP
    assert torch.equal(outs[5.0].features, ref.features)
    with pytest.raises(ValueError, match="head_pool"):
        SliceNetConfig(head_pool="max")
    with pytest.raises(ValueError, match="lse_r"):
        SliceNetConfig(head_pool="lse", lse_r=0.0)
