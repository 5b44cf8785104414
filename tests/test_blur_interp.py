"""The blur and interpolation matrices against direct convolution and interpolation."""
import pytest
import torch
import torch.nn.functional as F

from fss_attr.affex.blur import gaussian_blur, gaussian_kernel1d
from fss_attr.affex.interp import row_weights, upsample_bilinear


def blur_by_convolution(x, k, sigma):
    """Separable Gaussian by conv2d with reflect padding (the direct reading of docs/affex.md)."""
    g = gaussian_kernel1d(k, sigma, x.dtype)
    h, w = x.shape[-2:]
    y = F.pad(x.reshape(-1, 1, h, w), (k // 2,) * 4, mode="reflect")
    y = F.conv2d(F.conv2d(y, g.view(1, 1, 1, -1)), g.view(1, 1, -1, 1))
    return y.reshape(x.shape)


@pytest.mark.parametrize("shape,k,sigma", [((2, 3, 40, 33), 31, 50.0), ((1, 1, 9, 12), 5, 1.5), ((4, 16, 17), 1, 2.0)])
def test_blur_matches_convolution(shape, k, sigma, gen):
    x = (torch.rand(*shape, generator=gen, dtype=torch.float64) > 0.5).double()
    assert torch.allclose(gaussian_blur(x, k, sigma), blur_by_convolution(x, k, sigma), atol=1e-13)
    assert gaussian_blur(x > 0.5, k, sigma).dtype == torch.float32


def test_row_weights_match_interpolation(gen):
    region = torch.rand(2, 23, 31, generator=gen) > 0.4
    w = row_weights(region, (5, 7), dtype=torch.float64)
    p = torch.randn(2, 5 * 7, generator=gen, dtype=torch.float64)
    up = upsample_bilinear(p.view(2, 5, 7), (23, 31))
    assert torch.allclose((w[:, 0] * p).sum(1), (up * region).flatten(1).sum(1) / region.flatten(1).sum(1))
    assert torch.allclose((w[:, 1] * p).sum(1), up.flatten(1).sum(1))
