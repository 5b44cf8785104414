"""Explainers of a similarity s(x1, x2) between two images' embeddings, for pairs or all B×B pairs at once.

Every explainer produces, for an image ``l`` explained against a partner ``r``, a *raw* map on the feature
grid, raw [h, w] (before relu, in the feature dtype), then the shown map: relu, bilinear upsampling to the
image size, min-max scaling per map to [0, 1] (float32). Notation (see :mod:`fss_attr.similarity.model`):
A_l(p) ∈ R^C the feature at position p of the h×w grid, n = h·w, g = mean_p A(p), z = W g + b (W = I, b = 0
without a linear layer), e = z/‖z‖ (or z without normalisation), s = s(e_l, e_r).

- :class:`SFAM` (Similar Feature Activation Map, Liao et al., arXiv 2506.01636, 2025). What the paper's public
  pages give (its abstract): channel-wise contribution importance scores (CIS) derived from the similarity of
  the two embeddings, in a cosine and a Euclidean form, and a map that combines them linearly with the feature
  map, then relu and normalisation. Its equations were not reachable, so the form below is ours, chosen so
  that the channel terms add up to the score. Every similarity of the GAP head is written, exactly, as an
  affine function of the explained image's pooled features, s = Σ_c w_c g_l,c + o, with w and o computed from
  both embeddings; then CIS_c = w_c g_l,c and Σ_c CIS_c + o = s:
    cosine (and dot of normalised embeddings): v = z_r/(‖z_l‖‖z_r‖), w = Wᵀv, o = b·v;
    dot (unnormalised): v = z_r, w = Wᵀv, o = b·v;
    negative squared Euclidean, normalised embeddings (s = 2 cos − 2): w = 2Wᵀv, o = 2 b·v − 2;
    negative squared Euclidean, unnormalised: d = z_l − z_r, w = −Wᵀd, o = −d·(b − z_r)
    (the exact decomposition −‖d‖² = −d·(W g_l + b − z_r) around the partner's embedding).
  For cosine of GAP features (no linear layer) o = 0 and CIS_c = g_l,c g_r,c/(‖g_l‖‖g_r‖): the per-channel
  terms sum exactly to the score. With a linear layer and L2 normalisation the terms are over the C feature
  channels (w = Wᵀv) and sum to s − b·v: exactly s when the layer has no bias; the bias's share o = b·v is
  no channel's. Maps (``weighting``):
    "complete" (default): raw(p) = (Σ_c w_c A_l,c(p) + o)/n, so Σ_p raw(p) = s exactly (channel c's terms
    sum to CIS_c over the positions, the offset is spread uniformly);
    "cis": raw(p) = Σ_c CIS_c A_l,c(p), the CIS themselves as channel weights (the abstract read
    literally; channels active in both images weigh most; the map does not add up to s).
  For cosine and dot the "complete" map equals the row sums of the spatial decomposition below (a tested
  identity: both are the exact split of the same bilinear form over the explained image's positions).
- :class:`GradientAttention` (gradient-based similarity attention, Zheng et al.): Grad-CAM weights
  α_c = mean_p ∂s/∂A_l,c(p) and raw(p) = Σ_c α_c A_l,c(p). For the GAP head ∂s/∂A_l(p) = (∂s/∂g_l)/n at every p,
  with ∂s/∂g_l = Wᵀ (∂e/∂z)ᵀ ∂s/∂e_l in closed form (:func:`~fss_attr.similarity.measures.head_vjp`): no
  backward pass. Pair form: the similarity s(e_l, e_r). Triplet form: s_x = wᵀ e_x for x in (anchor,
  positive, negative) with w = (1 − |e_a − e_p|) ⊙ |e_a − e_n| held constant (not differentiated); it does
  not involve ``similarity``. When the score does not change as g_l is scaled (cosine, or any similarity of
  L2-normalised embeddings, with no bias in the head) the pair-form raw map sums to zero over the positions
  (Σ_c g_l,c ∂s/∂g_l,c = 0, a tested property), so relu keeps the part of the image that raises the score.
- :class:`SpatialDecomposition` (Stylianou et al., WACV 2019): the point-to-point matrix
  P[p, q] = k·(W A_l(p) + b)·(W A_r(q) + b)/n_l n_r, k = 1/(‖z_l‖‖z_r‖) for cosine or normalised embeddings
  (1 for an unnormalised dot product), sums to s; its row sums give the map of l, its column sums the map
  of r. For a GAP head the row sums equal SFAM's "complete" map for every similarity the decomposition
  supports (a tested identity); here they are computed literally from the matrix.
- :class:`GradCAMSimilarity`: Grad-CAM on the similarity target by autograd through the head (any head;
  ``torch.func.vmap`` over all pairs). It is the autograd reference of the pair form of GradientAttention.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from fss_attr.explanation import minmax
from fss_attr.affex.interp import upsample_bilinear
from fss_attr.similarity.measures import check_similarity, head_vjp, similarity, similarity_grad
from fss_attr.similarity.model import NORM_EPS, EmbeddingModel
from fss_attr.validation import check_tensor


@dataclass
class SimilarityExplanation:
    """Result of an explainer.

    Attributes:
        maps: [..., H, W] float32 in [0, 1]: relu(raw), upsampled bilinearly, min-max scaled per map.
        raw: [..., h, w] the maps on the feature grid before relu (feature dtype).
        scores: the explained similarities, float (the feature dtype): [B] for
            :meth:`SimilarityExplainer.explain` (s(x1[b], x2[b]), both maps of a pair explain it), [B, B] for
            :meth:`SimilarityExplainer.explain_all_pairs`, [B, 3] for triplets (wᵀe of each image).

    Leading dims of maps and raw: [B, 2] for :meth:`SimilarityExplainer.explain` (image 1 against image 2,
    image 2 against image 1), [B, B] for :meth:`SimilarityExplainer.explain_all_pairs` (row i, column j:
    image i against image j), [B, 3] for triplets (anchor, positive, negative).
    """

    maps: torch.Tensor
    raw: torch.Tensor
    scores: torch.Tensor


def finalize(raw: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """raw [..., h, w] -> relu, bilinear upsampling to ``size`` (H, W), min-max per map -> [..., H, W] float32."""
    up = upsample_bilinear(raw.detach().clamp_min(0), tuple(size))
    lead = up.shape[:-2]
    return minmax(up.reshape(-1, *up.shape[-2:]), torch.float32).reshape(*lead, *up.shape[-2:])


def check_model(model) -> EmbeddingModel:
    if not isinstance(model, EmbeddingModel):
        raise TypeError(f"model must be an fss_attr.similarity.EmbeddingModel, got {type(model).__name__}")
    return model


def _features(model: EmbeddingModel, **named: torch.Tensor) -> list[torch.Tensor]:
    """One backbone pass over images of equal shape (no gradient); returns each input's feature map."""
    xs = list(named.values())
    for name, x in named.items():
        check_tensor(name, x, ndim=4, floating=True, finite=True)
        if x.shape != xs[0].shape:
            raise ValueError(f"{name} must have the shape of {next(iter(named))}, {tuple(xs[0].shape)}, "
                             f"got {tuple(x.shape)}")
    with torch.no_grad():
        a = model.features(torch.cat(xs))
    return list(a.split(xs[0].shape[0]))


