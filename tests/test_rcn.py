"""RCN and RAM (fss_attr.fewshot.rcn, fss_attr.fewshot): the batched region comparison and meta-learner
against per-pair/per-region loops (float64), RAM's sums, episodes, loaders, training, checkpoints, the CLI."""
import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fss_attr import AffinityExplainer
from fss_attr.cli import main
from fss_attr.data.classification import ArrayPool, EpisodeSampler, PoolFeatures, materialize
from fss_attr.fewshot.checkpoint import build_model, load_checkpoint, save_checkpoint
from fss_attr.data.classification.controlled import CATALOGUE, SPLITS, controlled_pool, split_classes
from fss_attr.fewshot.evaluate import accuracy_summary, evaluate
from fss_attr.data.classification.folders import cifar_fs, mini_imagenet
from fss_attr.fewshot.ram import (affex_maps, category_regions, cell_box, class_level, matched_region,
                                  region_activation_maps, upsample_maps)
from fss_attr.data.classification.sources import open_pool
from fss_attr.fewshot.train import TrainConfig, train_episodic
from fss_attr.fewshot.classifier import PrototypicalNetwork
from fss_attr.backbones.fewshot import build_backbone
from fss_attr.fewshot.rcn import RegionComparisonNetwork, RegionWeightNet, compare_regions
from tests.conftest import FAST_BACKENDS

# (Qn, S, C, h, w)
SHAPES = [(3, 4, 6, 5, 5), (2, 5, 3, 3, 4), (4, 1, 8, 2, 2)]


pytestmark = pytest.mark.usefixtures("one_thread")


def cos(a, b):
    """Cosine as the correlation op defines it: a zero vector has cosine 0 with everything."""
    return (a @ b) / (a.norm().clamp_min(1e-8) * b.norm().clamp_min(1e-8))


def feats(gen, *shape, relu=False):
    x = torch.randn(*shape, generator=gen, dtype=torch.float64)
    return x.clamp_min(0) if relu else x


@pytest.mark.parametrize("backend", FAST_BACKENDS)
@pytest.mark.parametrize("shape", SHAPES)
def test_batched_region_comparison_equals_region_loop(gen, backend, shape):
    qn, s, c, h, w = shape
    query, support = feats(gen, qn, c, h, w), feats(gen, s, c, h, w, relu=True)
    out = compare_regions(query, support, backend=backend)
    assert out.correlation.shape == (qn, h, w, s, h, w) and out.similarity.shape == (qn, s, h * w)
    for i in range(qn):
        for j in range(s):
            for r in range(h * w):
                sr = support[j].flatten(1)[:, r]
                scores = torch.stack([cos(sr, query[i].flatten(1)[:, p]) for p in range(h * w)])
                assert abs(out.similarity[i, j, r] - scores.max()) < 1e-12
                assert abs(scores[out.match[i, j, r]] - scores.max()) < 1e-12
                assert torch.allclose(out.correlation[i, :, :, j].reshape(h * w, h * w)[:, r], scores, atol=1e-12)


@pytest.mark.parametrize("shape", SHAPES)
def test_region_weights_equal_conv_of_each_concatenated_pair(gen, shape):
    qn, s, c, h, w = shape
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    net = RegionWeightNet(c, hidden=7).double()
    query, support = feats(gen, qn, c, h, w), feats(gen, s, c, h, w)
    weights = net(query, support)
    assert weights.shape == (qn, s, h * w) and bool((weights >= 0).all())
    for i in range(qn):
        for j in range(s):
            pair = torch.cat([support[j], query[i]])[None]                     # support first, then query
            g = net.conv2(torch.relu(net.conv1(pair)))[0, 0]
            assert torch.allclose(weights[i, j], torch.sigmoid(g).flatten(), atol=1e-14, rtol=0)


def rcn64(gen, grid=(5, 5)):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    return RegionComparisonNetwork(grid=grid, hidden=16).double().eval()


