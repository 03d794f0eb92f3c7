"""Losses and dropout: fused, numerically stable forwards with VJPs beside them."""

from __future__ import annotations

import numpy as np

from tinygrad_np.autograd import Op, is_grad_enabled
from tinygrad_np.ops.activation import in_float32, row_max, row_sum
from tinygrad_np.ops.elementwise import const, select
from tinygrad_np.tensor import FLOAT16, Tensor, float_input, generator, number_arg

_REDUCTIONS = ("none", "mean", "sum")


def _check_reduction(reduction: str, what: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{what}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _class_target(input: Tensor, target, ignore_index: int, what: str) -> np.ndarray:
    if isinstance(ignore_index, (bool, np.bool_)) or not isinstance(
        ignore_index, (int, np.integer)
    ):
        raise TypeError(f"{what}: ignore_index must be an int, got {ignore_index!r}")
    """Validate integer class indices against logits (N, C, *d) or (C,)."""
    t = target.data if isinstance(target, Tensor) else np.asarray(target)
    if t.dtype.kind not in "iu":
        raise TypeError(f"{what}: target must hold integer class indices, got dtype {t.dtype}")
    if input.ndim < 1:
        raise ValueError(f"{what}: input must have a class dim, got shape {tuple(input.shape)}")
    want = input.shape[:1] + input.shape[2:] if input.ndim > 1 else ()
    if t.shape != want:
        raise ValueError(
            f"{what}: target has shape {tuple(t.shape)} but input of shape "
            f"{tuple(input.shape)} needs target shape {tuple(want)}"
        )
    C = input.shape[1] if input.ndim > 1 else input.shape[0]
    valid = t != ignore_index
    bad = valid & ((t < 0) | (t >= C))
    if bad.any():
        raise IndexError(
            f"{what}: target holds class {int(t[bad].flat[0])}, outside [0, {C}) for input "
            f"with {C} classes"
        )
    return t.astype(np.int64)


def _onehot(t: np.ndarray, valid: np.ndarray, C: int, dtype) -> np.ndarray:
    """(N, C, *d) one-hot of class indices, zero where not valid."""
    oh = np.zeros((t.shape[0], C) + t.shape[1:], dtype=dtype)
    safe = np.where(valid, t, 0)
    np.put_along_axis(oh, safe[:, None], 1, axis=1)
    return oh * valid[:, None]


def _at_target(x: np.ndarray, t: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """x[i, t_i] (N, *d) of x (N, C, *d); any class where not ``valid``."""
    safe = np.where(valid, t, 0)
    return np.take_along_axis(x, safe[:, None], axis=1)[:, 0]


def _batched(input: Tensor, t: np.ndarray):
    """Treat a (C,) input with a scalar target as a batch of one."""
    if input.ndim == 1:
        return input.reshape(1, -1), t.reshape(1), True
    return input, t, False


class CrossEntropy(Op):
    """loss_i = -sum_c q_ic log softmax(x_i)_c, q = (1-e) onehot + e/C, masked by ignore_index.

    VJP: gx = g_i * w_i * (softmax(x_i) - q_i), with w_i the reduction's weight.
    """

    name = "cross_entropy"

    @staticmethod
    def inplace_reads(needs, recording):  # the saved log-softmax, but x when recorded
        return (recording,)

    def forward(self, x, *, target, reduction, label_smoothing, ignore_index):
        C = x.shape[1]
        valid = target != ignore_index
        logp = x - row_max(x, 1)
        logp -= np.log(row_sum(np.exp(logp), 1))  # (in place: one array held)
        # -log p at the target, 0 where ignored (not -(q * logp).sum: a masked class's
        # logit of -inf would give 0 * -inf = nan)
        loss = np.where(valid, -_at_target(logp, target, valid), 0)
        if label_smoothing:
            spread = np.where(valid, -logp.sum(axis=1), 0)  # (inf with a -inf logit)
            loss = (1 - label_smoothing) * loss + (label_smoothing / C) * spread
        self.logp, self.valid = logp, valid
        self.count = int(valid.sum())
        if reduction == "sum":
            return np.asarray(loss.sum(), dtype=x.dtype)
        if reduction == "mean":
            return np.asarray(loss.sum() / self.count if self.count else np.nan, dtype=x.dtype)
        return loss.astype(x.dtype)

    def _q(self, dtype) -> np.ndarray:
        """The target distribution q (N, C, *d): (1 - e) onehot + e / C, zero where ignored."""
        e, valid, C = self.args["label_smoothing"], self.valid, self.logp.shape[1]
        q = _onehot(self.args["target"], valid, C, dtype)
        if e:
            q = q * (1 - e) + (e / C) * valid[:, None]
        return q

    def vjp(self, g):
        x = self.inputs[0]
        red = self.args["reduction"]
        valid = self.valid
        if not is_grad_enabled():  # not recorded: softmax - q in NumPy, from the forward's
            # log-softmax, in place (q never made whole: it was the logits' size, held from
            # the forward on). Every target ignored: a zero gradient, as PyTorch's.
            gd = g.data if red == "none" else g.data / (max(self.count, 1) if red == "mean" else 1)
            if red == "none" and not valid.all():  # (an ignored row's inf g: 0, not inf * 0)
                gd = np.where(valid, gd, np.zeros((), gd.dtype))
            e, C = self.args["label_smoothing"], x.shape[1]
            gx = np.exp(self.logp)
            if not valid.all():
                gx *= valid[:, None]  # (the rows of q sum to 1, or to 0 where ignored)
            at = np.where(valid, self.args["target"], 0)[:, None]
            # the target's entry: p - ((1 - e) + e / C), the others p - e / C
            p_t = np.take_along_axis(gx, at, axis=1)
            if e:
                gx -= (e / C) * valid[:, None]
            q_t = ((1 - e) + e / C) * valid[:, None]
            np.put_along_axis(gx, at, (p_t - q_t).astype(gx.dtype, copy=False), axis=1)
            gx *= np.expand_dims(gd, 1) if red == "none" else gd
            return (const(gx.astype(x.dtype, copy=False)),)
        if red == "none":
            g = select(g, valid).unsqueeze(1)  # (N, 1, *d); an ignored row's inf g: 0
        elif red == "mean":
            g = g / max(self.count, 1)
        q = self._q(x.dtype)
        return ((x.softmax(1) * const(q.sum(axis=1, keepdims=True)) - const(q)) * g,)


def cross_entropy(
    input: Tensor,
    target,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
    ignore_index: int = -100,
) -> Tensor:
    """Softmax cross entropy of logits (N, C, *d) against class indices (N, *d).

    Fused and stable: log-softmax is computed with the max subtracted, so
    logits of 1e4 give a finite loss and gradient.

    >>> from tinygrad_np import Tensor
    >>> round(cross_entropy(Tensor([[0.0, 0.0]]), [1]).item(), 4)
    0.6931
    """
    _check_reduction(reduction, "cross_entropy")
    float_input(input, "cross_entropy")
    label_smoothing = number_arg(label_smoothing, "cross_entropy", "label_smoothing")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    t = _class_target(input, target, ignore_index, "cross_entropy")
    if input.dtype is FLOAT16:
        return in_float32(cross_entropy, input, target, reduction, label_smoothing, ignore_index)
    x, t, single = _batched(input, t)
    out = CrossEntropy.apply(
        x,
        target=t,
        reduction=reduction,
        label_smoothing=label_smoothing,
        ignore_index=ignore_index,
    )
    return out.reshape(()) if single and reduction == "none" else out


class NllLoss(Op):
    """loss_i = -x[i, t_i].   VJP: gx = -g_i * w_i at (i, t_i), zero elsewhere."""

    saves_inputs = False

    name = "nll_loss"

    def forward(self, x, *, target, reduction, ignore_index):
        valid = target != ignore_index
        self.valid = valid
        self.count = int(valid.sum())
        loss = np.where(valid, -_at_target(x, target, valid), 0).astype(x.dtype, copy=False)
        if reduction == "sum":
            return np.asarray(loss.sum(), dtype=x.dtype)
        if reduction == "mean":
            return np.asarray(loss.sum() / self.count if self.count else np.nan, dtype=x.dtype)
        return loss

    def vjp(self, g):
        red = self.args["reduction"]
        shape, valid = self.inputs[0].shape, self.valid
        at = np.where(valid, self.args["target"], 0)[:, None]
        if not is_grad_enabled():  # zeros with -g at the targets (the one-hot of the
            # targets was the input's size, held from the forward on)
            gd = g.data / max(self.count, 1) if red == "mean" else g.data
            gx = np.zeros(shape, dtype=g.dtype)
            put = np.where(valid, -gd, 0).astype(g.dtype, copy=False)
            np.put_along_axis(gx, at, put[:, None], axis=1)
            return (const(gx),)
        if red == "none":
            g = g.unsqueeze(1)
        elif red == "mean":
            g = g / max(self.count, 1)  # (every target ignored: a zero gradient)
        hit = np.zeros(shape, dtype=bool)
        np.put_along_axis(hit, at, valid[:, None], axis=1)
        return (select(-g, hit),)  # (an inf g elsewhere: 0, not nan)


def nll_loss(input: Tensor, target, reduction: str = "mean", ignore_index: int = -100) -> Tensor:
    """Negative log likelihood of log-probabilities (N, C, *d) at class indices (N, *d)."""
    _check_reduction(reduction, "nll_loss")
    float_input(input, "nll_loss")
    t = _class_target(input, target, ignore_index, "nll_loss")
    x, t, single = _batched(input, t)
    out = NllLoss.apply(x, target=t, reduction=reduction, ignore_index=ignore_index)
    return out.reshape(()) if single and reduction == "none" else out


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _target_like(input: Tensor, target, what: str) -> Tensor:
    t = target if isinstance(target, Tensor) else Tensor(np.asarray(target, dtype=input.dtype))
    if t.shape != input.shape:
        raise ValueError(
            f"{what}: target has shape {tuple(t.shape)} but input has shape {tuple(input.shape)}"
        )
    return t


# The squares are added a chunk at a time (NumPy's pairwise sum within a chunk, float64
# across chunks): the whole array of squares was a temporary the input's size, beside the
# differences the graph kept (gelu + mse_loss on 4096 x 8192: 640 MiB, PyTorch 256).
MSE_CHUNK = 1 << 16


class MseLoss(Op):
    """loss = sum (x - t)^2, divided by their count for the mean.

    VJP: gx = 2 g (x - t) (/ count), gt = -gx; x - t is made again in the backward (as
    PyTorch, which keeps x and t), not kept from the forward. float16 is computed in
    float32 (its squares overflowed from a difference of 256), the results rounded once."""

    name = "mse_loss"

    def forward(self, x, t, *, mean):
        dtype = np.result_type(x, t)
        d = np.subtract(x, t, dtype=np.float32 if dtype is FLOAT16 else None)
        flat = d.reshape(-1)
        total = 0.0
        for i in range(0, flat.size, MSE_CHUNK):
            part = flat[i : i + MSE_CHUNK]
            np.multiply(part, part, out=part)
            total += float(np.sum(part))
        if mean:
            total = total / flat.size if flat.size else np.nan
        return np.asarray(total, dtype=dtype)

    def vjp(self, g):
        x, t = self.inputs
        scale = 2.0 / max(x.size, 1) if self.args["mean"] else 2.0
        if is_grad_enabled():
            gx = (x - t) * (g * scale)
        else:
            dtype = np.result_type(x.data, t.data)
            d = np.subtract(x.data, t.data, dtype=np.float32 if dtype is FLOAT16 else None)
            d *= g.data * scale  # (float16: in float32, see forward)
            gx = const(d.astype(dtype, copy=False))
        return (
            gx if self.needs_grad[0] else None,
            -gx if self.needs_grad[1] else None,
        )


def mse_loss(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Mean squared error; ``target`` must have the input's shape."""
    float_input(input, "mse_loss")
    _check_reduction(reduction, "mse_loss")
    t = _target_like(input, target, "mse_loss")
    if reduction != "none":  # (fused: no array of squares, nothing kept but x and t)
        return MseLoss.apply(input, t, mean=reduction == "mean")
    d = input - t
    return d * d


class BceWithLogits(Op):
    """loss = x ([x > 0] - t) + log(1 + e^-|x|).   VJP: gx = g (sigmoid(x) - t), gt = -g x.

    The linear term is (1 - t) x for a positive logit and -t x otherwise, with no
    cancellation on either side: max(x, 0) - x t cancelled for t near 1 (a target of
    0.999 came out 365x PyTorch's error), and (1 - t) x - min(x, 0) for t near 0 with
    negative logits (a target of 1e-8 at x = -100 gave 4e-44 for 1e-6)."""

    name = "binary_cross_entropy_with_logits"

    @staticmethod
    def inplace_reads(needs, recording):  # x for both gradients, t for x's
        return (True, needs[0])

    def forward(self, x, t):
        if t.dtype.kind not in "fc":  # (a bool or int target: in x's dtype, not int64's)
            t = t.astype(x.dtype)
        with np.errstate(invalid="ignore"):  # 1 - t or -t, exact either way, in the dtype
            loss = np.subtract(x > 0, t, dtype=np.result_type(x, t))  # x and t promote to
            loss *= x
            loss += np.log1p(np.exp(-np.abs(x)))
        inf = np.isinf(x)
        if inf.any():  # the limits at +-inf: (1 - t) x and -t x (inf - inf above), 0 where
            # that factor is 0 (a logit of +inf with target 1 costs nothing)
            x, t = np.broadcast_arrays(x, t)
            factor = np.where(x > 0, 1 - t, -t)
            with np.errstate(invalid="ignore"):
                limit = np.where(factor == 0, 0, factor * x)
            loss = np.where(inf, limit, loss).astype(loss.dtype, copy=False)
        return loss

    def vjp(self, g):
        x, t = self.inputs
        gx = g * (x.sigmoid() - t) if self.needs_grad[0] else None
        gt = -g * x if self.needs_grad[1] else None
        return gx, gt


def binary_cross_entropy_with_logits(input: Tensor, target, reduction: str = "mean") -> Tensor:
    """Sigmoid + binary cross entropy in one stable step; ``target`` in [0, 1], input's shape."""
    _check_reduction(reduction, "binary_cross_entropy_with_logits")
    float_input(input, "binary_cross_entropy_with_logits")
    t = _target_like(input, target, "binary_cross_entropy_with_logits")
    if input.dtype is FLOAT16 and t.dtype is FLOAT16:
        return in_float32(binary_cross_entropy_with_logits, input, t.astype(np.float32),
                          reduction, reads="input")  # fmt: skip
    return _reduce(BceWithLogits.apply(input, t), reduction)


class Dropout(Op):
    """y = x * m / (1 - p), m ~ Bernoulli(1 - p).   VJP: gx = g * m / (1 - p)."""

    saves_inputs = False

    def forward(self, x, *, p):
        keep = generator().random(x.shape) >= p
        self.scale = (keep / (1.0 - p)).astype(x.dtype)
        return x * self.scale

    def vjp(self, g):
        return (g * const(self.scale),)


def dropout(input: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """Zero each element with probability ``p`` and scale the rest by 1/(1-p) (training only)."""
    x = input  # (PyTorch's name for the keyword)
    p = number_arg(p, "dropout", "p")
    if not isinstance(training, (bool, np.bool_)):
        raise TypeError(f"dropout: training must be a bool, got {training!r}")
    if training and p != 0.0:
        float_input(x, "dropout")  # (an int input would be scaled in ints)
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    if p == 1.0:
        return x * 0.0
    return Dropout.apply(x, p=p)
