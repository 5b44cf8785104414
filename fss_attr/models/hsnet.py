"""HSNet (Hypercorrelation Squeeze Networks, Min, Kang & Cho, ICCV 2021) as a fss_attr model adapter.

The model, as in the official code (github.com/juhongm999/hsnet, whose checkpoints load here with strict=True):

1. Backbone: every bottleneck of layer2–layer4 of a torchvision ResNet (13 blocks for ResNet-50), each block's
   output before its last ReLU, for the query and for every support image.
2. Matching, per block l and support image n: the support features are multiplied by the support mask
   (bilinearly resized to the block's grid, align_corners=True) and the hypercorrelation channel is

       C_l[n](q, s) = relu( <x_q, y_s> / ((|x_q| + 1e-5) · (|y_s| + 1e-5)) ),

   a cosine with the official code's epsilon (added to the norm; fss_attr's "cosine" op divides by
   max(|x|, 1e-8) instead, so the features are normalized here with the official epsilon and the op runs
   its "dot" similarity: the values are exactly the official ones).
3. The 4D center-pivot learner squeezes the channels of each stage, mixes the stages and decodes 2-class
   logits, which are resized to the image size (bilinear, align_corners=True).
4. N shots: the model runs once per support image; the official ``predict_mask_nshot`` sums the per-shot
   argmax masks and keeps pixels with at least half the episode's largest vote (``shot_fusion="vote"``).

What AffEx sees (``levels``): one level per hypercorrelation channel, 13 for ResNet-50, in network order
(layer2 blocks 0–3, layer3 blocks 0–5, layer4 blocks 0–2), each exactly the affinity the learner reads:
S_l = relu(cos(q, s_fg)) with the official epsilon, as a LevelFeatures (normalized query and fg-masked support
features, "dot", relu). HSNet never matches background-masked support features, so unlike DMTNet
(docs/affex.md: relu(cos(q, s_fg)) + relu(cos(q, s_bg))) there is no background term: adding one would explain a
matching the model does not do. Support positions outside the mask have zero features and score 0.
M is ordered (shot, row, col). ``decode(state, ablate_level=l)`` zeroes channel l for every shot.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fss_attr import ops
from fss_attr.data.episode import Episode
from fss_attr.affex.levels import LevelFeatures, LevelScores
from fss_attr.models import checkpoint
from fss_attr.models.base import MatchingAdapter, level_chunks
from fss_attr.models.center_pivot import CenterPivotConv4d
from fss_attr.backbones.resnet import bottleneck_count, bottleneck_features
from fss_attr.validation import check_choice, check_positive_int

OFFICIAL_COSINE_EPS = 1e-5
SHOT_FUSIONS = ("vote", "mean", "max")


def normalize_official(x: torch.Tensor, dim: int) -> torch.Tensor:
    """x / (|x| + 1e-5) along ``dim``: the normalization of the official hypercorrelation."""
    return x / (x.norm(dim=dim, keepdim=True) + OFFICIAL_COSINE_EPS)


def hypercorrelation(query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """The official hypercorrelation channel for every (episode, shot) pair.

    Args:
        query: [K, C, hq, wq] query features.
        support: [K, N, C, hs, ws] (mask-multiplied) support features, same dtype and device.

    Returns:
        [K·N, hq, wq, hs, ws], row k·N + n pairing query k with its shot n: relu of the cosine with the
        official epsilon, computed by fss_attr.ops.correlation ("dot" on pre-normalized features).
    """
    return _normalized_hypercorrelation(normalize_official(query, 1), normalize_official(support, 2))


def _normalized_hypercorrelation(query: torch.Tensor, support: torch.Tensor) -> torch.Tensor:
    """:func:`hypercorrelation` of features already normalized by :func:`normalize_official`."""
    corr = ops.correlation(query, support, "dot", relu=True)
    k, hq, wq, n, hs, ws = corr.shape
    return corr.permute(0, 3, 1, 2, 4, 5).reshape(k * n, hq, wq, hs, ws)


def resize_masks(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """[K, 1, H, W] float masks resized to ``size`` as the official code does (bilinear, align_corners=True)."""
    return F.interpolate(masks, size=size, mode="bilinear", align_corners=True)


def _squeeze_block(in_channels: int, out_channels: Sequence[int], kernel_sizes: Sequence[int],
                   support_strides: Sequence[int], groups: int = 4) -> nn.Sequential:
    """[CenterPivotConv4d, GroupNorm, ReLU] per entry (the official ``make_building_block``; its ReLU is in-place,
    which changes no value; here it is not, so that hook-based attribution methods such as DeepLift can run)."""
    layers: list[nn.Module] = []
    for out, k, s in zip(out_channels, kernel_sizes, support_strides):
        layers += [CenterPivotConv4d(in_channels, out, k, s), nn.GroupNorm(groups, out), nn.ReLU()]
        in_channels = out
    return nn.Sequential(*layers)


def _resize_query_dims(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear (align_corners=True) resize of the query dimensions of [B, C, ha, wa, hb, wb]."""
    b, c, ha, wa, hb, wb = x.shape
    y = x.permute(0, 4, 5, 1, 2, 3).reshape(b * hb * wb, c, ha, wa)
    y = F.interpolate(y, size=tuple(size), mode="bilinear", align_corners=True)
    return y.view(b, hb, wb, c, *size).permute(0, 3, 4, 5, 1, 2)


