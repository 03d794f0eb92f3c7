"""Finite-difference checks of first and second derivatives, with reports that point at the fault.

``gradcheck`` compares the backward pass with central differences in float64.
It checks J^T u for a random upstream gradient u (one random vector catches any
wrong entry of J^T u almost surely), element by element; with
``fast_mode=True`` it checks random projections <u, J v> instead, which costs
two forward passes per projection whatever the input size.
"""

from __future__ import annotations

import numpy as np

from tinygrad_np.autograd import grad
from tinygrad_np.tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic gradient disagrees with finite differences.

    Attributes: ``input_index``, ``index`` (the worst element's full index),
    ``analytic``, ``numerical``, ``fraction`` (share of elements that fail),
    ``at_kink`` (True when the worst element sits where the function is not smooth).
    """

    def __init__(self, message: str, **info):
        super().__init__(message)
        self.__dict__.update(info)


def _as_tuple(x) -> tuple:
    return tuple(x) if isinstance(x, (tuple, list)) else (x,)


def _outputs(fn, inputs) -> tuple[Tensor, ...]:
    outs = _as_tuple(fn(*inputs))
    for i, o in enumerate(outs):
        if not isinstance(o, Tensor):
            raise TypeError(
                f"gradcheck: fn returned {type(o).__name__} at output {i}, not a Tensor"
            )
    return outs


def _check_inputs(inputs, what: str) -> tuple[Tensor, ...]:
    inputs = _as_tuple(inputs)
    for i, t in enumerate(inputs):
        if not isinstance(t, Tensor):
            raise TypeError(f"{what}: inputs[{i}] is a {type(t).__name__}, not a Tensor")
        if t.requires_grad and t.dtype != np.float64:
            raise ValueError(
                f"{what}: inputs[{i}] is {t.dtype}; finite differences need float64 "
                f"(make it with dtype='float64')"
            )
    if not any(t.requires_grad for t in inputs):
        raise ValueError(f"{what}: no input requires grad, so there is nothing to check")
    return inputs


def gradcheck(
    fn,
    inputs,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    fast_mode: bool = False,
    n_projections: int = 4,
    seed: int = 0,
) -> bool:
    """Check ``fn``'s backward against central finite differences (float64).

    Parameters
    ----------
    fn : callable
        ``fn(*inputs)`` returns a Tensor of any shape or a tuple of them.
    inputs : Tensor or tuple of Tensor
        Those with ``requires_grad`` (float64) are checked.
    eps, atol, rtol : float
        Step and tolerances: an element passes when
        |analytic - numerical| <= atol + rtol |numerical|.
    fast_mode : bool
        Check ``n_projections`` random projections <u, J v> instead of every element.

    Returns True, or raises :class:`GradcheckError` naming the input, the worst
    element by its full index, both values, the share of failing elements, and
    whether that element sits at a kink (relu at 0, max ties), where the
    derivative is not defined and a mismatch is not a bug.

    >>> import tinygrad_np as tg
    >>> x = tg.Tensor([0.5, -1.5], dtype="float64", requires_grad=True)
    >>> tg.gradcheck(lambda a: (a * a).exp(), x)
    True
    """
    inputs = _check_inputs(inputs, "gradcheck")
    rng = np.random.default_rng(seed)
    outs = _outputs(fn, inputs)
    live = [i for i, o in enumerate(outs) if o.requires_grad]
    us = [rng.standard_normal(o.shape) for o in outs]
    wrt = [t for t in inputs if t.requires_grad]
    wrt_idx = [i for i, t in enumerate(inputs) if t.requires_grad]

    def scalar() -> float:
        o = _outputs(fn, inputs)  # recorded: fn may itself call backward (gradgradcheck)
        return float(sum(np.sum(np.asarray(o[k].data, np.float64) * us[k]) for k in range(len(o))))

    if live:
        analytic = grad(
            [outs[k] for k in live],
            wrt,
            [Tensor(us[k].astype(outs[k].dtype)) for k in live],
            allow_unused=True,
        )
    else:
        analytic = (None,) * len(wrt)
    analytic = [
        np.zeros(t.shape) if a is None else np.asarray(a.data, np.float64)
        for t, a in zip(wrt, analytic, strict=True)
    ]

    if fast_mode:
        scale = (
            float(
                sum(
                    np.sum(np.abs(np.asarray(o.data, np.float64) * u))
                    for o, u in zip(outs, us, strict=True)
                )
            ),
            sum(int(o.size) for o in outs),
        )
        for p in range(n_projections):
            vs = [rng.standard_normal(t.shape) for t in wrt]
            num, allowed = _directional(wrt, vs, eps, atol, rtol, scalar, scale)
            ana = float(sum(np.sum(a * v) for a, v in zip(analytic, vs, strict=True)))
            finite = np.isfinite(ana) and np.isfinite(num)
            if not (finite and abs(ana - num) <= allowed) and not (np.isinf(ana) and ana == num):
                culprit = _fast_culprit(wrt, wrt_idx, analytic, vs, eps, atol, rtol, scalar, scale)
                where = (
                    ""
                    if culprit is None
                    else f" The fault is in the gradient of inputs[{culprit}]."
                )
                raise GradcheckError(
                    f"gradcheck (fast mode): projection {p} disagrees: <J^T u, v> = {ana:.6g} "
                    f"by backward, {num:.6g} by finite differences (difference "
                    f"{abs(ana - num):.3g}, allowed {allowed:.3g}).{where} "
                    "Run without fast_mode to find the element.",
                    input_index=culprit,
                    index=None,
                    analytic=ana,
                    numerical=num,
                    fraction=None,
                    at_kink=False,
                )
        return True

    for t, i_in, ana in zip(wrt, wrt_idx, analytic, strict=True):
        num = np.zeros(t.shape)
        flat = t.data.reshape(-1) if t.data.flags.c_contiguous else None
        if flat is None:
            t.data = np.ascontiguousarray(t.data)
            flat = t.data.reshape(-1)
        for j in range(flat.size):
            old = flat[j]
            flat[j] = old + eps
            fp = scalar()
            flat[j] = old - eps
            fm = scalar()
            flat[j] = old
            num.flat[j] = (fp - fm) / (2 * eps)
        with np.errstate(invalid="ignore"):  # (inf - inf)
            err = np.abs(ana - num)
        # an element fails when the two differ, or when either is not finite (unless both
        # are the same infinity): a gradient of inf against a difference of nan fails, as
        # in PyTorch, and one non-finite element cannot excuse the others
        same_inf = np.isinf(ana) & (ana == num)
        nonfinite = ~(np.isfinite(ana) & np.isfinite(num)) & ~same_inf
        bad = (err > atol + rtol * np.abs(num)) | nonfinite
        if bad.any():
            excess = np.where(bad, err - (atol + rtol * np.abs(num)), -np.inf)
            excess[nonfinite] = np.inf  # (a non-finite element is the worst)
            j = int(np.argmax(excess))
            index = np.unravel_index(j, t.shape) if t.ndim else ()
            index = tuple(int(k) for k in index)
            kink, slopes = _at_kink(flat, j, eps, scalar)
            frac = float(bad.mean())
            msg = (
                f"gradcheck failed for inputs[{i_in}] (shape {tuple(t.shape)}), gradient J^T u "
                f"for a random upstream gradient u: worst element "
                f"{index}: analytic {ana.flat[j]:.6g}, numerical {num.flat[j]:.6g} "
                f"(difference {err.flat[j]:.3g}, allowed {atol + rtol * abs(num.flat[j]):.3g}); "
                f"{int(bad.sum())} of {bad.size} elements ({100 * frac:.1f}%) fail."
            )
            if kink:
                msg += (
                    f" Note: this element sits at a kink (one-sided slopes {slopes[0]:.6g} and "
                    f"{slopes[1]:.6g} differ), e.g. relu at 0 or a max tie, where the derivative "
                    "is not defined: move the input off the kink rather than call it a bug."
                )
            raise GradcheckError(
                msg,
                input_index=i_in,
                index=index,
                analytic=float(ana.flat[j]),
                numerical=float(num.flat[j]),
                fraction=frac,
                at_kink=kink,
            )
    return True


def _directional(wrt, vs, eps, atol, rtol, scalar, scale) -> tuple[float, float]:
    """<J^T u, v> by central differences along v, and the difference allowed from it.

    A projection sums N per-element terms, so an error in one element is diluted
    by about sqrt(N) against ``rtol * |value|``. The allowance is therefore
    tightened to the finite differences' own error, estimated from a second
    step 2*eps (Richardson: the two differ by about 3x the O(eps^2) error), and
    loosened back to ``rtol`` only where that estimate is large (kinks, noise).
    ``scale`` is (sum |output * u|, number of terms), for the rounding noise.
    """

    def step(h: float) -> float:
        saved = [t.data.copy() for t in wrt]  # (x + h v - 2 h v + h v is not x to the bit)
        for t, v in zip(wrt, vs, strict=True):
            t.data += h * v
        fp = scalar()
        for t, v, x in zip(wrt, vs, saved, strict=True):
            np.subtract(x, h * v, out=t.data)
        fm = scalar()
        for t, x in zip(wrt, saved, strict=True):
            np.copyto(t.data, x)
        return (fp - fm) / (2 * h)

    num = step(eps)
    fd_err = abs(num - step(2 * eps))
    # rounding noise of the summed scalar: about eps_machine * log2(terms) * sum |terms|, / eps
    noise = np.finfo(np.float64).eps * np.log2(max(scale[1], 2)) * scale[0] / eps
    return num, atol + min(rtol * abs(num), 1e-7 * abs(num) + 10 * fd_err + noise)


def _fast_culprit(wrt, wrt_idx, analytic, vs, eps, atol, rtol, scalar, scale) -> int | None:
    """Repeat a failed projection one input at a time; the index of the first that disagrees."""
    for t, i_in, a, v in zip(wrt, wrt_idx, analytic, vs, strict=True):
        num, allowed = _directional([t], [v], eps, atol, rtol, scalar, scale)
        if abs(float(np.sum(a * v)) - num) > allowed:
            return i_in
    return None


def _at_kink(flat: np.ndarray, j: int, eps: float, scalar) -> tuple[bool, tuple[float, float]]:
    """Whether the one-sided slopes at element j disagree (the function is not smooth there)."""
    old = flat[j]
    f0 = scalar()
    flat[j] = old + eps
    fp = scalar()
    flat[j] = old - eps
    fm = scalar()
    flat[j] = old
    right, left = (fp - f0) / eps, (f0 - fm) / eps
    scale = max(abs(right), abs(left), 1e-3)
    return abs(right - left) > 0.1 * scale, (left, right)


def gradgradcheck(
    fn,
    inputs,
    grad_outputs=None,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
    fast_mode: bool = False,
    seed: int = 0,
) -> bool:
    """Check second derivatives: ``gradcheck`` of the backward pass itself.

    The backward pass (with ``create_graph=True``) maps the inputs and the
    upstream gradients ``grad_outputs`` (random float64 when None) to the input
    gradients; that map is checked against finite differences in all its
    arguments.
    """
    inputs = _check_inputs(inputs, "gradgradcheck")
    outs = _outputs(fn, inputs)
    rng = np.random.default_rng(seed + 1)
    if grad_outputs is None:
        gouts = tuple(
            Tensor(rng.standard_normal(o.shape), dtype="float64", requires_grad=True)
            for o in outs
            if o.requires_grad
        )
    else:
        gouts = tuple(
            g if isinstance(g, Tensor) else Tensor(np.asarray(g, np.float64))
            for g in _as_tuple(grad_outputs)
        )
        gouts = tuple(
            Tensor(g.data, dtype="float64", requires_grad=True) if not g.requires_grad else g
            for g in gouts
        )
    n = len(inputs)
    wrt_idx = [i for i, t in enumerate(inputs) if t.requires_grad]

    def first_grads(*args):
        xs, gs = args[:n], args[n:]
        os = [o for o in _outputs(fn, xs) if o.requires_grad]
        gr = grad(os, [xs[i] for i in wrt_idx], list(gs), create_graph=True, allow_unused=True)
        return tuple(g for g in gr if g is not None)

    return gradcheck(first_grads, inputs + gouts, eps, atol, rtol, fast_mode=fast_mode, seed=seed)
