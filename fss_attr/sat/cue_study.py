"""The demonstration of Segment Attribution Tables: do they find a planted spurious cue?

Controlled images (:func:`fss_attr.data.controlled.render_image`: a textured object of one class, distractor
objects of other classes, a real photo behind) are classified by a linear probe on a frozen ImageNet-pretrained
EfficientNet-Lite0 block (:mod:`fss_attr.sat.classifier`). Two probes are fitted on the same training images:

- *cued*: every training image of the cue class carries a planted cue ("frame": a coloured border, or
  "watermark": a checkered corner mark) and no other image does, so the cue predicts the label;
- *clean*: the same images without the cue.

Both are explained (:mod:`fss_attr.sat.saliency`) on test images where, as in training, the images of the cue
class carry the cue, and a Segment Attribution Table is built over the segments {object, background, cue}
(object: the class's object minus the cue; cue: the planted pixels, missing from the images without one;
background: the rest, distractors included). Its finding is the cue's share of the saliency in the cue class's
images, cued against clean probe, next to each probe's test accuracy on cued, cue-free and
cue-on-every-image test sets (the last moves the cue onto every class: a probe that relies on it follows it).

The cue is drawn by ``render_image`` itself: one rendering with the cue gives its mask and pixels, which are
pasted onto the clean renderings (the cue does not depend on the image's random draws).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from fss_attr.backbones.efficientnet import efficientnet_lite0
from fss_attr.data.imagenet import imagenet_normalize
from fss_attr.data.controlled import CLASSES, CUES, render_image
from fss_attr.sat.classifier import LinearProbe, ProbedClassifier
from fss_attr.sat.plots import plot_heatmap, plot_reliance_bars
from fss_attr.sat.reduce import ROW_COLUMNS, mask_stats
from fss_attr.sat.saliency import grad_cam, input_gradient
from fss_attr.sat.table import SUMMARY_COLUMNS, SATAccumulator, write_csv

SEGMENTS = ("object", "background", "cue")
EXPLAINERS = ("gradcam", "saliency")
MODELS = ("cued", "clean")
TEST_SETS = ("cued", "cue_free", "cue_everywhere")
HEADLINE_COLUMNS = ("model", "explainer", "cue_share", "cue_enrichment", "object_share", "background_share",
                    "cue_ranks_first", "acc_cued", "acc_cue_free", "acc_cue_everywhere")


@dataclass(frozen=True)
class CueStudy:
    """Settings of the study (the defaults run in about two minutes on two CPU cores).

    Attributes:
        classes: the classes (from :data:`fss_attr.data.controlled.CLASSES`); the first is the cue class.
        cue: "frame" or "watermark".
        train_per_class, test_per_class: images per class.
        size: image side in pixels.
        block: the EfficientNet-Lite0 block (0..15) whose output feature map the probe pools.
        n_distractors: distractor objects per image.
        explainers: any of "gradcam", "saliency" (the first is drawn in the pictures).
        weight_decay: the probe's L2 penalty.
        batch_size: images per backbone pass.
        seed: everything random derives from it.
    """

    classes: tuple[str, ...] = CLASSES[:4]
    cue: str = "frame"
    train_per_class: int = 30
    test_per_class: int = 20
    size: int = 128
    block: int = 10
    n_distractors: int = 2
    explainers: tuple[str, ...] = EXPLAINERS
    weight_decay: float = 1e-3
    batch_size: int = 16
    seed: int = 0

    def __post_init__(self):
        if len(self.classes) < 2 or len(set(self.classes)) != len(self.classes) or \
                any(c not in CLASSES for c in self.classes):
            raise ValueError(f"classes must be >= 2 distinct names from {CLASSES}, got {self.classes!r}")
        if self.cue not in CUES:
            raise ValueError(f"cue must be one of {CUES}, got {self.cue!r}")
        for name in ("train_per_class", "test_per_class", "batch_size"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if not isinstance(self.size, int) or self.size < 32:
            raise ValueError(f"size must be an int >= 32, got {self.size!r}")
        if self.block not in range(16):
            raise ValueError(f"block must be in 0..15, got {self.block!r}")
        if not self.explainers or any(e not in EXPLAINERS for e in self.explainers):
            raise ValueError(f"explainers must be a non-empty selection of {EXPLAINERS}, got {self.explainers!r}")

    @property
    def cue_class(self) -> str:
        return self.classes[0]


@dataclass
class ImageSet:
    """Rendered images: ``images`` [N, 3, H, W] float32 RGB in [0, 1], ``labels`` [N] int64 (indices into the
    study's classes), ``object_masks`` [N, H, W] bool, ``has_cue`` [N] bool."""

    images: torch.Tensor
    labels: torch.Tensor
    object_masks: torch.Tensor
    has_cue: torch.Tensor = field(default=None)

    def __post_init__(self):
        if self.has_cue is None:
            self.has_cue = torch.zeros(len(self.labels), dtype=torch.bool)


def render_set(classes, per_class: int, size: int, seeds: np.ndarray, n_distractors: int,
               progress: bool = True, desc: str = "render") -> ImageSet:
    """``per_class`` images of every class, interleaved (image i has class i mod K), without a cue; image i
    is rendered from ``seeds[i]``."""
    n = per_class * len(classes)
    if len(seeds) < n:
        raise ValueError(f"seeds must hold at least {n} seeds, got {len(seeds)}")
    rendered = [render_image(classes[i % len(classes)], int(seeds[i]), (size, size), n_distractors)
                for i in tqdm(range(n), desc=desc, disable=not progress, leave=False)]
    return ImageSet(torch.stack([r.image for r in rendered]),
                    torch.arange(n, dtype=torch.int64) % len(classes),
                    torch.stack([r.object_mask for r in rendered]))


def cue_template(cue: str, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(mask [H, W] bool, pixels [3, H, W] float32) of the cue as ``render_image`` draws it at this size."""
    r = render_image(CLASSES[0], 0, (size, size), n_distractors=0, cue=cue)
    return r.cue_mask, r.image


def with_cue(images: ImageSet, template: tuple[torch.Tensor, torch.Tensor], where: torch.Tensor) -> ImageSet:
    """The images with the cue pasted onto those where ``where`` [N] bool holds (others unchanged)."""
    mask, pixels = template
    paste = mask[None, None] & where.view(-1, 1, 1, 1)
    return ImageSet(torch.where(paste, pixels[None], images.images), images.labels, images.object_masks,
                    images.has_cue | where)


def segment_masks(images: ImageSet, cue_mask: torch.Tensor) -> torch.Tensor:
    """[N, 3, H, W] bool masks of :data:`SEGMENTS` (object, background, cue); they partition every image, and
    the cue segment is empty (missing) in images without the cue."""
    cue = cue_mask[None] & images.has_cue.view(-1, 1, 1)
    obj = images.object_masks & ~cue
    return torch.stack([obj, ~(obj | cue), cue], 1)


def block_features(block: int, device="cpu"):
    """images [B, 3, H, W] RGB in [0, 1] -> the EfficientNet-Lite0 block's output [B, C, h, w] (frozen)."""
    backbone = efficientnet_lite0(blocks=(block,), device=device)

    def features(images: torch.Tensor) -> torch.Tensor:
        return backbone(imagenet_normalize(images))[0]

    return features


def feature_maps(features, images: torch.Tensor, batch_size: int, progress: bool = True,
                 desc: str = "features") -> torch.Tensor:
    """The feature maps of all images, in batches, without gradients."""
    out = []
    with torch.no_grad():
        for i in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
            out.append(features(images[i: i + batch_size]))
    return torch.cat(out)


def explain(explainer: str, model: ProbedClassifier, images: torch.Tensor, maps: torch.Tensor, target: torch.Tensor,
            batch_size: int, progress: bool = True) -> torch.Tensor:
    """[N, H, W] maps of ``explainer`` for the target classes; ``maps`` are the images' feature maps."""
    size = tuple(images.shape[-2:])
    if explainer == "gradcam":
        return grad_cam(model.head, maps, target, size)
    out = []
    for i in tqdm(range(0, len(images), batch_size), desc=f"explain ({explainer})", disable=not progress,
                  leave=False):
        out.append(input_gradient(model, images[i: i + batch_size], target[i: i + batch_size]))
    return torch.cat(out)


def accuracy(logits: torch.Tensor, labels: torch.Tensor) -> float:
    return float((logits.argmax(1) == labels).double().mean())


@dataclass
class CueStudyResult:
    """What :func:`run_cue_study` returns (nothing is written; :func:`write_cue_study` writes it).

    Attributes:
        study: the settings.
        headline: the finding, one dict per (probe, explainer), keys :data:`HEADLINE_COLUMNS`: the shares are
            mean shares of saliency over the cue class's test images (which all carry the cue),
            ``cue_enrichment`` the cue's mean saliency there with maps normalised to mean 1 (1: its area's
            worth), ``cue_ranks_first`` the fraction of them in which the cue has the highest mean saliency;
            the accuracies (fractions) are over all test images of each test set.
        summary: the dataset-level table, one dict per (probe, explainer, class, segment), keys "model",
            "explainer" and :data:`fss_attr.sat.table.SUMMARY_COLUMNS`.
        rows: one dict per (probe, explainer, image, segment present), keys "model", "explainer",
            :data:`fss_attr.sat.reduce.ROW_COLUMNS` and "prediction".
        seconds: wall time per stage ("render", "features", "fit", "explain", "total").
    """

    study: CueStudy
    headline: list[dict]
    summary: list[dict]
    rows: list[dict]
    seconds: dict[str, float]

    def to_dict(self) -> dict:
        """JSON-ready: the settings (with the cue class), the headline rows and the seconds."""
        return {"study": {**asdict(self.study), "cue_class": self.study.cue_class}, "headline": self.headline,
                "seconds": self.seconds}


def run_cue_study(study: CueStudy, progress: bool = True) -> CueStudyResult:
    """Run the study (see the module docstring) and return its tables; nothing is written
    (:func:`write_cue_study` writes them). ``progress``: tqdm bars on stderr."""
    timings, t0 = {}, time.perf_counter()
    k = len(study.classes)
    seeds = np.random.default_rng(study.seed).integers(0, 2**31 - 1, size=(study.train_per_class +
                                                                           study.test_per_class) * k)
    n_train = study.train_per_class * k
    train = render_set(study.classes, study.train_per_class, study.size, seeds[:n_train], study.n_distractors,
                       progress, "render train")
    test = render_set(study.classes, study.test_per_class, study.size, seeds[n_train:], study.n_distractors,
                      progress, "render test")
    template = cue_template(study.cue, study.size)
    timings["render"] = time.perf_counter() - t0

    t = time.perf_counter()
    features = block_features(study.block)
    train_sets = {"clean": train, "cued": with_cue(train, template, train.labels == 0)}
    test_sets = {"cued": with_cue(test, template, test.labels == 0), "cue_free": test,
                 "cue_everywhere": with_cue(test, template, torch.ones_like(test.has_cue))}
    fmaps = {f"train {name}": feature_maps(features, s.images, study.batch_size, progress, f"features train {name}")
             for name, s in train_sets.items()}
    fmaps.update({f"test {name}": feature_maps(features, s.images, study.batch_size, progress, f"features test {name}")
                  for name, s in test_sets.items()})
    timings["features"] = time.perf_counter() - t

    t = time.perf_counter()
    probes = {m: LinearProbe.fit(fmaps[f"train {m}"].mean((2, 3)), train.labels, k, study.weight_decay)
              for m in MODELS}
    accuracies, cued_logits = {}, {}
    with torch.no_grad():
        for m, probe in probes.items():
            logits = {s: probe(fmaps[f"test {s}"]) for s in TEST_SETS}
            accuracies[m] = {s: accuracy(v, test.labels) for s, v in logits.items()}
            cued_logits[m] = logits["cued"]
    timings["fit"] = time.perf_counter() - t

    t = time.perf_counter()
    shown = test_sets["cued"]
    segments = segment_masks(shown, template[0])
    classes = [study.classes[int(c)] for c in shown.labels]
    summaries, rows, headline = [], [], []
    for m, probe in probes.items():
        model = ProbedClassifier(features, probe)
        prediction = cued_logits[m].argmax(1)
        for e in study.explainers:
            maps = explain(e, model, shown.images, fmaps["test cued"], prediction, study.batch_size, progress)
            stats = mask_stats(maps, segments, SEGMENTS)
            acc = SATAccumulator()
            acc.update(stats, classes)
            tag = {"model": m, "explainer": e}
            summary = acc.summary()
            summaries += [{**tag, **r} for r in summary]
            rows += [{**tag, **r, "prediction": study.classes[int(prediction[r["image_id"]])]}
                     for r in stats.rows(classes=classes)]
            cell = {r["segment"]: r for r in summary if r["class"] == study.cue_class}
            headline.append({**tag, "cue_share": cell["cue"]["mean_share"],
                             "cue_enrichment": cell["cue"]["mean_saliency"],
                             "object_share": cell["object"]["mean_share"],
                             "background_share": cell["background"]["mean_share"],
                             "cue_ranks_first": cell["cue"]["rank_first"],
                             **{f"acc_{s}": accuracies[m][s] for s in TEST_SETS}})
    timings["explain"] = time.perf_counter() - t

    timings["total"] = time.perf_counter() - t0
    return CueStudyResult(study, headline, summaries, rows, timings)


def write_cue_study(result: CueStudyResult, out_dir: str | Path) -> dict[str, Path]:
    """Write a study's tables and pictures into ``out_dir`` (created) and return their paths by name:

    - "headline" ``cue_reliance.csv``: :attr:`CueStudyResult.headline`, columns :data:`HEADLINE_COLUMNS`;
    - "summary" ``sat_summary.csv``: the dataset-level table per (probe, explainer, class, segment);
    - "rows" ``sat_rows.csv``: one row per (probe, explainer, image, segment present), with the prediction;
    - "bars" ``reliance_bars.png``: the first explainer's mean share of saliency per probe, class and segment,
      error bars ±1 standard deviation over the class's test images;
    - "heatmap" ``reliance_heatmap.png``: its enrichment (mean saliency of maps scaled to mean 1) per
      probe·class × segment, which shows a small segment's reliance that its share hides.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    study, summaries = result.study, result.summary
    paths = {"headline": write_csv(result.headline, out / "cue_reliance.csv", HEADLINE_COLUMNS),
             "summary": write_csv(summaries, out / "sat_summary.csv", ("model", "explainer") + SUMMARY_COLUMNS),
             "rows": write_csv(result.rows, out / "sat_rows.csv", ("model", "explainer") + ROW_COLUMNS +
                               ("prediction",))}
    first = study.explainers[0]
    pictured = [{**r, "class": f"{r['model']}: {r['class']}"} for r in summaries if r["explainer"] == first]
    title = f"{first} on probes of EfficientNet-Lite0 block {study.block}; cue '{study.cue}' on '{study.cue_class}'"
    paths["bars"] = plot_reliance_bars(pictured, out / "reliance_bars.png", title=f"mean share of saliency: {title}")
    paths["heatmap"] = plot_heatmap(pictured, out / "reliance_heatmap.png", value="mean_saliency",
                                    title=f"enrichment (mean saliency, maps scaled to mean 1): {title}")
    return paths
