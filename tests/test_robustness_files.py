"""Robustness of what is read from files: COCO segmentations, episode lists, images, checkpoints, label
tables, and mask resizing (issue 15, items 6, 11, 12)."""
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils

from fss_attr.data.episode_list import EpisodeSpec, episode_from_spec, load_episode_list, to_tensors
from fss_attr.data.images import read_image, read_rgb
from fss_attr.sat import decode_segmentation, label_stats, segment_stats
from fss_attr.sat.segments import label_table, rle_string_counts

TRIANGLE = [10, 10, 18, 10, 14, 18]


def _triangle_mask(h=20, w=20):
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects([TRIANGLE], h, w))).astype(bool)


# item 6: COCO segmentations ----------------------------------------------------------------------------------

@pytest.mark.parametrize("counts", [[2, 3], [2, 3, 100], [70], [-1, 65]])
def test_uncompressed_rle_must_cover_the_image_exactly(counts):
    with pytest.raises(ValueError, match=r"ann 7: (the RLE runs cover \d+ pixels, its size 8×8 has 64|"
                                         r"RLE counts must be ints >= 0)"):
        decode_segmentation({"size": [8, 8], "counts": counts}, 8, 8, "ann 7")


def test_compressed_rle_must_cover_the_image_exactly():
    small = mask_utils.encode(np.asfortranarray(np.ones((2, 2), dtype=np.uint8)))
    for counts in (small["counts"], small["counts"].decode("ascii")):
        with pytest.raises(ValueError, match="the RLE runs cover 4 pixels, its size 8×8 has 64"):
            decode_segmentation({"size": [8, 8], "counts": counts}, 8, 8)
    with pytest.raises(ValueError, match="the compressed RLE counts hold the character ' '"):
        decode_segmentation({"size": [8, 8], "counts": "0 !"}, 8, 8)


def test_segment_stats_refuses_a_truncated_rle_naming_the_annotation():
    with pytest.raises(ValueError, match=r"annotations\[0\]: the RLE runs cover 5 pixels"):
        segment_stats(torch.rand(1, 8, 8), [[{"name": "obj", "segmentation": {"size": [8, 8],
                                                                               "counts": [2, 3]}}]], ["obj"])


def test_rle_string_counts_against_pycocotools(gen):
    for _ in range(20):
        h, w = (int(v) for v in torch.randint(1, 40, (2,), generator=gen))
        m = (torch.rand(h, w, generator=gen) > float(torch.rand(1, generator=gen))).numpy().astype(np.uint8)
        rle = mask_utils.encode(np.asfortranarray(m))
        runs = rle_string_counts(rle["counts"])
        assert sum(runs) == h * w
        flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(bool)        # column-major, background first
        np.testing.assert_array_equal(flat.reshape(w, h).T, m.astype(bool))
        np.testing.assert_array_equal(decode_segmentation(rle, h, w), m.astype(bool))
        as_list = {"size": [h, w], "counts": runs}
        np.testing.assert_array_equal(decode_segmentation(as_list, h, w), m.astype(bool))


def test_degenerate_polygons_are_dropped_and_empty_segmentations_are_empty():
    np.testing.assert_array_equal(decode_segmentation([[2, 2, 3, 3], TRIANGLE], 20, 20), _triangle_mask())
    np.testing.assert_array_equal(decode_segmentation([TRIANGLE, [5, 5]], 20, 20), _triangle_mask())
    assert not decode_segmentation([], 20, 20).any()
    with pytest.raises(ValueError, match="ann 3: no polygon lists at least 3"):     # nothing left: a mistake
        decode_segmentation([[1, 1, 4, 4]], 20, 20, "ann 3")
    with pytest.raises(ValueError, match="odd number of coordinates"):
        decode_segmentation([[1, 1, 4, 4, 5]], 20, 20)


def _coco_root(tmp_path, segmentations, image_bytes=None):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2014").mkdir()
    Image.fromarray(np.zeros((20, 20, 3), np.uint8)).save(tmp_path / "val2014" / "img.jpg")
    if image_bytes is not None:
        (tmp_path / "val2014" / "img.jpg").write_bytes(image_bytes)
    anns = [{"id": k + 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 1.0, "bbox": [0, 0, 1, 1],
             "segmentation": seg} for k, seg in enumerate(segmentations)]
    data = {"images": [{"id": 1, "file_name": "img.jpg", "height": 20, "width": 20}], "annotations": anns,
            "categories": [{"id": i + 1, "name": f"class{i}"} for i in range(80)]}
    (tmp_path / "annotations" / "instances_val2014.json").write_text(json.dumps(data))
    return tmp_path


@pytest.mark.parametrize("segs", [[[[2, 2, 3, 3], TRIANGLE]], [[TRIANGLE], []], [[TRIANGLE], [[1, 1, 5, 5]]]])
def test_coco20i_load_with_degenerate_segmentations(tmp_path, segs):
    from fss_attr.data.coco import Coco20i

    _, mask = Coco20i(_coco_root(tmp_path, segs), 0, "val").load("1", 0)
    np.testing.assert_array_equal(mask, _triangle_mask())


