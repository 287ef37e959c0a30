"""The slice network's training task: the optional random geometry on top of the paper's augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from helpers import slice_table as _table
from m3lung.systems.m3lung_recipes import load_slice_recipe
from m3lung.systems.m3lung_task import SliceTask


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