def check_chunk(chunk) -> int:
    if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"chunk must be a positive int, got {chunk!r}")
    return chunk


def _weighted_sum(w: torch.Tensor, a: torch.Tensor) -> torch.Tensor:
    """Σ_c w[l, ..., c] a[l, c, h, w] -> [l, ..., h, w]; w is [L, C] or [L, R, C], a is [L, C, h, w]."""
    return torch.einsum("lc,lchw->lhw" if w.dim() == 2 else "lrc,lchw->lrhw", w, a)


def _pair_shapes(g_l: torch.Tensor, g_r: torch.Tensor, all_pairs: bool):
    return (g_l[:, None], g_r[None]) if all_pairs else (g_l, g_r)


class SimilarityExplainer:
    """Base class. Subclasses implement :meth:`raw_maps` (or :meth:`channel_weights` for the linear form
    raw(p) = (Σ_c w_c A_l,c(p) + o)/n)."""

    name = "base"

    def __init__(self, similarity: str = "cosine"):
        self.similarity = check_similarity(similarity)

    def channel_weights(self, model: EmbeddingModel, g_l: torch.Tensor, g_r: torch.Tensor):
        """(w [..., C], o [...]) from the pooled features g_l, g_r [..., C] (broadcast)."""
        raise NotImplementedError

    def raw_maps(self, model: EmbeddingModel, a_l: torch.Tensor, a_r: torch.Tensor,
                 all_pairs: bool = False) -> torch.Tensor:
        """Raw maps of the images a_l [L, C, h, w] explained against a_r [R, C, h', w'].

        Returns [L, h, w] for pairs (R = L, row i against row i), or [L, R, h, w] when ``all_pairs``.
        Differentiable with respect to the feature maps and the head's parameters.
        """
        g_l, g_r = _pair_shapes(model.pool(a_l), model.pool(a_r), all_pairs)
        w, o = self.channel_weights(model, g_l, g_r)
        n = a_l.shape[-2] * a_l.shape[-1]
        return (_weighted_sum(w, a_l) + o[..., None, None]) / n

    def scores(self, model: EmbeddingModel, a_l: torch.Tensor, a_r: torch.Tensor, all_pairs: bool = False):
        e_l, e_r = _pair_shapes(model.head(a_l), model.head(a_r), all_pairs)
        return similarity(e_l, e_r, self.similarity)

    def explain(self, model: EmbeddingModel, x1: torch.Tensor, x2: torch.Tensor) -> SimilarityExplanation:
        """Explain s(x1[b], x2[b]) for each b: x1, x2 [B, 3, H, W] -> maps [B, 2, H, W] (see the result type)."""
        check_model(model)
        a1, a2 = _features(model, x1=x1, x2=x2)
        raw = torch.stack([self.raw_maps(model, a1, a2), self.raw_maps(model, a2, a1)], 1)
        scores = self.scores(model, a1, a2).detach()
        return SimilarityExplanation(finalize(raw, x1.shape[-2:]), raw.detach(), scores)

    def explain_all_pairs(self, model: EmbeddingModel, x: torch.Tensor) -> SimilarityExplanation:
        """Explain all B×B pairs of a batch x [B, 3, H, W] in one call: maps [B, B, H, W], maps[i, j] is image
        i's map for its similarity to image j."""
        check_model(model)
        (a,) = _features(model, x=x)
        raw = self.raw_maps(model, a, a, all_pairs=True)
        scores = self.scores(model, a, a, all_pairs=True).detach()
        return SimilarityExplanation(finalize(raw, x.shape[-2:]), raw.detach(), scores)

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items() if not k.startswith("_"))
        return f"{type(self).__name__}({args})"


