"""Functional interface, PyTorch's names: ``import tinygrad_np.nn.functional as F``."""

from __future__ import annotations

import numpy as np

from tinygrad_np.ops.activation import gelu, leaky_relu, log_softmax, softmax
from tinygrad_np.ops.conv import (
    compiled_kernels,
    conv1d,
    conv2d,
    conv3d,
    conv_algorithm,
    conv_layout,
    conv_transpose1d,
    conv_transpose2d,
    conv_transpose3d,
    has_compiled_kernels,
    scratch_budget,
)
from tinygrad_np.ops.linalg import linear
from tinygrad_np.ops.loss import (
    binary_cross_entropy_with_logits,
    cross_entropy,
    dropout,
    mse_loss,
    nll_loss,
)
from tinygrad_np.ops.movement import pad as _np_pad
from tinygrad_np.ops.norm import batch_norm
from tinygrad_np.ops.pool import (
    avg_pool1d,
    avg_pool2d,
    avg_pool3d,
    max_pool1d,
    max_pool2d,
    max_pool3d,
)
from tinygrad_np.tensor import Tensor, int_arg, tensor_input

__all__ = [
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "compiled_kernels",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_algorithm",
    "conv_layout",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "has_compiled_kernels",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "scratch_budget",
    "batch_norm",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "dropout",
    "gelu",
    "leaky_relu",
    "linear",
    "log_softmax",
    "mse_loss",
    "nll_loss",
    "pad",
    "relu",
    "sigmoid",
    "softmax",
    "tanh",
]


def relu(input: Tensor) -> Tensor:
    """max(x, 0)."""
    return tensor_input(input, "relu").relu()


def sigmoid(input: Tensor) -> Tensor:
    """1 / (1 + e^-x)."""
    return tensor_input(input, "sigmoid").sigmoid()


def tanh(input: Tensor) -> Tensor:
    """Hyperbolic tangent."""
    return tensor_input(input, "tanh").tanh()


def pad(input: Tensor, pad, value: float = 0) -> Tensor:
    """Constant padding in PyTorch's order: ``(last_before, last_after, prev_before, ...)``.

    >>> pad(Tensor([[1.0, 2.0]]), (1, 0)).tolist()
    [[0.0, 1.0, 2.0]]
    """
    tensor_input(input, "pad")
    if not isinstance(pad, (tuple, list)):
        raise TypeError(f"pad: pad must be a tuple of ints, got {pad!r}")
    if isinstance(value, Tensor) and value.ndim == 0:
        value = value.item()
    if value is not None and not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"pad: value must be a number, got {value!r}")

    pad = tuple(int_arg(p, "pad", "pad") for p in pad)
    if len(pad) % 2 or len(pad) // 2 > input.ndim:
        raise ValueError(
            f"pad: expected an even number of at most {2 * input.ndim} entries for a "
            f"{input.ndim}-dim input, got {len(pad)}"
        )
    pairs = [(0, 0)] * input.ndim
    for i in range(len(pad) // 2):
        pairs[input.ndim - 1 - i] = (pad[2 * i], pad[2 * i + 1])
    return _np_pad(input, np.asarray(pairs), value)
