"""HSNet and DMTNet adapters: official checkpoint keys, the matching and the forward pass against a literal,
looped re-statement of the official code (float64, random weights), AffEx end to end, and bad input."""
import copy
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from fss_attr import AffinityExplainer, ops
from fss_attr.data.episode import Episode
from fss_attr.affex.levels import LevelFeatures, LevelScores
from fss_attr.models import DMTNet, HSNet
from fss_attr.models.center_pivot import CenterPivotConv4d
from fss_attr.models.checkpoint import load_official, read_key_list, strip_parallel_prefix
from fss_attr.models.dmtnet import doubly_matching_transform, grid_starts, unit_rows
from fss_attr.models.hsnet import OFFICIAL_COSINE_EPS, fuse_shots, normalize_official
from fss_attr.testing import random_masks, random_region

STAGES = ((0, 4), (4, 10), (10, 13))  # ResNet-50 hypercorrelation channels of layer2, layer3, layer4
HS_SIZE = (48, 64)                    # HSNet: layer2/3/4 grids 6×8, 3×4, 2×2
DMT_SIZE = (100, 116)                 # DMTNet needs >= 97 px: grids 13×15, 7×8, 4×4


def random_episode(gen, b, n, size, dtype=torch.float32):
    q = torch.randn(b, 3, *size, generator=gen, dtype=torch.float64).to(dtype)
    s = torch.randn(b, n, 3, *size, generator=gen, dtype=torch.float64).to(dtype)
    return Episode(q, s, random_masks(b, n, size, generator=gen), query_mask=random_region(b, size, generator=gen))


