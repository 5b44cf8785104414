"""Segment Attribution Tables: batched rows and the streaming aggregate against plain per-image loops."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from fss_attr.sat import (SATAccumulator, coco_masks, coco_stats, label_stats, mask_stats, normalize_maps,
                          plain_table, plot_heatmap, plot_reliance_bars, read_csv, segment_stats, write_csv)

# pycocotools' decoder predates numpy 2's copy keyword; the warning is theirs, the decoded masks are right
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation doesn't accept a copy keyword")


def loop_normalise(m: np.ndarray, mode: str) -> np.ndarray:
    if mode == "mean":
        return m / m.mean() if m.sum() > 0 else m
    if mode == "sum":
        return m / m.sum() if m.sum() > 0 else m
    if mode == "max":
        return m / m.max() if m.max() > 0 else m
    if mode == "minmax":
        return (m - m.min()) / (m.max() - m.min()) if m.max() > m.min() else np.zeros_like(m)
    return m


def loop_rows(maps, masks, names, mode="mean"):
    """The literal oracle: per image, per segment, in float64 numpy."""
    rows = []
    for i in range(maps.shape[0]):
        m = loop_normalise(maps[i].astype(np.float64), mode)
        total = m.sum()
        for s, name in enumerate(names):
            sel = masks[i][s]
            n = int(sel.sum())
            if n:
                rows.append({"image_id": i, "segment": name, "pixels": n, "mean_saliency": m[sel].mean(),
                             "share": m[sel].sum() / total if total > 0 else 0.0})
    return rows


def assert_rows_equal(got, want, rtol=1e-9, atol=1e-12):
    assert len(got) == len(want)
    for g, w in zip(got, want):
        assert (g["image_id"], g["segment"], g["pixels"]) == (w["image_id"], w["segment"], w["pixels"])
        assert g["mean_saliency"] == pytest.approx(w["mean_saliency"], rel=rtol, abs=atol)
        assert g["share"] == pytest.approx(w["share"], rel=rtol, abs=atol)


def labels_to_masks(labels: np.ndarray, table: dict) -> tuple[list[str], np.ndarray]:
    names = list(dict.fromkeys(table[k] for k in sorted(table)))
    masks = np.stack([np.stack([np.isin(lab, [k for k, v in table.items() if v == n]) for n in names])
                      for lab in labels])
    return names, masks


@pytest.fixture(params=["per-image", "batched"])
def path(request, monkeypatch):
    """Run a test through the CPU path (per image) and through the batched path that GPUs take."""
    monkeypatch.setattr("fss_attr.sat.reduce.BATCHED_ON_CPU", request.param == "batched")
    return request.param


@pytest.mark.parametrize("shape,s", [((1, 5, 7), 1), ((4, 16, 12), 6), ((3, 1, 33), 3)])
@pytest.mark.parametrize("mode", ["mean", "sum", "max", "minmax", "none"])
@pytest.mark.parametrize("chunk_elements", [1 << 17, 50])
def test_mask_rows_equal_loop_overlapping_and_missing(shape, s, mode, chunk_elements, path, monkeypatch):
    monkeypatch.setattr("fss_attr.sat.reduce.MASK_CHUNK_ELEMENTS", chunk_elements)   # several pixel chunks
    g = torch.Generator().manual_seed(hash((shape, s, mode)) % 2**31)
    maps = torch.rand(shape, generator=g, dtype=torch.float64)
    masks = torch.rand((shape[0], s) + shape[1:], generator=g) < 0.4     # overlapping
    masks[0, -1] = False                                                     # a missing segment
    names = [f"seg{k}" for k in range(s)]
    got = mask_stats(maps, masks, names, normalize=mode).rows()
    assert_rows_equal(got, loop_rows(maps.numpy(), masks.numpy(), names, mode))


@pytest.mark.parametrize("shape,dtype", [((2, 9, 11), torch.uint8), ((5, 24, 24), torch.int64),
                                         ((3, 7, 5), torch.int32), ((1, 4, 6), torch.int16)])
def test_label_rows_equal_loop_with_shared_and_unnamed_labels(shape, dtype, path):
    g = torch.Generator().manual_seed(shape[0])
    maps = torch.rand(shape, generator=g, dtype=torch.float64) ** 3
    labels = torch.randint(0, 9, shape, generator=g)
    labels[0][labels[0] == 2] = 0                                  # label 2 missing from image 0
    labels[-1, 0, 0] = 255                                         # an ignore value above the table
    labels = labels.to(dtype)
    given = labels.clone()
    table = {0: "background", 2: "eye", 3: "eye", 5: "fur", 7: "watermark", 1: "nose"}   # 4, 6, 8 unnamed
    names, masks = labels_to_masks(labels.numpy(), table)
    stats = label_stats(maps, labels, table)
    assert torch.equal(labels, given)                              # the caller's labels are left alone
    assert list(stats.names) == names == ["background", "nose", "eye", "fur", "watermark"]
    assert_rows_equal(stats.rows(), loop_rows(maps.numpy(), masks, names))
    # the same segments as binary masks give the same statistics
    by_mask = mask_stats(maps, torch.from_numpy(masks), names)
    assert torch.equal(by_mask.counts, stats.counts)
    torch.testing.assert_close(by_mask.sums, stats.sums, rtol=1e-12, atol=1e-15)


def test_float32_maps_within_float32_rounding(path):
    # float32 sums of n terms: relative error ~ sqrt(n)·6e-8 typically (n = 3072 here), bounded by n·6e-8
    g = torch.Generator().manual_seed(3)
    maps = torch.rand(3, 64, 48, generator=g)
    labels = torch.randint(0, 4, (3, 64, 48), generator=g)          # label 3 has no name: discarded
    names, masks = labels_to_masks(labels.numpy(), dict(enumerate(["a", "b", "c"])))
    want = loop_rows(maps.numpy(), masks, names)
    assert_rows_equal(label_stats(maps, labels, ["a", "b", "c"]).rows(), want, rtol=2e-5, atol=1e-9)
    assert_rows_equal(mask_stats(maps.half(), torch.from_numpy(masks), names).rows(),
                      loop_rows(maps.half().numpy(), masks, names), rtol=2e-5, atol=1e-9)


def _rle_uncompressed(mask: np.ndarray) -> dict:
    flat = mask.flatten(order="F").astype(np.uint8)        # COCO counts run column-major, starting with zeros
    counts, cur, run = [], 0, 0
    for v in flat:
        if v == cur:
            run += 1
        else:
            counts.append(run)
            cur, run = v, 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def test_coco_rle_and_polygons_equal_loop():
    from pycocotools import mask as mask_utils

    rng = np.random.default_rng(0)
    h, w = 20, 26
    maps = torch.from_numpy(rng.random((3, h, w)))
    names = ["cat", "collar", "sofa"]
    truth = np.zeros((3, 3, h, w), dtype=bool)
    annotations = []
    poly = [[2.0, 3.0, 15.0, 4.0, 12.0, 16.0, 3.0, 14.0], [18.0, 2.0, 24.0, 2.0, 21.0, 9.0]]
    poly_mask = mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(poly, h, w))).astype(bool)
    for i in range(3):
        a = rng.random((h, w)) < 0.3
        b = rng.random((h, w)) < 0.2
        compressed = mask_utils.encode(np.asfortranarray(b.astype(np.uint8)))
        compressed["counts"] = compressed["counts"].decode("ascii") if i == 1 else compressed["counts"]
        anns = [{"name": "cat", "segmentation": _rle_uncompressed(a)},
                {"category_id": 7, "segmentation": compressed},            # named through categories
                {"name": "dog", "segmentation": _rle_uncompressed(b)}]     # not a requested segment
        truth[i, 0], truth[i, 1] = a, b
        if i != 2:                                                         # sofa missing from image 2
            anns.append({"name": "sofa", "segmentation": poly})
            anns.append({"name": "cat", "segmentation": [[0.0, 0.0, 5.0, 0.0, 5.0, 5.0]]})   # cat united
            truth[i, 2] = poly_mask
            truth[i, 0] |= mask_utils.decode(mask_utils.frPyObjects([[0.0, 0.0, 5.0, 0.0, 5.0, 5.0]], h, w))[..., 0] > 0
        annotations.append(anns)
    assert poly_mask.sum() > 50
    got = coco_stats(maps, annotations, names, categories={7: "collar"})
    assert_rows_equal(got.rows(), loop_rows(maps.numpy(), truth, names))
    assert torch.equal(coco_masks(annotations[0], names, h, w, {7: "collar"}), torch.from_numpy(truth[0]))
    via_dispatch = segment_stats(maps, annotations, names, categories={7: "collar"})
    assert torch.equal(via_dispatch.counts, got.counts)


def test_rows_carry_ids_classes_and_rank_first():
    maps = torch.tensor([[[1.0, 0.0], [0.0, 3.0]], [[0.0, 0.0], [0.0, 0.0]]])
    masks = torch.tensor([[[[1, 1], [0, 0]], [[0, 0], [0, 1]]], [[[0, 0], [0, 0]], [[0, 0], [0, 0]]]], dtype=torch.bool)
    stats = mask_stats(maps, masks, ["top", "corner"])
    rows = stats.rows(image_ids=["a", "b"], classes=["x", "y"])
    assert [(r["image_id"], r["class"], r["segment"], r["pixels"]) for r in rows] == [("a", "x", "top", 2),
                                                                                    ("a", "x", "corner", 1)]
    assert rows[0]["share"] == pytest.approx(0.25) and rows[1]["mean_saliency"] == pytest.approx(3.0)   # 3 × average
    assert stats.first("mean").tolist() == [1, -1] and stats.first("share").tolist() == [1, -1]
    assert normalize_maps(maps, "sum")[1].abs().sum() == 0            # a zero map stays zero
    # a segment present in an all-zero map does not rank first
    full = torch.ones(2, 1, 2, 2, dtype=torch.bool)
    assert mask_stats(maps, full, ["all"]).first().tolist() == [0, -1]


@pytest.mark.parametrize("mode", ["mean", "sum", "max", "minmax", "none"])
def test_normalise_maps_equals_loop(mode):
    g = torch.Generator().manual_seed(8)
    maps = torch.rand(4, 6, 5, generator=g, dtype=torch.float64) * torch.tensor([1.0, 1e-6, 0.0, 3.0]).view(4, 1, 1)
    if mode == "minmax":
        maps = maps - 0.5
    want = np.stack([loop_normalise(m, mode) for m in maps.numpy()])
    np.testing.assert_allclose(normalize_maps(maps, mode).numpy(), want, rtol=1e-12, atol=1e-15)


def loop_summary(batches, rank_by="mean"):
    """Oracle for the aggregate: gather every (class, segment) value list, then plain statistics."""
    cells, n_images, classes, segments = {}, {}, [], []
    for stats, cls in batches:
        for n in stats.names:
            segments.append(n) if n not in segments else None
        mean, share, present = stats.mean.tolist(), stats.share.tolist(), stats.present.tolist()
        totals = stats.totals.tolist()
        for i, c in enumerate(cls):
            classes.append(c) if c not in classes else None
            n_images[c] = n_images.get(c, 0) + 1
            value = mean[i] if rank_by == "mean" else share[i]
            ranked = [(value[s], -s) for s in range(len(stats.names)) if present[i][s]]
            top = -max(ranked)[1] if ranked and totals[i] > 0 else None
            for s, name in enumerate(stats.names):
                cell = cells.setdefault((c, name), {"sal": [], "share": [], "first": 0})
                if present[i][s]:
                    cell["sal"].append(mean[i][s])
                    cell["share"].append(share[i][s])
                cell["first"] += int(top == s)
    out = []
    for c in classes:
        for seg in segments:
            cell = cells.get((c, seg), {"sal": [], "share": [], "first": 0})
            mean = lambda v: sum(v) / len(v) if v else math.nan  # noqa: E731
            std = lambda v: float(np.std(v, ddof=1)) if len(v) > 1 else math.nan  # noqa: E731
            out.append({"class": c, "segment": seg, "n_images": n_images[c],
                        "presence": len(cell["sal"]) / n_images[c], "mean_saliency": mean(cell["sal"]),
                        "std_saliency": std(cell["sal"]), "mean_share": mean(cell["share"]),
                        "std_share": std(cell["share"]), "rank_first": cell["first"] / n_images[c]})
    return out


@pytest.mark.parametrize("rank_by", ["mean", "share"])
def test_streaming_aggregate_equals_loop(rank_by):
    g = torch.Generator().manual_seed(11)
    batches = []
    for k, b in enumerate((5, 1, 7, 0, 4)):
        maps = torch.rand(b, 10, 12, generator=g, dtype=torch.float64) + 0.5 * k   # batches differ in level
        if k == 2:
            maps[3] = 0.0                                                          # ranks nothing first
        names = ["bg", "obj", "cue"] if k % 2 == 0 else ["obj", "cue", "text"]     # segment sets differ
        masks = torch.rand(b, 3, 10, 12, generator=g) < torch.tensor([0.9, 0.3, 0.05]).view(1, 3, 1, 1)
        classes = [["cat", "dog", "fox"][int(v)] for v in torch.randint(0, 3, (b,), generator=g)]
        batches.append((mask_stats(maps, masks, names, normalize="none"), classes))
    acc = SATAccumulator(rank_by=rank_by)
    for stats, classes in batches:
        acc.update(stats, classes)
    got, want = acc.summary(), loop_summary(batches, rank_by)
    assert len(got) == len(want)
    for g_, w_ in zip(got, want):
        assert set(g_) == set(w_)
        for key, v in w_.items():
            if isinstance(v, str):
                assert g_[key] == v
            elif isinstance(v, float) and math.isnan(v):
                assert math.isnan(g_[key]), (key, g_)
            else:
                assert g_[key] == pytest.approx(v, rel=1e-9, abs=1e-12), (key, g_, w_)


def test_exports_and_pictures(tmp_path):
    g = torch.Generator().manual_seed(5)
    acc = SATAccumulator()
    for _ in range(2):
        stats = label_stats(torch.rand(6, 16, 16, generator=g), torch.randint(0, 3, (6, 16, 16), generator=g),
                            ["bg", "obj", "cue"])
        write_csv(stats.rows(classes=["a", "b"] * 3), tmp_path / "rows.csv", append=True)
        acc.update(stats, ["a", "b"] * 3)
    rows = read_csv(tmp_path / "rows.csv")
    assert len(rows) == 2 * 6 * 3 and rows[0]["segment"] == "bg"           # one header, streamed rows
    summary = acc.summary()
    back = read_csv(write_csv(summary, tmp_path / "summary.csv"))
    assert [r["segment"] for r in back] == [r["segment"] for r in summary]
    assert float(back[1]["mean_share"]) == pytest.approx(summary[1]["mean_share"], rel=1e-12)
    text = plain_table(summary)
    assert text.splitlines()[0].split() == list(summary[0]) and len(text.splitlines()) == 2 + len(summary)
    for fn in (plot_reliance_bars, plot_heatmap):
        path = fn(summary, tmp_path / f"{fn.__name__}.png")
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_inputs_raise_clear_errors():
    maps = torch.rand(2, 4, 4)
    masks = torch.zeros(2, 2, 4, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="maps must have 3 dimensions"):
        mask_stats(maps[0], masks, ["a", "b"])
    with pytest.raises(TypeError, match="maps must be float"):
        mask_stats(maps.long(), masks, ["a", "b"])
    with pytest.raises(ValueError, match="names has 1 entries"):
        mask_stats(maps, masks, ["a"])
    with pytest.raises(ValueError, match="distinct"):
        mask_stats(maps, masks, ["a", "a"])
    with pytest.raises(ValueError, match="masks must have shape"):
        mask_stats(maps, masks[:, :, :3], ["a", "b"])
    with pytest.raises(ValueError, match="masks must be binary"):
        mask_stats(maps, masks.float() + 2, ["a", "b"])
    with pytest.raises(ValueError, match="negative"):
        mask_stats(maps - 0.5, masks, ["a", "b"])
    assert mask_stats(maps - 0.5, masks, ["a", "b"], normalize="minmax").counts.sum() == 0
    with pytest.raises(ValueError, match="normalize must be one of"):
        mask_stats(maps, masks, ["a", "b"], normalize="l2")
    with pytest.raises(ValueError, match="NaN"):
        mask_stats(torch.full((2, 4, 4), math.nan), masks, ["a", "b"])
    with pytest.raises(TypeError, match="labels must be an integer"):
        label_stats(maps, maps, ["a"])
    with pytest.raises(ValueError, match="labels must be >= 0"):
        label_stats(maps, torch.full((2, 4, 4), -1), ["a"])
    with pytest.raises(ValueError, match="labels must have the maps' shape"):
        label_stats(maps, torch.zeros(2, 4, 5, dtype=torch.long), ["a"])
    with pytest.raises(ValueError, match="labels must be ints >= 0"):
        label_stats(maps, torch.zeros(2, 4, 4, dtype=torch.long), {-1: "a"})
    with pytest.raises(TypeError, match="names must be"):
        label_stats(maps, torch.zeros(2, 4, 4, dtype=torch.long), "abc")
    with pytest.raises(ValueError, match="annotations must be a list of 2"):
        coco_stats(maps, [[]], ["a"])
    with pytest.raises(ValueError, match="needs a 'name'"):
        coco_stats(maps, [[{"segmentation": []}], []], ["a"])
    with pytest.raises(ValueError, match="RLE size"):
        coco_stats(maps, [[{"name": "a", "segmentation": {"size": [3, 3], "counts": [9]}}], []], ["a"])
    with pytest.raises(ValueError, match="at least 3"):
        coco_stats(maps, [[{"name": "a", "segmentation": [[0.0, 1.0, 2.0, 3.0]]}], []], ["a"])
    with pytest.raises(ValueError, match="segments must be"):
        segment_stats(maps, torch.zeros(2, 4), ["a"])
    with pytest.raises(ValueError, match="classes must hold one entry per image"):
        SATAccumulator().update(mask_stats(maps, masks, ["a", "b"]), ["x"])
    with pytest.raises(ValueError, match="rank_by"):
        SATAccumulator(rank_by="max")
