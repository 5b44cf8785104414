"""The models ``fss-attr evaluate --model`` builds, their image-size rules and checkpoint checks.

Names: "lite" (LiteMatcher, training-free, no checkpoint), "dcama-swin" (DCAMA, Swin-B, 384 px),
"dcama-resnet50" (DCAMA, ResNet-50, sides multiple of 32), "hsnet" and "dmtnet" (ResNet-50). The trained
models load an official checkpoint (a state dict saved with ``torch.save``, keys with or without
``module.``), checked against the committed key lists (``fss_attr/models/keys/``) before anything runs.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import torch

MODELS = ("lite", "dcama-swin", "dcama-resnet50", "hsnet", "dmtnet")
MIN_SIZE = {"lite": 32, "dcama-swin": 384, "dcama-resnet50": 32, "hsnet": 32, "dmtnet": 97}
PAPER_SIZE = {"lite": 128, "dcama-swin": 384, "dcama-resnet50": 384, "hsnet": 400, "dmtnet": 400}
SHOT_FUSIONS = ("vote", "mean", "max")


def check_size(name: str, size: int) -> None:
    """Raises ValueError naming --size where the model cannot take ``size``×``size`` images."""
    if size < MIN_SIZE[name]:
        raise ValueError(f"--size must be at least {MIN_SIZE[name]} for --model {name}, got {size}")
    if name == "dcama-swin" and size != 384:
        raise ValueError(f"--size must be 384 for --model dcama-swin (Swin-B's window grid), got {size}")
    if name == "dcama-resnet50" and size % 32:
        raise ValueError(f"--size must be a multiple of 32 for --model dcama-resnet50, got {size}")


def official_keys(name: str) -> dict:
    """{key: (shape, dtype)} of the model's official checkpoint (the committed key list)."""
    from fss_attr.models.checkpoint import read_key_list

    return read_key_list({"dcama-swin": "dcama_swin_b.txt", "dcama-resnet50": "dcama_resnet50.txt",
                          "hsnet": "hsnet_resnet50.txt", "dmtnet": "dmtnet_resnet50.txt"}[name])


def check_checkpoint(name: str, path: str | Path) -> None:
    """The checkpoint at ``path`` has exactly the official keys and shapes of model ``name``.

    Raises:
        ValueError: naming the file: not a state dict, missing / unexpected keys, a wrong shape.
        FileNotFoundError: no such file.
    """
    from fss_attr.models.checkpoint import strip_parallel_prefix

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint {path}: no such file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as e:                      # noqa: BLE001 - any unreadable file is a bad --checkpoint
        raise ValueError(f"--checkpoint {path}: not a torch state dict ({type(e).__name__})") from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ValueError(f"--checkpoint {path}: not a state dict of tensors")
    state = strip_parallel_prefix(state)
    want = {k[len("module."):] if k.startswith("module.") else k: v for k, v in official_keys(name).items()}
    missing = [k for k in want if k not in state]
    extra = [k for k in state if k not in want]
    if missing or extra:
        raise ValueError(f"--checkpoint {path}: not a {name} checkpoint ({len(missing)} keys missing, e.g. "
                         f"{missing[:1]}, {len(extra)} unexpected, e.g. {extra[:1]})")
    for k, (shape, _) in want.items():
        if tuple(state[k].shape) != tuple(shape):
            raise ValueError(f"--checkpoint {path}: {k} has shape {tuple(state[k].shape)}, the {name} model's "
                             f"is {tuple(shape)}")


def build(name: str, checkpoint: str | Path | None = None, shot_fusion: str | None = None):
    """The model, eval mode: random weights when ``checkpoint`` is None (except LiteMatcher's pretrained
    backbone). ``shot_fusion`` (hsnet, dmtnet): "vote" (default), "mean" or "max"."""
    if name == "lite":
        from fss_attr.models.lite_matcher import LiteMatcher
        return LiteMatcher().eval()
    if name.startswith("dcama"):
        from fss_attr.models.dcama import DCAMA
        model = DCAMA("swin_b" if name == "dcama-swin" else "resnet50")
        if checkpoint is not None:
            model.load_checkpoint(str(checkpoint))
        return model.eval()
    if name in ("hsnet", "dmtnet"):
        from fss_attr.models.dmtnet import DMTNet
        from fss_attr.models.hsnet import HSNet
        model = (HSNet if name == "hsnet" else DMTNet)(shot_fusion=shot_fusion or "vote")
        if checkpoint is not None:
            model.load_official(str(checkpoint))
        return model.eval()
    raise ValueError(f"--model must be one of {MODELS}, got {name!r}")


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
