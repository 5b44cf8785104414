"""pytest-benchmark suite for AffEx: `pytest benchmarks/test_bench_affex.py --benchmark-enable`.

Uses the same input builders as the tests (fss_attr.testing). Compare backends within one run.
"""
import pytest
import torch

from fss_attr import AffinityExplainer, available_backends
from fss_attr.testing import dcama_like_levels, random_level, random_masks, random_region

BACKENDS = [b for b in available_backends() if b in ("torch", "cpu")]
OUT = (384, 384)


@pytest.fixture(scope="module")
def region():
    return random_region(1, OUT, generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("features", [False, True], ids=["scores", "features"])
@pytest.mark.parametrize("shots", [1, 5])
def test_dcama_like_explanation(benchmark, backend, features, shots, region):
    levels = dcama_like_levels(shots, features=features)
    masks = random_masks(1, shots, OUT, generator=torch.Generator().manual_seed(2))
    ex = AffinityExplainer("masked", backend=backend)
    benchmark.pedantic(ex.explain_levels, args=(levels, region, masks), kwargs={"out_size": OUT}, rounds=3,
                       warmup_rounds=1)


@pytest.mark.parametrize("backend", BACKENDS)
def test_single_48_level_from_scores(benchmark, backend, region):
    level = random_level(1, 5, (48, 48), (48, 48), generator=torch.Generator().manual_seed(3))
    ex = AffinityExplainer(backend=backend)
    benchmark.pedantic(ex.level_attribution, args=(level, region), rounds=5, warmup_rounds=1)