def test_coco20i_load_names_the_annotation_of_a_bad_rle(tmp_path):
    from fss_attr.data.coco import Coco20i

    root = _coco_root(tmp_path, [[TRIANGLE], {"size": [20, 20], "counts": [3, 4]}])
    with pytest.raises(ValueError, match=r"instances_val2014.json: annotation id 2: the RLE runs cover 7 pixels"):
        Coco20i(root, 0, "val").load("1", 0)


# item 11: files ---------------------------------------------------------------------------------------------

def _jpeg_bytes():
    import io

    buf = io.BytesIO()
    Image.fromarray((np.random.default_rng(0).random((30, 40, 3)) * 255).astype(np.uint8)).save(buf, "JPEG")
    return buf.getvalue()


def test_truncated_or_foreign_image_files_are_named(tmp_path):
    data = _jpeg_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[:100])
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("cut.jpg", "text.jpg"):
        with pytest.raises(ValueError, match=f"{tmp_path / name}: cannot read the image"):
            read_rgb(tmp_path / name)
    with pytest.raises(FileNotFoundError, match="missing.png: no such image file"):
        read_image(tmp_path / "missing.png")
    (tmp_path / "ok.jpg").write_bytes(data)
    assert read_rgb(tmp_path / "ok.jpg").shape == (30, 40, 3)


def _voc(tmp_path, n=6):
    root = tmp_path / "VOC"
    (root / "JPEGImages").mkdir(parents=True)
    (root / "SegmentationClass").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        lab = np.zeros((30, 40), np.uint8)
        lab[5:20, 10:30] = 1 + i % 2
        Image.fromarray((rng.random((30, 40, 3)) * 255).astype(np.uint8)).save(root / "JPEGImages" / f"img{i}.jpg")
        Image.fromarray(lab).save(root / "SegmentationClass" / f"img{i}.png")
    return root


def test_pascal_truncated_jpeg_and_other_fold_class(tmp_path):
    from fss_attr.data.pascal import Pascal5i

    root = _voc(tmp_path)
    source = Pascal5i(root, 0, "val")
    ep = episode_from_spec(source, EpisodeSpec(1, "img0", ("img2", "img4")), (32, 32))
    assert ep.n_shots == 2 and bool(ep.query_mask.any())
    with pytest.raises(ValueError, match=r"episode class 17 is not one of pascal's classes \[1, 2, 3, 4, 5\]"):
        episode_from_spec(source, EpisodeSpec(17, "img0", ("img2", "img4")), (32, 32))
    data = (root / "JPEGImages" / "img0.jpg").read_bytes()
    (root / "JPEGImages" / "img0.jpg").write_bytes(data[:100])
    with pytest.raises(ValueError, match=r"img0.jpg: cannot read the image"):
        episode_from_spec(source, EpisodeSpec(1, "img0", ("img2", "img4")), (32, 32))


HEAD = "episode,class_id,query,support_1,support_2\n"


@pytest.mark.parametrize("text, match", [
    ("episode,query,support_1,support_2\n0,img00,img02,img04\n", r"missing column\(s\) \['class_id'\]"),
    ("episode,class_id,query\n0,1,img00\n", r"missing column\(s\) \['support_1'\]"),
    (HEAD + "0,cat,img00,img02,img04\n", "row 2: class_id 'cat' is not an int"),
    (HEAD + "0,1,img00,img02,img04\n1,1,img00,img02\n", "row 3: 1 support images, expected 2"),
    (HEAD + "0,1,img00,,img04\n", "row 2: 1 support images, expected 2"),
    (HEAD + "0,1,,img02,img04\n", "row 2: the class_id or query cell is empty or missing"),
    (HEAD + "0,,img00,img02,img04\n", "row 2: the class_id or query cell is empty or missing"),
    (HEAD + "0,1,img00,img02,img04,img06\n", "row 2: more cells than columns"),
    (HEAD + "0,17,img00,img02,img04\n", r"row 2: class 17 is not one of this fold's classes \[1, 2, 3, 4, 5\]"),
])
def test_episode_list_errors_name_the_file_and_row(tmp_path, text, match):
    path = tmp_path / "list.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=match) as info:
        load_episode_list(path, classes=[1, 2, 3, 4, 5], shots=2)
    assert str(path) in str(info.value)


def test_episode_list_shots_and_a_good_list(tmp_path):
    path = tmp_path / "list.csv"
    path.write_text(HEAD + "0,1,img00,img02,img04\n1,2,img01, img03 ,img05\n")
    specs = load_episode_list(path, classes=[1, 2], shots=2)
    assert specs == [EpisodeSpec(1, "img00", ("img02", "img04")), EpisodeSpec(2, "img01", ("img03", "img05"))]
    with pytest.raises(ValueError, match="has 2 support columns, expected 5"):
        load_episode_list(path, shots=5)
    path.write_text(HEAD + "0,1,img00,img02\n")                  # without shots: the short row's spec is short
    assert load_episode_list(path) == [EpisodeSpec(1, "img00", ("img02",))]
    with pytest.raises(FileNotFoundError, match="nope.csv does not exist"):
        load_episode_list(tmp_path / "nope.csv")