def _transpose_w(model: EmbeddingModel, v: torch.Tensor) -> torch.Tensor:
    return v if model.linear is None else v @ model.linear.weight


def _bias_dot(model: EmbeddingModel, v: torch.Tensor) -> torch.Tensor:
    if model.linear is None or model.linear.bias is None:
        return v.new_zeros(v.shape[:-1])
    return (v * model.linear.bias).sum(-1)


def _cosine_vector(z_l: torch.Tensor, z_r: torch.Tensor) -> torch.Tensor:
    """v = z_r / (‖z_l‖‖z_r‖) (broadcast), so that cos(z_l, z_r) = z_l·v."""
    n_l = z_l.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
    n_r = z_r.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)
    return torch.broadcast_tensors(z_r / (n_l * n_r), z_l)[0]


WEIGHTINGS = ("complete", "cis")


class SFAM(SimilarityExplainer):
    """Similar Feature Activation Map; formulas in the module docstring.

    Args:
        similarity: "cosine", "dot" or "neg_sq_euclidean".
        weighting: "complete" (default; the map adds up to the score) or "cis" (the CIS as channel weights).
    """

    name = "sfam"

    def __init__(self, similarity: str = "cosine", weighting: str = "complete"):
        super().__init__(similarity)
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        self.weighting = weighting

    def channel_weights(self, model, g_l, g_r):
        z_l, z_r = model.project(g_l), model.project(g_r)
        if self.similarity == "neg_sq_euclidean" and not model.normalize:
            d = z_l - z_r
            return -_transpose_w(model, d), _bias_dot(model, -d) + (d * z_r).sum(-1)
        if self.similarity == "dot" and not model.normalize:
            v = torch.broadcast_tensors(z_r, z_l)[0]
        else:
            v = _cosine_vector(z_l, z_r)
        w, o = _transpose_w(model, v), _bias_dot(model, v)
        if self.similarity == "neg_sq_euclidean":
            return 2 * w, 2 * o - 2
        return w, o

    def channel_scores(self, model: EmbeddingModel, a_l: torch.Tensor, a_r: torch.Tensor,
                       all_pairs: bool = False):
        """Channel-wise contribution importance scores CIS [..., C] and the offset o [...] that no channel
        carries: Σ_c CIS_c + o = s. Leading dims as in :meth:`raw_maps`."""
        g_l, g_r = _pair_shapes(model.pool(a_l), model.pool(a_r), all_pairs)
        w, o = self.channel_weights(model, g_l, g_r)
        return w * g_l, o

    def raw_maps(self, model, a_l, a_r, all_pairs=False):
        if self.weighting == "complete":
            return super().raw_maps(model, a_l, a_r, all_pairs)
        return _weighted_sum(self.channel_scores(model, a_l, a_r, all_pairs)[0], a_l)


