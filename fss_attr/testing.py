"""Input builders shared by the tests and the benchmarks (random levels, regions, masks)."""
from __future__ import annotations

import torch

from fss_attr.affex.levels import LevelFeatures, LevelScores

# DCAMA with Swin-B at 384 px: (number of levels, grid side, feature size D) per stage.
DCAMA_LEVELS = ((2, 48, 256), (18, 24, 512), (2, 12, 1024))


def random_level(batch: int, n_shots: int, query_hw, support_hw, *, features: bool = False, dim: int = 16,
                 similarity: str = "dot", scale: float = 1.0, relu: bool = False, dtype=torch.float32,
                 device="cpu", generator: torch.Generator | None = None, score_std: float = 2.0):
    """One random level: LevelScores with N(0, score_std²) scores, or LevelFeatures with N(0, 1) features."""
    q = query_hw[0] * query_hw[1]
    m = n_shots * support_hw[0] * support_hw[1]
    if features:
        query = torch.randn(batch, q, dim, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
        support = torch.randn(batch, m, dim, generator=generator, dtype=torch.float64).to(dtype=dtype, device=device)
        return LevelFeatures(query, support, tuple(query_hw), tuple(support_hw), n_shots, similarity, scale, relu)
    scores = score_std * torch.randn(batch, q, m, generator=generator, dtype=torch.float64)
    return LevelScores(scores.to(dtype=dtype, device=device), tuple(query_hw), tuple(support_hw), n_shots)


def random_region(batch: int, out_size, *, device="cpu", generator: torch.Generator | None = None,
                  kind: str = "blob") -> torch.Tensor:
    """A non-empty [B, H, W] bool region: an ellipse-like blob ("blob") or random pixels ("noise")."""
    h, w = out_size
    if kind == "noise":
        r = torch.rand(batch, h, w, generator=generator) > 0.6
    else:
        yy = torch.linspace(-1, 1, h).view(1, h, 1)
        xx = torch.linspace(-1, 1, w).view(1, 1, w)
        c = torch.rand(batch, 4, generator=generator)
        cy, cx = (c[:, 0] - 0.5).view(-1, 1, 1), (c[:, 1] - 0.5).view(-1, 1, 1)
        ry, rx = (0.3 + 0.5 * c[:, 2]).view(-1, 1, 1), (0.3 + 0.5 * c[:, 3]).view(-1, 1, 1)
        r = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    r[:, h // 2, w // 2] = True
    return r.to(device)


def random_masks(batch: int, n_shots: int, out_size, *, device="cpu",
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """[B, N, H, W] bool support masks (blobs)."""
    return random_region(batch * n_shots, out_size, generator=generator).reshape(batch, n_shots, *out_size).to(device)


def dcama_like_levels(n_shots: int = 5, batch: int = 1, *, features: bool = False, device="cpu",
                      dtype=torch.float32, seed: int = 0, stages=DCAMA_LEVELS):
    """The 22 levels of DCAMA (2×48², 18×24², 2×12², D = 256/512/1024), random, for benchmarks.

    From features, the affinity is DCAMA's head-mean score q·k/(8·sqrt(D/8)).
    """
    g = torch.Generator().manual_seed(seed)
    levels = []
    for count, side, dim in stages:
        for _ in range(count):
            levels.append(random_level(batch, n_shots, (side, side), (side, side), features=features, dim=dim,
                                       scale=1.0 / (8 * (dim / 8) ** 0.5), dtype=dtype, device=device,
                                       generator=g))
    return levels
