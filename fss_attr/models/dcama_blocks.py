"""The parts of DCAMA after its backbone, with the parameter names of the official implementation.

DCAMA (Shi et al., ECCV 2022) matches query and support at every backbone block of stride 8, 16 and 32.
For such a level with query tokens F_q [B, Q, C] and support tokens F_s [B, N, hw, C]:

    q = Linear_0(F_q + PE[:Q])          k = Linear_1(F_s + PE[:hw])   (PE restarts for every shot)
    coarse mask = mean over 8 heads of softmax_M(q_h k_hᵀ / √d_k) @ m     m = support masks at the level grid

(``linears`` [0] and [1], sinusoidal ``pe`` buffers, one attention block per stage). No layer norm acts on the
tokens; the dropouts (p = 0.5) are inactive in eval mode. The coarse masks of a stage are stacked as
channels, convolved (``conv1``–``conv3``), fused coarse to fine (``conv4``, ``conv5``), concatenated with
the query and (max over shots) support features of the stride-8 and stride-4 stages, and decoded by
``mixer1``–``mixer3`` into 2-channel logits at 4× the stride-4 grid.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from fss_attr import ops

HEADS = 8
DROPOUT = 0.5
PE_MAX_LEN = 10000
CONV_WIDTHS = (16, 64, 128)
# query rows of one attention chunk are chosen so that a chunk's scores hold at most this many elements
SCORE_CHUNK_ELEMENTS = 1 << 25


class PositionalEncoding(nn.Module):
    """Adds the fixed sinusoidal encoding of the token index: x [B, L, C] -> x + pe[:, :L] (then dropout)."""

    def __init__(self, d_model: int, max_len: int = PE_MAX_LEN):
        super().__init__()
        position = torch.arange(max_len, dtype=torch.float32)[:, None]
        freq = torch.exp(torch.arange(0, d_model, 2, dtype=torch.float32) * (-math.log(10000.0) / d_model))
        pe = torch.zeros(max_len, d_model)
        pe[:, 0::2] = torch.sin(position * freq)
        pe[:, 1::2] = torch.cos(position * freq)
        self.register_buffer("pe", pe[None])
        self.dropout = nn.Dropout(DROPOUT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-2] > self.pe.shape[1]:
            raise ValueError(f"{x.shape[-2]} tokens exceed the positional encoding's {self.pe.shape[1]} positions")
        return self.dropout(x + self.pe[0, :x.shape[-2]].to(x.dtype))


class DenseCrossAttention(nn.Module):
    """DCAMA's attention block: query/support projections and the head-averaged mask aggregation.

    ``linears[0]`` projects the query tokens, ``linears[1]`` the support tokens; the values are the support
    mask, so the output is one foreground score per query position.
    """

    def __init__(self, d_model: int, heads: int = HEADS):
        super().__init__()
        if d_model % heads:
            raise ValueError(f"d_model={d_model} must be divisible by heads={heads}")
        self.heads, self.d_k = heads, d_model // heads
        self.linears = nn.ModuleList([nn.Linear(d_model, d_model), nn.Linear(d_model, d_model)])
        self.dropout = nn.Dropout(DROPOUT)

    @property
    def score_scale(self) -> float:
        """1/√d_k, the scale of each head's scores."""
        return 1.0 / math.sqrt(self.d_k)

    def head_scores(self, query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
        """Per-head scores [B, h, Qc, M] = q_h k_hᵀ/√d_k through fss_attr's correlation op.

        query: [B·h, d_k, rows, wq] (a band of query rows), support: [B·h, N, d_k, hs, ws].
        """
        bh, _, rows, wq = query.shape
        corr = ops.correlation(query, support, similarity="dot")              # [B·h, rows, wq, N, hs, ws]
        m = support.shape[1] * support.shape[3] * support.shape[4]
        return corr.reshape(bh // self.heads, self.heads, rows * wq, m) * self.score_scale

    def forward(self, query: torch.Tensor, support: torch.Tensor, mask: torch.Tensor, query_hw: tuple[int, int],
                support_hw: tuple[int, int]) -> torch.Tensor:
        """Coarse mask [B, Q]: mean over heads of softmax(scores) @ mask.

        query: [B, Q, C] projected query tokens (Q = hq·wq row-major); support: [B, M, C] projected support
        tokens, M ordered (shot, row, col); mask: [B, M] support-mask values at the support positions.
        """
        b, _, c = query.shape
        (hq, wq), (hs, ws) = query_hw, support_hw
        n = support.shape[1] // (hs * ws)
        h, d = self.heads, self.d_k
        q = query.view(b, hq, wq, h, d).permute(0, 3, 4, 1, 2).reshape(b * h, d, hq, wq)
        k = support.view(b, n, hs, ws, h, d).permute(0, 4, 1, 5, 2, 3).reshape(b * h, n, d, hs, ws)
        values = mask.to(query.dtype)[:, None, :, None]                                   # [B, 1, M, 1]
        rows = max(1, SCORE_CHUNK_ELEMENTS // (b * h * wq * n * hs * ws))
        out = []
        for r0 in range(0, hq, rows):
            p = self.dropout(torch.softmax(self.head_scores(q[:, :, r0:r0 + rows], k), dim=-1))
            out.append((p @ values).mean(1).squeeze(-1))                                  # [B, rows·wq]
        return torch.cat(out, dim=1)


def conv_block(in_channels: int, widths: Sequence[int], kernels: Sequence[int], groups: int = 4) -> nn.Sequential:
    """(Conv2d 'same' padding -> GroupNorm(4) -> ReLU) per width."""
    layers: list[nn.Module] = []
    for width, kernel in zip(widths, kernels):
        layers += [nn.Conv2d(in_channels, width, kernel, padding=kernel // 2), nn.GroupNorm(groups, width),
                   nn.ReLU(inplace=True)]
        in_channels = width
    return nn.Sequential(*layers)


def _mixer(in_channels: int, mid: int, out: int, last_relu: bool = True) -> nn.Sequential:
    layers = [nn.Conv2d(in_channels, mid, 3, padding=1), nn.ReLU(), nn.Conv2d(mid, out, 3, padding=1)]
    return nn.Sequential(*layers, nn.ReLU()) if last_relu else nn.Sequential(*layers)


def _upsample(x: torch.Tensor, size) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=True)


class DCAMAHead(nn.Module):
    """Everything after the backbone (the official ``DCAMA_model``).

    Args:
        channels: backbone channels of the four stages (strides 4, 8, 16, 32).
        stage_blocks: blocks per stage; the blocks of stages 2–4 are the matching levels.
    """

    def __init__(self, channels: Sequence[int], stage_blocks: Sequence[int]):
        super().__init__()
        if len(channels) != 4 or len(stage_blocks) != 4:
            raise ValueError(f"DCAMA needs four backbone stages, got channels={tuple(channels)}, "
                             f"stage_blocks={tuple(stage_blocks)}")
        self.channels, self.stage_blocks = tuple(channels), tuple(stage_blocks)
        self.DCAMA_blocks = nn.ModuleList(DenseCrossAttention(c) for c in channels[1:])
        self.pe = nn.ModuleList(PositionalEncoding(c) for c in channels[1:])
        w1, w2, w3 = CONV_WIDTHS
        n8, n16, n32 = stage_blocks[1:]
        self.conv1 = conv_block(n32, (w1, w2, w3), (3, 3, 3))   # stride 32
        self.conv2 = conv_block(n16, (w1, w2, w3), (5, 3, 3))   # stride 16
        self.conv3 = conv_block(n8, (w1, w2, w3), (5, 5, 3))    # stride 8
        self.conv4 = conv_block(w3, (w3, w3, w3), (3, 3, 3))    # stride 32 + 16
        self.conv5 = conv_block(w3, (w3, w3, w3), (3, 3, 3))    # stride 16 + 8
        self.mixer1 = _mixer(w3 + 2 * channels[1] + 2 * channels[0], w3, w2)
        self.mixer2 = _mixer(w2, w2, w1)
        self.mixer3 = _mixer(w1, w1, 2, last_relu=False)

    @property
    def level_stages(self) -> tuple[int, ...]:
        """The attention block (0, 1, 2 for strides 8, 16, 32) of every matching level."""
        return tuple(s for s in range(3) for _ in range(self.stage_blocks[s + 1]))

    def project(self, stage: int, query: torch.Tensor, support: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Projected tokens of one level: query [B, Q, C] -> q [B, Q, C]; support [B, N, hw, C] -> k [B, N·hw, C]."""
        pe, lin = self.pe[stage], self.DCAMA_blocks[stage].linears
        return lin[0](pe(query)), lin[1](pe(support)).flatten(1, 2)

    def fuse(self, coarse: Sequence[torch.Tensor], query_skips: Sequence[torch.Tensor],
             support_skips: Sequence[torch.Tensor]) -> torch.Tensor:
        """Logits [B, 2, 4·h4, 4·w4] from the coarse masks and the skip features.

        coarse: one [B, 1, h, w] coarse mask per level (level order); query_skips / support_skips: the
        stride-8 and stride-4 features [B, C, h, w] (support: max over shots).
        """
        n8, n16, _ = self.stage_blocks[1:]
        stacked = [torch.cat(list(coarse[a:b]), dim=1) for a, b in ((n8 + n16, None), (n8, n8 + n16), (0, n8))]
        m32, m16, m8 = self.conv1(stacked[0]), self.conv2(stacked[1]), self.conv3(stacked[2])
        mix = self.conv4(_upsample(m32, m16.shape[-2:]) + m16)
        mix = self.conv5(_upsample(mix, m8.shape[-2:]) + m8)
        mix = torch.cat((mix, query_skips[0], support_skips[0]), dim=1)
        mix = _upsample(mix, (2 * mix.shape[-2], 2 * mix.shape[-1]))
        mix = torch.cat((mix, query_skips[1], support_skips[1]), dim=1)
        out = self.mixer1(mix)
        out = self.mixer2(_upsample(out, (2 * out.shape[-2], 2 * out.shape[-1])))
        return self.mixer3(_upsample(out, (2 * out.shape[-2], 2 * out.shape[-1])))