class GradientAttention(SimilarityExplainer):
    """Gradient-based similarity attention with the closed-form gradient of the GAP head (module docstring).

    ``form="pair"`` explains s(e_l, e_r); ``form="triplet"`` is used through :meth:`explain_triplets`.
    """

    name = "gradient_attention"

    def __init__(self, similarity: str = "cosine", form: str = "pair"):
        super().__init__(similarity)
        if form not in ("pair", "triplet"):
            raise ValueError(f"form must be 'pair' or 'triplet', got {form!r}")
        self.form = form

    def channel_weights(self, model, g_l, g_r):
        if self.form != "pair":
            raise ValueError("the triplet form explains triplets: call explain_triplets(model, xa, xp, xn)")
        e_l, e_r = model.embed_pooled(g_l), model.embed_pooled(g_r)
        grad_g = head_vjp(model, g_l, similarity_grad(e_l, e_r, self.similarity))
        return grad_g, grad_g.new_zeros(grad_g.shape[:-1])

    @staticmethod
    def triplet_weights(e_a: torch.Tensor, e_p: torch.Tensor, e_n: torch.Tensor) -> torch.Tensor:
        """w = (1 − |e_a − e_p|) ⊙ |e_a − e_n| [B, D], detached (held constant)."""
        return ((1 - (e_a - e_p).abs()) * (e_a - e_n).abs()).detach()

    def triplet_raw(self, model: EmbeddingModel, a_a, a_p, a_n):
        """Raw maps [B, 3, h, w] and scores [B, 3] of anchor, positive, negative (differentiable in A)."""
        gs = [model.pool(a) for a in (a_a, a_p, a_n)]
        es = [model.embed_pooled(g) for g in gs]
        w = self.triplet_weights(*es)
        raw, scores = [], []
        for a, g, e in zip((a_a, a_p, a_n), gs, es):
            raw.append(_weighted_sum(head_vjp(model, g, w), a) / (a.shape[-2] * a.shape[-1]))
            scores.append((w * e).sum(-1))
        return torch.stack(raw, 1), torch.stack(scores, 1)

    def explain_triplets(self, model: EmbeddingModel, xa: torch.Tensor, xp: torch.Tensor,
                         xn: torch.Tensor) -> SimilarityExplanation:
        """Triplets xa, xp, xn [B, 3, H, W] -> maps [B, 3, H, W] (anchor, positive, negative)."""
        check_model(model)
        raw, scores = self.triplet_raw(model, *_features(model, xa=xa, xp=xp, xn=xn))
        return SimilarityExplanation(finalize(raw, xa.shape[-2:]), raw.detach(), scores.detach())


