"""DMTNet (Doubly Matching Transformation, Chen, Quan & Qin, IJCAI 2024) as a fss_attr model adapter.

DMTNet is HSNet (fss_attr.models.hsnet) with the features transformed before the matching, and a second,
background matching. Per bottleneck level l and (query, support image) pair, as in the official code
(github.com/ChenJiayi68/DMTNet, whose checkpoints load here with strict=True):

1. Support prototypes: the fg and bg masked means of the support features (mask bilinearly resized,
   align_corners=True; denominators + 1e-6), globally and over a 4×4 grid of cells (cells of side
   ``size // 4`` at multiples of it, plus one flush with the far edge when they do not reach it).
   (The official code resizes the mask in float32 whatever the features' dtype; here it is resized in the
   features' dtype: identical in float32; in float64 the two differ by float32 rounding of the mask, about
   1e-6 relative in the correlations.)
2. Query pseudo mask: a query position is foreground when the sum over cells of its cosine (eps 1e-8) to the
   cells' fg prototypes exceeds that to their bg prototypes; the query fg/bg prototypes are its masked means.
3. Transformation: with C_s = rows (bg, fg) of the support prototypes and C_q = rows (fg, bg) of the query
   prototypes (the official call passes the query pair in this order; the trained weights expect it), every
   row scaled by 1 / (|row| + 1e-6), and R_s, R_q the likewise-normalized weights [2, C] of the stage's
   ``reference_layer`` (support: 1/2/3 for layer2/3/4, query: 4/5/6),
       P = (pinv(C_s) R_s)ᵀ,   P_q = ½ (pinv(C_q) R_q)ᵀ + ½ P,
   the support features (fg- and bg-masked) are mapped by P and the query features by P_q. P has rank 2, so
   it is applied as R_sᵀ (pinv(C_s)ᵀ x) instead of forming the C×C matrix (same map, float rounding aside).
4. Matching: HSNet's hypercorrelation (relu of the cosine with the official epsilon) of the transformed
   query against the transformed fg-masked support (``corrs``, fed to the learner) and against the
   transformed bg-masked support (``bg_corrs``; the official model decodes it into background logits used
   only by its training loss, so it does not enter the prediction).

What AffEx sees (``levels``), per docs/affex.md: one level per channel (13 for ResNet-50, network order),
S_l = relu(cos(q, s_fg)) + relu(cos(q, s_bg)) of the transformed features, as a LevelScores [B, Q, N·hs·ws]
(the transformation depends on the shot, so there is no single query feature map). ``decode(state,
ablate_level=l)`` zeroes channel l of the fg hypercorrelation, the only one that reaches the logits.
N shots and the logits are as in HSNet (``shot_fusion``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fss_attr.data.episode import Episode
from fss_attr.affex.levels import LevelScores
from fss_attr.models.hsnet import HSNet, HypercorrelationState, hypercorrelation

PROTOTYPE_EPS = 1e-6      # masked-mean denominators and row normalization in the official code
GRID_SIDE = 4


def grid_starts(size: int, n: int = GRID_SIDE) -> tuple[list[int], int]:
    """Start offsets and side of the official grid cells along one dimension of ``size`` (>= n)."""
    side = size // n
    starts = list(range(0, size - side + 1, side))
    if starts[-1] + side < size:
        starts.append(size - side)
    return starts, side


def grid_cells(h: int, w: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """[G, h·w] 0/1 membership of the official prototype grid cells (row-major over cells and positions)."""
    rows, ch = grid_starts(h)
    cols, cw = grid_starts(w)
    cells = torch.zeros(len(rows), len(cols), h, w, dtype=dtype, device=device)
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            cells[i, j, r:r + ch, c:c + cw] = 1
    return cells.view(-1, h * w)


def masked_mean(x: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Σ x·m / (Σ m + 1e-6) over the grid: x [K, C, h, w], weights [K, 1, h, w] -> [K, C]."""
    return (x * weights).sum((2, 3)) / (weights.sum((2, 3)) + PROTOTYPE_EPS)


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled by 1 / (|row| + 1e-6) along the last dimension (the official normalization)."""
    return x / (x.norm(dim=-1, keepdim=True) + PROTOTYPE_EPS)


def query_pseudo_mask(query: torch.Tensor, support: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The official query pseudo mask [K, 1, hq, wq] (0/1, query's dtype) from the grid prototypes.

    query [K, C, hq, wq]; support [K, C, hs, ws] unmasked; mask [K, 1, hs, ws] resized support mask.
    """
    k, c, hs, ws = support.shape
    cells = grid_cells(hs, ws, support.dtype, support.device).t()                  # [hs·ws, G]
    fg_w, bg_w = mask.flatten(2), (1 - mask).flatten(2)                             # [K, 1, hs·ws]
    flat = support.flatten(2)
    proto_fg = ((flat * fg_w) @ cells) / (fg_w @ cells + PROTOTYPE_EPS)             # [K, C, G]
    proto_bg = ((flat * bg_w) @ cells) / (bg_w @ cells + PROTOTYPE_EPS)
    q = F.normalize(query.flatten(2), dim=1, eps=1e-8)                              # [K, C, Q]
    fg = (F.normalize(proto_fg, dim=1, eps=1e-8).transpose(1, 2) @ q).sum(1)        # [K, Q]
    bg = (F.normalize(proto_bg, dim=1, eps=1e-8).transpose(1, 2) @ q).sum(1)
    return (fg > bg).to(query.dtype).view(k, 1, *query.shape[-2:])


