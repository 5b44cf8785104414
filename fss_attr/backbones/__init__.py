"""Backbones, in one place: EfficientNet-Lite0 (pretrained, offline), ResNet bottleneck features, Swin-B
(DCAMA), and the few-shot classification backbones Conv4 and ResNet-12. Modules are imported on demand."""
