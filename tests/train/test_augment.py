"""Augmentation of training slices: random geometry, the per-epoch draws, the augmented batch."""

from __future__ import annotations

import math

import numpy as np
import torch

from m3lung.train.augment import augment_slices, draw_augmentation, draw_window, is_geometric, random_affine


def test_random_affine_identity_and_quarter_turn():
    x = torch.rand(3, 1, 8, 8)
    zero, one = torch.zeros(3), torch.ones(3)
    same = random_affine(x, zero, one, torch.zeros(3, 2))
    torch.testing.assert_close(same, x, atol=1e-5, rtol=0)
    turned = random_affine(x, torch.full((3,), math.pi / 2), one, torch.zeros(3, 2))
    # a quarter turn of a square image is a transpose plus a flip (which one depends on the convention)
    candidates = [x.rot90(1, (2, 3)), x.rot90(-1, (2, 3))]
    assert min(float((turned - c).abs().max()) for c in candidates) < 1e-4


def test_random_affine_zoom_and_shift_fill_with_air():
    x = torch.ones(1, 1, 16, 16)
    small = random_affine(x, torch.zeros(1), torch.full((1,), 0.5), torch.zeros(1, 2))
    assert small[0, 0, 0, 0] == 0 and small[0, 0, 8, 8] == 1  # zoomed out: air comes in at the border
    moved = random_affine(x, torch.zeros(1), torch.ones(1), torch.tensor([[0.25, 0.0]]))
    assert moved[0, 0, :, :3].max() == 0 and moved[0, 0, :, 5:].min() == 1  # moved right by a quarter


def test_draws_are_reproducible_and_geometry_has_its_own_stream():
    a = draw_augmentation(50, seed=3, epoch=1, centre_range=(-700, -500))
    b = draw_augmentation(50, seed=3, epoch=1, centre_range=(-700, -500))
    assert set(a) == {"centres", "flips"} and all(np.array_equal(a[k], b[k]) for k in a)
    assert a["centres"].dtype == np.float32 and a["centres"].min() >= -700 and a["centres"].max() <= -500
    assert 0 < a["flips"].sum() < 50
    assert not np.array_equal(
        a["centres"], draw_augmentation(50, seed=3, epoch=2, centre_range=(-700, -500))["centres"]
    )
    assert not draw_augmentation(50, seed=3, epoch=1, centre_range=(-700, -500), flip=False)["flips"].any()
    geo = draw_augmentation(50, seed=3, epoch=1, centre_range=(-700, -500), rotate=10, scale=(0.9, 1.1), shift=0.1)
    assert np.array_equal(geo["centres"], a["centres"]) and np.array_equal(geo["flips"], a["flips"])
    assert np.abs(geo["angle"]).max() <= np.deg2rad(10) and geo["shift"].shape == (50, 2)
    assert geo["zoom"].min() >= 0.9 and geo["zoom"].max() <= 1.1
    assert is_geometric(rotate=0, scale=(1.0, 1.0), shift=0.05) and not is_geometric(
        rotate=0, scale=(1.0, 1.0), shift=0
    )


def test_augment_slices_windows_then_flips():
    hu = np.array([[[-1000.0, -600.0, 0.0]]] * 2, dtype=np.float32)  # (2, 1, 3)
    draws = {"centres": np.array([-600.0, -600.0], np.float32), "flips": np.array([False, True])}
    x = augment_slices(hu, draws, width=1200.0, device=torch.device("cpu"))
    assert x.shape == (2, 1, 1, 3)
    torch.testing.assert_close(x[0, 0, 0], torch.tensor([1 / 6, 0.5, 1.0]))  # window [-1200, 0] HU
    torch.testing.assert_close(x[1, 0, 0], x[0, 0, 0].flip(-1))
    moved = dict(draws, angle=np.zeros(2, np.float32), zoom=np.ones(2, np.float32), shift=np.zeros((2, 2), np.float32))
    torch.testing.assert_close(
        augment_slices(hu, moved, width=1200.0, device=torch.device("cpu")), x, atol=1e-5, rtol=0
    )


def test_draw_window_is_reproducible_and_in_range():
    picks = [draw_window(3, seed=0, epoch=e, row=r) for e in range(5) for r in range(10)]
    assert set(picks) == {0, 1, 2}
    assert picks == [draw_window(3, seed=0, epoch=e, row=r) for e in range(5) for r in range(10)]
