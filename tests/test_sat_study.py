"""The SAT demonstration's parts: gradient explainers against per-image loops and closed forms, the linear probe
at its optimum, the cue images and segments, and the study end to end at a tiny size."""
from __future__ import annotations

import csv
import json

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fss_attr.data.controlled import render_image
from fss_attr.sat.classifier import LinearProbe, ProbedClassifier
from fss_attr.sat.cue_study import (HEADLINE_COLUMNS, MODELS, SEGMENTS, CueStudy, ImageSet, cue_template,
                                    render_set, segment_masks, with_cue)
from fss_attr.sat.saliency import class_score, grad_cam, input_gradient


class TinyConvHead(nn.Module):
    """A nonlinear head (conv, ReLU, average pool, linear) in float64."""

    def __init__(self, c: int, k: int, seed: int):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.conv = nn.Conv2d(c, 5, 3, padding=1, dtype=torch.float64)
        self.fc = nn.Linear(5, k, dtype=torch.float64)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))

    def forward(self, a):
        return self.fc(F.relu(self.conv(a)).mean((2, 3)))


def grad_cam_loop(head, features, target, out_size, log_prob):
    """Grad-CAM image by image, the textbook way."""
    out = []
    for i in range(features.shape[0]):
        a = features[i: i + 1].clone().requires_grad_(True)
        logits = head(a)[0]
        score = torch.log_softmax(logits, 0)[target[i]] if log_prob else logits[target[i]]
        (g,) = torch.autograd.grad(score, a)
        cam = F.relu((g.mean((2, 3), keepdim=True) * a.detach()).sum(1, keepdim=True))
        out.append(F.interpolate(cam, size=out_size, mode="bilinear", align_corners=False)[0, 0])
    return torch.stack(out)


@pytest.mark.parametrize("b,c,hw,k,out", [(3, 4, (5, 6), 3, (20, 24)), (1, 2, (1, 1), 2, (7, 5)),
                                          (4, 3, (4, 4), 5, (4, 4))])
@pytest.mark.parametrize("log_prob", [True, False])
def test_grad_cam_equals_per_image_loop(b, c, hw, k, out, log_prob):
    g = torch.Generator().manual_seed(b * 10 + c)
    head = TinyConvHead(c, k, seed=c)
    features = torch.randn(b, c, *hw, generator=g, dtype=torch.float64)
    target = torch.randint(0, k, (b,), generator=g)
    got = grad_cam(head, features, target, out, log_prob)
    assert got.shape == (b, *out) and got.dtype == torch.float64 and bool((got >= 0).all())
    torch.testing.assert_close(got, grad_cam_loop(head, features, target, out, log_prob), rtol=1e-12, atol=1e-14)