def test_a_text_file_is_not_a_checkpoint(tmp_path):
    from fss_attr.fewshot.checkpoint import load_checkpoint
    from fss_attr.models import HSNet
    from fss_attr.models.checkpoint import read_torch_file

    path = tmp_path / "weights.pt"
    path.write_text("hello, I am not a checkpoint\n")
    for load in (lambda: HSNet.from_checkpoint(str(path)), lambda: load_checkpoint(path),
                 lambda: read_torch_file(path)):
        with pytest.raises(ValueError, match=f"{path} is not a readable torch checkpoint"):
            load()
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        read_torch_file(tmp_path / "absent.pt")
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert read_torch_file(tmp_path / "ok.pt")["w"].tolist() == [1.0, 1.0]


# item 12: label tables and mask resizing ----------------------------------------------------------------------

def test_label_table_is_compact_whatever_the_label_values():
    names, keys, segment = label_table({2**40: "sky", 3: "road", 2**62: "sky"})
    assert names == ("road", "sky")
    assert keys.tolist() == [3, 2**40, 2**62] and segment.tolist() == [0, 1, 1]


def test_label_stats_with_huge_labels_equals_renumbered_labels(gen):
    maps = torch.rand(2, 6, 7, generator=gen, dtype=torch.float64)
    small = torch.randint(0, 4, (2, 6, 7), generator=gen)
    big_values = torch.tensor([7, 2**33 + 5, 2**40, 255])
    big = big_values[small]
    want = label_stats(maps, small, {0: "a", 1: "b", 2: "a"}, normalise="sum")
    got = label_stats(maps, big, {7: "a", 2**33 + 5: "b", 2**40: "a"}, normalise="sum")   # 255: unnamed
    assert got.names == want.names
    torch.testing.assert_close(got.counts, want.counts, rtol=0, atol=0)
    torch.testing.assert_close(got.sums, want.sums)


def test_mask_and_image_share_the_sampling_grid():
    """An object over input columns 10..19 resized 30 -> 10 (3:1): output cells 3..6 hold more than half of
    it in the (antialiased bilinear) image; the mask must cover the same cells. "nearest" samples each cell's
    left pixel (3i) and loses cell 3; "nearest-exact" samples its centre (3i + 1)."""
    rgb = np.zeros((30, 30, 3), np.uint8)
    rgb[:, 10:20] = 255
    mask = np.zeros((30, 30), bool)
    mask[:, 10:20] = True
    img, m = to_tensors(rgb, mask, (10, 10))
    lo, hi = img.amin(), img.amax()
    image_cells = ((img.mean(0) - lo) / (hi - lo) > 0.5)[0].nonzero().flatten().tolist()
    assert image_cells == [3, 4, 5, 6]
    assert m[0].nonzero().flatten().tolist() == image_cells
    assert bool((m == m[:1]).all())                  # every row alike


def test_a_corrupt_controlled_pool_cache_is_rendered_again(tmp_path):
    from fss_attr.data.classification.controlled import controlled_pool

    pool = controlled_pool("test", 2, size=(40, 40), seed=3, cache_dir=tmp_path, progress=False)
    (cache,) = tmp_path.glob("*.npz")
    cache.write_bytes(cache.read_bytes()[:50])
    with pytest.warns(UserWarning, match="unreadable .*rendering it again"):
        again = controlled_pool("test", 2, size=(40, 40), seed=3, cache_dir=tmp_path, progress=False)
    torch.testing.assert_close(again.images, pool.images, rtol=0, atol=0)
    third = controlled_pool("test", 2, size=(40, 40), seed=3, cache_dir=tmp_path, progress=False)   # rewritten
    torch.testing.assert_close(third.images, pool.images, rtol=0, atol=0)


def test_mini_imagenet_table_with_a_short_row(tmp_path):
    from fss_attr.data.classification.folders import mini_imagenet

    (tmp_path / "images").mkdir()
    (tmp_path / "test.csv").write_text("filename,label\na.jpg,n01\nb.jpg\n")
    with pytest.raises(ValueError, match=r"test.csv, row 3: expected 'filename,label' with both cells filled"):
        mini_imagenet(tmp_path, "test")


def test_coco20i_names_a_broken_annotation_file(tmp_path):
    from fss_attr.data.coco import Coco20i

    root = _coco_root(tmp_path, [[TRIANGLE]])
    path = root / "annotations" / "instances_val2014.json"
    path.write_text(path.read_text()[:40])
    with pytest.raises(ValueError, match="instances_val2014.json is not a COCO annotation file"):
        Coco20i(root, 0, "val")