@pytest.mark.parametrize("n_way,k,qn", [(5, 1, 4), (3, 4, 2)])
def test_rcn_scores_equal_loop_and_ram_sums_to_scores(gen, n_way, k, qn):
    model = rcn64(gen)
    support, query = feats(gen, n_way, k, 64, 5, 5, relu=True), feats(gen, qn, 64, 5, 5, relu=True)
    out = model.explain_features(support, query)
    ram = region_activation_maps(out)
    for i in range(qn):
        for c in range(n_way):
            pair = []
            for shot in range(k):
                s = torch.stack([max(cos(support[c, shot].flatten(1)[:, r], query[i].flatten(1)[:, p])
                                     for p in range(25)) for r in range(25)])
                w = model.weight_net(query[i:i + 1], support[c, shot:shot + 1])[0, 0]
                pair.append((w * s).sum())
                routed = torch.zeros(25, dtype=torch.float64)
                routed.index_add_(0, out.match[i, c, shot], w * s / k)
                assert torch.allclose(ram.query[i, c, shot].flatten(), routed, atol=1e-14)
                assert torch.allclose(ram.support[i, c, shot].flatten(), w * s / k, atol=1e-14)
            assert abs(out.scores[i, c] - torch.stack(pair).mean()) < 1e-12
    # RAM's region maps (before upsampling) sum to the scores they explain
    assert torch.allclose(ram.support.sum((2, 3, 4)), out.scores, atol=1e-12, rtol=0)
    assert torch.allclose(ram.query.sum((2, 3, 4)), out.scores, atol=1e-12, rtol=0)
    assert torch.allclose(out.pair_scores.mean(-1), out.scores, atol=1e-14)
    assert upsample_maps(ram.support, (84, 84)).shape == (qn, n_way, k, 84, 84)


def test_ram_sums_hold_on_images_and_float32(gen):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    model = RegionComparisonNetwork(grid=(2, 2)).eval()
    support, query = torch.randn(3, 2, 3, 32, 32, generator=gen), torch.randn(4, 3, 32, 32, generator=gen)
    with torch.no_grad():
        out = model.explain_features(*model.episode_features(support, query))
        scores = model(support, query)
    ram = region_activation_maps(out)
    assert torch.allclose(ram.support.sum((2, 3, 4)), scores, rtol=1e-6, atol=1e-6)
    assert torch.allclose(ram.query.sum((2, 3, 4)), scores, rtol=1e-6, atol=1e-6)


def test_protonet_scores_and_losses(gen):
    model = PrototypicalNetwork(grid=(5, 5)).double()
    support, query = feats(gen, 4, 3, 64, 5, 5), feats(gen, 6, 64, 5, 5)
    scores = model.classify_features(support, query)
    for i in range(6):
        for c in range(4):
            assert abs(scores[i, c] + (query[i] - support[c].mean(0)).pow(2).sum()) < 1e-9 * scores.abs().max()
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    assert torch.allclose(model.loss(scores, labels), torch.nn.functional.cross_entropy(scores, labels))
    rcn = rcn64(gen)
    y = torch.rand(6, 4, generator=gen, dtype=torch.float64)
    assert torch.allclose(rcn.loss(y, labels), ((y - torch.eye(4, dtype=torch.float64)[labels]) ** 2).mean())


def test_backbones_give_a_5x5_grid_at_84():
    x = torch.randn(1, 3, 84, 84)
    with torch.no_grad():
        assert build_backbone("conv4")(x).shape == (1, 64, 5, 5)
        assert build_backbone("resnet12")(x).shape == (1, 640, 5, 5)
        assert build_backbone("conv4", grid=(3, 3))(torch.randn(2, 3, 40, 50)).shape == (2, 64, 3, 3)


def colour_pool(n_classes=4, per_class=12, size=24, seed=0):
    """Classes that differ in colour (plus noise), with blob masks: a learnable toy pool."""
    g = torch.Generator().manual_seed(seed)
    colours = torch.rand(n_classes, 3, 1, 1, 1, generator=g)
    images = (colours.transpose(1, 2) + 0.15 * torch.randn(n_classes, per_class, 3, size, size, generator=g))
    masks = torch.rand(n_classes, per_class, size, size, generator=g) > 0.5
    return ArrayPool(images.clamp(0, 1), [f"c{i}" for i in range(n_classes)], masks)


