"""PASCAL-5i and COCO-20i loaders on tiny fixtures written in the datasets' own formats."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from fss_attr.data.benchmarks import load_episode_list, load_episodes, open_source, sample_episodes
from fss_attr.data import coco as coco_mod
from fss_attr.data import pascal as pascal_mod


@pytest.fixture
def pascal_root(tmp_path):
    rng = np.random.default_rng(0)
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClassAug").mkdir()
    ids = []
    for i in range(8):
        image_id = f"2007_{i:06d}"
        ids.append(image_id)
        rgb = rng.integers(0, 255, (40, 50, 3), dtype=np.uint8)
        Image.fromarray(rgb).save(tmp_path / "JPEGImages" / f"{image_id}.jpg")
        label = np.zeros((40, 50), dtype=np.uint8)
        label[5:20, 5:25] = 1 + (i % 3)          # classes 1, 2, 3 (fold 0)
        label[25:35, 30:45] = 7 if i % 2 else 0  # class 7 (fold 1) in odd images
        label[20, :] = 255                       # an ignore line
        Image.fromarray(label).save(tmp_path / "SegmentationClassAug" / f"{image_id}.png")
    (tmp_path / "ImageSets" / "Segmentation").mkdir(parents=True)
    (tmp_path / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids))
    return tmp_path


def test_pascal_folds():
    assert pascal_mod.fold_classes(0) == [1, 2, 3, 4, 5]
    assert pascal_mod.fold_classes(3) == [16, 17, 18, 19, 20]
    assert len(pascal_mod.fold_classes(2, "trn")) == 15
    with pytest.raises(ValueError, match="fold"):
        pascal_mod.fold_classes(4)


def test_pascal_pairs_masks_and_episodes(pascal_root, tmp_path):
    src = open_source("pascal", pascal_root, fold=0)
    pairs = src.image_class_pairs()
    assert sorted({c for _, c in pairs}) == [1, 2, 3] and len(pairs) == 8
    rgb, mask = src.load("2007_000001", 2)
    assert rgb.shape == (40, 50, 3) and mask.sum() == 15 * 20
    specs = sample_episodes(src, n=5, shots=1, seed=42)
    for s in specs:
        assert s.query not in s.supports and (s.query, s.class_id) in pairs
        assert all((sup, s.class_id) in pairs for sup in s.supports)
    csv_path = tmp_path / "episodes.csv"
    eps = list(load_episodes("pascal", pascal_root, 0, n=5, seed=42, shots=1, size=(32, 32), episode_list=csv_path))
    assert load_episode_list(csv_path) == specs  # written on first use, then replayed exactly
    again = list(load_episodes("pascal", pascal_root, 0, n=5, seed=7, shots=1, size=(32, 32), episode_list=csv_path))
    for a, b in zip(eps, again):
        assert torch.equal(a.query, b.query) and torch.equal(a.support_masks, b.support_masks)
    e = eps[0]
    assert e.query.shape == (1, 3, 32, 32) and e.support_images.shape == (1, 1, 3, 32, 32)
    assert e.query_mask.dtype == torch.bool and e.query_mask.any()


def test_pascal_split_file_is_used(pascal_root):
    split = pascal_root / "splits" / "pascal" / "val"
    split.mkdir(parents=True)
    (split / "fold0.txt").write_text("2007_000000__01\n2007_000003__01\n2007_000006__01\n2007_000001__02\n")
    pairs = open_source("pascal", pascal_root, 0).image_class_pairs()
    assert pairs == [("2007_000000", 1), ("2007_000003", 1), ("2007_000006", 1), ("2007_000001", 2)]


def test_too_few_images_is_explained(pascal_root):
    with pytest.raises(ValueError, match="6 or more images"):
        sample_episodes(open_source("pascal", pascal_root, 0), n=2, shots=5)


def test_missing_root_is_explained(tmp_path):
    with pytest.raises(FileNotFoundError, match="JPEGImages"):
        open_source("pascal", tmp_path, 0)
    with pytest.raises(FileNotFoundError, match="instances_val2014"):
        open_source("coco", tmp_path, 0)
    with pytest.raises(ValueError, match="dataset"):
        open_source("ade", tmp_path, 0)


@pytest.fixture
def coco_root(tmp_path):
    from pycocotools import mask as mask_utils

    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2014").mkdir()
    rng = np.random.default_rng(1)
    cats = [{"id": i + 1 + (i // 10), "name": f"c{i}"} for i in range(80)]  # ids with gaps, like COCO's
    images, anns = [], []
    for i in range(6):
        name = f"COCO_val2014_{i:012d}.jpg"
        Image.fromarray(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).save(tmp_path / "val2014" / name)
        images.append({"id": 100 + i, "file_name": name, "height": 30, "width": 40})
        cat = cats[0 if i < 4 else 4]["id"]  # class index 0 (fold 0) in 4 images, index 4 (fold 0) in 2
        anns.append({"id": 1000 + 2 * i, "image_id": 100 + i, "category_id": cat, "iscrowd": 0, "area": 100.0,
                     "bbox": [2, 2, 10, 10], "segmentation": [[2, 2, 12, 2, 12, 12, 2, 12]]})
        crowd = np.zeros((30, 40), dtype=np.uint8, order="F")
        crowd[20:25, 20:30] = 1
        rle = mask_utils.encode(crowd)
        anns.append({"id": 1001 + 2 * i, "image_id": 100 + i, "category_id": cat, "iscrowd": 1, "area": 50.0,
                     "bbox": [20, 20, 10, 5], "segmentation": {"size": [30, 40], "counts": rle["counts"].decode()}})
    (tmp_path / "annotations" / "instances_val2014.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return tmp_path


def test_coco_pairs_masks_and_episodes(coco_root):
    assert coco_mod.fold_classes(1)[:3] == [1, 5, 9]
    src = open_source("coco", coco_root, fold=0)
    pairs = src.image_class_pairs()
    assert sorted({c for _, c in pairs}) == [0, 4] and len(pairs) == 6
    rgb, mask = src.load("100", 0)
    assert rgb.shape == (30, 40, 3)
    assert mask[20:25, 20:30].all() and mask[3:11, 3:11].all()     # polygon and RLE instances united
    assert mask.sum() == mask[2:13, 2:13].sum() + 50
    eps = list(load_episodes("coco", coco_root, 0, n=3, shots=1, size=(24, 24)))
    assert len(eps) == 3 and eps[0].meta["dataset"] == "coco"
    assert open_source("coco", coco_root, fold=1).image_class_pairs() == []


def test_a_replayed_episode_list_must_fit_the_request(pascal_root, tmp_path):
    csv_path = tmp_path / "episodes.csv"
    list(load_episodes("pascal", pascal_root, 0, n=3, shots=1, size=(16, 16), episode_list=csv_path))
    assert len(load_episode_list(csv_path)) == 3
    assert len(list(load_episodes("pascal", pascal_root, 0, n=2, shots=1, size=(16, 16), episode_list=csv_path))) == 2
    with pytest.raises(ValueError, match="holds 3 episodes, fewer than n=4"):
        load_episodes("pascal", pascal_root, 0, n=4, shots=1, episode_list=csv_path)
    with pytest.raises(ValueError, match=r"\[1\] supports, expected shots=2"):
        load_episodes("pascal", pascal_root, 0, n=3, shots=2, episode_list=csv_path)


def test_episodes_carry_the_class_name(pascal_root, coco_root):
    eps = list(load_episodes("pascal", pascal_root, 0, n=3, shots=1, size=(16, 16)))
    for e in eps:
        assert e.meta["class_name"] == pascal_mod.CLASSES[e.meta["class_id"] - 1]
    assert {e.meta["class_name"] for e in eps} <= {"aeroplane", "bicycle", "bird"}
    coco = list(load_episodes("coco", coco_root, 0, n=2, shots=1, size=(16, 16)))
    assert [e.meta["class_name"] for e in coco] == [f"c{e.meta['class_id']}" for e in coco]
    with pytest.raises(ValueError, match="class_id must be an int in 1..20"):
        open_source("pascal", pascal_root, 0).class_name(0)
    with pytest.raises(ValueError, match="class_id must be an int in 0..79"):
        open_source("coco", coco_root, 0).class_name(80)


def test_more_episodes_than_the_fold_holds_are_refused_or_repeated_on_request(pascal_root):
    from fss_attr.data.benchmarks import count_queries

    src = open_source("pascal", pascal_root, 0)
    assert count_queries(src, 1) == 8 and count_queries(src, 2) == 6 and count_queries(src, 3) == 0  # 3, 3, 2 images
    assert len(sample_episodes(src, n=8, shots=1)) == 8
    with pytest.raises(ValueError, match="holds 8 distinct 1-shot episodes .* than the 9 asked: ask for at most 8"):
        sample_episodes(src, n=9, shots=1)
    with pytest.raises(ValueError, match="holds 8 distinct"):
        load_episodes("pascal", pascal_root, 0, n=20, shots=1)
    specs = sample_episodes(src, n=20, shots=1, repeat=True)
    assert len(specs) == 20 and len({(s.query, s.class_id) for s in specs}) == 8
    assert [s.query for s in specs[:8]] == [s.query for s in specs[8:16]]     # queries come round in order
    with pytest.raises(ValueError, match="n must be a positive int"):
        sample_episodes(src, n=0, shots=1)


def test_evaluate_refuses_more_episodes_than_the_fold_holds_before_the_model_loads(pascal_root, tmp_path, capsys):
    from fss_attr.cli import main

    out = tmp_path / "out"
    assert main(["evaluate", "--dataset", "pascal", "--root", str(pascal_root), "--shots", "1", "--size", "32",
                 "--episodes", "9", "--explainers", "random", "--metrics", "miou", "--out", str(out),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds 8 distinct 1-shot episodes" in err[0] and "at most 8" in err[0], err
    assert not out.exists()
