"""Swin Transformer backbone (Liu et al., 2021) with the parameter names of the official implementation.

DCAMA matches query and support at the output of every Swin block, so besides the classifier layout (kept
so that official checkpoints load with ``strict=True``: ``patch_embed``, ``layers.{i}.blocks.{j}``,
``layers.{i}.downsample``, ``norm``, ``head``) the module offers :meth:`SwinTransformer.block_features`.

Shapes: tokens are [K, L, C] with L = h·w row-major; a stage at resolution h×w uses windows of side
``min(window_size, h)``; odd blocks shift the windows by half a window unless the stage fits in one window.
Eval-mode module: stochastic depth and dropout of the original are inactive at inference and omitted.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

CROSS_REGION_BIAS = -100.0   # the official additive mask between tokens from different regions of a shifted window


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """[K, H, W, C] -> [K·(H/ws)·(W/ws), ws·ws, C], windows row-major, tokens row-major inside each window."""
    k, h, w, c = x.shape
    x = x.view(k, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_merge(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: [K·nW, ws·ws, C] -> [K, H, W, C]."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def relative_position_index(ws: int) -> torch.Tensor:
    """[ws², ws²] int64: the bias-table row of the token pair (i, j) of a window, from (Δy, Δx) = p_i − p_j."""
    ys, xs = torch.meshgrid(torch.arange(ws), torch.arange(ws), indexing="ij")
    dy = ys.flatten()[:, None] - ys.flatten()[None, :] + (ws - 1)
    dx = xs.flatten()[:, None] - xs.flatten()[None, :] + (ws - 1)
    return dy * (2 * ws - 1) + dx


def shifted_window_mask(h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """[nW, ws², ws²] float: 0 for token pairs from the same region of the rolled image, −100 otherwise.

    Rolling the image by −shift brings the bottom and right strips next to the top and left ones; each
    axis splits into [0, n−ws), [n−ws, n−shift), [n−shift, n) and regions are the products of those bands.
    """
    def bands(n):
        return ((0, n - ws), (n - ws, n - shift), (n - shift, n))

    region = torch.zeros(1, h, w, 1)
    label = 0
    for y0, y1 in bands(h):
        for x0, x1 in bands(w):
            region[:, y0:y1, x0:x1] = label
            label += 1
    windows = window_partition(region, ws).squeeze(-1)                      # [nW, ws²]
    same = windows[:, :, None] == windows[:, None, :]
    return torch.where(same, 0.0, CROSS_REGION_BIAS)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside windows with a learned relative-position bias.

    forward(x [K·nW, ws², C], mask [nW, ws², ws²] or None) -> [K·nW, ws², C].
    """

    def __init__(self, dim: int, window_size: int, num_heads: int):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim={dim} must be divisible by num_heads={num_heads}")
        self.dim, self.window_size, self.num_heads = dim, window_size, num_heads
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        self.register_buffer("relative_position_index", relative_position_index(window_size))
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def position_bias(self) -> torch.Tensor:
        """[heads, ws², ws²] the relative-position bias of every token pair."""
        n = self.window_size ** 2
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        return bias.view(n, n, self.num_heads).permute(2, 0, 1)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        kw, n, c = x.shape
        q, k, v = self.qkv(x).view(kw, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.position_bias()                                                    # [heads, n, n]
        if mask is None:
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias.to(q.dtype))
        else:                                                   # windows of one image share the region mask
            nw = mask.shape[0]
            bias = (bias[None] + mask[:, None]).to(q.dtype)                            # [nW, heads, n, n]
            split = lambda t: t.reshape(kw // nw, nw, *t.shape[1:])  # noqa: E731
            out = F.scaled_dot_product_attention(split(q), split(k), split(v), attn_mask=bias).flatten(0, 1)
        return self.proj(out.transpose(1, 2).reshape(kw, n, c))


class Mlp(nn.Module):
    """fc1 -> GELU -> fc2."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class SwinBlock(nn.Module):
    """Pre-norm (shifted-)window attention and MLP, both residual. forward(x [K, h·w, C]) -> same shape."""

    def __init__(self, dim: int, resolution: tuple[int, int], num_heads: int, window_size: int, shift: int,
                 mlp_ratio: float = 4.0):
        super().__init__()
        self.resolution = tuple(resolution)
        if min(self.resolution) <= window_size:   # the stage fits in one window: no partition, no shift
            window_size, shift = min(self.resolution), 0
        if any(r % window_size for r in self.resolution):
            raise ValueError(f"Swin stage resolution {self.resolution} is not a multiple of the window {window_size}")
        self.window_size, self.shift = window_size, shift
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.register_buffer("attn_mask", shifted_window_mask(*self.resolution, window_size, shift) if shift else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), ws, s = self.resolution, self.window_size, self.shift
        k, _, c = x.shape
        y = self.norm1(x).view(k, h, w, c)
        if s:
            y = torch.roll(y, shifts=(-s, -s), dims=(1, 2))
        y = window_merge(self.attn(window_partition(y, ws), self.attn_mask), ws, h, w)
        if s:
            y = torch.roll(y, shifts=(s, s), dims=(1, 2))
        x = x + y.reshape(k, h * w, c)
        return x + self.mlp(self.norm2(x))


class PatchMerging(nn.Module):
    """2×2 neighbourhoods concatenated (order (0,0), (1,0), (0,1), (1,1)), normalised, projected to 2C."""

    def __init__(self, resolution: tuple[int, int], dim: int):
        super().__init__()
        self.resolution = tuple(resolution)
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        (h, w), (k, _, c) = self.resolution, x.shape
        x = x.view(k, h, w, c)
        x = torch.cat([x[:, 0::2, 0::2], x[:, 1::2, 0::2], x[:, 0::2, 1::2], x[:, 1::2, 1::2]], dim=-1)
        return self.reduction(self.norm(x.flatten(1, 2)))


class SwinStage(nn.Module):
    """``depth`` blocks (odd ones shifted) and an optional patch merging after them."""

    def __init__(self, dim: int, resolution: tuple[int, int], depth: int, num_heads: int, window_size: int,
                 mlp_ratio: float, downsample: bool):
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinBlock(dim, resolution, num_heads, window_size, window_size // 2 if i % 2 else 0, mlp_ratio)
            for i in range(depth))
        self.downsample = PatchMerging(resolution, dim) if downsample else None


class PatchEmbed(nn.Module):
    """Non-overlapping patch_size² patches projected to embed_dim, then LayerNorm. [K, 3, H, W] -> [K, L, C]."""

    def __init__(self, patch_size: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.norm = nn.LayerNorm(embed_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.proj(x).flatten(2).transpose(1, 2))


class SwinTransformer(nn.Module):
    """Swin Transformer for a fixed square input size (its shifted-window masks depend on it).

    Args:
        img_size: input side in pixels; must be a multiple of patch_size·2^(stages−1)·(window fitting).
        patch_size, embed_dim, depths, num_heads, window_size, mlp_ratio: the usual Swin hyper-parameters.
        num_classes: size of the (unused here) classification head, kept for checkpoint compatibility.
    """

    def __init__(self, img_size: int = 384, patch_size: int = 4, embed_dim: int = 128,
                 depths: Sequence[int] = (2, 2, 18, 2), num_heads: Sequence[int] = (4, 8, 16, 32),
                 window_size: int = 12, mlp_ratio: float = 4.0, num_classes: int = 1000):
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {tuple(depths)} and num_heads {tuple(num_heads)} must have the same length")
        grid = img_size // patch_size
        if img_size % patch_size or grid % 2 ** (len(depths) - 1):
            raise ValueError(f"img_size={img_size} must be a multiple of patch_size·2^(stages−1) = "
                             f"{patch_size * 2 ** (len(depths) - 1)}")
        self.img_size, self.patch_size = img_size, patch_size
        self.depths = tuple(depths)
        self.channels = tuple(embed_dim * 2 ** i for i in range(len(depths)))
        self.patch_embed = PatchEmbed(patch_size, embed_dim)
        self.layers = nn.ModuleList(
            SwinStage(self.channels[i], (grid >> i, grid >> i), depths[i], num_heads[i], window_size, mlp_ratio,
                      downsample=i < len(depths) - 1)
            for i in range(len(depths)))
        self.norm = nn.LayerNorm(self.channels[-1])
        self.head = nn.Linear(self.channels[-1], num_classes)
        self.apply(_init_weights)

    def block_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """The output of every block, in network order: one [K, C_stage, h_stage, w_stage] map per block.

        images: [K, 3, img_size, img_size] normalised.
        """
        k, _, h, w = images.shape
        if (h, w) != (self.img_size, self.img_size):
            raise ValueError(f"this Swin takes {self.img_size}×{self.img_size} images, got {h}×{w}")
        x = self.patch_embed(images)
        feats = []
        for stage in self.layers:
            for block in stage.blocks:
                x = block(x)
                bh, bw = block.resolution
                feats.append(x.view(k, bh, bw, x.shape[-1]).permute(0, 3, 1, 2))
            if stage.downsample is not None:
                x = stage.downsample(x)
        return feats


def _init_weights(m: nn.Module):
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)


def swin_b_384() -> SwinTransformer:
    """Swin-B for 384×384 inputs, window 12 (the configuration of DCAMA's Swin checkpoints)."""
    return SwinTransformer(img_size=384, patch_size=4, embed_dim=128, depths=(2, 2, 18, 2),
                           num_heads=(4, 8, 16, 32), window_size=12)
