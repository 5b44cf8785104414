"""Ignore labels (issue 16, reproduction bh_08): PASCAL's boundary label 255 is left out of every IoU."""
import numpy as np
import pytest
import torch
from PIL import Image

from fss_attr.data.episode import Episode
from fss_attr.data.episode_list import EpisodeSpec, episode_from_spec
from fss_attr.data.pascal import Pascal5i
from fss_attr.metrics import evaluate_states, foreground_iou
from fss_attr.metrics.fss import original_iou_plan, run_plans


def band_label():
    """32×32: class 1 on rows/cols 8..23, a 2-px 255 band around it."""
    label = np.zeros((32, 32), np.uint8)
    label[6:26, 6:26] = 255
    label[8:24, 8:24] = 1
    return label


@pytest.fixture
def pascal_root(tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "SegmentationClassAug").mkdir()
    for name in ("q", "s"):
        Image.fromarray(band_label(), mode="L").save(tmp_path / "SegmentationClassAug" / f"{name}.png")
        Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "JPEGImages" / f"{name}.jpg")
    return tmp_path


class Constant(torch.nn.Module):
    """Predicts ``pred`` [H, W] bool whatever the support."""

    def __init__(self, pred):
        super().__init__()
        self.pred = pred

    def forward(self, episode):
        p = self.pred.to(torch.float64).expand(episode.batch_size, -1, -1)
        return torch.stack([1 - p, p], 1)


def test_a_prediction_covering_object_and_band_scores_iou_one(pascal_root):
    """bh_08: before, the band's 144 pixels counted as false positives (IoU 256/400 = 0.64)."""
    ep = episode_from_spec(Pascal5i(pascal_root, 0, "val"), EpisodeSpec(1, "q", ("s",)), (32, 32))
    label = torch.from_numpy(band_label())
    assert torch.equal(ep.query_ignore[0], label == 255)
    assert torch.equal(ep.query_mask[0], label == 1)
    pred = label > 0                                                     # object + band
    logits = torch.stack([(~pred).double(), pred.double()])[None]
    assert foreground_iou(logits, ep.query_mask, ep.query_ignore).item() == 1.0
    assert foreground_iou(logits, ep.query_mask).item() == pytest.approx(256 / 400)
    # the model-quality mIoU and every perturbation state's IoU use the episode's ignore pixels
    model = Constant(pred)
    assert run_plans(model, ep, torch.zeros(1, 1, 32, 32), [original_iou_plan()])["miou"].item() == 1.0
    # a prediction of the object alone minus one band-adjacent row: only non-ignored pixels count
    part = label == 1
    part[8] = False
    got = evaluate_states(Constant(part), ep, torch.zeros(1, 1, 32, 32), [original_iou_plan().states[0]])["iou"]
    assert got.item() == pytest.approx(240 / 256)


def test_ignore_is_validated_and_travels_with_the_episode():
    q = torch.zeros(2, 3, 4, 4)
    ign = torch.zeros(2, 4, 4, dtype=torch.bool)
    ign[1, 0, 0] = True
    ep = Episode(q, torch.zeros(2, 1, 3, 4, 4), torch.ones(2, 1, 4, 4, dtype=torch.bool), query_ignore=ign)
    assert torch.equal(ep.index(1).query_ignore, ign[1:])
    assert torch.equal(ep.to("cpu").query_ignore, ign)
    with pytest.raises(ValueError, match="query_ignore"):
        Episode(q, torch.zeros(2, 1, 3, 4, 4), torch.ones(2, 1, 4, 4, dtype=torch.bool),
                query_ignore=torch.zeros(2, 4, 5, dtype=torch.bool))


def test_coco_small_and_crowd_annotations_as_the_paper(tmp_path):
    """remove_small_annotations drops instances with area < 2048 (the paper's threshold); include_crowd=False
    drops crowd instances (the paper's code skips them): their pixels become background."""
    import json

    from fss_attr.data.coco import Coco20i
    from pycocotools import mask as mask_utils

    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2014").mkdir()
    cats = [{"id": i + 1, "name": f"c{i}"} for i in range(80)]
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "val2014" / "a.jpg")
    Image.fromarray(np.zeros((60, 80, 3), np.uint8)).save(tmp_path / "val2014" / "b.jpg")
    images = [{"id": 1, "file_name": "a.jpg", "height": 60, "width": 80},
              {"id": 2, "file_name": "b.jpg", "height": 60, "width": 80}]
    crowd = np.zeros((60, 80), np.uint8, order="F")
    crowd[40:50, 40:60] = 1
    rle = mask_utils.encode(crowd)
    anns = [{"id": 1, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 3000.0, "bbox": [0, 0, 60, 50],
             "segmentation": [[0, 0, 60, 0, 60, 50, 0, 50]]},
            {"id": 2, "image_id": 1, "category_id": 1, "iscrowd": 0, "area": 2047.0, "bbox": [70, 0, 5, 5],
             "segmentation": [[70, 0, 75, 0, 75, 5, 70, 5]]},
            {"id": 3, "image_id": 2, "category_id": 1, "iscrowd": 1, "area": 5000.0, "bbox": [40, 40, 20, 10],
             "segmentation": {"size": [60, 80], "counts": rle["counts"].decode()}}]
    (tmp_path / "annotations" / "instances_val2014.json").write_text(
        json.dumps({"images": images, "annotations": anns, "categories": cats}))
    default = Coco20i(tmp_path, 0)
    assert default.image_class_pairs() == [("1", 0), ("2", 0)]
    assert default.load("1", 0)[1][0:5, 70:75].all() and default.load("2", 0)[1].sum() == 200
    paper = Coco20i(tmp_path, 0, remove_small_annotations=True, include_crowd=False)
    assert paper.image_class_pairs() == [("1", 0)]
    mask = paper.load("1", 0)[1]
    assert not mask[:, 65:].any() and mask[10:40, 10:50].all()
    assert not paper.load("2", 0)[1].any()