def test_episode_sampler_is_deterministic_and_well_formed():
    pool = colour_pool(n_classes=6, per_class=9)
    a, b = EpisodeSampler(pool, 4, 2, 3, seed=7), EpisodeSampler(pool, 4, 2, 3, seed=7)
    later = [b.spec(i) for i in (5, 3, 0)]
    assert [a.spec(i) for i in (5, 3, 0)] == later                       # order of sampling does not matter
    assert a.spec(0) != a.spec(1) and a.spec(0) != EpisodeSampler(pool, 4, 2, 3, seed=8).spec(0)
    for i in range(20):
        spec = a.spec(i)
        assert len(set(spec.classes)) == 4
        for s, q in zip(spec.support, spec.query):
            assert len(s) == 2 and len(q) == 3 and not set(s) & set(q) and len(set(s + q)) == 5
    ep = a.episode(3)
    spec = a.spec(3)
    assert ep.support.shape == (4, 2, 3, 24, 24) and ep.query.shape == (12, 3, 24, 24)
    assert ep.query_labels.tolist() == [l for l in range(4) for _ in range(3)]
    assert ep.class_names == tuple(f"c{c}" for c in spec.classes)
    assert torch.equal(ep.support_masks[1, 0], pool.mask(spec.classes[1], spec.support[1][0]))
    assert torch.equal(ep.query_masks[4], pool.mask(spec.classes[1], spec.query[1][1]))


def test_controlled_splits_are_disjoint_by_class_and_photo(tmp_path):
    splits = {s: split_classes(s) for s in SPLITS}
    assert sum(len(v) for v in splits.values()) == len(CATALOGUE)
    assert len({c.name for c in CATALOGUE}) == len(CATALOGUE)
    for s in SPLITS:
        assert len(splits[s]) >= 5
        for t in SPLITS:
            if s != t:
                assert not {c.photo for c in splits[s]} & {c.photo for c in splits[t]}
    pool = controlled_pool("test", 2, size=(40, 40), seed=3, cache_dir=tmp_path, progress=False)
    again = controlled_pool("test", 2, size=(40, 40), seed=3, progress=False)        # rendered again
    cached = controlled_pool("test", 2, size=(40, 40), seed=3, cache_dir=tmp_path, progress=False)
    assert pool.classes == tuple(c.name for c in splits["test"])
    assert torch.equal(pool.images, again.images) and torch.equal(pool.images, cached.images)
    assert torch.equal(pool.masks, cached.masks) and bool(pool.masks.any())
    assert not torch.equal(pool.images, controlled_pool("test", 2, size=(40, 40), seed=4, progress=False).images)


def test_pool_features_match_the_backbone_on_the_episode(gen):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    pool = colour_pool()
    model = RegionComparisonNetwork(grid=(2, 2)).eval()
    features = PoolFeatures(model, pool, batch_size=5, progress=False)
    spec = EpisodeSampler(pool, 3, 2, 2, seed=1).spec(4)
    ep = materialize(pool, spec)
    s, q = features.gather(spec)
    with torch.no_grad():
        s_ref, q_ref = model.episode_features(ep.support, ep.query)
    assert torch.allclose(s, s_ref, atol=1e-5) and torch.allclose(q, q_ref, atol=1e-5)


def test_accuracy_summary_interval():
    a = np.array([0.5, 0.75, 1.0, 0.25])
    acc = accuracy_summary(a)
    assert acc.mean == pytest.approx(62.5)
    assert acc.ci95 == pytest.approx(100 * 1.96 * a.std(ddof=1) / 2)


