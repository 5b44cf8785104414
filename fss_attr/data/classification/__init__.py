"""Few-shot classification data: image pools (controlled classes from bundled photos, miniImageNet and
CIFAR-FS folders) and deterministic N-way K-shot episodes."""
from fss_attr.data.classification.episodes import (ClassificationEpisode, ClassificationEpisodeSpec, EpisodeSampler,
                                                   PoolFeatures, materialize)
from fss_attr.data.classification.pool import ArrayPool, FolderPool, ImagePool

__all__ = ["ImagePool", "ArrayPool", "FolderPool", "ClassificationEpisodeSpec", "EpisodeSampler",
           "ClassificationEpisode", "PoolFeatures", "materialize"]
