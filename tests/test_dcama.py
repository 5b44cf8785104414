"""DCAMA adapter: official checkpoint keys, the levels against the model's own scores, the forward against a
literal per-head version of the official computation, N-shot semantics, AffEx end to end, bad input.

The key lists in fss_attr/models/keys/ were derived from the official code (github.com/pawn-sxy/DCAMA): they are
the reference here, not the model's own state_dict. Numerical tests run float64 on reduced inputs: a tiny Swin
(4 stages, window 2: stages 0–2 shifted, stage 3 in one window, as Swin-B at 384 px) and the full ResNet-50 at
64 px; the full-size Swin-B is only built on the meta device or loaded with assigned tensors.
"""
import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from fss_attr import AffinityExplainer, LevelFeatures
from fss_attr.data.episode import Episode
from fss_attr.models import DCAMA, MatchingAdapter
from fss_attr.models import dcama_blocks
from fss_attr.models.dcama import official_keys
from fss_attr.backbones.swin import SwinTransformer
from fss_attr.testing import random_region

F64 = torch.float64
PREFIX = "module."


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_swin() -> SwinTransformer:
    return SwinTransformer(img_size=64, patch_size=4, embed_dim=16, depths=(2, 2, 4, 2), num_heads=(1, 2, 4, 8),
                           window_size=2)


@pytest.fixture(scope="module")
def swin_model():
    torch.manual_seed(0)
    return DCAMA(tiny_swin()).to(F64)


@pytest.fixture(scope="module")
def resnet_model():
    torch.manual_seed(1)
    return DCAMA("resnet50").to(F64)


