"""Building few-shot classifiers by name, and saving / loading them with their configuration."""
from __future__ import annotations

from pathlib import Path

import torch

from fss_attr.fewshot.classifier import FewShotClassifier, PrototypicalNetwork
from fss_attr.fewshot.rcn import RegionComparisonNetwork

METHODS = {"rcn": RegionComparisonNetwork, "protonet": PrototypicalNetwork}


def build_model(method: str, **config) -> FewShotClassifier:
    """A fresh "rcn" or "protonet" model; ``config`` goes to its constructor (backbone, grid, ...)."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {tuple(METHODS)}, got {method!r}")
    return METHODS[method](**config)


def save_checkpoint(model: FewShotClassifier, path: str | Path, **info) -> Path:
    """Write the model's method, configuration, weights and ``info`` (plain Python values) to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"method": model.method, "config": dict(model.config), "state_dict": model.state_dict(),
                "info": info}, path)
    return path


def load_checkpoint(path: str | Path, map_location="cpu") -> tuple[FewShotClassifier, dict]:
    """(model in eval mode, info) from a file written by :func:`save_checkpoint`."""
    from fss_attr.models.checkpoint import read_torch_file

    path = Path(path)
    data = read_torch_file(path, map_location)
    if not isinstance(data, dict) or not {"method", "config", "state_dict"} <= set(data):
        raise ValueError(f"{path} is not an fss_attr few-shot checkpoint (method, config, state_dict)")
    model = build_model(data["method"], **data["config"])
    model.load_state_dict(data["state_dict"])
    return model.eval(), data.get("info", {})