class SpatialDecomposition(SimilarityExplainer):
    """Stylianou et al.'s point-to-point similarity decomposition (module docstring), literal.

    Needs a similarity bilinear in the projected features: cosine, dot, or the negative squared Euclidean
    distance of normalised embeddings (2 cos − 2: the matrix is 2P − 2/(n_l n_r)).
    ``chunk``: left images per block of the all-pairs computation (memory knob: chunk·B·n² values).
    """

    name = "spatial_decomposition"

    def __init__(self, similarity: str = "cosine", chunk: int = 8):
        super().__init__(similarity)
        self.chunk = check_chunk(chunk)

    def point_similarity(self, model: EmbeddingModel, a_l: torch.Tensor, a_r: torch.Tensor,
                         all_pairs: bool = False) -> torch.Tensor:
        """P [L, n_l, n_r] for pairs or [L, R, n_l, n_r] for all pairs; P sums to the similarity."""
        if self.similarity == "neg_sq_euclidean" and not model.normalize:
            raise ValueError("the spatial decomposition needs a bilinear similarity: cosine, dot, or "
                             "neg_sq_euclidean of normalised embeddings (model.normalize=True)")
        p_l = model.project(a_l.flatten(2).transpose(1, 2))  # [L, n_l, D]: W A(p) + b
        p_r = model.project(a_r.flatten(2).transpose(1, 2))  # [R, n_r, D]
        z_l, z_r = _pair_shapes(p_l.mean(1), p_r.mean(1), all_pairs)
        n2 = p_l.shape[1] * p_r.shape[1]
        mat = torch.einsum("ipd,jqd->ijpq" if all_pairs else "bpd,bqd->bpq", p_l, p_r) / n2
        if self.similarity == "cosine" or model.normalize:  # k = 1/(‖z_l‖‖z_r‖); 1 for an unnormalised dot
            k = 1 / (z_l.norm(dim=-1).clamp_min(NORM_EPS) * z_r.norm(dim=-1).clamp_min(NORM_EPS))
            mat = mat * k[..., None, None]
        if self.similarity == "neg_sq_euclidean":
            mat = 2 * mat - 2 / n2
        return mat

    def raw_maps(self, model, a_l, a_r, all_pairs=False):
        h, w = a_l.shape[-2:]
        if not all_pairs:
            return self.point_similarity(model, a_l, a_r).sum(-1).unflatten(-1, (h, w))
        rows = [self.point_similarity(model, a_l[i:i + self.chunk], a_r, True).sum(-1)
                for i in range(0, a_l.shape[0], self.chunk)]
        return torch.cat(rows).unflatten(-1, (h, w))


class GradCAMSimilarity(SimilarityExplainer):
    """Grad-CAM on the similarity target, gradients by autograd through ``model.head`` (any head).

    raw(p) = Σ_c α_c A_l,c(p), α_c = mean_p ∂s/∂A_l,c(p). All pairs: ``torch.func.vmap`` of ``torch.func.grad``
    over blocks of ``chunk`` left images (memory: chunk·B·C·h·w gradient values).
    """

    name = "gradcam"

    def __init__(self, similarity: str = "cosine", chunk: int = 8):
        super().__init__(similarity)
        self.chunk = check_chunk(chunk)

    def raw_maps(self, model, a_l, a_r, all_pairs=False):
        a_l, a_r = a_l.detach(), a_r.detach()
        if not all_pairs:
            with torch.enable_grad():
                a = a_l.clone().requires_grad_(True)
                s = similarity(model.head(a), model.head(a_r), self.similarity)
                (grad,) = torch.autograd.grad(s.sum(), a)  # s[b] depends on a[b] only
            return _weighted_sum(grad.mean((-2, -1)), a_l)

        def s_one(ai, aj):  # [C, h, w], [C, h, w] -> scalar
            return similarity(model.head(ai), model.head(aj), self.similarity)

        grad_all = torch.func.vmap(torch.func.vmap(torch.func.grad(s_one), in_dims=(None, 0)), in_dims=(0, None))
        alphas = [grad_all(a_l[i:i + self.chunk], a_r).mean((-2, -1)) for i in range(0, a_l.shape[0], self.chunk)]
        return _weighted_sum(torch.cat(alphas), a_l)


METHODS = {cls.name: cls for cls in (SFAM, GradientAttention, SpatialDecomposition, GradCAMSimilarity)}


def default_methods(similarity: str = "cosine") -> dict[str, SimilarityExplainer]:
    """The pair explainers compared in the figure and the benchmarks, by display name."""
    return {"SFAM": SFAM(similarity), "SFAM (CIS weights)": SFAM(similarity, "cis"),
            "gradient attention": GradientAttention(similarity),
            "spatial decomposition": SpatialDecomposition(similarity),
            "Grad-CAM (similarity)": GradCAMSimilarity(similarity)}