class HypercorrelationLearner(nn.Module):
    """HSNet's 4D-convolutional learner: squeeze each stage's hypercorrelation, mix the stages, decode.

    Args:
        in_channels: channels of the layer4, layer3 and layer2 hypercorrelations (ResNet-50: (3, 6, 4)).

    ``forward([c4, c3, c2])`` with c_i [K, n_i, ha_i, wa_i, hb_i, wb_i] returns logits [K, 2, 2·wa_2, 2·wa_2]
    (the official decoder upsamples both sides to twice the *width* of the layer2 grid; the caller resizes to
    the image size).
    """

    def __init__(self, in_channels: Sequence[int]):
        super().__init__()
        c1, c2, c3 = 16, 64, 128
        self.encoder_layer4 = _squeeze_block(in_channels[0], (c1, c2, c3), (3, 3, 3), (2, 2, 2))
        self.encoder_layer3 = _squeeze_block(in_channels[1], (c1, c2, c3), (5, 3, 3), (4, 2, 2))
        self.encoder_layer2 = _squeeze_block(in_channels[2], (c1, c2, c3), (5, 5, 3), (4, 4, 2))
        self.encoder_layer4to3 = _squeeze_block(c3, (c3, c3, c3), (3, 3, 3), (1, 1, 1))
        self.encoder_layer3to2 = _squeeze_block(c3, (c3, c3, c3), (3, 3, 3), (1, 1, 1))
        self.decoder1 = nn.Sequential(nn.Conv2d(c3, c3, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(c3, c2, 3, padding=1), nn.ReLU())
        self.decoder2 = nn.Sequential(nn.Conv2d(c2, c2, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(c2, 2, 3, padding=1))

    def forward(self, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        sqz4 = self.encoder_layer4(pyramid[0])
        sqz3 = self.encoder_layer3(pyramid[1])
        sqz2 = self.encoder_layer2(pyramid[2])
        return self.decode_mix(self.mix_upper(sqz4, sqz3), sqz2)

    def mix_upper(self, sqz4: torch.Tensor, sqz3: torch.Tensor) -> torch.Tensor:
        """The layer4 + layer3 mix (``encoder_layer4to3``) of the squeezed stages."""
        return self.encoder_layer4to3(_resize_query_dims(sqz4, sqz3.shape[2:4]) + sqz3)

    def decode_mix(self, mix: torch.Tensor, sqz2: torch.Tensor) -> torch.Tensor:
        """Logits from the layer4 + layer3 mix and the squeezed layer2 stage."""
        mix = self.encoder_layer3to2(_resize_query_dims(mix, sqz2.shape[2:4]) + sqz2)
        encoded = mix.flatten(4).mean(-1)                                   # average over the support grid
        decoded = self.decoder1(encoded)
        side = 2 * decoded.shape[-1]
        decoded = F.interpolate(decoded, size=(side, side), mode="bilinear", align_corners=True)
        return self.decoder2(decoded)


def fuse_shots(shot_logits: torch.Tensor, rule: str) -> torch.Tensor:
    """Logits [B, 2, H, W] of an episode from its per-shot logits [B, N, 2, H, W].

    One shot: its logits. "mean": the mean of the per-shot logits. "max": the element-wise max of the per-shot
    logits, each class channel separately (the AffEx paper's DMTNet evaluation: ``predict_mask_nshot`` with
    ``vote_prediction`` off, ``torch.stack(logit_mask_orig).max(dim=0)``). "vote" (the official ``predict_mask_nshot``):
    v = (number of shots whose argmax is foreground) / max(largest such number over the image, 1), foreground
    where v >= 0.5. The returned logits are (-t, t) with t = v − 0.5 + 1/(4N): argmax is foreground exactly
    when v >= 0.5 (v takes values k/m with m <= N, so v < 0.5 implies v <= 0.5 − 1/(2N)); t is a step function
    of the vote share, not a smooth logit.
    """
    b, n = shot_logits.shape[:2]
    if n == 1:
        return shot_logits[:, 0]
    if rule == "mean":
        return shot_logits.mean(1)
    if rule == "max":
        return shot_logits.amax(1)
    votes = (shot_logits.argmax(2) == 1).sum(1)                               # [B, H, W]
    top = votes.flatten(1).amax(1).clamp_min(1).view(b, 1, 1)
    t = votes.to(shot_logits.dtype) / top.to(shot_logits.dtype) - 0.5 + 1.0 / (4 * n)
    return torch.stack([-t, t], dim=1)


def _pivot_channel(conv: CenterPivotConv4d, x: torch.Tensor, channel: int) -> torch.Tensor:
    """The contribution of input channel ``channel`` of x [K, C, ha, wa, hb, wb] to ``conv(x)`` (no bias)."""
    one = x[:, channel:channel + 1]
    b, _, ha, wa, hb, wb = one.shape
    s = conv.support_stride
    pivots = one[..., ::s, ::s]
    ph, pw = pivots.shape[-2:]
    c1, c2 = conv.conv1, conv.conv2
    y1 = F.conv2d(pivots.permute(0, 4, 5, 1, 2, 3).reshape(b * ph * pw, 1, ha, wa),
                  c1.weight[:, channel:channel + 1], None, c1.stride, c1.padding)
    y1 = y1.view(b, ph, pw, -1, ha, wa).permute(0, 3, 4, 5, 1, 2)
    y2 = F.conv2d(one.permute(0, 2, 3, 1, 4, 5).reshape(b * ha * wa, 1, hb, wb),
                  c2.weight[:, channel:channel + 1], None, c2.stride, c2.padding)
    y2 = y2.view(b, ha, wa, -1, ph, pw).permute(0, 3, 1, 2, 4, 5)
    return y1 + y2


@dataclass
class HypercorrelationState:
    """What ``encode`` computes for one batch of episodes.

    Attributes:
        corrs: per level [B·N, hq, wq, hs, ws], the hypercorrelation channels the learner reads (row b·N + n
            pairs episode b with its shot n).
        batch_size, n_shots, image_size: B, N and (H, W) of the episodes.
        query, support: HSNet only: per level the normalized query features [B, Q, C] and fg-masked support
            features [B, N·hs·ws, C] whose "dot" (then relu) is the channel.
        bg_corrs: DMTNet only: per level the background-masked channels, like ``corrs``.
    """

    corrs: list[torch.Tensor]
    batch_size: int
    n_shots: int
    image_size: tuple[int, int]
    query: list[torch.Tensor] | None = None
    support: list[torch.Tensor] | None = None
    bg_corrs: list[torch.Tensor] | None = None


class HSNet(MatchingAdapter):
    """HSNet with a torchvision ResNet backbone (see the module docstring).

    Parameter and buffer names match the official checkpoints (``backbone.*``, ``hpn_learner.*``); load one with
    :meth:`load_official` or :meth:`from_checkpoint` (keys with or without the ``"module."`` prefix).
    Images are expected ImageNet-normalized (fss_attr.data.imagenet.imagenet_normalize), as the official data
    loaders do. The backbone stays in eval mode (as in the official ``train_mode``).

    Args:
        backbone: a torchvision ResNet (default: ``resnet50(weights=None)``, random; load a checkpoint for the
            trained model). ResNet-50 is the official configuration and the one the committed key list
            describes; other depths (the official HSNet also has ResNet-101) give one level per block of
            layer2–layer4.
        shot_fusion: how N > 1 per-shot predictions become the episode's logits: "vote" (official), "mean"
            (mean of per-shot logits) or "max" (element-wise max of per-shot logits, the AffEx paper's DMTNet
            5-shot evaluation); see :func:`fuse_shots`. "vote" logits are a step function of the vote
            share, so gradient-based baselines and the ablation weights see no gradient / coarse changes
            there; use "mean" for them. With one shot both give the model's logits.
    """

    key_list = "hsnet_resnet50.txt"
    min_image_side = 1

    def __init__(self, backbone: nn.Module | None = None, shot_fusion: str = "vote"):
        super().__init__()
        check_choice("shot_fusion", shot_fusion, SHOT_FUSIONS)
        if backbone is not None and not isinstance(backbone, torchvision.models.ResNet):
            raise TypeError(f"backbone must be a torchvision ResNet, got {type(backbone).__name__}")
        self.backbone = torchvision.models.resnet50(weights=None) if backbone is None else backbone
        counts = bottleneck_count(self.backbone)
        self._first_block = counts[0]                      # layer1 is not matched
        self._stage_of_level = [stage for stage, count in enumerate(counts[1:]) for _ in range(count)]
        self.hpn_learner = HypercorrelationLearner(tuple(reversed(counts[1:])))
        self.shot_fusion = shot_fusion
        self.backbone.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        self.backbone.eval()
        return self

    @property
    def n_levels(self) -> int:
        return len(self._stage_of_level)

    @classmethod
    def official_keys(cls) -> dict:
        """The committed key list of the official ResNet-50 checkpoint: {"module.<name>": (shape, dtype)}."""
        return checkpoint.read_key_list(cls.key_list)

    def load_official(self, state_or_path, strict: bool = True, assign: bool = False):
        """Load an official checkpoint (state dict or path; "module." prefix optional); see
        :func:`fss_attr.models.checkpoint.load_official`."""
        return checkpoint.load_official(self, state_or_path, strict, assign)

    @classmethod
    def from_checkpoint(cls, state_or_path, **kwargs) -> "HSNet":
        """A model built with ``kwargs`` whose weights are the official checkpoint's (strict), in eval mode.

        The architecture is built on the meta device and takes the checkpoint's tensors (``assign=True``), so
        no random weights are drawn first.
        """
        with torch.device("meta"):
            model = cls(**kwargs)
        model.load_official(state_or_path, strict=True, assign=True)
        return model.eval()

    # -- encode -----------------------------------------------------------------------------------------------

    def _check_episode(self, episode) -> None:
        self.check_episode(episode)
        h, w = episode.image_size
        if min(h, w) < self.min_image_side:
            raise ValueError(f"{type(self).__name__} needs images of at least {self.min_image_side} px per side, "
                             f"got {h}×{w}")

    def _level_features(self, episode: Episode, query_features: Sequence[torch.Tensor] | None = None):
        """Per level: query [B, C, h, w], support [B·N, C, h, w] and the resized support masks [B·N, 1, h, w].

        With ``query_features`` (per level [B, C, h, w], from :meth:`query_features`) the backbone runs on the
        support images only."""
        b = episode.batch_size
        masks = episode.support_masks.flatten(0, 1)[:, None].to(episode.query.dtype)
        if query_features is not None:
            support = bottleneck_features(self.backbone, episode.support_images.flatten(0, 1), first=self._first_block)
            for q, s in zip(query_features, support):
                yield q, s, resize_masks(masks, s.shape[-2:])
            return
        images = torch.cat([episode.query, episode.support_images.flatten(0, 1)])
        for f in bottleneck_features(self.backbone, images, first=self._first_block):
            yield f[:b], f[b:], resize_masks(masks, f.shape[-2:])

    def query_features(self, query: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's per-level features [B, C, h, w] of the query images [B, 3, H, W]."""
        return list(bottleneck_features(self.backbone, query, first=self._first_block))

    def forward_with_query(self, episode: Episode, features, index: torch.Tensor) -> torch.Tensor:
        """Logits of ``episode`` with the backbone run on its support images only (query features reused)."""
        return self.decode(self.encode(episode, query_features=[f[index] for f in features]))

    def encode(self, episode: Episode, query_features: Sequence[torch.Tensor] | None = None) -> HypercorrelationState:
        """The state of ``episode``; ``query_features`` (optional) are the query's per-level backbone features."""
        self._check_episode(episode)
        b, n = episode.batch_size, episode.n_shots
        corrs, query, support = [], [], []
        for q, s, m in self._level_features(episode, query_features):
            c, hs, ws = s.shape[1:]
            s = (s * m).view(b, n, c, hs, ws)
            q, s = normalize_official(q, 1), normalize_official(s, 2)
            corrs.append(_normalized_hypercorrelation(q, s))
            query.append(q.flatten(2).transpose(1, 2))
            support.append(s.flatten(3).permute(0, 1, 3, 2).reshape(b, n * hs * ws, c))
        return HypercorrelationState(corrs, b, n, episode.image_size, query=query, support=support)

    # -- decode -----------------------------------------------------------------------------------------------

    def _check_ablate_level(self, ablate_level) -> None:
        if ablate_level is None:
            return
        check_positive_int("ablate_level", ablate_level, 0, self.n_levels - 1)

    def shot_logits(self, state: HypercorrelationState, ablate_level: int | None = None) -> torch.Tensor:
        """Per-shot logits [B, N, 2, H, W] (the official single-shot forward for each support image)."""
        self._check_ablate_level(ablate_level)
        corrs = list(state.corrs)
        if ablate_level is not None:
            corrs[ablate_level] = torch.zeros_like(corrs[ablate_level])
        stages = [[c for c, s in zip(corrs, self._stage_of_level) if s == stage] for stage in (2, 1, 0)]
        logits = self.hpn_learner([torch.stack(channels, dim=1) for channels in stages])
        logits = F.interpolate(logits, size=state.image_size, mode="bilinear", align_corners=True)
        return logits.view(state.batch_size, state.n_shots, 2, *state.image_size)

    def iter_ablations(self, state: HypercorrelationState, levels=None, batch_size: int | None = None):
        """The ablated decodes, batched, without recomputing what an ablation does not change (same numbers as
        ``decode(state, ablate_level=l)`` up to floating-point rounding): the first center-pivot convolution of
        level l's stage is linear and the ablation zeroes one of its input channels, so its output is the full
        output minus that channel's contribution; only that stage's squeeze block is re-run, and the
        layer4 + layer3 mix is the full one for the layer2 levels."""
        levels = list(range(self.n_levels)) if levels is None else [int(l) for l in levels]
        for l in levels:
            self._check_ablate_level(l)
        learner = self.hpn_learner
        blocks = (learner.encoder_layer2, learner.encoder_layer3, learner.encoder_layer4)
        members = [[i for i, st in enumerate(self._stage_of_level) if st == stage] for stage in range(3)]
        pyramid = [torch.stack([state.corrs[i] for i in members[stage]], dim=1) for stage in range(3)]
        first = [blocks[st][0](pyramid[st]) for st in range(3)]
        full = [blocks[st][1:](first[st]) for st in range(3)]
        upper_full = learner.mix_upper(full[2], full[1])
        k_rows = state.batch_size * state.n_shots
        for chunk in level_chunks(levels, batch_size or self.ablation_batch_size, k_rows):
            abl: list[dict] = [{}, {}, {}]
            for st in range(3):
                ls = [l for l in chunk if self._stage_of_level[l] == st]
                if ls:
                    conv = blocks[st][0]
                    y = torch.cat([first[st] - _pivot_channel(conv, pyramid[st], members[st].index(l)) for l in ls])
                    y = blocks[st][1:](y)
                    abl[st] = {l: y[j * k_rows:(j + 1) * k_rows] for j, l in enumerate(ls)}
            upper = [l for l in chunk if l in abl[1] or l in abl[2]]
            mixes = {}
            if upper:
                y = learner.mix_upper(torch.cat([abl[2].get(l, full[2]) for l in upper]),
                                      torch.cat([abl[1].get(l, full[1]) for l in upper]))
                mixes = {l: y[i * k_rows:(i + 1) * k_rows] for i, l in enumerate(upper)}
            logits = learner.decode_mix(torch.cat([mixes.get(l, upper_full) for l in chunk]),
                                        torch.cat([abl[0].get(l, full[0]) for l in chunk]))
            logits = F.interpolate(logits, size=state.image_size, mode="bilinear", align_corners=True)
            logits = logits.view(len(chunk) * state.batch_size, state.n_shots, 2, *state.image_size)
            logits = fuse_shots(logits, self.shot_fusion)
            yield chunk, logits.view(len(chunk), state.batch_size, *logits.shape[1:])

    def decode(self, state: HypercorrelationState, ablate_level: int | None = None) -> torch.Tensor:
        return fuse_shots(self.shot_logits(state, ablate_level), self.shot_fusion)

    def levels(self, state: HypercorrelationState) -> list[LevelFeatures | LevelScores]:
        n = state.n_shots
        return [LevelFeatures(q, s, tuple(c.shape[1:3]), tuple(c.shape[3:5]), n, "dot", 1.0, relu=True)
                for q, s, c in zip(state.query, state.support, state.corrs)]