def random_episode(b, n, size, gen, dtype=F64):
    masks = torch.zeros(b, n, size, size, dtype=torch.bool)
    for i in range(b):
        for j in range(n):
            y0, x0, hh, ww = (int(v) for v in torch.randint(0, size // 2, (4,), generator=gen))
            masks[i, j, y0:y0 + hh + 4, x0:x0 + ww + 4] = True
    return Episode(torch.randn(b, 3, size, size, generator=gen, dtype=F64).to(dtype),
                   torch.randn(b, n, 3, size, size, generator=gen, dtype=F64).to(dtype), masks)


# ---- checkpoint keys --------------------------------------------------------------------------------------

def meta_state_dict(backbone, prefix=True):
    return {(k if prefix else k[len(PREFIX):]): torch.empty(shape, dtype=dtype, device="meta")
            for k, (shape, dtype) in official_keys(backbone).items()}


def test_key_lists_hold_the_official_facts():
    """Facts of the official module tree the lists must show, checked against sources other than fss_attr."""
    swin, resnet = official_keys("swin_b"), official_keys("resnet50")
    assert (len(swin), len(resnet)) == (451, 407)
    assert all(k.startswith(PREFIX) for k in list(swin) + list(resnet))
    # the ResNet-50 backbone is torchvision's resnet50, fc included
    tv = {f"{PREFIX}feature_extractor.{k}": tuple(v.shape)
          for k, v in torchvision.models.resnet50().state_dict().items()}
    assert {k: s for k, (s, _) in resnet.items() if k.startswith(PREFIX + "feature_extractor.")} == tv
    shapes = {k: s for k, (s, _) in swin.items()}
    # Swin-B 384 / window 12: 24 blocks; shifted blocks (odd ones of stages 0-2) carry a window mask; stage 3 fits
    # in one 12×12 window
    masks = {k: s for k, s in shapes.items() if k.endswith("attn_mask")}
    assert len(masks) == 1 + 1 + 9 and (f"{PREFIX}feature_extractor.layers.3.blocks.1.attn_mask" not in shapes)
    assert shapes[f"{PREFIX}feature_extractor.layers.0.blocks.1.attn_mask"] == (64, 144, 144)
    assert shapes[f"{PREFIX}feature_extractor.layers.2.blocks.0.attn.relative_position_bias_table"] == (529, 16)
    for backbone, keys, chans, mix_in in (("swin", shapes, (256, 512, 1024), 128 + 2 * 256 + 2 * 128),
                                          ("resnet", {k: s for k, (s, _) in resnet.items()}, (512, 1024, 2048),
                                           128 + 2 * 512 + 2 * 256)):
        for i, c in enumerate(chans):   # one attention block (8 heads) and one positional encoding per stage
            assert keys[f"{PREFIX}model.DCAMA_blocks.{i}.linears.1.weight"] == (c, c)
            assert keys[f"{PREFIX}model.pe.{i}.pe"] == (1, 10000, c)
        assert keys[f"{PREFIX}model.mixer1.0.weight"] == (128, mix_in, 3, 3)


@pytest.mark.parametrize("backbone", ["swin_b", "resnet50"])
@pytest.mark.parametrize("prefixed", [True, False])
def test_full_size_official_keys_load_strict(backbone, prefixed):
    with torch.device("meta"):
        model = DCAMA(backbone)
    model.load_checkpoint(meta_state_dict(backbone, prefixed))                 # strict=True
    # the model's own keys come out in the official order (the official test.py maps keys by position)
    assert list(model.state_dict()) == [k[len(PREFIX):] for k in official_keys(backbone)]


@pytest.mark.parametrize("backbone", ["swin_b", "resnet50"])
def test_full_size_checkpoint_values_are_taken(backbone):
    """A state dict shaped like the official checkpoint, random values: every tensor ends up in the model."""
    gen = torch.Generator().manual_seed(0)
    sd = {k: (torch.randint(0, 9, shape, generator=gen) if dtype == torch.int64 else
              torch.empty(shape).uniform_(-1, 1, generator=gen))
          for k, (shape, dtype) in official_keys(backbone).items()}
    if backbone == "swin_b":
        model = DCAMA.from_checkpoint(sd, backbone)       # built on meta, the tensors assigned
    else:
        model = DCAMA(backbone).load_checkpoint(sd)       # copied into a materialised model
    assert not model.training
    own = model.state_dict()
    assert all(torch.equal(own[k[len(PREFIX):]], v) for k, v in sd.items())


@pytest.mark.parametrize("change", ["missing", "unexpected", "renamed", "shape", "half_prefixed"])
def test_wrong_checkpoint_fails(change):
    sd = meta_state_dict("resnet50")
    key = f"{PREFIX}model.DCAMA_blocks.1.linears.0.weight"
    if change == "missing":
        del sd[key]
    elif change == "unexpected":
        sd[f"{PREFIX}model.extra.weight"] = torch.empty(1, device="meta")
    elif change == "renamed":
        sd[key.replace("linears.0", "linears.2")] = sd.pop(key)
    elif change == "shape":
        sd[key] = torch.empty(1024, 512, device="meta")
    else:
        sd[key[len(PREFIX):]] = sd.pop(key)
    with torch.device("meta"):
        model = DCAMA("resnet50")
    error, match = ((ValueError, "only some keys") if change == "half_prefixed" else
                    (RuntimeError, "Missing|Unexpected|size"))
    with pytest.raises(error, match=match):
        model.load_checkpoint(sd)


def test_checkpoint_from_file(tmp_path):
    torch.manual_seed(3)
    src = DCAMA(tiny_swin())
    path = tmp_path / "ckpt.pt"
    torch.save({PREFIX + k: v for k, v in src.state_dict().items()}, path)
    model = DCAMA(tiny_swin()).load_checkpoint(str(path))
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), src.state_dict().values()))
    with pytest.raises(TypeError, match="checkpoint must be a state dict"):
        model.load_checkpoint(42)


# ---- the literal reference: DCAMA as the official code computes it, head by head, shot by shot ------------