@pytest.mark.parametrize("method", ["rcn", "protonet"])
def test_tiny_training_run_decreases_the_loss(method):
    torch.manual_seed(0)
    pool = colour_pool(n_classes=5, per_class=10, seed=1)
    model = build_model(method, grid=(2, 2))
    config = TrainConfig(n_way=3, shots=(1, 2), n_query=3, episodes=40, lr=3e-3, seed=0)
    result = train_episodic(model, pool, config, progress=False)
    assert len(result.losses) == 40 and not model.training
    first, last = np.mean(result.losses[:8]), np.mean(result.losses[-8:])
    assert last < 0.7 * first, (first, last)
    acc = evaluate(model, pool, 3, 1, 3, episodes=30, seed=5, progress=False)
    assert acc.mean > 60.0 and acc.episodes == 30


def test_affex_reads_rcn_correlation_in_level_layout(gen):
    model = rcn64(gen, grid=(3, 3))
    support, query = feats(gen, 3, 2, 64, 3, 3, relu=True), feats(gen, 2, 64, 3, 3, relu=True)
    out = model.explain_features(support, query)
    labels = torch.tensor([2, 0])
    level = class_level(out, labels)
    assert level.scores.shape == (2, 9, 18) and level.n_shots == 2
    for q in range(2):
        for p in range(9):
            for shot in range(2):
                for r in range(9):
                    ref = cos(query[q].flatten(1)[:, p], support[labels[q], shot].flatten(1)[:, r])
                    assert abs(level.scores[q, p, shot * 9 + r] - ref) < 1e-12
    attribution, maps = affex_maps(out, labels, (12, 15))
    literal = AffinityExplainer("unmasked", backend="literal").level_attribution(
        level, torch.ones(2, 12, 15, dtype=torch.bool))
    assert torch.allclose(attribution.flatten(1), literal, atol=1e-12)
    # R = the whole query makes every support position's attribution equal by construction: the map carries no
    # information, and AffEx returns zeros rather than stretched rounding noise (issue 15, docs/robustness.md)
    assert maps.shape == (2, 2, 12, 15) and float(maps.amin()) == 0.0 and float(maps.amax()) == 0.0
    # R = the whole query: every support position gets 1/|R| up to the 1e-6 of AffEx's normalisation
    assert torch.allclose(attribution, torch.full_like(attribution, 1 / (12 * 15)), rtol=1e-6, atol=0)
    ram = region_activation_maps(out)
    for min_share in (0.0, None, 0.3):
        region = matched_region(out, labels, (12, 15), min_share)
        for q in range(2):
            mass = ram.query[q, labels[q]].sum(0).flatten() * 2                 # the terms w_r·s_r per query cell
            matched = set(out.match[q, labels[q]].flatten().tolist())
            share = 1 / 9 if min_share is None else min_share
            for p in range(9):                                  # a 3×3 grid on 12×15 pixels: 4×5 blocks
                i, j = divmod(p, 3)
                block = region[q, 4 * i: 4 * i + 4, 5 * j: 5 * j + 5]
                keep = (p in matched and mass[p] > share * mass.sum()) or mass[p] == mass.max()
                assert bool(block.all()) == bool(block.any()) == keep
    sub, _ = affex_maps(out, labels, (12, 15), region=region)
    sub_literal = AffinityExplainer("unmasked", backend="literal").level_attribution(level, region)
    assert torch.allclose(sub.flatten(1), sub_literal, atol=1e-12)


