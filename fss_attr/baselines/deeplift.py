"""DeepLift's rescale rule, written for models whose batch layout or module reuse defeat captum's DeepLift.

DeepLift (Shrikumar et al. 2017, "Learning Important Features Through Propagating Activation Differences",
rescale rule): attribution = (x − x₀) · m, where m is the gradient of the output with every elementwise
nonlinearity y = f(z) given the multiplier (f(z) − f(z₀)) / (z − z₀) in place of f′(z) (z₀: that
nonlinearity's input when the model runs on the reference x₀); where |z − z₀| ≤ 1e-10 the gradient f′(z) is
used, as captum does. For a network of linear maps and these nonlinearities the attributions sum to
f(x) − f(x₀) (summation-to-delta).

How, and why not captum: captum's ``DeepLift`` runs ``cat([x, x₀])`` through the model and, at each hooked
``nn.ReLU``-like module, takes the first half of that module's batch as the input and the second half as the
reference. fss_attr's adapters stack queries and supports in one backbone batch, so the halves mix episodes
and images (maps off by half their scale, and changed by another episode in the batch); torchvision's
Bottleneck calls one ``nn.ReLU`` twice, which captum refuses; and functional activations (``F.relu``, ReLU6
through ``hardtanh``, GELU) are not hooked at all. Here the model runs twice, on x₀ and then on x, each under
a ``TorchFunctionMode`` that sees every activation call in call order, functional or module; the k-th call of
the second run is paired with the k-th call of the first, element by element, whatever the batch layout.
The model must make the same sequence of activation calls for x and x₀ (no control flow on the support
pixel values); a mismatch raises.

Rescaled: relu (and in-place relu_), relu6, hardtanh, elu, leaky_relu, gelu, silu, softplus, sigmoid, tanh,
as functions, modules or tensor methods. Differs from captum's DeepLift: softmax and max-pooling keep their
gradient here (captum rescales ``nn.Softmax`` modules and uses a pooled rescale for ``nn.MaxPool``);
nonlinearities outside the list (products, normalisations, softmax) keep their gradient in both.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

EPS = 1e-10     # captum's threshold below which the gradient replaces the finite-difference multiplier

# function -> (out-of-place function, position of a positional ``inplace`` argument or None)
_ACTIVATIONS: dict = {
    F.relu: (F.relu, 1), torch.relu: (torch.relu, None), torch.relu_: (torch.relu, None),
    torch.Tensor.relu: (torch.relu, None), torch.Tensor.relu_: (torch.relu, None),
    F.relu6: (F.relu6, 1), F.hardtanh: (F.hardtanh, 3), F.elu: (F.elu, 2), F.leaky_relu: (F.leaky_relu, 2),
    F.gelu: (F.gelu, None), F.silu: (F.silu, 1), F.softplus: (F.softplus, None),
    torch.sigmoid: (torch.sigmoid, None), torch.Tensor.sigmoid: (torch.sigmoid, None),
    torch.tanh: (torch.tanh, None), torch.Tensor.tanh: (torch.tanh, None), F.tanh: (torch.tanh, None),
    F.sigmoid: (torch.sigmoid, None),
}
for _name in ("relu_", "sigmoid_", "tanh_"):
    if hasattr(torch.Tensor, _name):
        _ACTIVATIONS[getattr(torch.Tensor, _name)] = ({"relu_": torch.relu, "sigmoid_": torch.sigmoid,
                                                       "tanh_": torch.tanh}[_name], None)
if hasattr(F, "relu_"):
    _ACTIVATIONS[F.relu_] = (torch.relu, None)


def _out_of_place(func, args, kwargs):
    """(function, args, kwargs) computing the activation without modifying its input."""
    fn, pos = _ACTIVATIONS[func]
    args, kwargs = list(args), dict(kwargs or {})
    if "inplace" in kwargs:
        kwargs["inplace"] = False
    if pos is not None and len(args) > pos:
        args[pos] = False
    return fn, args, kwargs


class _Record(TorchFunctionMode):
    """Runs the model on the reference and keeps every activation's input and output, in call order."""

    def __init__(self):
        super().__init__()
        self.calls: list[tuple[torch.Tensor, torch.Tensor]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _ACTIVATIONS and args and isinstance(args[0], torch.Tensor):
            fn, a, kw = _out_of_place(func, args, kwargs)
            z0 = a[0].detach()
            out = fn(*a, **kw)
            self.calls.append((z0, out.detach()))
            return out
        return func(*args, **(kwargs or {}))


class _Rescale(torch.autograd.Function):
    @staticmethod
    def forward(ctx, z, z0, y0, fn):
        y = fn(z)
        ctx.fn = fn
        ctx.save_for_backward(z, z0, y, y0)
        return y

    @staticmethod
    def backward(ctx, grad):
        z, z0, y, y0 = ctx.saved_tensors
        with torch.enable_grad():
            zz = z.detach().requires_grad_()
            (local,) = torch.autograd.grad(ctx.fn(zz), zz, grad)
        dz = z - z0
        far = dz.abs() > EPS
        rescaled = grad * (y - y0) / torch.where(far, dz, torch.ones_like(dz))
        return torch.where(far, rescaled, local), None, None, None


class _Replay(TorchFunctionMode):
    """Runs the model on the input; the k-th activation backpropagates the rescale multiplier against the
    k-th activation of the reference run."""

    def __init__(self, calls):
        super().__init__()
        self.calls, self.index = calls, 0

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _ACTIVATIONS and args and isinstance(args[0], torch.Tensor):
            fn, a, kw = _out_of_place(func, args, kwargs)
            if self.index >= len(self.calls):
                raise RuntimeError(f"DeepLift: the model made more activation calls on the input than on the "
                                   f"reference ({len(self.calls)}): its control flow depends on the input")
            z0, y0 = self.calls[self.index]
            self.index += 1
            z = a[0]
            if z.shape != z0.shape:
                raise RuntimeError(f"DeepLift: activation call {self.index - 1} has shape {tuple(z.shape)} on the "
                                   f"input and {tuple(z0.shape)} on the reference")
            rest = a[1:]
            return _Rescale.apply(z, z0.to(z.dtype), y0.to(z.dtype), lambda t: fn(t, *rest, **kw))
        return func(*args, **(kwargs or {}))


def deeplift_rescale(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """DeepLift (rescale rule) attributions of ``fn`` at ``x`` against the reference ``x0``.

    Args:
        fn: x [B, ...] -> [B] (one output per batch member, which must not depend on the other members).
        x, x0: the input and the reference, same shape and dtype.

    Returns:
        (x − x0) · m, shape and dtype of x, m the rescale-rule multipliers of Σ_b fn(x)_b.

    Raises:
        RuntimeError: the model's activation calls differ between x and x0.
        ValueError: x and x0 differ in shape.
    """
    if x.shape != x0.shape:
        raise ValueError(f"x and x0 must have the same shape, got {tuple(x.shape)} and {tuple(x0.shape)}")
    record = _Record()
    with torch.no_grad(), record:
        fn(x0.detach())
    xi = x.detach().clone().requires_grad_()
    replay = _Replay(record.calls)
    with torch.enable_grad():
        with replay:
            out = fn(xi)
        if replay.index != len(record.calls):
            raise RuntimeError(f"DeepLift: the model made {replay.index} activation calls on the input and "
                               f"{len(record.calls)} on the reference: its control flow depends on the input")
        (m,) = torch.autograd.grad(out.sum(), xi, allow_unused=True)
    if m is None:
        m = torch.zeros_like(xi)
    return ((x - x0) * m).detach()