def _coordinates(basis: torch.Tensor) -> torch.Tensor:
    """pinv(basis)ᵀ [K, 2, C] of basis [K, 2, C]: maps x [K, C, L] to its coordinates [K, 2, L]."""
    return torch.linalg.pinv(basis, rtol=1e-15).transpose(1, 2)


def _rank2_map(x: torch.Tensor, coordinates: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """(pinv(basis) reference)ᵀ x for x [K, C, L], coordinates = :func:`_coordinates` (basis) [K, 2, C],
    reference [K, 2, C] -> [K, C, L]."""
    return reference.transpose(1, 2) @ (coordinates @ x)


def doubly_matching_transform(query: torch.Tensor, support: torch.Tensor, mask: torch.Tensor,
                              ref_support: torch.Tensor, ref_query: torch.Tensor):
    """Steps 1–3 of the module docstring for K (query, support image) pairs at one level.

    Args:
        query: [K, C, hq, wq] query features.
        support: [K, C, hs, ws] support features (not masked).
        mask: [K, 1, hs, ws] the support mask resized to the level's grid.
        ref_support, ref_query: [K, 2, C] normalized reference weights (support and query).

    Returns:
        The transformed query [K, C, hq, wq], fg-masked support and bg-masked support [K, C, hs, ws].
    """
    pseudo = query_pseudo_mask(query, support, mask)
    support_basis = unit_rows(torch.stack([masked_mean(support, 1 - mask), masked_mean(support, mask)], dim=1))
    query_basis = unit_rows(torch.stack([masked_mean(query, pseudo), masked_mean(query, 1 - pseudo)], dim=1))
    q = query.flatten(2)
    to_support = _coordinates(support_basis)                                        # one pinv for three maps
    q_t = 0.5 * _rank2_map(q, _coordinates(query_basis), ref_query) + 0.5 * _rank2_map(q, to_support, ref_support)
    fg_t = _rank2_map((support * mask).flatten(2), to_support, ref_support)
    bg_t = _rank2_map((support * (1 - mask)).flatten(2), to_support, ref_support)
    return q_t.view(query.shape), fg_t.view(support.shape), bg_t.view(support.shape)


class DMTNet(HSNet):
    """DMTNet with a torchvision ResNet backbone (see the module docstring).

    Parameter and buffer names match the official checkpoints (``backbone.*``, ``reference_layer1..6.*``,
    ``hpn_learner.*``); load one with :meth:`load_official` or :meth:`from_checkpoint` (keys with or without
    the ``"module."`` prefix). Needs images of at least 97 px per side (its 4×4 prototype grid needs layer4
    maps of at least 4×4). Arguments as for :class:`fss_attr.models.hsnet.HSNet`.
    """

    key_list = "dmtnet_resnet50.txt"
    min_image_side = 97

    def __init__(self, backbone: nn.Module | None = None, shot_fusion: str = "vote"):
        super().__init__(backbone, shot_fusion)
        widths = [self._stage_width(stage) for stage in ("layer2", "layer3", "layer4")]
        for index, width in zip((3, 2, 1, 6, 5, 4), widths[::-1] * 2):      # the official declaration order
            layer = nn.Linear(width, 2)
            nn.init.kaiming_normal_(layer.weight, a=0, mode="fan_in", nonlinearity="linear")
            nn.init.zeros_(layer.bias)
            self.add_module(f"reference_layer{index}", layer)
        self.dropout = nn.Dropout(p=0.2)

    def _stage_width(self, stage: str) -> int:
        block = getattr(self.backbone, stage)[-1]
        return (block.bn3 if hasattr(block, "bn3") else block.bn2).num_features

    def _references(self, stage: int, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The normalized support and query reference weights [K, 2, C] of a stage (0, 1, 2 = layer2, 3, 4)."""
        support = getattr(self, f"reference_layer{stage + 1}").weight
        query = getattr(self, f"reference_layer{stage + 4}").weight
        return (unit_rows(self.dropout(support.expand(k, *support.shape))),
                unit_rows(self.dropout(query.expand(k, *query.shape))))

    def encode(self, episode: Episode, query_features=None) -> HypercorrelationState:
        """The state of ``episode``; ``query_features`` (optional) are the query's per-level backbone features."""
        self._check_episode(episode)
        b, n = episode.batch_size, episode.n_shots
        corrs, bg_corrs = [], []
        for level, (q, s, m) in enumerate(self._level_features(episode, query_features)):
            q = q.repeat_interleave(n, dim=0)                                     # [B·N, C, hq, wq]: one per pair
            ref_s, ref_q = self._references(self._stage_of_level[level], s.shape[0])
            q_t, fg_t, bg_t = doubly_matching_transform(q, s, m, ref_s, ref_q)
            corrs.append(hypercorrelation(q_t, fg_t[:, None]))
            bg_corrs.append(hypercorrelation(q_t, bg_t[:, None]))
        return HypercorrelationState(corrs, b, n, episode.image_size, bg_corrs=bg_corrs)

    def levels(self, state: HypercorrelationState) -> list[LevelScores]:
        b, n = state.batch_size, state.n_shots
        out = []
        for fg, bg in zip(state.corrs, state.bg_corrs):
            hq, wq, hs, ws = fg.shape[1:]
            scores = (fg + bg).view(b, n, hq * wq, hs * ws).transpose(1, 2).reshape(b, hq * wq, n * hs * ws)
            out.append(LevelScores(scores, (hq, wq), (hs, ws), n))
        return out
