"""Tiny deterministic models and episodes for the metric, baseline and evaluation tests (plus their own checks).

- ConvMatcher: a seeded conv layer (an nn.ReLU module, so DeepLift has something to override), average
  pooling to two grids, cosine matching softmaxed over all shots, support masks aggregated with those
  weights: a real (if small) matching model whose prediction depends on support images and masks.
- LinearAdapter: the foreground probability (or the foreground logit) is an affine function of the support
  RGB values, the same at every query pixel: z(support) = 0.5 + Σ W·x exactly, so infidelity (on the
  probability) and gradients, IG and LIME (on the logit) have closed forms.
"""
import torch
import torch.nn.functional as F
from torch import nn

from fss_attr.data.episode import Episode
from fss_attr.affex.levels import LevelFeatures
from fss_attr.models import MatchingAdapter


class ConvMatcher(MatchingAdapter):
    def __init__(self, grids=(4, 8), channels=8, scale=8.0, seed=0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(3, channels, 3, padding=1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.randn(self.conv.weight.shape, generator=g) / 3)
            self.conv.bias.copy_(0.1 * torch.randn(channels, generator=g))
        self.relu = nn.ReLU()
        self.grids, self.scale = grids, scale

    @property
    def n_levels(self):
        return len(self.grids)

    def features(self, x):
        return self.relu(self.conv(x))

    def encode(self, episode):
        b, n = episode.batch_size, episode.n_shots
        fq = self.features(episode.query)
        fs = self.features(episode.support_images.flatten(0, 1))
        feats = []
        for g in self.grids:
            q = F.normalize(F.adaptive_avg_pool2d(fq, g).flatten(2).transpose(1, 2), dim=-1, eps=1e-6)
            s = F.adaptive_avg_pool2d(fs, g)
            s = F.normalize(s.view(b, n, -1, g * g).permute(0, 1, 3, 2).reshape(b, n * g * g, -1), dim=-1, eps=1e-6)
            m = F.adaptive_avg_pool2d(episode.support_masks.flatten(0, 1).to(fq.dtype)[:, None], g)
            feats.append((q, s, m.reshape(b, n * g * g), g))
        return {"feats": feats, "n": n, "size": episode.image_size}

    def levels(self, state):
        return [LevelFeatures(q, s, (g, g), (g, g), state["n"], "dot", self.scale) for q, s, _, g in state["feats"]]

    def decode(self, state, ablate_level=None):
        probs = []
        for i, (q, s, m, g) in enumerate(state["feats"]):
            p = torch.softmax(self.scale * q @ s.transpose(1, 2), -1) @ m[..., None]
            p = p.reshape(-1, 1, g, g)
            if i == ablate_level:
                p = torch.zeros_like(p)
            probs.append(F.interpolate(p, size=state["size"], mode="bilinear", align_corners=False))
        fg = torch.stack(probs).mean(0).clamp(1e-6, 1 - 1e-6)
        # threshold 0.3: foreground where at least 30% of the matched support mass is foreground
        return torch.cat([torch.log(1 - fg) + torch.log(torch.tensor(0.3 / 0.7, dtype=fg.dtype)), torch.log(fg)], 1)


class LinearAdapter(MatchingAdapter):
    """z = 0.5 + Σ_{n,c,y,x} W[n,c,y,x]·support[n,c,y,x] at every query pixel. With ``affine="probability"``
    the logits are (log(1−z), log z), so softmax(logits)[:, 1] = z (support images must stay within [-2, 2]
    for z to stay in [0.1, 0.9]); with ``affine="logit"`` they are (0, z), so the foreground logit is z.
    With ``channel_shared`` W is the same for the 3 channels of a pixel."""

    def __init__(self, n_shots, size, seed=0, dtype=torch.float64, channel_shared=False, affine="probability"):
        super().__init__()
        assert affine in ("probability", "logit")
        g = torch.Generator().manual_seed(seed)
        numel = n_shots * 3 * size[0] * size[1]
        w = (torch.rand(n_shots, 1 if channel_shared else 3, *size, generator=g, dtype=torch.float64) * 2 - 1)
        self.register_buffer("weight", (w.expand(n_shots, 3, *size) * 0.2 / numel).to(dtype).contiguous())
        self.affine = affine

    @property
    def n_levels(self):
        return 1

    def encode(self, episode):
        return episode

    def levels(self, state):
        b, n = state.batch_size, state.n_shots
        q = F.adaptive_avg_pool2d(state.query, 2).flatten(2).transpose(1, 2)
        s = F.adaptive_avg_pool2d(state.support_images.flatten(0, 1), 2).view(b, n, 3, 4).permute(0, 1, 3, 2)
        return [LevelFeatures(q, s.reshape(b, n * 4, 3), (2, 2), (2, 2), n)]

    def value(self, support_images):
        """z [B] of support images [B, N, 3, H, W]."""
        return 0.5 + (support_images * self.weight).flatten(1).sum(1)

    def decode(self, state, ablate_level=None):
        z = self.value(state.support_images)
        if ablate_level is not None:
            z = torch.full_like(z, 0.5)
        h, w = state.image_size
        z = z.view(-1, 1, 1, 1).expand(-1, 1, h, w)
        if self.affine == "logit":
            return torch.cat([torch.zeros_like(z), z], 1)
        return torch.cat([torch.log(1 - z), torch.log(z)], 1)


def blob_episode(gen, b=2, n=3, size=(24, 24), dtype=torch.float64):
    """Support foreground blobs carry a shared colour offset; the query holds a blob of the same colour."""
    h, w = size
    yy = torch.arange(h, dtype=torch.float64).view(h, 1)
    xx = torch.arange(w, dtype=torch.float64).view(1, w)

    def blob():
        cy, cx = torch.rand(2, generator=gen, dtype=torch.float64) * torch.tensor([h / 2, w / 2]) + torch.tensor(
            [h / 4, w / 4])
        ry, rx = torch.rand(2, generator=gen, dtype=torch.float64) * torch.tensor([h / 5, w / 5]) + torch.tensor(
            [h / 8, w / 8])
        return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1

    colour = torch.tensor([1.5, -1.0, 0.5], dtype=torch.float64).view(3, 1, 1)
    q = 0.6 * torch.randn(b, 3, h, w, generator=gen, dtype=torch.float64)
    qm = torch.stack([blob() for _ in range(b)])
    q = q + colour * qm[:, None]
    s = 0.6 * torch.randn(b, n, 3, h, w, generator=gen, dtype=torch.float64)
    sm = torch.stack([torch.stack([blob() for _ in range(n)]) for _ in range(b)])
    s = s + colour * sm[:, :, None]
    return Episode(q.clamp(-2, 2).to(dtype), s.clamp(-2, 2).to(dtype), sm, query_mask=qm,
                   support_evidence=sm & (torch.rand(b, n, h, w, generator=gen) < 0.8))


def test_conv_matcher_segments_the_shared_colour(gen):
    ep = blob_episode(gen, b=4, n=2, size=(32, 32))
    model = ConvMatcher().double()
    logits = model(ep)
    assert logits.shape == (4, 2, 32, 32) and logits.dtype == torch.float64
    pred = logits.argmax(1) == 1
    iou = (pred & ep.query_mask).sum() / (pred | ep.query_mask).sum()
    assert iou > 0.2, iou      # the toy really matches (min 0.31, mean 0.71 over 200 seeds)
    empty = ep.with_support(ep.support_images, torch.zeros_like(ep.support_masks))
    assert not (model(empty).argmax(1) == 1).any()


def test_linear_adapter_is_affine(gen):
    ep = blob_episode(gen, b=2, n=2, size=(8, 8))
    want = None
    for affine in ("probability", "logit"):
        model = LinearAdapter(2, (8, 8), seed=1, affine=affine)
        want = 0.5 + (ep.support_images * model.weight).flatten(1).sum(1)
        got = torch.softmax(model(ep), 1)[:, 1] if affine == "probability" else model(ep)[:, 1]
        torch.testing.assert_close(got, want.view(2, 1, 1).expand(2, 8, 8), rtol=1e-12, atol=1e-14)
    assert want.min() > 0.1 and want.max() < 0.9
