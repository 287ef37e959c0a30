"""Lesion-map algorithms: normalisation, similarity to a prototype, resampling, shift-and-stitch, flips."""

from __future__ import annotations

import torch

from m3lung.explain.lesion_maps import (
    flip_average,
    minmax_normalise,
    prototype_similarity,
    resample_matrix,
    shift_input,
    stitch_shifts,
    upsample_map,
)


def test_minmax_normalises_each_map_and_zeroes_constant_ones():
    maps = torch.stack([torch.arange(6.0).view(2, 3) * 3 - 4, torch.full((2, 3), 7.0)])
    out = minmax_normalise(maps)
    torch.testing.assert_close(out[0], torch.arange(6.0).view(2, 3) / 5)
    assert torch.equal(out[1], torch.zeros(2, 3))


def test_prototype_similarity_dot_and_cosine_shared_or_per_slice():
    torch.manual_seed(0)
    f = torch.randn(2, 5, 3, 4)
    w = torch.randn(5)
    dot = prototype_similarity(f, w)
    torch.testing.assert_close(dot[1, 2, 3], (w * f[1, :, 2, 3]).sum())
    torch.testing.assert_close(prototype_similarity(f, w.expand(2, 5)), dot)  # one row per slice, the same row
    cos = prototype_similarity(f, w, similarity="cosine")
    torch.testing.assert_close(cos[0, 1, 2], torch.nn.functional.cosine_similarity(w, f[0, :, 1, 2], dim=0))
    assert float(cos.abs().max()) <= 1 + 1e-6


def test_resample_matrix_puts_cells_on_stride_multiples_and_keeps_edges():
    m = resample_matrix(8, 8, 2, 4, torch.device("cpu"))
    assert m.shape == (8, 2)
    torch.testing.assert_close(m.sum(1), torch.ones(8))
    assert m[0].tolist() == [1.0, 0.0] and m[4].tolist() == [0.0, 1.0] and m[7].tolist() == [0.0, 1.0]
    torch.testing.assert_close(m[2], torch.tensor([0.5, 0.5]))
    up = upsample_map(torch.tensor([[[0.0, 1.0]]]), (1, 8), (8, 8), 4)
    torch.testing.assert_close(up[0, 0], torch.tensor([0, 0.25, 0.5, 0.75, 1, 1, 1, 1]))


def test_shift_and_stitch_interleaves_the_shifted_maps():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    torch.testing.assert_close(shift_input(x, 1, 2)[0, 0, 0], torch.tensor([6.0, 7.0, 7.0, 7.0]))
    draw = lambda xs: xs[:, 0, ::2, ::2]  # noqa: E731 - a "network" of stride 2 that reads one pixel per cell
    fine = stitch_shifts(x, draw(x), 2, 1, draw)
    torch.testing.assert_close(fine, x[:, 0])  # stride 2 at one-pixel shifts sees every pixel
    coarse = draw(x)
    assert stitch_shifts(x, coarse, 1, 1, draw) is coarse


def test_flip_average_mirrors_the_second_map_back():
    a = torch.tensor([[[0.0, 1.0, 2.0]]])
    out = flip_average(a, a.flip(-1))  # a symmetric network: the mirrored map of the mirror is the map
    torch.testing.assert_close(out, minmax_normalise(a))
    torch.testing.assert_close(flip_average(a, a), torch.ones(1, 1, 3) * 0)  # a + its mirror is flat