def test_category_regions_average_same_class_pairs(gen):
    torch.manual_seed(int(torch.randint(0, 2**31, (1,), generator=gen)))
    pool = colour_pool(n_classes=4, per_class=6)
    model = RegionComparisonNetwork(grid=(2, 2)).eval()
    cat = category_regions(model, pool, 1, episodes=4, n_way=3, k_shot=1, n_query=2, seed=0, top=3)
    assert cat.class_name == "c1" and cat.mean_map.shape == (2, 2) and len(cat.regions) == 3
    values = [v for _, _, v, _ in cat.regions]
    assert values == sorted(values, reverse=True) and cat.pairs % 2 == 0 and cat.pairs >= 2
    assert len({img for img, *_ in cat.regions}) == 3                        # one region per support image
    sampler, sums, pairs, per_region = EpisodeSampler(pool, 3, 1, 2, seed=0), torch.zeros(4), 0, {}
    used = [spec for spec in map(sampler.spec, range(40)) if 1 in spec.classes][:4]
    for spec in used:                                               # the reference: pair by pair
        ep = materialize(pool, spec)
        with torch.no_grad():
            out = model.explain_features(*model.episode_features(ep.support, ep.query))
        label = spec.classes.index(1)
        for q in range(ep.query.shape[0]):
            if ep.query_labels[q] == label:
                term = out.weights[q, label, 0] * out.similarity[q, label, 0]
                sums += term
                pairs += 1
                for r in range(4):
                    per_region.setdefault((spec.support[label][0], r), []).append(float(term[r]))
    assert pairs == cat.pairs and torch.allclose(cat.mean_map.flatten().float(), sums / pairs, atol=1e-5)
    for img, r, value, seen in cat.regions:
        assert seen == len(per_region[(img, r)]) and value == pytest.approx(np.mean(per_region[(img, r)]), abs=1e-5)
    two = category_regions(model, pool, 1, episodes=4, n_way=3, k_shot=1, n_query=2, seed=0, top=8, per_image=2)
    assert max(sum(img == i for i, *_ in two.regions) for img, *_ in two.regions) <= 2
    assert cell_box(3, (2, 2), (84, 84)) == (42, 42, 84, 84) and cell_box(0, (5, 5), (84, 84)) == (0, 0, 17, 17)


def test_checkpoint_round_trip(tmp_path, gen):
    model = build_model("rcn", grid=(2, 2), hidden=8).eval()
    path = save_checkpoint(model, tmp_path / "m.pt", note="x", shots=[1, 5])
    loaded, info = load_checkpoint(path)
    assert isinstance(loaded, RegionComparisonNetwork) and info == {"note": "x", "shots": [1, 5]}
    support, query = torch.randn(3, 1, 3, 24, 24, generator=gen), torch.randn(2, 3, 24, 24, generator=gen)
    with torch.no_grad():
        assert torch.equal(model(support, query), loaded(support, query))
    torch.save({"weights": 1}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="not an fss_attr few-shot checkpoint"):
        load_checkpoint(tmp_path / "bad.pt")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt")


def _write(path, colour, size=(20, 24)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((*size, 3), colour, dtype=np.uint8)).save(path)


COLOURS = {"n01": (250, 10, 10), "n02": (10, 250, 10), "n03": (10, 10, 250), "n04": (240, 240, 10),
           "n05": (10, 240, 240), "n06": (240, 10, 240)}


def _check_folder_pool(pool, names):
    assert pool.classes == tuple(sorted(names)) and pool.image_size == (84, 84)
    for c, name in enumerate(pool.classes):
        img = pool.image(c, 1)
        assert img.shape == (3, 84, 84)
        assert torch.allclose(img.mean((1, 2)), torch.tensor(COLOURS[name], dtype=torch.float32) / 255, atol=0.03)
    ep = EpisodeSampler(pool, 5, 1, 2, seed=0).episode(0)
    assert ep.support.shape == (5, 1, 3, 84, 84) and ep.support_masks is None


def test_mini_imagenet_csv_and_folder_layouts(tmp_path):
    root = tmp_path / "mini"
    rows = []
    for name, colour in COLOURS.items():
        for i in range(3):
            _write(root / "images" / f"{name}{i:08d}.jpg", colour)
            rows.append((f"{name}{i:08d}.jpg", name))
    with open(root / "test.csv", "w", newline="") as f:
        csv.writer(f).writerows([("filename", "label")] + rows)
    _check_folder_pool(mini_imagenet(root, "test"), COLOURS)
    folders = tmp_path / "mini_folders"
    for name, colour in COLOURS.items():
        for i in range(3):
            _write(folders / "val" / name / f"{i}.png", colour)
    _check_folder_pool(open_pool("miniimagenet", "val", folders), COLOURS)
    with pytest.raises(FileNotFoundError, match="train"):
        mini_imagenet(folders, "train")
    (root / "val.csv").write_text("file,class\nx.jpg,n01\n")
    with pytest.raises(ValueError, match="filename,label"):
        mini_imagenet(root, "val")


