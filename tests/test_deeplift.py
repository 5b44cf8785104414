"""DeepLift (rescale rule) against hand-derived values, against captum where captum is right, and on every
shipped adapter: an episode's map is the same alone or batched with another (issue 16, bh_03, bh_04)."""
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from fss_attr.baselines import make_explainer
from fss_attr.baselines.deeplift import deeplift_rescale
from fss_attr.data.episode import Episode

F64 = torch.float64


pytestmark = pytest.mark.usefixtures("one_thread")


def test_hand_derived_deeplift_on_a_two_layer_relu_network():
    """f(x) = v · relu(W x + b) + c. Rescale rule by hand: m_j = (relu(z_j) − relu(z⁰_j)) / (z_j − z⁰_j)
    (z = Wx + b, z⁰ = Wx⁰ + b), attribution_i = (x_i − x⁰_i) Σ_j v_j m_j W_ji."""
    W = torch.tensor([[1.0, -2.0, 0.5], [0.5, 1.0, -1.0], [-1.0, 0.25, 2.0], [2.0, 0.0, 1.0]], dtype=F64)
    b = torch.tensor([0.1, -0.3, 0.2, -1.0], dtype=F64)
    v = torch.tensor([1.0, -0.5, 2.0, 0.75], dtype=F64)
    x = torch.tensor([[0.8, -0.4, 1.2], [-1.0, 0.3, 0.1]], dtype=F64)
    x0 = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, -0.5]], dtype=F64)
    lin, relu = nn.Linear(3, 4).double(), nn.ReLU()
    with torch.no_grad():
        lin.weight.copy_(W), lin.bias.copy_(b)
    fn = lambda t: relu(lin(t)) @ v + 0.3                                   # noqa: E731
    got = deeplift_rescale(fn, x, x0)
    for r in range(2):
        z, z0 = W @ x[r] + b, W @ x0[r] + b
        m = [(max(z[j], 0) - max(z0[j], 0)) / (z[j] - z0[j]) for j in range(4)]
        want = [(x[r, i] - x0[r, i]) * sum(v[j] * m[j] * W[j, i] for j in range(4)) for i in range(3)]
        assert got[r].tolist() == pytest.approx([float(w) for w in want], abs=1e-14)
        # summation to delta
        assert float(got[r].sum()) == pytest.approx(float((fn(x[r:r + 1]) - fn(x0[r:r + 1])).detach()), abs=1e-13)


class Net(nn.Module):
    """Distinct ReLU modules, each called once, batch-major: the case captum's DeepLift gets right."""

    def __init__(self):
        super().__init__()
        self.c1, self.r1 = nn.Conv2d(3, 6, 3, padding=1), nn.ReLU()
        self.c2, self.r2 = nn.Conv2d(6, 4, 3, padding=1), nn.ReLU()
        self.head = nn.Linear(4, 1)

    def forward(self, x):
        return self.head(self.r2(self.c2(self.r1(self.c1(x)))).mean((2, 3)))[:, 0]


def test_equals_captum_where_captum_is_right(gen):
    from captum.attr import DeepLift

    torch.manual_seed(0)
    net = Net().double()
    x = torch.randn(3, 3, 8, 8, generator=gen, dtype=F64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = DeepLift(net).attribute(x, baselines=torch.zeros_like(x))
    got = deeplift_rescale(net, x, torch.zeros_like(x))
    torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(got.flatten(1).sum(1), net(x) - net(torch.zeros_like(x)), rtol=1e-10, atol=1e-12)


def test_a_reused_relu_module_and_functional_relu6_are_rescaled():
    """One nn.ReLU called twice and F.relu6: summation to delta holds (captum refuses the reuse and does
    not see F.relu6, where DeepLift would equal Input×Gradient)."""
    torch.manual_seed(1)
    l1, l2, relu = nn.Linear(5, 5).double(), nn.Linear(5, 5).double(), nn.ReLU(inplace=True)
    fn = lambda t: F.relu6(3 * relu(l2(relu(l1(t))))).sum(1)               # noqa: E731
    x = torch.randn(4, 5, dtype=F64)
    got = deeplift_rescale(fn, x, torch.zeros_like(x))
    torch.testing.assert_close(got.sum(1), fn(x) - fn(torch.zeros_like(x)), rtol=1e-10, atol=1e-12)
    xi = x.clone().requires_grad_()
    (g,) = torch.autograd.grad(fn(xi).sum(), xi)
    assert not torch.allclose(got, g * x)


def _episodes(gen, size, n=1, dtype=F64):
    def one():
        masks = torch.zeros(1, n, size, size, dtype=torch.bool)
        masks[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = True
        q = torch.randn(1, 3, size, size, generator=gen, dtype=F64).to(dtype)
        s = torch.randn(1, n, 3, size, size, generator=gen, dtype=F64).to(dtype)
        return Episode(q, s, masks, query_mask=masks[:, 0])
    a, b = one(), one()
    pair = Episode(torch.cat([a.query, b.query]), torch.cat([a.support_images, b.support_images]),
                   torch.cat([a.support_masks, b.support_masks]), torch.cat([a.query_mask, b.query_mask]))
    return a, pair


def _feature_matcher():
    from fss_attr.models import FeatureMatcher

    class Backbone(nn.Module):
        def __init__(self):
            super().__init__()
            self.c1, self.relu, self.c2 = nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1)

        def forward(self, x):
            return [self.c2(self.relu(self.c1(x)))]

    return FeatureMatcher(Backbone(), 1)


def _hsnet():
    from fss_attr.models.hsnet import HSNet
    return HSNet(shot_fusion="mean")


def _dmtnet():
    from fss_attr.models.dmtnet import DMTNet
    return DMTNet(shot_fusion="mean")


def _dcama():
    from fss_attr.models.dcama import DCAMA
    return DCAMA("resnet50")


@pytest.mark.parametrize("make, size, dtype", [(_feature_matcher, 12, torch.float32), (_hsnet, 48, F64),
                                               (_dmtnet, 97, F64), (_dcama, 64, F64)],
                         ids=["featurematcher", "hsnet", "dmtnet", "dcama-resnet50"])
def test_alone_or_batched_the_same_on_every_adapter(make, size, dtype, gen):
    """bh_03 (FeatureMatcher stacks queries before supports in one backbone batch) and bh_04 (torchvision
    Bottlenecks call one nn.ReLU twice): the map of an episode does not depend on the batch it is in."""
    torch.manual_seed(0)
    model = make().to(dtype).eval()
    alone, pair = _episodes(gen, size, dtype=dtype)
    explainer = make_explainer("deeplift")
    a = explainer.explain(model, alone, "gt").raw
    p = explainer.explain(model, pair, "gt").raw
    assert a.abs().max() > 0 and torch.isfinite(a).all()
    tol = 1e-9 if dtype == F64 else 1e-4
    torch.testing.assert_close(p[:1], a, rtol=tol, atol=tol * 1e-3 * float(a.abs().max()))
