"""Loading official checkpoints into fss_attr's adapters, and the committed key lists that describe them.

The official HSNet, DMTNet and DCAMA training scripts save ``model.state_dict()`` of an ``nn.DataParallel`` or
``DistributedDataParallel`` wrapper, so every key starts with ``"module."``. :func:`load_official` accepts a
state dict (or a file holding one) with or without that prefix and loads it with ``strict=True`` by default.

Key lists (``fss_attr/models/keys/*.txt``) hold one ``name [shape] dtype`` line per checkpoint entry
(``[]`` for a 0-d tensor); lines starting with ``#`` are comments.
"""
from __future__ import annotations

import os
import pickle
from pathlib import Path
from importlib import resources
from typing import Mapping

import torch
from torch import nn

PARALLEL_PREFIX = "module."


def strip_parallel_prefix(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The state dict without the ``"module."`` prefix of (Distributed)DataParallel.

    Keys are returned unchanged when none carries the prefix; a state dict where only some keys carry it
    is rejected (it was not saved from one wrapper).
    """
    keys = list(state)
    prefixed = [k.startswith(PARALLEL_PREFIX) for k in keys]
    if keys and all(prefixed):
        return {k[len(PARALLEL_PREFIX):]: v for k, v in state.items()}
    if any(prefixed):
        mixed = [k for k, p in zip(keys, prefixed) if p][:3]
        raise ValueError(f"checkpoint: only some keys start with {PARALLEL_PREFIX!r} (e.g. {mixed}); "
                         "expected all or none of them to")
    return dict(state)


def load_official(model: nn.Module, checkpoint, strict: bool = True, assign: bool = False):
    """Load an official checkpoint into ``model``.

    Args:
        model: the adapter (its parameter names match the official model's).
        checkpoint: a state dict, or a path to a file saved with ``torch.save(state_dict)`` (read on the CPU
            with ``weights_only=True``). Keys may carry the ``"module."`` prefix of (Distributed)DataParallel.
        strict: passed to ``load_state_dict`` (missing or unexpected keys and shape mismatches raise).
        assign: passed to ``load_state_dict``: take the checkpoint's tensors as the parameters (for a model
            built on the meta device).

    Returns:
        ``load_state_dict``'s result (missing and unexpected keys; both empty when ``strict``).
    """
    if isinstance(checkpoint, (str, os.PathLike)):
        checkpoint = read_torch_file(checkpoint)
    if not isinstance(checkpoint, Mapping):
        raise TypeError(f"checkpoint must be a state dict (a mapping of names to tensors) or a path, "
                        f"got {type(checkpoint).__name__}")
    return model.load_state_dict(strip_parallel_prefix(checkpoint), strict=strict, assign=assign)


def read_torch_file(path: str | os.PathLike, map_location="cpu"):
    """``torch.load(path, weights_only=True)`` with errors that name the file: FileNotFoundError when it does
    not exist, ValueError when it is not a torch checkpoint (a text file gives torch's bare "KeyError: 101")."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, KeyError, EOFError, ValueError, AttributeError, IndexError,
            TypeError, OSError) as e:
        raise ValueError(f"{path} is not a readable torch checkpoint (torch.load: {type(e).__name__}: "
                         f"{str(e)[:200]})") from e


def read_key_list(name: str) -> dict[str, tuple[tuple[int, ...], torch.dtype]]:
    """The committed key list ``fss_attr/models/keys/<name>`` as {key: (shape, dtype)}, in file order."""
    text = resources.files("fss_attr.models").joinpath("keys", name).read_text()
    out: dict[str, tuple[tuple[int, ...], torch.dtype]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key, shape, dtype = line.split()
            dims = tuple(int(v) for v in shape.strip("[]").split(",") if v)
            out[key] = (dims, getattr(torch, dtype))
        except (ValueError, AttributeError):
            raise ValueError(f"key list {name}, line {number}: expected 'name [shape] dtype', got {line!r}") from None
    return out
