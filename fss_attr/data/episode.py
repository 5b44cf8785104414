"""A few-shot segmentation episode: the tensors every model adapter, explainer and metric takes."""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from fss_attr.validation import check_mask, check_tensor


@dataclass
class Episode:
    """One batch of few-shot segmentation episodes.

    Attributes:
        query: [B, 3, H, W] float query images (normalized as the model expects).
        support_images: [B, N, 3, H, W] float support images, same normalization.
        support_masks: [B, N, H, W] bool foreground masks of the support images.
        query_mask: optional [B, H, W] bool ground-truth query mask (for metrics and region="gt").
        support_evidence: optional [B, N, H, W] bool, the support pixels known to match the query object
            (controlled episodes only), for localisation metrics.
        query_ignore: optional [B, H, W] bool, query pixels every IoU leaves out (PASCAL's boundary label
            255, as the benchmark's evaluators and the AffEx paper's code do). Pixels both in the query mask
            and ignored count as ignored.
        meta: free-form information (class names, seeds, file names).
    """

    query: torch.Tensor
    support_images: torch.Tensor
    support_masks: torch.Tensor
    query_mask: torch.Tensor | None = None
    support_evidence: torch.Tensor | None = None
    meta: dict = field(default_factory=dict)
    query_ignore: torch.Tensor | None = None

    def __post_init__(self):
        check_tensor("query", self.query, ndim=4, floating=True, finite=True)
        b, c, h, w = self.query.shape
        if c != 3:
            raise ValueError(f"query must be [B, 3, H, W], got {tuple(self.query.shape)}")
        if h < 1 or w < 1:
            raise ValueError(f"query must have an image size of at least 1×1, got {h}×{w}")
        check_tensor("support_images", self.support_images, ndim=5, floating=True, finite=True,
                     device=self.query.device)
        n = self.support_images.shape[1]
        if n < 1:
            raise ValueError(f"support_images must hold at least one shot (N >= 1), got shape "
                             f"{tuple(self.support_images.shape)}")
        if tuple(self.support_images.shape) != (b, n, 3, h, w):
            raise ValueError(f"support_images must be [B, N, 3, H, W] = [{b}, N, 3, {h}, {w}], "
                             f"got {tuple(self.support_images.shape)}")
        self.support_masks = check_mask("support_masks", self.support_masks, (b, n, h, w), self.query.device)
        if self.query_mask is not None:
            self.query_mask = check_mask("query_mask", self.query_mask, (b, h, w), self.query.device)
        if self.support_evidence is not None:
            self.support_evidence = check_mask("support_evidence", self.support_evidence, (b, n, h, w),
                                               self.query.device)
        if self.query_ignore is not None:
            self.query_ignore = check_mask("query_ignore", self.query_ignore, (b, h, w), self.query.device)

    @property
    def batch_size(self) -> int:
        return self.query.shape[0]

    @property
    def n_shots(self) -> int:
        return self.support_images.shape[1]

    @property
    def image_size(self) -> tuple[int, int]:
        return tuple(self.query.shape[-2:])

    @property
    def device(self) -> torch.device:
        return self.query.device

    def to(self, device) -> "Episode":
        move = lambda t: None if t is None else t.to(device)  # noqa: E731
        return Episode(move(self.query), move(self.support_images), move(self.support_masks),
                       move(self.query_mask), move(self.support_evidence), dict(self.meta),
                       move(self.query_ignore))

    def with_support(self, support_images: torch.Tensor, support_masks: torch.Tensor) -> "Episode":
        """The same episode with other support images and masks (the query never changes)."""
        return replace(self, support_images=support_images, support_masks=support_masks)

    def index(self, i) -> "Episode":
        """Episodes ``i`` (an int or a slice) of the batch, as a batch."""
        sl = slice(i, i + 1) if isinstance(i, int) else i
        pick = lambda t: None if t is None else t[sl]  # noqa: E731
        return Episode(pick(self.query), pick(self.support_images), pick(self.support_masks),
                       pick(self.query_mask), pick(self.support_evidence), dict(self.meta),
                       pick(self.query_ignore))