def randomize_norms(model, seed=0):
    """Non-trivial BatchNorm statistics and GroupNorm affines, so that their use is checked too."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(0.1 * torch.randn(m.num_features, generator=g))
            m.running_var.copy_(0.5 + torch.rand(m.num_features, generator=g))
        elif isinstance(m, nn.GroupNorm):
            m.weight.data.copy_(1 + 0.3 * torch.randn(m.num_channels, generator=g))
            m.bias.data.copy_(0.3 * torch.randn(m.num_channels, generator=g))
    return model


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def hsnet64():
    torch.manual_seed(1)
    return randomize_norms(HSNet(shot_fusion="mean")).double().eval()


@pytest.fixture(scope="module")
def dmtnet64():
    torch.manual_seed(2)
    return randomize_norms(DMTNet(shot_fusion="mean")).double().eval()


# ---- a literal re-statement of the official code (loops, per (episode, shot) pair) ------------------------

def ref_features(backbone, image):
    """The pre-ReLU output of every bottleneck of layer2-4 (the official extract_feat_res), image [3, H, W]."""
    x = backbone.maxpool(backbone.relu(backbone.bn1(backbone.conv1(image[None]))))
    feats = []
    for stage in (backbone.layer1, backbone.layer2, backbone.layer3, backbone.layer4):
        for block in stage:
            y = block.relu(block.bn1(block.conv1(x)))
            y = block.relu(block.bn2(block.conv2(y)))
            y = block.bn3(block.conv3(y))
            y = y + (x if block.downsample is None else block.downsample(x))
            feats.append(y[0])
            x = torch.relu(y)
    return feats[3:]


def ref_corr(q, s):
    """relu(x·y / ((|x| + 1e-5)(|y| + 1e-5))) for every query position x of q [C, hq, wq], support y of s."""
    c, hq, wq = q.shape
    sv = s.flatten(1)
    s_norm = sv.pow(2).sum(0).sqrt()
    rows = []
    for i in range(hq * wq):
        x = q.flatten(1)[:, i]
        rows.append((x @ sv) / ((x.pow(2).sum().sqrt() + 1e-5) * (s_norm + 1e-5)))
    return torch.stack(rows).clamp_min(0).view(hq, wq, *s.shape[1:])


def ref_conv4d(conv, x):
    """Center-pivot 4D convolution summed over the kernel offsets, with explicit zero padding."""
    w1, w2 = conv.conv1.weight, conv.conv2.weight
    k, s = w1.shape[-1], conv.support_stride
    p = k // 2
    b, c, ha, wa, hb, wb = x.shape
    oh, ow = math.ceil(hb / s), math.ceil(wb / s)
    xp = F.pad(x, (p,) * 8)
    out = (conv.conv1.bias + conv.conv2.bias).view(1, -1, 1, 1, 1, 1).expand(b, -1, ha, wa, oh, ow).clone()
    for di in range(k):
        for dj in range(k):
            query_plane = xp[:, :, di:di + ha, dj:dj + wa, p:p + hb:s, p:p + wb:s]
            support_plane = xp[:, :, p:p + ha, p:p + wa, di:di + s * (oh - 1) + 1:s, dj:dj + s * (ow - 1) + 1:s]
            out += torch.einsum("oc,bcijuv->boijuv", w1[:, :, di, dj], query_plane)
            out += torch.einsum("oc,bcijuv->boijuv", w2[:, :, di, dj], support_plane)
    return out


def ref_block(seq, x):
    for layer in seq:
        if isinstance(layer, CenterPivotConv4d):
            x = ref_conv4d(layer, x)
        elif isinstance(layer, nn.GroupNorm):
            x = F.group_norm(x, layer.num_groups, layer.weight, layer.bias, layer.eps)
        else:
            x = x.clamp_min(0)
    return x


def ref_resize_query(x, size):
    out = x.new_empty(*x.shape[:2], *size, *x.shape[4:])
    for k in range(x.shape[4]):
        for l in range(x.shape[5]):
            out[..., k, l] = F.interpolate(x[..., k, l], size=tuple(size), mode="bilinear", align_corners=True)
    return out


def ref_logits(model, corrs, size, ablate=None):
    """The official learner and output resize for one pair, from its 13 hypercorrelation channels."""
    corrs = [torch.zeros_like(c) if i == ablate else c for i, c in enumerate(corrs)]
    c2, c3, c4 = (torch.stack(corrs[a:b])[None] for a, b in STAGES)
    lr = model.hpn_learner
    s4, s3, s2 = ref_block(lr.encoder_layer4, c4), ref_block(lr.encoder_layer3, c3), ref_block(lr.encoder_layer2, c2)
    mix = ref_block(lr.encoder_layer4to3, ref_resize_query(s4, s3.shape[2:4]) + s3)
    mix = ref_block(lr.encoder_layer3to2, ref_resize_query(mix, s2.shape[2:4]) + s2)
    dec = lr.decoder1(mix.mean(dim=(-2, -1)))
    dec = F.interpolate(dec, size=(2 * dec.shape[-1],) * 2, mode="bilinear", align_corners=True)
    return F.interpolate(lr.decoder2(dec), size=size, mode="bilinear", align_corners=True)[0]


def resized_mask_batch(masks, hw):
    return F.interpolate(masks[:, None].double(), size=tuple(hw), mode="bilinear", align_corners=True)


def resized_mask(mask, hw, dtype):
    return F.interpolate(mask[None, None].to(dtype), size=tuple(hw), mode="bilinear", align_corners=True)[0]


def ref_hsnet_pair(model, query_feats, support, mask):
    """Masked support features and hypercorrelation channels of one pair, as the official HSNet."""
    sf = ref_features(model.backbone, support)
    masked = [s * resized_mask(mask, s.shape[-2:], s.dtype) for s in sf]
    return masked, [ref_corr(q, s) for q, s in zip(query_feats, masked)]


def official_grid_starts(size):
    side, starts, t = size // 4, [], 0
    while t <= size - side:
        starts.append(t)
        t += side
    if starts[-1] + side < size:
        starts.append(size - side)
    return starts


def unit(x):
    return x / ((x * x).sum(1, keepdim=True).sqrt() + 1e-6)


def ref_dmtnet_transform(q, s, m, r_s, r_q):
    """The official DMTNet feature transformation of one pair at one level, with the full C×C matrices.

    q [C, hq, wq], s [C, hs, ws], m [1, hs, ws], r_s / r_q [2, C] the raw reference weights.
    Returns the transformed query, fg-masked and bg-masked support, and the query pseudo mask.
    """
    fg, bg = s * m, s * (1 - m)
    hs, ws = s.shape[-2:]
    jh, jw = hs // 4, ws // 4
    score = torch.zeros(2, *q.shape[-2:], dtype=q.dtype)
    for r in official_grid_starts(hs):
        for c in official_grid_starts(ws):
            cell = (slice(None), slice(r, r + jh), slice(c, c + jw))
            pf = fg[cell].sum((1, 2)) / (m[cell].sum() + 1e-6)
            pb = bg[cell].sum((1, 2)) / ((1 - m)[cell].sum() + 1e-6)
            score[1] += 10 * F.cosine_similarity(q, pf[:, None, None], dim=0)
            score[0] += 10 * F.cosine_similarity(q, pb[:, None, None], dim=0)
    pseudo = score.argmax(0).to(q.dtype)
    proto_f, proto_b = fg.sum((1, 2)) / (m.sum() + 1e-6), bg.sum((1, 2)) / ((1 - m).sum() + 1e-6)
    qproto_f = (q * pseudo).sum((1, 2)) / (pseudo.sum() + 1e-6)
    qproto_b = (q * (1 - pseudo)).sum((1, 2)) / ((1 - pseudo).sum() + 1e-6)
    basis, qbasis = unit(torch.stack([proto_b, proto_f])), unit(torch.stack([qproto_f, qproto_b]))
    p = (torch.pinverse(basis) @ unit(r_s)).T
    p_q = 0.5 * (torch.pinverse(qbasis) @ unit(r_q)).T + 0.5 * p
    return ((p_q @ q.flatten(1)).view(q.shape), (p @ fg.flatten(1)).view(s.shape),
            (p @ bg.flatten(1)).view(s.shape), pseudo)


def ref_dmtnet_pair(model, qf, support, mask):
    """fg and bg hypercorrelation channels of one pair, as the official DMTNet."""
    fg_corrs, bg_corrs = [], []
    for level, (q, s) in enumerate(zip(qf, ref_features(model.backbone, support))):
        stage = next(i for i, (a, b) in enumerate(STAGES) if a <= level < b)
        q_t, fg_t, bg_t, _ = ref_dmtnet_transform(q, s, resized_mask(mask, s.shape[-2:], s.dtype),
                                                  getattr(model, f"reference_layer{stage + 1}").weight,
                                                  getattr(model, f"reference_layer{stage + 4}").weight)
        fg_corrs.append(ref_corr(q_t, fg_t))
        bg_corrs.append(ref_corr(q_t, bg_t))
    return fg_corrs, bg_corrs


def official_vote_mask(shot_logits):
    """The official predict_mask_nshot: votes of the per-shot argmax, >= half the largest vote."""
    b, n = shot_logits.shape[:2]
    votes = sum(shot_logits[:, i].argmax(1) for i in range(n))
    if n == 1:
        return votes.bool()
    top = torch.stack([votes.view(b, -1).max(1)[0], torch.ones(b, dtype=torch.long)]).max(0)[0].view(b, 1, 1)
    return votes.float() / top >= 0.5


# ---- tests ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("k,stride,shape", [(3, 1, (2, 3, 4, 5, 6, 3)), (3, 2, (1, 2, 3, 3, 7, 5)),
                                            (5, 4, (2, 3, 5, 4, 9, 8)), (5, 2, (1, 1, 2, 2, 4, 4))])
def test_center_pivot_conv_is_the_literal_4d_convolution(k, stride, shape, gen):
    conv = CenterPivotConv4d(shape[1], 4, k, stride).double()
    for p in conv.parameters():
        p.data.copy_(torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(shape, generator=gen, dtype=torch.float64)
    y = conv(x)
    assert y.shape == (shape[0], 4, *shape[2:4], math.ceil(shape[4] / stride), math.ceil(shape[5] / stride))
    torch.testing.assert_close(y, ref_conv4d(conv, x), rtol=1e-12, atol=1e-12)


def test_grid_cells_follow_the_official_grid():
    for size in range(4, 64):
        starts, side = grid_starts(size)
        assert side == size // 4 and starts == official_grid_starts(size)


def test_doubly_matching_transform_with_mixed_pseudo_masks(gen):
    """Features built so that the query pseudo mask has both classes (a random-weight ResNet on noise images
    gives all-background pseudo masks, which leave the query foreground prototype at zero)."""
    k, c, (hq, wq), (hs, ws) = 3, 6, (7, 10), (9, 11)
    d = torch.randn(c, generator=gen, dtype=torch.float64)
    d = (3 * d / d.norm()).view(1, c, 1, 1)
    m = resized_mask_batch(random_masks(k, 1, (36, 44), generator=gen)[:, 0], (hs, ws))
    s = torch.randn(k, c, hs, ws, generator=gen, dtype=torch.float64) + d * (m > 0.5)
    region = random_region(k, (hq, wq), generator=gen)[:, None]
    q = torch.randn(k, c, hq, wq, generator=gen, dtype=torch.float64) + d * region
    r_s, r_q = (torch.randn(2, c, generator=gen, dtype=torch.float64) for _ in range(2))
    got = doubly_matching_transform(q, s, m, unit_rows(r_s.expand(k, 2, c)), unit_rows(r_q.expand(k, 2, c)))
    for i in range(k):
        *want, pseudo = ref_dmtnet_transform(q[i], s[i], m[i], r_s, r_q)
        assert 0 < float(pseudo.mean()) < 1
        for g, w in zip(got, want):
            torch.testing.assert_close(g[i], w, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("cls", [HSNet, DMTNet])
def test_official_key_lists_load_strict(cls, tmp_path, gen):
    keys = cls.official_keys()
    assert all(k.startswith("module.") for k in keys)
    state = {k: (torch.randint(0, 1000, shape, generator=gen) if dtype == torch.int64
                 else torch.randn(shape, generator=gen)).to(dtype) for k, (shape, dtype) in keys.items()}
    model = cls()
    load_official(model, state)                                          # with the "module." prefix, as saved
    own = model.state_dict()
    assert len(own) == len(state) and all(torch.equal(own[k[len("module."):]], v) for k, v in state.items())
    plain = strip_parallel_prefix(state)
    load_official(model, plain)                                          # without it
    torch.save(state, tmp_path / "official.pt")
    fresh = cls.from_checkpoint(tmp_path / "official.pt")                # from a file, in eval mode
    assert not fresh.training and not any(t.is_meta for t in fresh.state_dict().values())
    assert torch.equal(fresh.hpn_learner.decoder2[2].weight, plain["hpn_learner.decoder2.2.weight"])
    some = next(k for k in state if "encoder_layer3" in k)
    with pytest.raises(RuntimeError, match="Missing key"):
        load_official(model, {k: v for k, v in state.items() if k != some})
    with pytest.raises(RuntimeError, match="Unexpected key"):
        load_official(model, {**state, "module.hpn_learner.extra.weight": torch.zeros(1)})
    with pytest.raises(RuntimeError, match="size mismatch"):
        load_official(model, {**state, some: torch.zeros(3)})
    with pytest.raises(ValueError, match="only some keys"):
        load_official(model, {**plain, some: state[some]})
    with pytest.raises(TypeError, match="state dict"):
        load_official(model, [1, 2])


def test_key_lists_agree_with_each_other():
    hs, dmt = read_key_list("hsnet_resnet50.txt"), read_key_list("dmtnet_resnet50.txt")
    extra = {k: v for k, v in dmt.items() if k not in hs}
    assert all(dmt[k] == v for k, v in hs.items())
    assert sorted(extra) == sorted(f"module.reference_layer{i}.{p}" for i in range(1, 7) for p in ("weight", "bias"))
    learner = sum(math.prod(shape) for k, (shape, _) in hs.items() if ".hpn_learner." in k)
    assert learner == 2_573_794  # the HSNet paper's "2.6M learnable parameters" (ResNet-50)


def test_hsnet_matches_the_official_computation(hsnet64, gen):
    b, n = 2, 2
    ep = random_episode(gen, b, n, HS_SIZE, torch.float64)
    ablations = (None, 0, 7, 12)
    with torch.no_grad():
        state = hsnet64.encode(ep)
        shot_logits = {a: hsnet64.shot_logits(state, a) for a in ablations}
        levels = hsnet64.levels(state)
        for i in range(b):
            qf = ref_features(hsnet64.backbone, ep.query[i])
            for j in range(n):
                sf, corrs = ref_hsnet_pair(hsnet64, qf, ep.support_images[i, j], ep.support_masks[i, j])
                for l, (want, q, s) in enumerate(zip(corrs, qf, sf)):
                    got = state.corrs[l][i * n + j]
                    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-13)
                    hs, ws = s.shape[-2:]
                    from_level = levels[l].materialize().scores[i, :, j * hs * ws:(j + 1) * hs * ws]
                    torch.testing.assert_close(from_level, want.flatten(0, 1).flatten(1), rtol=1e-12, atol=1e-13)
                    # fss_attr's cosine op divides by max(|x|, 1e-8), the official code by |x| + 1e-5
                    op = ops.correlation(q[None], s[None, None], "cosine", relu=True)[0, :, :, 0]
                    qn, sn = q.norm(dim=0), s.norm(dim=0)
                    bound = (OFFICIAL_COSINE_EPS / (qn + OFFICIAL_COSINE_EPS))[:, :, None, None] + \
                        OFFICIAL_COSINE_EPS / (sn + OFFICIAL_COSINE_EPS) + 1e-12
                    assert ((got - op).abs() <= bound).all()
                    assert torch.equal(got, ops.correlation(normalize_official(q, 0)[None],
                                                            normalize_official(s, 0)[None, None], "dot",
                                                            relu=True)[0, :, :, 0])
                for a in ablations:
                    torch.testing.assert_close(shot_logits[a][i, j], ref_logits(hsnet64, corrs, HS_SIZE, a),
                                               rtol=1e-9, atol=1e-9)
        assert all(isinstance(lv, LevelFeatures) and lv.relu and lv.query_hw == tuple(c.shape[1:3])
                   for lv, c in zip(levels, state.corrs))
        assert torch.equal(hsnet64.decode(state), shot_logits[None].mean(1))
        assert torch.equal(hsnet64(ep), hsnet64.decode(state))


def test_dmtnet_matches_the_official_computation(dmtnet64, gen):
    b, n = 1, 2
    ep = random_episode(gen, b, n, DMT_SIZE, torch.float64)
    ablations = (None, 5)
    with torch.no_grad():
        state = dmtnet64.encode(ep)
        shot_logits = {a: dmtnet64.shot_logits(state, a) for a in ablations}
        levels = dmtnet64.levels(state)
        qf = ref_features(dmtnet64.backbone, ep.query[0])
        for j in range(n):
            fg, bg = ref_dmtnet_pair(dmtnet64, qf, ep.support_images[0, j], ep.support_masks[0, j])
            for l in range(13):
                torch.testing.assert_close(state.corrs[l][j], fg[l], rtol=1e-9, atol=1e-10)
                torch.testing.assert_close(state.bg_corrs[l][j], bg[l], rtol=1e-9, atol=1e-10)
                hs, ws = fg[l].shape[-2:]
                got = levels[l].scores[0, :, j * hs * ws:(j + 1) * hs * ws]
                torch.testing.assert_close(got, (fg[l] + bg[l]).flatten(0, 1).flatten(1), rtol=1e-9, atol=1e-10)
            for a in ablations:
                torch.testing.assert_close(shot_logits[a][0, j], ref_logits(dmtnet64, fg, DMT_SIZE, a),
                                           rtol=1e-8, atol=1e-8)
        assert all(isinstance(lv, LevelScores) and lv.n_shots == n for lv in levels)
        assert torch.equal(dmtnet64(ep), dmtnet64.decode(state))


@pytest.mark.parametrize("n", [1, 2, 3, 5])
def test_vote_fusion_reproduces_the_official_n_shot_rule(n, gen):
    shot_logits = torch.randn(3, n, 2, 9, 11, generator=gen)
    shot_logits[0, :, 1, 0, 0] = shot_logits[0, :, 0, 0, 0]            # ties: argmax picks background
    if n == 2:                                                          # a vote share of exactly 0.5
        shot_logits[1, 0, 1], shot_logits[1, 0, 0] = 1.0, 0.0
        shot_logits[1, 1, 1, :4], shot_logits[1, 1, 0, :4] = 0.0, 1.0
    fused = fuse_shots(shot_logits, "vote")
    assert fused.shape == (3, 2, 9, 11)
    assert torch.equal(fused.argmax(1) == 1, official_vote_mask(shot_logits))
    torch.testing.assert_close(fuse_shots(shot_logits, "mean"), shot_logits.mean(1))


@pytest.mark.parametrize("name,size,b,n", [("hsnet64", HS_SIZE, 2, 3), ("dmtnet64", DMT_SIZE, 1, 2)])
def test_explain_end_to_end(name, size, b, n, request, gen):
    model = copy.deepcopy(request.getfixturevalue(name)).float()
    ep = random_episode(gen, b, n, size)
    ex = AffinityExplainer("masked", blur_kernel=9)
    out = ex.explain(model, ep, region="gt")
    assert out.maps.shape == (b, n, *size) and out.maps.dtype == torch.float32
    assert float(out.maps.min()) >= 0 and float(out.maps.max()) <= 1 and float(out.maps.max()) == 1
    assert out.level_weights.shape == (b, 13)
    torch.testing.assert_close(out.level_weights.sum(1), torch.ones(b, dtype=torch.float64))
    with torch.no_grad():
        assert torch.equal(out.logits, model(ep))
        state = model.encode(ep)
        want = ex.explain_levels(model.levels(state), out.region, ep.support_masks, out.level_weights)
    assert torch.equal(out.maps, want)
    assert torch.equal(out.prediction, out.logits.argmax(1) == 1) and torch.equal(out.region, ep.query_mask)


@pytest.mark.parametrize("name,size,n", [("hsnet64", (32, 48), 2), ("dmtnet64", (97, 100), 1)])
def test_logits_are_differentiable_in_the_images(name, size, n, request, gen):
    model = request.getfixturevalue(name)                                 # shot_fusion="mean"
    ep = random_episode(gen, 1, n, size, torch.float64)
    support = ep.support_images.clone().requires_grad_(True)
    query = ep.query.clone().requires_grad_(True)
    logits = model(Episode(query, support, ep.support_masks))
    logits[:, 1].mean().backward()
    for g in (support.grad, query.grad):
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0


def test_bad_input(hsnet64, dmtnet64, gen):
    ep = random_episode(gen, 1, 1, (32, 32), torch.float64)
    with pytest.raises(TypeError, match="Episode"):
        hsnet64.encode(ep.query)
    with pytest.raises(TypeError, match="float32.*float64|float64.*float32"):
        hsnet64.encode(random_episode(gen, 1, 1, (32, 32)))
    state = hsnet64.encode(ep)
    for bad in (13, -1, True, 1.0):
        with pytest.raises(ValueError, match="ablate_level"):
            hsnet64.decode(state, ablate_level=bad)
    with pytest.raises(ValueError, match="at least 97 px"):
        dmtnet64.encode(random_episode(gen, 1, 1, (96, 128), torch.float64))
    with pytest.raises(ValueError, match="shot_fusion"):
        HSNet(shot_fusion="median")      # "max" is a rule since issue 16 (the paper's DMTNet fusion)
    with pytest.raises(TypeError, match="torchvision ResNet"):
        HSNet(backbone=nn.Conv2d(3, 3, 1))
    with pytest.raises(ValueError, match=r"\[B, C, ha, wa, hb, wb\]"):
        CenterPivotConv4d(2, 2, 3)(torch.zeros(1, 2, 3, 3, 3))
    with pytest.raises(ValueError, match="odd"):
        CenterPivotConv4d(2, 2, 4)
    hsnet64.train()
    assert hsnet64.hpn_learner.training and not hsnet64.backbone.training
    hsnet64.eval()


def test_other_resnet_depths_give_one_level_per_block(gen):
    model = HSNet(backbone=torchvision.models.resnet18(), shot_fusion="mean").eval()   # (2, 2, 2) blocks
    ep = random_episode(gen, 1, 2, (32, 40))
    with torch.no_grad():
        state = model.encode(ep)
        assert model.n_levels == 6 and len(model.levels(state)) == 6
        assert model.decode(state, ablate_level=5).shape == (1, 2, 32, 40)
