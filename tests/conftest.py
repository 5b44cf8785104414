import warnings

import pytest
import torch

warnings.filterwarnings("ignore", message="fss_attr: the compiled extension")

import fss_attr  # noqa: E402

FAST_BACKENDS = [b for b in fss_attr.available_backends() if b != "literal"]


@pytest.fixture(scope="module")
def one_thread():
    """One intra-op thread for a module of small tensors, restored after: on a busy 2-core machine two OpenMP
    threads wait on each other at every op (measured: test_hsnet 400 s with two threads under load 11, 50 s
    with one; the RCN's tiny training 30× slower). Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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
