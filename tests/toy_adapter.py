"""A tiny deterministic matching model over pooled pixels, for tests of the adapter protocol."""
import torch
import torch.nn.functional as F

from fss_attr.affex.levels import LevelFeatures
from fss_attr.models import MatchingAdapter


class PooledPixelMatcher(MatchingAdapter):
    """Per level g: query and support pixels average-pooled to g×g, scores = scale·q·k, softmax over all
    shots, support masks aggregated with those weights; the level probabilities are averaged into logits."""

    def __init__(self, grids=(4, 8), scale=3.0):
        super().__init__()
        self.grids, self.scale = grids, scale

    @property
    def n_levels(self):
        return len(self.grids)

    def encode(self, episode):
        b, n = episode.batch_size, episode.n_shots
        feats = []
        for g in self.grids:
            q = F.adaptive_avg_pool2d(episode.query, g).flatten(2).transpose(1, 2)            # [B, g², 3]
            s = F.adaptive_avg_pool2d(episode.support_images.flatten(0, 1), g)                # [B·N, 3, g, g]
            s = s.view(b, n, 3, g * g).permute(0, 1, 3, 2).reshape(b, n * g * g, 3)
            m = F.adaptive_avg_pool2d(episode.support_masks.flatten(0, 1).float()[:, None], g).view(b, n * g * g)
            feats.append((q, s, m, g))
        return {"feats": feats, "n": n, "size": episode.image_size}

    def levels(self, state):
        return [LevelFeatures(q, s, (g, g), (g, g), state["n"], "dot", self.scale) for q, s, _, g in state["feats"]]

    def decode(self, state, ablate_level=None):
        probs = []
        for i, (q, s, m, g) in enumerate(state["feats"]):
            p = torch.softmax(self.scale * q @ s.transpose(1, 2), -1) @ m[..., None]              # [B, g², 1]
            p = p.view(-1, 1, g, g)
            if i == ablate_level:
                p = torch.zeros_like(p)
            probs.append(F.interpolate(p, size=state["size"], mode="bilinear", align_corners=False))
        fg = torch.stack(probs).mean(0)
        return torch.cat([1 - fg, fg], 1).clamp(1e-6, 1 - 1e-6).log()
