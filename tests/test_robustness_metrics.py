"""Metrics and fits that must not depend on pixel order or on a system being well-posed (issue 15, items 7
and 12)."""
import numpy as np
import pytest
import torch

from fss_attr.baselines.lime import weighted_ridge
from fss_attr.metrics import pointing_game


def _rot(x):
    return torch.rot90(x, 2, dims=(-2, -1))


def test_pointing_game_ties_share_of_tied_maxima():
    zero = torch.zeros(1, 1, 4, 4)
    ev = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    ev[..., 0, 0] = True
    assert pointing_game(zero, ev).item() == 1 / 16
    assert pointing_game(_rot(zero), _rot(ev)).item() == 1 / 16
    plateau = torch.full((1, 1, 4, 4), 0.2)
    plateau[..., 0:2, 0:2] = 1.0
    ev = torch.zeros(1, 1, 4, 4, dtype=torch.bool)
    ev[..., 1, 1] = True
    assert pointing_game(plateau, ev).item() == 0.25 == pointing_game(_rot(plateau), _rot(ev)).item()
    ev[..., 2, 2] = True                              # outside the plateau: does not count
    assert pointing_game(plateau, ev).item() == 0.25


def test_pointing_game_is_invariant_to_any_pixel_permutation(gen):
    for _ in range(10):
        a = torch.randint(0, 3, (3, 2, 4, 5), generator=gen).double()      # many ties
        ev = torch.rand(3, 2, 4, 5, generator=gen) > 0.5
        perm = torch.randperm(2 * 4 * 5, generator=gen)
        pa = a.flatten(1)[:, perm].view_as(a)
        pe = ev.flatten(1)[:, perm].view_as(ev)
        torch.testing.assert_close(pointing_game(pa, pe), pointing_game(a, ev), rtol=0, atol=0)
        top = a.flatten(1) == a.flatten(1).amax(1, keepdim=True)
        want = (top & ev.flatten(1)).sum(1).double() / top.sum(1).double()
        torch.testing.assert_close(pointing_game(a, ev), want, rtol=0, atol=0)


def test_pointing_game_unique_maximum_is_a_hit_or_a_miss():
    a = torch.zeros(2, 1, 3, 3)
    a[0, 0, 1, 2] = 1.0
    a[1, 0, 0, 0] = 1.0
    ev = torch.zeros(2, 1, 3, 3, dtype=torch.bool)
    ev[:, 0, 1, 2] = True
    assert pointing_game(a, ev).tolist() == [1.0, 0.0]


@pytest.mark.parametrize("n, s", [(3, 10), (5, 5), (2, 1)])
def test_ridge_free_fit_with_few_samples_is_the_minimum_norm_solution(gen, n, s):
    x = (torch.rand(n, s, generator=gen) > 0.5).double()
    y = torch.randn(n, generator=gen, dtype=torch.float64)
    w = torch.rand(n, generator=gen, dtype=torch.float64) + 0.1
    beta = weighted_ridge(x, y, w, 0.0)
    # numpy's lstsq (SVD, minimum norm) on the weighted, centred problem
    wn = w / w.sum()
    xc, yc = x - (wn[:, None] * x).sum(0), y - (wn * y).sum()
    sw = w.sqrt()
    want = np.linalg.lstsq((sw[:, None] * xc).numpy(), (sw * yc).numpy(), rcond=None)[0]
    np.testing.assert_allclose(beta.numpy(), want, rtol=1e-8, atol=1e-10)


def test_ridge_fit_matches_the_closed_form(gen):
    x = torch.randn(20, 4, generator=gen, dtype=torch.float64)
    y = torch.randn(20, generator=gen, dtype=torch.float64)
    w = torch.ones(20, dtype=torch.float64)
    xc, yc = x - x.mean(0), y - y.mean()
    want = torch.linalg.solve(xc.T @ xc + 0.5 * torch.eye(4, dtype=torch.float64), xc.T @ yc)
    torch.testing.assert_close(weighted_ridge(x, y, w, 0.5), want)


def test_lime_without_ridge_and_few_samples_runs():
    from fss_attr.baselines.lime import Lime
    from tests.toy_adapter import PooledPixelMatcher
    from fss_attr.data.episode import Episode

    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(1, 1, 16, 16, dtype=torch.bool)
    masks[..., 4:12, 4:12] = True
    ep = Episode(torch.randn(1, 3, 16, 16, generator=g), torch.randn(1, 1, 3, 16, 16, generator=g), masks,
                 query_mask=masks[:, 0])
    maps = Lime(settings="ridge", n_samples=3, n_segments=10, alpha=0.0).attribute(PooledPixelMatcher(), ep, masks[:, 0])
    assert maps.shape == (1, 1, 16, 16) and bool(torch.isfinite(maps).all())


def test_empty_batches_through_reshapes():
    """reshape(b, -1) is ambiguous for b = 0; the places that did it now give empty results."""
    from fss_attr.backbones.swin import PatchMerging
    from fss_attr.metrics.perturbation import pixel_ranks

    assert tuple(pixel_ranks(torch.zeros(0, 2, 3, 3)).shape) == (0, 2, 3, 3)
    assert pixel_ranks(torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]])).tolist() == [[[[2, 0], [1, 3]]]]
    merge = PatchMerging((4, 4), 8)
    assert tuple(merge(torch.zeros(0, 16, 8)).shape) == (0, 4, 16)
    x = torch.randn(2, 16, 8)
    want = merge(x)
    assert tuple(want.shape) == (2, 4, 16)
    torch.testing.assert_close(merge(torch.cat([x, x[:0]])), want)
