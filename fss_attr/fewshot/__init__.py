"""Few-shot image classification models and their explanation: the Region Comparison Network
(:mod:`fss_attr.fewshot.rcn`), the prototypical baseline (:mod:`fss_attr.fewshot.classifier`), episodic
training and evaluation with 95% intervals, and Region Activation Mapping (:mod:`fss_attr.fewshot.ram`).
Data (pools, episodes) live in :mod:`fss_attr.data.classification`; backbones in :mod:`fss_attr.backbones`."""
