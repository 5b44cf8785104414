"""Few-shot image classification: image pools (controlled classes from bundled photos, miniImageNet and
CIFAR-FS folders), deterministic N-way K-shot episodes, episodic training, accuracy with 95% intervals, and
Region Activation Mapping for the Region Comparison Network (:mod:`fss_attr.models.rcn`)."""
from fss_attr.fewshot.episodes import ClassificationEpisode, EpisodeSampler, EpisodeSpec, PoolFeatures, materialize
from fss_attr.fewshot.pool import ArrayPool, FolderPool, ImagePool

__all__ = ["ImagePool", "ArrayPool", "FolderPool", "EpisodeSpec", "EpisodeSampler", "ClassificationEpisode",
           "PoolFeatures", "materialize"]
