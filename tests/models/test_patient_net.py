"""The M³Lung-Sys patient network: outputs, padding, parts, Table IV switches, initialisation, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from m3lung.errors import InputError
from m3lung.models import (
    PATIENT_VARIANTS,
    PatientNet,
    PatientNetConfig,
    RefinementBlock,
    pad_features,
    part_bounds,
    part_membership,
)

torch.set_num_threads(2)

SMALL = {"feature_dim": 64, "head_dim": 16, "heads": 2}


def small_net(variant: str = "full", **kw) -> PatientNet:
    """A small network whose refinement blocks do something (W4 starts at zero: randomise it)."""
    torch.manual_seed(0)
    net = PatientNet(PatientNetConfig(variant=variant, **{**SMALL, **kw}))  # type: ignore[arg-type]
    with torch.no_grad():
        for block in net.refine:
            nn.init.normal_(block.out.weight, std=0.2)
    return net.eval()


@pytest.mark.parametrize("variant", PATIENT_VARIANTS)
def test_outputs_per_variant(variant):
    net = small_net(variant)
    x = torch.randn(3, 12, 64)
    mask = torch.ones(3, 12, dtype=torch.bool)
    mask[1, 5:] = False
    with torch.no_grad():
        out = net(x, mask)
    assert out.logits.shape == (3, 4) and out.features.shape == (3, 64)
    torch.testing.assert_close(out.probs.sum(1), torch.ones(3))
    assert out.slice_weights.shape == (3, 12)
    torch.testing.assert_close(out.slice_weights.sum(1), torch.ones(3))
    assert torch.all(out.slice_weights[1, 5:] == 0) and torch.all(out.slice_weights >= 0)
    n_parts = {"maxpool": 0, "single_scale": 3, "multi_scale": 10, "full": 10}[variant]
    if variant == "maxpool":
        assert out.part_weights is None and net.aggregate is None and len(net.refine) == 0
    else:
        assert out.part_weights is not None and out.part_weights.shape == (3, n_parts, 12)
        torch.testing.assert_close(out.part_weights.sum(2), torch.ones(3, n_parts))
    assert len(net.refine) == (2 if variant == "full" else 0)
    assert net.config.n_parts == n_parts
    # a single (N, F) volume is a batch of one
    with torch.no_grad():
        torch.testing.assert_close(net(x[0]).logits, out.logits[:1])


@pytest.mark.parametrize("variant", PATIENT_VARIANTS)
def test_padding_never_changes_a_volume(variant):
    net = small_net(variant)
    torch.manual_seed(1)
    vol = torch.randn(7, 64)
    other = torch.randn(20, 64)
    x = 10 * torch.randn(3, 20, 64)  # garbage everywhere padding goes
    x[0] = other
    x[1, :7] = vol
    scattered = torch.tensor([0, 2, 3, 7, 11, 12, 19])  # padding need not sit at the end
    x[2, scattered] = vol
    mask = torch.zeros(3, 20, dtype=torch.bool)
    mask[0] = True
    mask[1, :7] = True
    mask[2, scattered] = True
    with torch.no_grad():
        alone = net(vol[None])
        batch = net(x, mask)
        x[1, 7:] = float("nan")  # even NaN padding is harmless
        with_nan = net(x, mask)
    for b, rows in ((1, torch.arange(7)), (2, scattered)):
        torch.testing.assert_close(batch.logits[b], alone.logits[0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(batch.slice_weights[b, rows], alone.slice_weights[0], rtol=1e-5, atol=1e-5)
        if alone.part_weights is not None:
            assert batch.part_weights is not None
            torch.testing.assert_close(batch.part_weights[b][:, rows], alone.part_weights[0], rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(with_nan.logits[1], alone.logits[0], rtol=1e-5, atol=1e-5)
    assert torch.isfinite(with_nan.logits).all()


@pytest.mark.parametrize("variant", PATIENT_VARIANTS)
@pytest.mark.parametrize("n", [1, 2, 3])
def test_fewer_slices_than_parts(variant, n):
    net = small_net(variant)
    with torch.no_grad():
        out = net(torch.randn(2, n, 64))
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.slice_weights).all()
    torch.testing.assert_close(out.slice_weights.sum(1), torch.ones(2))


def test_part_split():
    assert part_bounds(10, 3) == [(0, 3), (3, 6), (6, 10)]
    assert part_bounds(2, 4) == [(0, 1), (0, 1), (1, 2), (1, 2)]
    assert part_bounds(1, 4) == [(0, 1)] * 4
    members = part_membership(torch.ones(1, 10, dtype=torch.bool), [3])[0]
    assert members.sum(0).tolist() == [1] * 10  # covers every slice exactly once
    for p in range(3):
        idx = members[p].nonzero().flatten()
        assert idx.numel() >= 3 and torch.equal(idx, torch.arange(int(idx[0]), int(idx[-1]) + 1))  # contiguous
    members = part_membership(torch.ones(1, 2, dtype=torch.bool), [4])[0]
    assert members.any(1).all()  # no empty part
    # the vectorised membership follows part_bounds over each volume's own real slices
    torch.manual_seed(0)
    scales = [1, 2, 3, 4, 5]
    for _ in range(20):
        mask = torch.rand(3, 12) < 0.6
        mask[:, 0] = True
        members = part_membership(mask, scales)
        assert members.shape == (3, 15, 12)
        for b in range(3):
            real = mask[b].nonzero().flatten()
            expected = [real[s:e].tolist() for scale in scales for s, e in part_bounds(len(real), scale)]
            assert [members[b, p].nonzero().flatten().tolist() for p in range(15)] == expected


def test_refinement_starts_as_identity():
    torch.manual_seed(0)
    block = RefinementBlock(64, 2, 16)
    x = torch.randn(2, 9, 64)
    mask = torch.ones(2, 9, dtype=torch.bool)
    mask[0, 4:] = False
    assert torch.count_nonzero(block.out.weight) == 0
    assert torch.equal(block(x, mask), x)
    assert torch.equal(block(x), x)
    # hence the full network at initialisation computes what multi_scale computes
    full = PatientNet(PatientNetConfig(variant="full", **SMALL)).eval()  # type: ignore[arg-type]
    multi = PatientNet(PatientNetConfig(variant="multi_scale", **SMALL)).eval()  # type: ignore[arg-type]
    missing, unexpected = full.load_state_dict(multi.state_dict(), strict=False)
    assert not unexpected and missing and all(k.startswith("refine.") for k in missing)
    with torch.no_grad():
        torch.testing.assert_close(full(x, mask).logits, multi(x, mask).logits)


def test_each_part_is_refined_on_its_own():
    """Inside the refinement a slice attends only to its part: changing part 2 leaves part 1's vector alone."""
    net = small_net("full", scales=(2,))
    assert net.aggregate is not None
    captured: list[torch.Tensor] = []
    net.aggregate.register_forward_hook(lambda m, i, o: captured.append(o[0]))
    x = torch.randn(1, 8, 64)
    y = x.clone()
    y[0, 6] += 1.0  # a slice of the second part
    with torch.no_grad():
        net(x), net(y)
    before, after = captured
    torch.testing.assert_close(after[0, 0], before[0, 0])
    assert not torch.allclose(after[0, 1], before[0, 1], atol=1e-4)
    # the block itself: groups confine attention
    block = net.refine[0]
    groups = torch.tensor([[0, 0, 0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        a, b = block(x, None, groups), block(y, None, groups)
        c, d = block(x), block(y)
    torch.testing.assert_close(a[0, :4], b[0, :4])
    assert not torch.allclose(c[0, :4], d[0, :4], atol=1e-4)


def test_slice_order():
    x = torch.randn(1, 8, 64)
    swapped = x.clone()
    swapped[0, [0, -1]] = x[0, [-1, 0]]
    perm = torch.randperm(8)
    multi = small_net("multi_scale")
    whole = small_net("full", scales=(1,))  # one part: attention and pooling ignore the order
    maxpool = small_net("maxpool")
    with torch.no_grad():
        assert not torch.allclose(multi(x).logits, multi(swapped).logits, atol=1e-4)
        torch.testing.assert_close(whole(x).logits, whole(x[:, perm]).logits, rtol=1e-5, atol=1e-5)
        a, b = maxpool(x), maxpool(x[:, perm])
    torch.testing.assert_close(a.logits, b.logits)
    torch.testing.assert_close(a.slice_weights[:, perm], b.slice_weights)


def test_default_config_runs_1000_slices():
    config = PatientNetConfig()
    assert (config.variant, config.feature_dim, config.heads, config.head_dim) == ("full", 3072, 12, 512)
    assert config.scales == (1, 2, 3, 4) and config.n_refine == 2 and config.n_parts == 10
    net = PatientNet(config).eval()
    assert net.refine[0].query.weight.shape == (12 * 512, 3072)
    assert net.fc is not None and net.fc.weight.shape == (3072, 10 * 3072)
    assert net.classifier.weight.shape == (4, 3072)
    x = torch.randn(1, 1000, 3072)
    with torch.inference_mode():
        out = net(x)  # its time is a benchmark's business (benchmarks/bench_screen.py), never a test's
    assert out.logits.shape == (1, 4) and torch.isfinite(out.logits).all()


def test_gradients_reach_k_and_w4():
    net = small_net("full").train()
    for block in net.refine:  # the state after initialisation: W4 = 0
        nn.init.zeros_(block.out.weight)
    x, mask = pad_features([torch.randn(5, 64), torch.randn(9, 64), torch.randn(2, 64)])
    out = net(x, mask)
    nn.functional.cross_entropy(out.logits, torch.tensor([0, 1, 3])).backward()
    assert net.aggregate is not None and net.aggregate.k.grad is not None
    assert float(net.aggregate.k.grad.abs().sum()) > 0
    for block in net.refine:
        assert block.out.weight.grad is not None and float(block.out.weight.grad.abs().sum()) > 0
    for name, p in net.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


def test_pad_features():
    x, mask = pad_features([torch.ones(3, 4), torch.ones(5, 4)])
    assert x.shape == (2, 5, 4) and mask.sum(1).tolist() == [3, 5]
    assert torch.all(x[0, 3:] == 0)
    with pytest.raises(InputError):
        pad_features([torch.ones(3, 4), torch.ones(3, 5)])
    with pytest.raises(InputError):
        pad_features([torch.ones(0, 4)])
    with pytest.raises(InputError):
        pad_features([])


def test_input_errors():
    net = small_net("full")
    with pytest.raises(InputError, match=r"65 dimensions.*expects 64"):
        net(torch.randn(1, 5, 65))
    mask = torch.ones(2, 5, dtype=torch.bool)
    mask[1] = False
    with pytest.raises(InputError, match=r"volume\(s\) \[1\].*no real slice"):
        net(torch.randn(2, 5, 64), mask)
    with pytest.raises(InputError, match="bool"):
        net(torch.randn(2, 5, 64), torch.ones(2, 5))
    with pytest.raises(InputError, match="shape"):
        net(torch.randn(2, 5, 64), torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(InputError, match="N = 0"):
        net(torch.randn(1, 0, 64))
    with pytest.raises(InputError, match="shape"):
        net(torch.randn(64))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "attention"}, "variant"),
        ({"scales": ()}, "at least one scale"),
        ({"variant": "multi_scale", "scales": []}, "at least one scale"),
        ({"scales": (0, 2)}, "positive"),
        ({"scales": (2, 2)}, "repeat"),
        ({"variant": "single_scale", "scales": (1, 2)}, "exactly one"),
        ({"variant": "maxpool", "scales": (1,)}, "no scales"),
        ({"variant": "multi_scale", "n_refine": 1}, "no refinement"),
        ({"n_refine": -1}, "n_refine"),
        ({"heads": 0}, "heads"),
        ({"feature_dim": 7.5}, "feature_dim"),
        ({"num_classes": 1}, "num_classes"),
        ({"dropout": 1.0}, "dropout"),
    ],
)
def test_config_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        PatientNetConfig(**kwargs)


def test_config_resolves_variant_defaults_and_round_trips():
    assert PatientNetConfig(variant="single_scale").scales == (3,)
    assert PatientNetConfig(variant="single_scale").n_refine == 0
    assert PatientNetConfig(variant="maxpool").n_parts == 0
    assert PatientNetConfig(variant="full", n_refine=1, scales=[1, 2]).scales == (1, 2)
    for variant in PATIENT_VARIANTS:
        config = PatientNetConfig(variant=variant, dropout=0.25, **SMALL)  # type: ignore[arg-type]
        d = config.to_dict()
        assert isinstance(d["scales"], list)
        assert PatientNetConfig(**d) == config