def test_cifar_fs_bertinetto_layout(tmp_path):
    root = tmp_path / "cifar"
    for name, colour in COLOURS.items():
        for i in range(3):
            _write(root / "data" / name / f"{name}_s_{i}.png", colour, size=(32, 32))
    (root / "splits" / "bertinetto").mkdir(parents=True)
    (root / "splits" / "bertinetto" / "test.txt").write_text("\n".join(COLOURS) + "\n")
    _check_folder_pool(cifar_fs(root, "test"), COLOURS)
    (root / "splits" / "bertinetto" / "val.txt").write_text("n01\nmissing_class\n")
    with pytest.raises(FileNotFoundError, match="missing_class"):
        cifar_fs(root, "val")


def test_bad_inputs_raise_clear_errors(gen):
    pool = colour_pool(n_classes=4, per_class=5)
    with pytest.raises(ValueError, match="n_way=5 needs at least 5 classes"):
        EpisodeSampler(pool, 5, 1, 1)
    with pytest.raises(ValueError, match="k_shot \\+ n_query = 6"):
        EpisodeSampler(pool, 3, 1, 5)
    with pytest.raises(ValueError, match="n_way must be an int >= 2"):
        EpisodeSampler(pool, 1, 1, 1)
    with pytest.raises(TypeError, match="pool must be an ImagePool"):
        EpisodeSampler([1, 2], 2, 1, 1)
    with pytest.raises(IndexError, match="image index 5"):
        pool.image(0, 5)
    with pytest.raises(ValueError, match="must share C"):
        compare_regions(torch.randn(2, 4, 3, 3), torch.randn(3, 5, 3, 3))
    with pytest.raises(ValueError, match="4 dimensions"):
        compare_regions(torch.randn(4, 3, 3), torch.randn(3, 4, 3, 3))
    model = RegionComparisonNetwork(grid=(2, 2))
    with pytest.raises(ValueError, match="support must have 5 dimensions"):
        model(torch.randn(3, 3, 24, 24), torch.randn(2, 3, 24, 24))
    with pytest.raises(ValueError, match="one size"):
        model(torch.randn(3, 1, 3, 24, 24), torch.randn(2, 3, 28, 24))
    with pytest.raises(ValueError, match="must share"):
        model.classify_features(torch.randn(3, 1, 64, 2, 2), torch.randn(2, 32, 2, 2))
    with pytest.raises(ValueError, match="n_way >= 2"):
        model.classify_features(torch.randn(1, 1, 64, 2, 2), torch.randn(2, 64, 2, 2))
    with pytest.raises(ValueError, match="labels must lie in 0..2"):
        model.loss(torch.rand(2, 3), torch.tensor([0, 3]))
    with pytest.raises(ValueError, match="labels must be int64"):
        model.loss(torch.rand(2, 3), torch.tensor([0.0, 1.0]))
    with pytest.raises(ValueError, match="backbone must be one of"):
        build_backbone("vgg")
    with pytest.raises(ValueError, match="method must be one of"):
        build_model("matchingnet")
    with pytest.raises(ValueError, match="H, W >= 16"):
        build_backbone("conv4")(torch.randn(1, 3, 8, 8))
    with pytest.raises(ValueError, match="source must be one of"):
        open_pool("imagenet", "test")
    with pytest.raises(ValueError, match="needs root"):
        open_pool("cifarfs", "test")
    with pytest.raises(ValueError, match="split must be one of"):
        split_classes("trainval")
    with pytest.raises(TypeError, match="RegionComparisonNetwork"):
        category_regions(PrototypicalNetwork(grid=(2, 2)), pool, 0)
    with pytest.raises(ValueError, match="shots must hold positive ints"):
        TrainConfig(shots=(0,))
    out = rcn64(gen, grid=(2, 2)).explain_features(feats(gen, 2, 1, 64, 2, 2), feats(gen, 1, 64, 2, 2))
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        class_level(out, torch.tensor([2]))
    with pytest.raises(ValueError, match="labels must be int64"):
        class_level(out, torch.tensor([0, 1]))


