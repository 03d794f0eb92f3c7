"""Batch normalisation, composed from differentiable Tensor ops (so every order of
derivative works) plus an in-place update of the running statistics."""

from __future__ import annotations

from typing import Any

import numpy as np

from tinygrad_np.tensor import Tensor


def _stat_array(t: Any, C: int, what: str) -> np.ndarray | None:
    if t is None:
        return None
    arr = t.data if isinstance(t, Tensor) else t
    if not isinstance(arr, np.ndarray) or arr.shape != (C,):
        shape = tuple(np.shape(arr))
        raise ValueError(f"batch_norm: {what} must have shape ({C},), got {shape}")
    return arr


def batch_norm(
    input: Tensor,
    running_mean: Tensor | np.ndarray | None,
    running_var: Tensor | np.ndarray | None,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    training: bool = False,
    momentum: float = 0.1,
    eps: float = 1e-5,
) -> Tensor:
    """Normalise each channel of ``input`` (N, C, *spatial): y = (x - mean) / sqrt(var + eps)
    * weight + bias.

    Training: mean and biased variance over every dim but C (the batch statistics); the
    running statistics, when given, are updated in place with
    ``r = (1 - momentum) * r + momentum * s`` using the unbiased variance, as PyTorch.
    Evaluation: ``running_mean`` and ``running_var`` are used. The gradient flows through
    the batch statistics (composed ops), not through the running ones.

    >>> import tinygrad_np as tg
    >>> x = tg.Tensor([[1.0], [3.0]])
    >>> batch_norm(x, None, None, training=True, eps=0.0).tolist()
    [[-1.0], [1.0]]
    """
    if input.ndim < 2:
        raise ValueError(
            f"batch_norm: input must be (N, C, *spatial), got shape {tuple(input.shape)}"
        )
    C = input.shape[1]
    rm = _stat_array(running_mean, C, "running_mean")
    rv = _stat_array(running_var, C, "running_var")
    bshape = (1, C) + (1,) * (input.ndim - 2)  # broadcasts a (C,) vector over N and spatial
    dims = (0,) + tuple(range(2, input.ndim))
    if training:
        n = input.size // C
        if n <= 1:
            raise ValueError(
                f"batch_norm: expected more than 1 value per channel when training, got input "
                f"of shape {tuple(input.shape)}"
            )
        mean = input.mean(dims, keepdim=True)  # (1, C, 1...)
        var = input.var(dims, correction=0, keepdim=True)  # biased: used to normalise
        if rm is not None:
            m = mean.data.reshape(C)
            rm *= 1.0 - momentum
            rm += momentum * m.astype(rm.dtype, copy=False)
        if rv is not None:
            unbiased = var.data.reshape(C) * (n / (n - 1))
            rv *= 1.0 - momentum
            rv += momentum * unbiased.astype(rv.dtype, copy=False)
    else:
        if rm is None or rv is None:
            raise ValueError(
                "batch_norm: running_mean and running_var are needed when not training"
            )
        mean = Tensor._make(rm.astype(input.dtype, copy=False).reshape(bshape), False, None)
        var = Tensor._make(rv.astype(input.dtype, copy=False).reshape(bshape), False, None)
    out = (input - mean) / (var + eps).sqrt()
    if weight is not None:
        out = out * weight.reshape(bshape)
    if bias is not None:
        out = out + bias.reshape(bshape)
    return out
