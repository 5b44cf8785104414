"""Segment Attribution Tables: per-(image, segment) saliency rows and their dataset-level aggregate.

Typical use, streaming over a data set::

    from fss_attr.sat import SATAccumulator, segment_stats, write_csv, plain_table
    acc = SATAccumulator()
    for maps, segments, classes, ids in loader:          # maps [B, H, W]
        stats = segment_stats(maps, segments, names)      # labels [B, H, W], masks [B, S, H, W] or COCO lists
        write_csv(stats.rows(ids, classes), "rows.csv", append=True)
        acc.update(stats, classes)
    print(plain_table(acc.summary()))

See :mod:`fss_attr.sat.normalize` for how maps are made comparable across images. Gradient explainers of image
classifiers (:mod:`fss_attr.sat.saliency`: :class:`GradCAM` and :class:`InputGradient`, whose
``explain(model, images, target)`` returns an :class:`fss_attr.Explanation`, and the functions they are built on)
and a linear probe on frozen features (:mod:`fss_attr.sat.classifier`) serve the demonstration in
:mod:`fss_attr.sat.cue_study` (``fss-attr sat``), which is not imported here.
"""
from fss_attr.sat.classifier import LinearProbe, ProbedClassifier
from fss_attr.sat.normalize import NORMALIZATIONS, normalize_maps
from fss_attr.sat.plots import plot_heatmap, plot_reliance_bars
from fss_attr.sat.reduce import ROW_COLUMNS, SegmentStats, coco_stats, label_stats, mask_stats, segment_stats
from fss_attr.sat.saliency import GradCAM, InputGradient, class_score, grad_cam, input_gradient
from fss_attr.sat.segments import coco_masks, decode_segmentation, label_table
from fss_attr.sat.table import SUMMARY_COLUMNS, SATAccumulator, plain_table, read_csv, write_csv

__all__ = ["NORMALIZATIONS", "ROW_COLUMNS", "SUMMARY_COLUMNS", "GradCAM", "InputGradient", "LinearProbe",
           "ProbedClassifier", "SATAccumulator", "SegmentStats", "class_score", "coco_masks", "coco_stats",
           "decode_segmentation", "grad_cam", "input_gradient", "label_stats", "label_table", "mask_stats",
           "normalize_maps", "plain_table", "plot_heatmap", "plot_reliance_bars", "read_csv", "segment_stats",
           "write_csv"]