def reference_forward(model, episode, ablate_levels=(None,)):
    """({ablate_level: logits [B, 2, H, W]}, per-level head-mean pre-softmax scores [B, Q, M]), written out step
    by step: one shot at a time through the backbone, per-head attention, the decoder's stacking and cascade."""
    head = model.model
    n4, n8, n16, n32 = head.stage_blocks
    b, n = episode.batch_size, episode.n_shots
    fq = model.block_features(episode.query)
    fs = [model.block_features(episode.support_images[:, k]) for k in range(n)]
    coarse, scores = [], []
    for idx in range(n4, n4 + n8 + n16 + n32):
        stage = 0 if idx < n4 + n8 else 1 if idx < n4 + n8 + n16 else 2
        att, pe = head.DCAMA_blocks[stage], head.pe[stage].pe[0]
        w0, b0 = att.linears[0].weight, att.linears[0].bias
        w1, b1 = att.linears[1].weight, att.linears[1].bias
        _, c, h, w = fq[idx].shape
        q = (fq[idx].reshape(b, c, h * w).transpose(1, 2) + pe[:h * w]) @ w0.T + b0
        k = torch.cat([(fs[s][idx].reshape(b, c, h * w).transpose(1, 2) + pe[:h * w]) @ w1.T + b1
                       for s in range(n)], dim=1)                                      # [B, N·hw, C]
        m = torch.cat([F.interpolate(episode.support_masks[:, s, None].to(q.dtype), (h, w), mode="bilinear",
                                     align_corners=True).reshape(b, h * w) for s in range(n)], dim=1)
        d = c // 8
        per_head = [q[..., i * d:(i + 1) * d] @ k[..., i * d:(i + 1) * d].transpose(1, 2) / math.sqrt(d)
                    for i in range(8)]
        scores.append(sum(per_head) / 8)
        cm = sum(torch.softmax(s_h, -1) @ m[..., None] for s_h in per_head) / 8        # [B, Q, 1]
        coarse.append(cm.reshape(b, 1, h, w))

    def up(x, size):
        return F.interpolate(x, size, mode="bilinear", align_corners=True)

    def decoder(cms):
        def stacked(lo, hi):
            return torch.stack(cms[lo:hi]).transpose(0, 1).reshape(b, hi - lo, *cms[hi - 1].shape[-2:])

        c32 = head.conv1(stacked(n8 + n16, n8 + n16 + n32))
        c16 = head.conv2(stacked(n8, n8 + n16))
        c8 = head.conv3(stacked(0, n8))
        mix = head.conv5(up(head.conv4(up(c32, c16.shape[-2:]) + c16), c8.shape[-2:]) + c8)
        for i in (n4 + n8 - 1, n4 - 1):
            if i == n4 - 1:
                mix = up(mix, (2 * mix.shape[-1],) * 2)
            mix = torch.cat((mix, fq[i], torch.stack([fs[s][i] for s in range(n)]).max(dim=0).values), 1)
        out = head.mixer1(mix)
        out = head.mixer2(up(out, (2 * out.shape[-1],) * 2))
        out = head.mixer3(up(out, (2 * out.shape[-1],) * 2))
        return up(out, episode.image_size)

    logits = {}
    for level in ablate_levels:
        cms = list(coarse)
        if level is not None:
            cms[level] = torch.zeros_like(cms[level])
        logits[level] = decoder(cms)
    return logits, scores


def spy_on_scores(model):
    """Record, per attention call, the per-head scores the attention actually softmaxes (all query chunks)."""
    calls = []
    for block in model.model.DCAMA_blocks:
        forward, head_scores = block.forward, block.head_scores

        def spy_forward(*args, _f=forward, **kw):
            calls.append([])
            return _f(*args, **kw)

        def spy_scores(q, k, _s=head_scores):
            s = _s(q, k)
            calls[-1].append(s)
            return s

        block.forward, block.head_scores = spy_forward, spy_scores
    return calls


def unspy(model):
    for block in model.model.DCAMA_blocks:
        del block.forward, block.head_scores


CASES = [("swin", 1, 1, 64), ("swin", 2, 3, 64), ("resnet", 1, 2, 64), ("resnet", 2, 1, 64)]


@pytest.mark.parametrize("which,b,n,size", CASES)
def test_levels_are_the_models_own_scores_and_forward_is_official(which, b, n, size, swin_model, resnet_model,
                                                                      gen, monkeypatch):
    """Levels = the head mean of the scores the attention softmaxes = the literal reference's; decode (plain
    and with a level ablated) = the literal reference's logits."""
    model = swin_model if which == "swin" else resnet_model
    if which == "swin" and n > 1:   # split the attention into query-row chunks (the memory bound at full size)
        monkeypatch.setattr(dcama_blocks, "SCORE_CHUNK_ELEMENTS", 1000)
    ep = random_episode(b, n, size, gen)
    last = model.n_levels - 1
    calls = spy_on_scores(model)
    try:
        with torch.no_grad():
            state = model.encode(ep)
            logits = model.decode(state)
    finally:
        unspy(model)
    levels = model.levels(state)
    assert len(levels) == len(calls) == model.n_levels == (8 if which == "swin" else 13)
    with torch.no_grad():
        ref_logits, ref_scores = reference_forward(model, ep, (None, 0, last))
        ablated = {level: model.decode(state, ablate_level=level) for level in (0, last)}
    for lv, call, ref in zip(levels, calls, ref_scores):
        assert isinstance(lv, LevelFeatures) and lv.similarity == "dot" and lv.n_shots == n
        assert lv.support_hw == lv.query_hw and lv.query.shape[1] == lv.query_hw[0] * lv.query_hw[1]
        if which == "swin" and n > 1 and lv.query_hw[0] > 4:
            assert len(call) > 1                                      # chunked
        model_scores = torch.cat(call, dim=2).mean(1)                 # [B, Q, M], head mean of what is softmaxed
        mine = lv.materialize().scores
        torch.testing.assert_close(mine, model_scores, rtol=1e-10, atol=1e-12)
        torch.testing.assert_close(mine, ref, rtol=1e-10, atol=1e-12)
    assert logits.shape == (b, 2, size, size)
    torch.testing.assert_close(logits, ref_logits[None], rtol=1e-9, atol=1e-12)
    for level in (0, last):
        torch.testing.assert_close(ablated[level], ref_logits[level], rtol=1e-9, atol=1e-12)
        # a level whose coarse mask is zero anyway (no mask at its grid points) cannot change the logits
        assert torch.equal(ablated[level], logits) == (not bool(state.levels[level].coarse.any()))
    with torch.no_grad():
        torch.testing.assert_close(model.decode(state), logits, rtol=0, atol=0)   # the state is not modified


