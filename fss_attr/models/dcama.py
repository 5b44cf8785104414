"""DCAMA as a matching adapter: Swin-B (384 px, window 12) or ResNet-50 backbone, official parameter names.

``DCAMA("swin_b")`` and ``DCAMA("resnet50")`` build the two architectures of the official code
(github.com/pawn-sxy/DCAMA) with random weights; :meth:`DCAMA.load_checkpoint` loads an official checkpoint
(``strict=True``), whose keys carry the ``module.`` prefix of the DataParallel wrapper it was saved from;
keys without the prefix load too. The committed key lists ``fss_attr/models/keys/dcama_*.txt`` say what
such a checkpoint holds.

Adapter semantics (docs/affex.md):

- ``encode`` runs the backbone on the query and all support images, and for every matching level (every
  backbone block of stride 8, 16, 32: 22 for Swin-B, 13 for ResNet-50) the projections q, k and the
  attention's coarse mask.
- ``levels`` exposes level l as ``LevelFeatures(q, k, similarity="dot", scale=1/(h·√d_k))``: the mean over
  the h = 8 heads of the pre-softmax scores q_h k_hᵀ/√d_k that the attention softmaxes, as one GEMM
  (Σ_h q_h·k_h = q·k). q and k include the positional encoding and the linear projections (bias included).
- ``decode(state, ablate_level=l)`` zeroes level l's coarse mask and runs the rest of the model: the logits
  [B, 2, H, W] of the official ``predict_mask_nshot`` (before its argmax).

N shots as the official n-shot inference: the support keys of all shots are concatenated (M ordered shot,
row, col; the positional encoding restarts for every shot), the softmax runs over all of them, and the
skip-connection support features are the maximum over shots. With N = 1 this is the 1-shot forward. (The
official n-shot code, run with a batch of more than one episode, mixes the support keys of different
episodes; here every episode uses its own shots, which is what it computes for batch 1.)

Inputs: square images, ImageNet-normalized, H = W = 384 for Swin-B (its window masks are built for its input
size) and a multiple of 32 for ResNet-50. The module is put in eval mode (the official dropouts are p = 0.5).
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fss_attr.data.episode import Episode
from fss_attr.affex.levels import LevelFeatures
from fss_attr.models import checkpoint
from fss_attr.models import dcama_blocks
from fss_attr.models.base import MatchingAdapter, level_chunks
from fss_attr.models.dcama_blocks import DCAMAHead
from fss_attr.backbones.resnet import bottleneck_count, bottleneck_features
from fss_attr.backbones.swin import SwinTransformer, swin_b_384
from fss_attr.validation import check_choice, check_positive_int

BACKBONES = ("swin_b", "resnet50")
RESNET_CHANNELS = (256, 512, 1024, 2048)


def official_keys(backbone: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """{name: (shape, dtype)} of every entry of an official DCAMA checkpoint (names with ``module.``), in order.

    Read from the committed lists ``fss_attr/models/keys/dcama_{backbone}.txt``, derived from the official code.
    """
    check_choice("backbone", backbone, BACKBONES)
    return checkpoint.read_key_list(f"dcama_{backbone}.txt")


@dataclass
class _Level:
    query: torch.Tensor     # [B, Q, C] projected query tokens
    support: torch.Tensor   # [B, M, C] projected support tokens, M = (shot, row, col)
    coarse: torch.Tensor    # [B, 1, h, w] the attention's coarse mask
    hw: tuple[int, int]
    stage: int              # attention block: 0, 1, 2 for strides 8, 16, 32


@dataclass
class DCAMAState:
    """What ``encode`` keeps: the levels and the stride-8 and stride-4 skip features."""

    levels: list[_Level]
    query_skips: tuple[torch.Tensor, torch.Tensor]     # [B, C, h, w] at strides 8 and 4
    support_skips: tuple[torch.Tensor, torch.Tensor]   # the same, max over shots
    n_shots: int
    image_size: tuple[int, int]


class DCAMA(MatchingAdapter):
    """DCAMA few-shot segmentation model as a :class:`MatchingAdapter` (see the module docstring).

    Args:
        backbone: "swin_b" (Swin-B, 384 px, window 12), "resnet50" (torchvision ResNet-50), or a module:
            a :class:`fss_attr.backbones.swin.SwinTransformer` or a torchvision ``ResNet`` with bottleneck blocks
            (e.g. for reduced configurations in tests). Weights are random; load a checkpoint to use the model.
    """

    def __init__(self, backbone: str | nn.Module = "swin_b"):
        super().__init__()
        if isinstance(backbone, str):
            if backbone not in BACKBONES:
                raise ValueError(f"backbone must be one of {BACKBONES} or a module, got {backbone!r}")
            backbone = swin_b_384() if backbone == "swin_b" else torchvision.models.resnet50()
        if isinstance(backbone, SwinTransformer):
            if len(backbone.depths) != 4:
                raise ValueError(f"DCAMA needs a 4-stage Swin, got depths {backbone.depths}")
            channels, stage_blocks = backbone.channels, backbone.depths
        elif isinstance(backbone, torchvision.models.ResNet) and hasattr(backbone.layer1[0], "conv3"):
            channels, stage_blocks = RESNET_CHANNELS, bottleneck_count(backbone)
        else:
            raise TypeError(f"backbone must be a fss_attr SwinTransformer or a torchvision bottleneck ResNet, "
                            f"got {type(backbone).__name__}")
        self.feature_extractor = backbone
        self.model = DCAMAHead(channels, stage_blocks)
        self.eval()

    #: batch elements per batched ablation pass (:meth:`iter_ablations`). 2 measured fastest on a 2-core CPU
    #: (Swin-B 384, 5-shot: 2.3 s for the weights against 2.7 s with 8): the decoder tail's channels-last
    #: convolutions run at ≈ 63 GMAC/s on 2 images against ≈ 49 on 8, whose activations outgrow the caches.
    ablation_batch_size: int = 2

    @property
    def n_levels(self) -> int:
        return len(self.model.level_stages)

    @property
    def is_swin(self) -> bool:
        return isinstance(self.feature_extractor, SwinTransformer)

    # ---- checkpoints -------------------------------------------------------------------------------------

    def load_checkpoint(self, state_or_path: str | os.PathLike | Mapping[str, torch.Tensor], strict: bool = True,
                        assign: bool = False) -> "DCAMA":
        """Load an official DCAMA checkpoint (path or state dict, keys with or without ``module.``); returns self.

        ``assign=True`` (torch's flag) takes the checkpoint's tensors as the parameters: with a model built under
        ``torch.device("meta")`` that loads without allocating random weights first. See
        :func:`fss_attr.models.checkpoint.load_official`.
        """
        checkpoint.load_official(self, state_or_path, strict, assign)
        return self

    @classmethod
    def from_checkpoint(cls, state_or_path: str | os.PathLike | Mapping[str, torch.Tensor],
                        backbone: str = "swin_b") -> "DCAMA":
        """Build the architecture on the meta device and take the checkpoint's tensors as its weights."""
        with torch.device("meta"):
            model = cls(backbone)
        return model.load_checkpoint(state_or_path, strict=True, assign=True).eval()

    # ---- the adapter ---------------------------------------------------------------------------------------

    def block_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Every backbone block's output [K, C, h, w] in network order (ResNet: before the block's last ReLU)."""
        if self.is_swin:
            return self.feature_extractor.block_features(images)
        return bottleneck_features(self.feature_extractor, images)

    def encode(self, episode: Episode) -> DCAMAState:
        self._check_episode(episode)
        b = episode.batch_size
        feats = self.block_features(torch.cat([episode.query, episode.support_images.flatten(0, 1)]))
        return self._encode(episode, self._query_part([f[:b] for f in feats]), [f[b:] for f in feats])

    def _query_part(self, feats: list[torch.Tensor]) -> dict:
        """What the encode keeps of the query's block features [B, C, h, w]: per level the projected query
        tokens, and the stride-8 and stride-4 skip features."""
        n4, n8 = self.model.stage_blocks[:2]
        q = [self.model.project_query(stage, f.flatten(2).transpose(1, 2))
             for f, stage in zip(feats[n4:], self.model.level_stages)]
        return {"q": q, "skips": (feats[n4 + n8 - 1], feats[n4 - 1])}

    def _encode(self, episode: Episode, query: dict, support_feats: list[torch.Tensor]) -> DCAMAState:
        b, n = episode.batch_size, episode.n_shots
        n4, n8 = self.model.stage_blocks[:2]
        masks = episode.support_masks.flatten(0, 1)[:, None].to(episode.query.dtype)       # [B·N, 1, H, W]
        levels = []
        for f, q, stage in zip(support_feats[n4:], query["q"], self.model.level_stages):
            c, h, w = f.shape[1:]
            support = f.reshape(b, n, c, h * w).transpose(2, 3)                             # [B, N, hw, C]
            k = self.model.project_support(stage, support)
            m = F.interpolate(masks, size=(h, w), mode="bilinear", align_corners=True).view(b, n * h * w)
            coarse = self.model.DCAMA_blocks[stage](q, k, m, (h, w), (h, w)).view(b, 1, h, w)
            levels.append(_Level(q, k, coarse, (h, w), stage))

        def skip(i):
            f = support_feats[i]
            return f.reshape(b, n, *f.shape[1:]).amax(dim=1)

        (q8, q4), (s8, s4) = query["skips"], (skip(n4 + n8 - 1), skip(n4 - 1))
        return DCAMAState(levels, (q8, q4), (s8, s4), n, episode.image_size)

    def query_features(self, query: torch.Tensor) -> dict:
        """The query's part of the encode (projected tokens per level, skip features) for query images
        [B, 3, H, W]: the backbone runs on the query alone."""
        return self._query_part(self.block_features(query))

    def forward_with_query(self, episode: Episode, features: dict, index: torch.Tensor) -> torch.Tensor:
        """Logits of ``episode`` with the backbone run on its support images only (query part reused)."""
        self._check_episode(episode)
        query = {"q": [q[index] for q in features["q"]], "skips": tuple(f[index] for f in features["skips"])}
        return self.decode(self._encode(episode, query, self.block_features(episode.support_images.flatten(0, 1))))

    def levels(self, state: DCAMAState) -> list[LevelFeatures]:
        out = []
        for lv in state.levels:
            block = self.model.DCAMA_blocks[lv.stage]
            out.append(LevelFeatures(lv.query, lv.support, lv.hw, lv.hw, state.n_shots, "dot",
                                     block.score_scale / block.heads))
        return out

    def decode(self, state: DCAMAState, ablate_level: int | None = None) -> torch.Tensor:
        coarse = [lv.coarse for lv in state.levels]
        if ablate_level is not None:
            check_positive_int("ablate_level", ablate_level, 0, len(coarse) - 1)
            coarse[ablate_level] = torch.zeros_like(coarse[ablate_level])
        logits = self.model.fuse(coarse, state.query_skips, state.support_skips)
        if tuple(logits.shape[-2:]) != tuple(state.image_size):
            logits = F.interpolate(logits, size=state.image_size, mode="bilinear", align_corners=True)
        return logits

    def iter_ablations(self, state: DCAMAState, levels=None, batch_size: int | None = None):
        """The ablated decodes, batched, without recomputing what an ablation does not change (same numbers as
        ``decode(state, ablate_level=l)`` up to floating-point rounding): yields (level indices, logits
        [k, B, 2, H, W]). What is skipped is listed in :meth:`_ablated_tails`; here the last convolution
        (``mixer3``'s 16 -> 2) and the final resize run on its output.
        """
        last = self.model.mixer3[-1]
        for chunk, x in self._ablated_tails(state, levels, batch_size):
            logits = F.conv2d(x, last.weight, last.bias, last.stride, last.padding)
            if tuple(logits.shape[-2:]) != tuple(state.image_size):
                logits = F.interpolate(logits, size=state.image_size, mode="bilinear", align_corners=True)
            yield chunk, logits.contiguous().view(len(chunk), -1, *logits.shape[1:])

    def iter_ablated_foreground(self, state: DCAMAState, batch_size: int | None = None):
        """Yields (level indices, foreground logits [k, B, H, W]) of the ablated decodes
        (:meth:`MatchingAdapter.iter_ablated_foreground`, what the level weights read), with the decoder's last
        convolution run for the foreground class only: that convolution (``mixer3``'s final 3×3, 16 -> 2
        channels) computes its output channels independently, so channel 1 alone is the same sum of products
        as in the full decode. (Reading the region's mean as ⟨x, K_R⟩ through the convolution's adjoint would
        skip the convolution too, but it reads the same 16-channel input once — the memory-bound part of the
        cost — and its float32 dot product over 16·H·W terms loses to the float64 sum of the weights: about
        1e-7 absolute on deltas that can be 1e-6.) When the logits are resized to the image (not the case for
        the official input sizes) it takes the base class's path.
        """
        head_size = tuple(state.query_skips[1].shape[-2:])
        if tuple(4 * s for s in head_size) != tuple(state.image_size):
            yield from super().iter_ablated_foreground(state, batch_size)
            return
        last = self.model.mixer3[-1]
        for chunk, x in self._ablated_tails(state, None, batch_size):
            fg = F.conv2d(x, last.weight[1:2], last.bias[1:2], last.stride, last.padding, last.dilation)
            yield chunk, fg.reshape(len(chunk), -1, *fg.shape[-2:])

    def _ablated_tails(self, state: DCAMAState, levels=None, batch_size: int | None = None):
        """Yields (level indices, x [k·B, C, H', W'] channels-last): the input of the decoder's last convolution
        (``mixer3``'s final conv) in ``decode(state, ablate_level=l)`` for the k levels of the chunk, without
        recomputing what an ablation does not change:

        - the first convolution of level l's stage block is linear and the ablation zeroes one of its input
          channels: its output is the full output minus that channel's contribution (all the levels'
          contributions come from one grouped convolution, one group per input channel);
        - only the stage of level l is re-run; the stride-32+16 mix (``conv4``) is the full one for the
          stride-8 levels;
        - ``mixer1``'s first convolution reads the upsampled mix and the query/support skip features, which no
          ablation changes: their contribution (plus the bias) is computed once, and each ablation convolves
          only the 128 mix channels (of 128 + 2·C8 + 2·C4), adding the skip part in place;
        - the decoder after the stride-8 mix runs in channels-last memory format (faster convolutions on CPU):
          the mix is converted at 48² before its upsampling (which keeps the format) rather than after; the
          ReLUs run in place on the convolutions' outputs (nothing else reads those tensors).
        """
        levels = list(range(self.n_levels)) if levels is None else [int(l) for l in levels]
        for l in levels:
            self._check_ablate_level(l)
        head, coarse = self.model, [lv.coarse for lv in state.levels]
        n8, n16, n32 = head.stage_blocks[1:]
        stages = ((head.conv3, 0, n8), (head.conv2, n8, n8 + n16), (head.conv1, n8 + n16, n8 + n16 + n32))
        first, full, parts = [], [], []
        for block, a, e in stages:
            conv0 = block[0]
            x = torch.cat(coarse[a:e], dim=1)                                          # [B, e - a, h, w]
            y0 = conv0(x)
            first.append(y0)
            full.append(block[1:](y0))
            # every level's own contribution to y0 at once: a grouped convolution, group j = input channel j
            w = conv0.weight.transpose(0, 1).flatten(0, 1)[:, None]                    # [(e - a)·C, 1, k, k]
            part = F.conv2d(x, w, None, conv0.stride, conv0.padding, conv0.dilation, e - a)
            parts.append(part.view(x.shape[0], e - a, conv0.out_channels, *part.shape[-2:]))
        m8, m16, m32 = full
        mix4_full = head.conv4(dcama_blocks.upsample(m32, m16.shape[-2:]) + m16)
        q8, q4 = state.query_skips
        s8, s4 = state.support_skips
        mixer = head.mixer1[0]
        w3 = head.conv5[-2].num_channels                       # the mix channels (GroupNorm width)
        side8 = (2 * q8.shape[-2], 2 * q8.shape[-1])
        cl = torch.channels_last        # the convolutions at strides 4, 2, 1 run 1.2-1.9× faster in NHWC on CPU
        skips8 = torch.cat((q8, s8), 1).contiguous(memory_format=cl)      # NHWC at 48², kept by the upsampling
        skips = torch.cat((dcama_blocks.upsample(skips8, side8), q4.contiguous(memory_format=cl),
                           s4.contiguous(memory_format=cl)), dim=1)
        skip_part = F.conv2d(skips, mixer.weight[:, w3:], mixer.bias, mixer.stride, mixer.padding)
        del skips
        w_mix = mixer.weight[:, :w3]
        b = q8.shape[0]

        def conv(x, layer):
            return F.conv2d(x, layer.weight, layer.bias, layer.stride, layer.padding)

        def up2(x):
            return dcama_blocks.upsample(x, (2 * x.shape[-2], 2 * x.shape[-1]))

        def stage_of(l):
            return next(i for i, (_, a, e) in enumerate(stages) if a <= l < e)

        def ablated(stage, ls):   # stage output [k·B, ...] with each level's channel removed
            a = stages[stage][1]
            y = torch.cat([first[stage] - parts[stage][:, l - a] for l in ls])
            return stages[stage][0][1:](y)

        for chunk in level_chunks(levels, batch_size or self.ablation_batch_size, b):
            k = len(chunk)
            by_stage = [[l for l in chunk if stage_of(l) == s] for s in range(3)]
            abl = [{}, {}, {}]                 # stage -> {level: that stage's output with the level ablated}
            for st in range(3):
                if by_stage[st]:
                    y = ablated(st, by_stage[st])
                    abl[st] = {l: y[j * b:(j + 1) * b] for j, l in enumerate(by_stage[st])}
            # conv4 (stride 32 + 16) changes only for the levels of those stages
            upper = [l for l in chunk if l in abl[1] or l in abl[2]]
            mix4 = {}
            if upper:
                m32s = torch.cat([abl[2].get(l, m32) for l in upper])
                m16s = torch.cat([abl[1].get(l, m16) for l in upper])
                y = head.conv4(dcama_blocks.upsample(m32s, m16.shape[-2:]) + m16s)
                mix4 = {l: y[i * b:(i + 1) * b] for i, l in enumerate(upper)}
            mix4s = torch.cat([mix4.get(l, mix4_full) for l in chunk])
            m8s = torch.cat([abl[0].get(l, m8) for l in chunk])
            mix = head.conv5(dcama_blocks.upsample(mix4s, m8.shape[-2:]) + m8s)
            mix = dcama_blocks.upsample(mix.contiguous(memory_format=cl), side8)
            out = F.conv2d(mix, w_mix, None, mixer.stride, mixer.padding)
            del mix
            out.view(k, b, *out.shape[1:]).add_(skip_part).relu_()
            out = conv(out, head.mixer1[2]).relu_()
            out = conv(up2(out), head.mixer2[0]).relu_()
            out = conv(out, head.mixer2[2]).relu_()
            yield chunk, conv(up2(out), head.mixer3[0]).relu_()

    def _check_ablate_level(self, ablate_level) -> None:
        n = self.n_levels
        if isinstance(ablate_level, bool) or not isinstance(ablate_level, int) or not 0 <= ablate_level < n:
            raise ValueError(f"ablate_level must be None or an int in [0, {n}), got {ablate_level!r}")

    def _check_episode(self, episode):
        self.check_episode(episode)
        h, w = episode.image_size
        if h != w:
            raise ValueError(f"DCAMA takes square images (its decoder upsamples square grids), got {h}×{w}")
        if self.is_swin and h != self.feature_extractor.img_size:
            side = self.feature_extractor.img_size
            raise ValueError(f"DCAMA with this Swin takes {side}×{side} images, got {h}×{w}")
        if not self.is_swin and h % 32:
            raise ValueError(f"DCAMA with a ResNet takes square images whose side is a multiple of 32, got {h}×{w}")


__all__ = ["DCAMA", "DCAMAState", "BACKBONES", "official_keys"]
