"""The slice network's training task: the optional random geometry on top of the paper's augmentation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from m3lung.data.slices import SliceTable
from m3lung.systems.m3lung import SliceTask, load_slice_recipe, random_affine


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


def _table(n: int = 12, size: int = 16) -> SliceTable:
    rng = np.random.default_rng(0)
    return SliceTable(
        cases=[],
        hu=rng.uniform(-1000, 100, (n, size, size)).astype(np.float16),
        lesion=np.r_[np.zeros(n // 2), np.ones(n - n // 2)].astype(np.int8),
        patient=np.repeat([0, 1], n // 2),
        label=np.repeat([0, 1], n // 2),
        index=np.tile(np.arange(n // 2), 2),
        masks=None,
        size=size,
    )


@pytest.mark.parametrize("geometry", [False, True])
def test_task_batches_are_reproducible(geometry):
    extra = ["data.rotate=20", "data.scale=[0.9,1.1]", "data.shift=0.05"] if geometry else []
    recipe = load_slice_recipe("slice_tiny", ["data.size=16", "model.input_size=16", *extra])
    table = _table()
    task = SliceTask(recipe, table, np.arange(len(table)))
    assert task.geometric is geometry
    rows = np.array([0, 3, 7, 11])
    a = task.batch(rows, 2, torch.device("cpu"))[0]
    b = SliceTask(recipe, table, np.arange(len(table))).batch(rows, 2, torch.device("cpu"))[0]
    torch.testing.assert_close(a, b)
    assert a.shape == (4, 1, 16, 16) and float(a.min()) >= 0 and float(a.max()) <= 1
    c = task.batch(rows, 3, torch.device("cpu"))[0]
    assert not torch.equal(a, c)  # another epoch draws anew
    plain = SliceTask(load_slice_recipe("slice_tiny", ["data.size=16", "model.input_size=16"]), table, np.arange(12))
    # the geometry has its own random stream: the window centres and flips do not change with it
    np.testing.assert_array_equal(task._augment(2)["centres"], plain._augment(2)["centres"])
    np.testing.assert_array_equal(task._augment(2)["flips"], plain._augment(2)["flips"])
    if geometry:
        assert not torch.equal(a, plain.batch(rows, 2, torch.device("cpu"))[0])


def test_height_matching_weights_match_the_diseased_heights():
    from m3lung.systems.m3lung import height_matching_weights, relative_height

    table = _table(n=20)  # patient 0 healthy (10 slices), patient 1 diseased, lesions on slices 5..9
    rows = np.arange(20)
    cls = np.r_[np.zeros(10), np.ones(10)].astype(np.int64)
    np.testing.assert_allclose(relative_height(table, rows)[[0, 9, 10, 19]], [0, 1, 0, 1])
    lesion = np.r_[np.ones(10, bool), np.arange(10) >= 5]
    w = height_matching_weights(table, rows[lesion], cls[lesion], 2)
    hw = w[:10]
    # diseased rows all lie in the upper half: Healthy draws go (almost) only to the upper half too
    assert hw[5:].sum() / hw.sum() > 0.99 and np.all(w[10:] == 1.0)
    assert hw.mean() == pytest.approx(1.0)
    # with the heights already matched nothing changes
    np.testing.assert_allclose(height_matching_weights(table, rows, cls, 5), 1.0)