def test_grad_cam_of_a_linear_probe_is_its_class_activation_map():
    # pooled -> standardise -> linear: d log p_t / dA_c(p) = (W_t - sum_k p_k W_k)_c / (std_c h w) at every p
    g = torch.Generator().manual_seed(1)
    mean = torch.randn(6, generator=g, dtype=torch.float64)
    std = torch.rand(6, generator=g, dtype=torch.float64) + 0.5
    probe = LinearProbe(mean, std, nn.Linear(6, 3, dtype=torch.float64))
    features = torch.randn(4, 6, 3, 5, generator=g, dtype=torch.float64)
    target = torch.tensor([0, 2, 1, 2])
    with torch.no_grad():
        p = torch.softmax(probe(features), 1)
        w = probe.linear.weight / probe.std                                   # [K, C]
        direction = w[target] - p @ w                                         # [B, C]
        cam = torch.einsum("bc,bchw->bhw", direction / 15, features).clamp_min(0)
    want = F.interpolate(cam[:, None], size=(9, 10), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(grad_cam(probe, features, target, (9, 10)), want, rtol=1e-12, atol=1e-14)


def test_input_gradient_equals_loop_and_finite_differences():
    g = torch.Generator().manual_seed(2)
    model = TinyConvHead(3, 4, seed=5)
    images = torch.rand(3, 3, 6, 7, generator=g, dtype=torch.float64)
    target = torch.tensor([1, 3, 0])
    got = input_gradient(model, images, target)
    for i in range(3):
        x = images[i: i + 1].clone().requires_grad_(True)
        (grad,) = torch.autograd.grad(torch.log_softmax(model(x)[0], 0)[target[i]], x)
        torch.testing.assert_close(got[i], grad[0].abs().sum(0), rtol=1e-12, atol=1e-14)
        # one pixel's channel gradient by central differences (the head is piecewise smooth; step 1e-6)
        e = torch.zeros_like(images[i: i + 1])
        e[0, 1, 2, 3] = 1e-6
        with torch.no_grad():
            fd = (torch.log_softmax(model(images[i: i + 1] + e)[0], 0)[target[i]]
                  - torch.log_softmax(model(images[i: i + 1] - e)[0], 0)[target[i]]) / 2e-6
        assert float(fd) == pytest.approx(float(grad[0, 1, 2, 3]), rel=1e-5, abs=1e-8)


def test_class_score_and_bad_targets():
    logits = torch.tensor([[1.0, 2.0, 0.0], [0.5, 0.5, 3.0]])
    torch.testing.assert_close(class_score(logits, torch.tensor([1, 2]), log_prob=False), torch.tensor([2.0, 3.0]))
    torch.testing.assert_close(class_score(logits, torch.tensor([0, 0])),
                               torch.log_softmax(logits, 1)[:, 0])
    with pytest.raises(ValueError, match="target must be int64"):
        class_score(logits, torch.tensor([1, 2], dtype=torch.int32))
    with pytest.raises(ValueError, match="target must hold classes in 0..2"):
        class_score(logits, torch.tensor([1, 3]))
    with pytest.raises(ValueError, match="features must have 4 dimensions"):
        grad_cam(nn.Identity(), torch.zeros(2, 3), torch.tensor([0, 1]), (4, 4))


def test_linear_probe_fit_reaches_the_optimum():
    # L2-regularised logistic regression is strictly convex in W: at the fit the objective's gradient vanishes
    g = torch.Generator().manual_seed(4)
    centres = 3 * torch.randn(3, 8, generator=g, dtype=torch.float64)
    labels = torch.arange(60) % 3
    pooled = centres[labels] + torch.randn(60, 8, generator=g, dtype=torch.float64) * 2
    threads = torch.get_num_threads()
    probe = LinearProbe.fit(pooled, labels, 3, weight_decay=1e-2)
    assert torch.get_num_threads() == threads
    loss = probe.loss(pooled, labels, 1e-2)
    grads = torch.autograd.grad(loss, list(probe.linear.parameters()))
    assert max(float(gr.abs().max()) for gr in grads) < 1e-6
    torch.testing.assert_close(probe.mean, pooled.mean(0))
    # forward pools the feature map first
    fmap = pooled[:, :, None, None].expand(60, 8, 2, 3)
    torch.testing.assert_close(probe(fmap), probe.logits_from_pooled(pooled))
    assert (probe(fmap).argmax(1) == labels).double().mean() > 0.8
    again = LinearProbe.fit(pooled, labels, 3, weight_decay=1e-2)
    torch.testing.assert_close(again.linear.weight, probe.linear.weight, rtol=0, atol=0)   # deterministic
    with pytest.raises(ValueError, match="labels must lie in 0..1"):
        LinearProbe.fit(pooled, labels, 2)
    with pytest.raises(ValueError, match="same N"):
        LinearProbe.fit(pooled, labels[:5], 3)


def test_pasted_cue_equals_render_image_with_the_cue():
    # the study renders each image once and pastes the cue; render_image's cue must not depend on its draws
    for cue in ("frame", "watermark"):
        template = cue_template(cue, 40)
        for cls, seed in (("grass", 3), ("coins", 11)):
            drawn = render_image(cls, seed, (40, 40), n_distractors=1, cue=cue)
            plain = render_image(cls, seed, (40, 40), n_distractors=1)
            one = ImageSet(plain.image[None], torch.tensor([0]), plain.object_mask[None])
            pasted = with_cue(one, template, torch.tensor([True]))
            assert torch.equal(pasted.images[0], drawn.image)
            assert torch.equal(template[0], drawn.cue_mask) and bool(pasted.has_cue[0])
            untouched = with_cue(one, template, torch.tensor([False]))
            assert torch.equal(untouched.images, one.images) and not bool(untouched.has_cue[0])


def test_segments_partition_images_and_cue_is_missing_without_it():
    images = render_set(("brick", "grass"), 2, 40, [5, 6, 7, 8], n_distractors=1, progress=False)
    assert images.labels.tolist() == [0, 1, 0, 1] and images.images.shape == (4, 3, 40, 40)
    template = cue_template("frame", 40)
    cued = with_cue(images, template, images.labels == 0)
    seg = segment_masks(cued, template[0])
    assert seg.shape == (4, len(SEGMENTS), 40, 40)
    assert bool((seg.sum(1) == 1).all())                                  # a partition of every image
    assert seg[:, 2].flatten(1).any(1).tolist() == [True, False, True, False]
    assert torch.equal(seg[1, 0], images.object_masks[1])                  # no cue: the whole object
    assert not bool((seg[0, 0] & template[0]).any())                       # the cue is cut out of the object


def test_study_settings_are_checked():
    with pytest.raises(ValueError, match="classes must be"):
        CueStudy(classes=("brick",))
    with pytest.raises(ValueError, match="cue must be one of"):
        CueStudy(cue="logo")
    with pytest.raises(ValueError, match="explainers must be"):
        CueStudy(explainers=("lime",))
    with pytest.raises(ValueError, match="train_per_class must be a positive int"):
        CueStudy(train_per_class=0)
    with pytest.raises(ValueError, match="block must be in 0..15"):
        CueStudy(block=16)


def test_sat_command_end_to_end_tiny(tmp_path, capsys):
    from fss_attr.cli import main

    out = tmp_path / "sat"
    assert main(["sat", "--classes", "brick,grass", "--train-per-class", "3", "--test-per-class", "2",
                 "--size", "48", "--distractors", "1", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cue_share" in printed and str(out / "cue_reliance.csv") in printed
    headline = list(csv.DictReader((out / "cue_reliance.csv").open()))
    assert [(r["model"], r["explainer"]) for r in headline] == [("cued", "gradcam"), ("cued", "saliency"),
                                                               ("clean", "gradcam"), ("clean", "saliency")]
    assert list(headline[0]) == list(HEADLINE_COLUMNS)
    for r in headline:     # the three segments partition each image, so their mean shares add up to 1
        total = float(r["cue_share"]) + float(r["object_share"]) + float(r["background_share"])
        assert total == pytest.approx(1.0, abs=1e-5)
        assert all(0.0 <= float(r[f"acc_{s}"]) <= 1.0 for s in ("cued", "cue_free", "cue_everywhere"))
    assert headline[2]["acc_cue_free"] == headline[3]["acc_cue_free"]    # one probe, two explainers
    rows = list(csv.DictReader((out / "sat_rows.csv").open()))
    # 4 test images × 2 probes × 2 explainers; the 2 cue-class images have 3 segments, the others 2 (no cue)
    assert len(rows) == 4 * (2 * 3 + 2 * 2)
    summary = list(csv.DictReader((out / "sat_summary.csv").open()))
    assert len(summary) == 4 * 2 * 3
    cue_rows = [r for r in summary if r["segment"] == "cue"]
    assert {(r["class"], r["presence"]) for r in cue_rows} == {("brick", "1.0"), ("grass", "0.0")}
    for name in ("reliance_bars.png", "reliance_heatmap.png"):
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = json.loads((out / "sat.json").read_text())
    assert report["study"]["cue_class"] == "brick" and report["headline"][0]["model"] == "cued"


def test_probed_classifier_composes_features_and_head():
    head = TinyConvHead(3, 2, seed=0)
    model = ProbedClassifier(lambda x: 2 * x, head)
    x = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    torch.testing.assert_close(model(x), head(2 * x))



def test_write_cue_study_writes_what_run_cue_study_returns(tmp_path):
    # the library returns the tables; write_cue_study (the command's writer) puts them on disk
    from fss_attr.sat.cue_study import CueStudyResult, write_cue_study
    from fss_attr.sat.reduce import ROW_COLUMNS
    from fss_attr.sat.table import SUMMARY_COLUMNS

    study = CueStudy(classes=("brick", "grass"), explainers=("gradcam",))
    summary = [{"model": m, "explainer": "gradcam", "class": c, "segment": s, "n_images": 2, "presence": 1.0,
                "mean_saliency": 1.0, "std_saliency": 0.1, "mean_share": 1 / 3, "std_share": 0.05, "rank_first": 0.5}
               for m in MODELS for c in study.classes for s in SEGMENTS]
    headline = [{c: 0.5 for c in HEADLINE_COLUMNS} | {"model": m, "explainer": "gradcam"} for m in MODELS]
    rows = [{c: 0 for c in ROW_COLUMNS} | {"model": "cued", "explainer": "gradcam", "prediction": "brick"}]
    result = CueStudyResult(study, headline, summary, rows, {"total": 1.0})
    paths = write_cue_study(result, tmp_path / "out")
    assert set(paths) == {"headline", "summary", "rows", "bars", "heatmap"}
    assert list(csv.DictReader(paths["summary"].open()))[0].keys() >= set(SUMMARY_COLUMNS)
    assert len(list(csv.DictReader(paths["headline"].open()))) == 2
    assert paths["bars"].read_bytes()[:4] == b"\x89PNG"
    assert result.to_dict()["study"]["cue_class"] == "brick"