@pytest.fixture(scope="module")
def cli_files(tmp_path_factory):
    """A tiny RCN checkpoint and a cache of small controlled pools shared by the CLI tests."""
    root = tmp_path_factory.mktemp("rcn_cli")
    common = ["--images-per-class", "17", "--image-size", "40", "--cache", str(root / "cache")]
    assert main(["rcn", "train", *common, "--episodes", "2", "--queries", "2", "--val-every", "2",
                 "--val-episodes", "2", "--val-images-per-class", "16", "--out", str(root / "rcn.pt")]) == 0
    return root, common


def test_cli_train_evaluate_explain(cli_files, capsys):
    root, common = cli_files
    assert (root / "rcn.pt").is_file() and "losses" in json.loads((root / "rcn.json").read_text())
    assert main(["rcn", "evaluate", *common, "--weights", str(root / "rcn.pt"), "--episodes", "3", "--queries", "2",
                 "--json", str(root / "eval.json")]) == 0
    assert "| rcn | conv4 |" in capsys.readouterr().out
    rows = json.loads((root / "eval.json").read_text())["rows"]
    assert set(rows[0]) >= {"1-shot", "5-shot"} and rows[0]["1-shot"]["episodes"] == 3
    assert main(["rcn", "explain", *common, "--weights", str(root / "rcn.pt"), "--category-episodes", "2",
                 "--out", str(root / "ram.png")]) == 0
    report = json.loads((root / "ram.json").read_text())
    assert (root / "ram.png").stat().st_size > 10_000
    assert report["support_map_sums_minus_scores"] < 1e-5 and report["query_map_sums_minus_scores"] < 1e-5
    assert 0.0 <= report["relevance_mass_on_object"]["ram_support_map"] <= 1.0
    assert report["affex_region"] == "evidence" and "affex_unmasked_R_evidence" in report["relevance_mass_on_object"]
    assert len(report["category"]["top_regions"]) > 0


def test_training_returns_and_write_training_saves_beside_the_checkpoint(tmp_path):
    from fss_attr.fewshot.train import training_report, write_training

    torch.manual_seed(0)
    pool = colour_pool(n_classes=3, per_class=4, seed=2)
    model = build_model("rcn", grid=(2, 2))
    config = TrainConfig(n_way=2, shots=(1,), n_query=2, episodes=2, seed=0)
    result = train_episodic(model, pool, config, progress=False)
    assert list(tmp_path.iterdir()) == []                                  # training writes nothing
    report = training_report(result, config, data="toy")
    assert report["data"] == "toy" and report["losses"] == result.losses and report["config"]["shots"] == [1]
    path, record = write_training(model, result, config, tmp_path / "sub" / "m.pt", data="toy")
    assert record == tmp_path / "sub" / "m.json" and json.loads(record.read_text()) == json.loads(json.dumps(report))
    loaded, info = load_checkpoint(path)
    assert info["data"] == "toy" and "losses" not in info and info["best_episode"] is None


def test_controlled_pool_cache_has_a_documented_default(monkeypatch, tmp_path):
    from fss_attr.data.classification.controlled import default_cache_dir

    monkeypatch.setenv("FSS_ATTR_CACHE", str(tmp_path / "c"))
    assert default_cache_dir() == tmp_path / "c" / "controlled_pools"
    monkeypatch.delenv("FSS_ATTR_CACHE")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "x"))
    assert default_cache_dir() == tmp_path / "x" / "fss_attr" / "controlled_pools"


def test_rcn_help_reads_cleanly_and_names_every_option(capsys):
    from fss_attr.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command").choices["rcn"]
    assert "%%" not in sub.format_help()
    for action in next(a for a in sub._actions if a.dest == "action").choices.values():
        text = action.format_help()
        assert "%%" not in text
        for option in action._actions:
            if option.option_strings and option.dest != "help":
                assert option.help, f"{option.option_strings} has no help"
