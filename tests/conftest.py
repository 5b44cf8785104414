import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message="fss_attr: the compiled extension")

import fss_attr  # noqa: E402

FAST_BACKENDS = [b for b in fss_attr.available_backends() if b != "literal"]


@pytest.fixture
def gen():
    """A generator with a fresh seed each run; the seed is printed so a failure can be replayed."""
    seed = int(torch.randint(0, 2**31, (1,)).item())
    print(f"generator seed: {seed}")
    return torch.Generator().manual_seed(seed)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 error of a against the reference b (float64)."""
    a, b = a.double().cpu(), b.double().cpu()
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def device_of(backend: str) -> str:
    return "cuda" if backend == "cuda" else "cpu"