def test_n_shot_semantics(swin_model, gen):
    """Duplicated shots give the 1-shot prediction; permuting shots permutes the support axis only."""
    model = swin_model
    one = random_episode(2, 1, 64, gen)
    three = Episode(one.query, one.support_images.expand(-1, 3, -1, -1, -1), one.support_masks.expand(-1, 3, -1, -1))
    with torch.no_grad():
        torch.testing.assert_close(model(three), model(one), rtol=1e-9, atol=1e-12)
        ep = random_episode(1, 3, 64, gen)
        perm = [2, 0, 1]
        shuffled = Episode(ep.query, ep.support_images[:, perm], ep.support_masks[:, perm])
        sa, sb = model.encode(ep), model.encode(shuffled)
        torch.testing.assert_close(model.decode(sb), model.decode(sa), rtol=1e-9, atol=1e-12)
        la, lb = model.levels(sa)[0], model.levels(sb)[0]
        hw = la.support_hw[0] * la.support_hw[1]
        torch.testing.assert_close(lb.support.view(1, 3, hw, -1), la.support.view(1, 3, hw, -1)[:, perm])


# ---- the Swin backbone against a literal shifted-window attention -----------------------------------------

def literal_block(block, x):
    """One Swin block computed over all token pairs: attention only inside a window of the rolled grid, the
    relative-position bias from in-window offsets, and −100 between tokens of which one wrapped around."""
    (h, w), ws, s = block.resolution, block.window_size, block.shift
    k, _, c = x.shape
    att = block.attn
    heads, d = att.num_heads, c // att.num_heads
    y = torch.roll(block.norm1(x).view(k, h, w, c), (-s, -s), (1, 2)).reshape(k, h * w, c)
    q, kk, v = (y @ att.qkv.weight.T + att.qkv.bias).view(k, h * w, 3, heads, d).permute(2, 0, 3, 1, 4)
    r, col = torch.arange(h).repeat_interleave(w), torch.arange(w).repeat(h)     # rolled-grid coordinates
    same_window = ((r[:, None] // ws) == (r[None] // ws)) & ((col[:, None] // ws) == (col[None] // ws))
    wrapped_r, wrapped_c = r >= h - s, col >= w - s
    cross = (wrapped_r[:, None] != wrapped_r[None]) | (wrapped_c[:, None] != wrapped_c[None])
    dy = (r % ws)[:, None] - (r % ws)[None]
    dx = (col % ws)[:, None] - (col % ws)[None]
    bias = att.relative_position_bias_table[(dy + ws - 1) * (2 * ws - 1) + (dx + ws - 1)].permute(2, 0, 1)
    scores = q @ kk.transpose(-1, -2) / math.sqrt(d) + bias + torch.where(cross & (s > 0), -100.0, 0.0)
    scores = scores.masked_fill(~same_window, float("-inf"))
    out = (torch.softmax(scores, -1) @ v).transpose(1, 2).reshape(k, h, w, c)
    out = torch.roll(out, (s, s), (1, 2)).reshape(k, h * w, c) @ att.proj.weight.T + att.proj.bias
    x = x + out
    return x + block.mlp(block.norm2(x))


def test_swin_blocks_match_literal_window_attention(gen):
    torch.manual_seed(5)
    swin = SwinTransformer(img_size=64, patch_size=2, embed_dim=8, depths=(2, 2, 2, 2), num_heads=(2, 2, 4, 4),
                           window_size=4).to(F64)
    for stage in swin.layers:   # random biases: the table is otherwise near zero
        for blk in stage.blocks:
            blk.attn.relative_position_bias_table.data.normal_(generator=gen)
    shifts = [(blk.resolution, blk.window_size, blk.shift) for st in swin.layers for blk in st.blocks]
    assert shifts[1] == ((32, 32), 4, 2) and shifts[5] == ((8, 8), 4, 2) and shifts[7] == ((4, 4), 4, 0)
    for stage in swin.layers:
        for blk in stage.blocks:
            hw = blk.resolution[0] * blk.resolution[1]
            x = torch.randn(2, hw, blk.norm1.normalized_shape[0], generator=gen, dtype=F64)
            torch.testing.assert_close(blk(x), literal_block(blk, x), rtol=1e-10, atol=1e-10)


# ---- AffEx end to end ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("variant", ["unmasked", "masked", "signed"])
def test_explain_end_to_end(variant, swin_model, gen):
    model = swin_model
    assert isinstance(model, MatchingAdapter)
    ep = random_episode(1, 2, 64, gen)
    region = random_region(1, (64, 64), generator=gen)
    with torch.no_grad():
        before = model(ep)
    out = AffinityExplainer(variant).explain(model, ep, region=region)
    assert out.maps.shape == (1, 2, 64, 64) and out.maps.dtype == torch.float32
    assert float(out.maps.min()) >= 0 and float(out.maps.max()) <= 1 and float(out.maps.max()) > 0
    assert out.level_weights.shape == (1, model.n_levels)
    assert float(out.level_weights.min()) >= 0
    torch.testing.assert_close(out.level_weights.sum(1), torch.ones(1, dtype=F64))
    torch.testing.assert_close(out.logits, before, rtol=0, atol=0)       # capture changes nothing
    with torch.no_grad():
        torch.testing.assert_close(model(ep), before, rtol=0, atol=0)


def test_float32_forward_and_gradients(gen):
    """The default dtype path, and gradients reach the support images (gradient baselines need them)."""
    torch.manual_seed(2)
    model = DCAMA(tiny_swin())
    ep = random_episode(1, 2, 64, gen, dtype=torch.float32)
    support = ep.support_images.clone().requires_grad_(True)
    logits = model(Episode(ep.query, support, ep.support_masks))
    assert logits.shape == (1, 2, 64, 64) and logits.dtype == torch.float32
    logits[:, 1].mean().backward()
    assert support.grad is not None and float(support.grad.abs().sum()) > 0


# ---- bad input ----------------------------------------------------------------------------------------------

def test_bad_input(swin_model, resnet_model, gen):
    ep = random_episode(1, 1, 64, gen)
    with pytest.raises(ValueError, match="backbone must be one of"):
        DCAMA("swin_t")
    with pytest.raises(TypeError, match="backbone must be"):
        DCAMA(torch.nn.Conv2d(3, 3, 1))
    with pytest.raises(TypeError, match="episode must be"):
        swin_model.encode(ep.query)
    non_square = Episode(ep.query[..., :32], ep.support_images[..., :32], ep.support_masks[..., :32])
    with pytest.raises(ValueError, match="square"):
        swin_model.encode(non_square)
    small = random_episode(1, 1, 32, gen)
    with pytest.raises(ValueError, match="64×64 images, got 32×32"):
        swin_model.encode(small)
    odd = random_episode(1, 1, 80, gen)
    with pytest.raises(ValueError, match="multiple of 32"):
        resnet_model.encode(odd)
    with pytest.raises(TypeError, match="float32 on cpu, DCAMA is torch.float64"):
        swin_model.encode(random_episode(1, 1, 64, gen, dtype=torch.float32))
    state = swin_model.encode(ep)
    for bad in (-1, swin_model.n_levels, 1.0, True):
        with pytest.raises(ValueError, match="ablate_level"):
            swin_model.decode(state, ablate_level=bad)
    with pytest.raises(ValueError, match="backbone must be one of"):
        official_keys("swin_t")
    with pytest.raises(ValueError, match="img_size=50"):
        SwinTransformer(img_size=50, window_size=2)
