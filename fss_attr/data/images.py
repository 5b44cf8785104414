"""Reading image and label files: one place where a bad file becomes an error that names it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def read_image(path: str | Path, mode: str | None = None) -> np.ndarray:
    """The pixels of an image file as a numpy array, converted to PIL ``mode`` ("RGB", "L", ...) when given.

    Raises FileNotFoundError when the file does not exist, and ValueError naming the file when PIL cannot
    decode it (a truncated or corrupt file, not an image); PIL alone raises e.g. "OSError: Truncated File
    Read" without the name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    try:
        with Image.open(path) as im:
            im.load()
            return np.array(im.convert(mode) if mode else im)
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise ValueError(f"{path}: cannot read the image ({type(e).__name__}: {e})") from e


def read_rgb(path: str | Path) -> np.ndarray:
    """[H, W, 3] uint8 RGB pixels of an image file (see :func:`read_image`)."""
    return read_image(path, "RGB")
