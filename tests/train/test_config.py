"""Recipes: every shipped recipe parses; unknown keys and wrong types are clear errors."""

from __future__ import annotations

import pytest

from m3lung.errors import InputError
from m3lung.systems.m3lung_recipes import SliceRecipe, load_slice_recipe
from m3lung.train.config import apply_overrides, from_dict, list_recipes


@pytest.mark.parametrize("name", sorted(list_recipes()))
def test_shipped_recipes_parse(name):
    from m3lung.systems.m3lung_patient import load_patient_recipe

    r = load_patient_recipe(name) if name.startswith("patient_") else load_slice_recipe(name)
    assert r.name == name and r.profile in ("paper", "cpu", "tiny")


def test_patient_paper_recipe_is_the_paper():
    from m3lung.systems.m3lung_patient import load_patient_recipe

    r = load_patient_recipe("patient_paper")
    assert (r.model.variant, r.model.heads, r.model.head_dim, r.model.feature_dim) == ("full", 12, 512, 3072)
    assert r.model.part_scales == (1, 2, 3, 4) and r.model.refine_blocks == 2
    assert (r.train.epochs, r.train.batch_size, r.train.optim.lr) == (90, 16, 0.001)
    assert (r.train.schedule.step_size, r.train.schedule.gamma) == (30, 0.1) and r.nonparametric_threshold == 0.99


def test_paper_recipe_is_the_paper():
    r = load_slice_recipe("slice_paper")
    assert (r.model.backbone, r.model.variant, r.model.input_size) == ("resnet50", "full", 512)
    assert (r.train.epochs, r.train.batch_size, r.train.optim.name, r.train.optim.lr) == (110, 32, "sgd", 0.01)
    assert (r.train.schedule.step_size, r.train.schedule.gamma) == (40, 0.1)
    assert r.data.centre_range == (-700.0, -500.0) and r.data.eval_centres == (-700.0, -600.0, -500.0)
    assert r.pretrained == "imagenet"


def test_profiles_change_sizes_not_the_algorithm():
    paper, cpu, tiny = (load_slice_recipe(n) for n in ("slice_paper", "slice_cpu", "slice_tiny"))
    for r in (cpu, tiny):
        assert r.model.variant == paper.model.variant and r.lesion_loss_weight == paper.lesion_loss_weight
        assert r.data.centre_range == paper.data.centre_range and r.data.flip == paper.data.flip
        assert r.train.optim.name == paper.train.optim.name and r.train.schedule.name == paper.train.schedule.name
    # the paper recipe uses only the paper's augmentation; the CPU profile's extra choices are named in it
    assert paper.data.rotate == 0 and paper.data.shift == 0 and paper.data.scale == (1.0, 1.0)
    assert not paper.data.height_matched
    assert paper.model.map_shifts == 1 and paper.model.layer3_stride == 2  # the paper's lesion map
    assert cpu.data.rotate > 0 and cpu.model.input_size == 256


def test_overrides_and_errors():
    r = load_slice_recipe("slice_tiny", ["train.epochs=5", "model.variant=vanilla", "data.split=[0.6,0.2,0.2]"])
    assert r.train.epochs == 5 and r.model.variant == "vanilla" and r.data.split == (0.6, 0.2, 0.2)
    with pytest.raises(InputError, match=r"unknown key\(s\) \['epoch'\]"):
        load_slice_recipe("slice_tiny", ["train.epoch=5"])
    with pytest.raises(InputError, match=r"train\.batch_size: 'big' is not a valid int"):
        load_slice_recipe("slice_tiny", ["train.batch_size=big"])
    with pytest.raises(InputError, match=r"model\.variant: .huge. is not one of"):
        load_slice_recipe("slice_tiny", ["model.variant=huge"])
    with pytest.raises(InputError, match="not one of"):
        load_slice_recipe("slice_tiny", ["train.optim.name=rmsprop"])
    with pytest.raises(InputError, match="recipe not found"):
        load_slice_recipe("no_such_recipe")
    with pytest.raises(InputError, match="key=value"):
        apply_overrides({}, ["oops"])
    assert from_dict(SliceRecipe, {}).model.backbone == "resnet50"


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.epochs=-1", "train.epochs must be at least 1"),
        ("train.batch_size=0", "train.batch_size must be at least 1"),
        ("train.samples_per_epoch=0", "train.samples_per_epoch must be at least 1"),
        ("train.optim.lr=0", "train.optim.lr must be positive"),
    ],
)
def test_impossible_training_settings_are_one_line_errors(override, message):
    with pytest.raises(InputError, match=message):
        load_slice_recipe("slice_tiny", [override])
