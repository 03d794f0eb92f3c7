"""Finite-difference checks of first and second derivatives, with reports that point at the fault.

``gradcheck`` compares the backward pass with central differences in float64,
every entry of the Jacobian where the outputs are small enough (one backward pass
per output element, as PyTorch), else J^T u for a random upstream gradient u,
element by element of the inputs; with ``fast_mode=True`` it checks random
projections <u, J v> instead, which costs four forward passes per projection
whatever the input size.
"""

from __future__ import annotations

import numpy as np

from tinygrad_np.autograd import grad
from tinygrad_np.tensor import Tensor


class GradcheckError(AssertionError):
    """The analytic gradient disagrees with finite differences.

    Attributes: ``input_index``, ``index`` (the worst element's full index),
    ``output_index`` and ``output_element`` (for an entry-by-entry check: which output
    and which of its elements), ``analytic``, ``numerical``, ``fraction`` (share of
    input elements that fail), ``at_kink`` (True when the failing elements checked all
    sit where the function is not smooth).
    """

    input_index = index = analytic = numerical = fraction = None  # (None: not known)
    output_index = output_element = None  # (entry by entry: which output, and its element)
    at_kink = False

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


# The entry-by-entry comparison of the whole Jacobian (as PyTorch's default mode) runs
# one backward pass per output element, so it is taken where the outputs have at most
# JACOBIAN_MAX_OUTPUTS elements and the Jacobian at most JACOBIAN_MAX_ENTRIES entries;
# beyond, J^T u for a random u is checked element by element of the inputs (one backward
# pass), where one wrong entry among many outputs can hide behind rtol.
JACOBIAN_MAX_OUTPUTS = 4096
JACOBIAN_MAX_ENTRIES = 1 << 22
KINK_CHECKS = 16  # failing input elements whose one-sided slopes are compared


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
        ``fn(*inputs)`` returns a Tensor of any shape or a tuple of them; it must be
        deterministic (it is evaluated twice at the inputs first, and must give the
        same values).
    inputs : Tensor or tuple of Tensor
        Those with ``requires_grad`` (float64) are checked.
    eps, atol, rtol : float
        Step and tolerances: an entry passes when
        |analytic - numerical| <= atol + rtol |numerical|.
    fast_mode : bool
        Check ``n_projections`` (at least 1) random projections <u, J v> instead of
        every entry.

    Every entry d output[i] / d input[j] of the Jacobian is compared, as in PyTorch,
    where the float outputs have at most JACOBIAN_MAX_OUTPUTS elements (one backward
    pass each) and the Jacobian at most JACOBIAN_MAX_ENTRIES entries; beyond that, J^T u
    for a random upstream gradient u, element by element of the inputs. Each output is
    differenced on its own, so a large output (or one that does not depend on the
    inputs) does not drown the others' changes.

    Returns True, or raises :class:`GradcheckError` naming the input, the worst
    element by its full index (and, entry by entry, the output element), both
    values, the share of input elements that fail, and whether the failing elements
    all sit at kinks (relu at 0, max ties), where the derivative is not defined and
    a mismatch is not a bug.

    >>> import tinygrad_np as tg
    >>> x = tg.Tensor([0.5, -1.5], dtype="float64", requires_grad=True)
    >>> tg.gradcheck(lambda a: (a * a).exp(), x)
    True
    """
    inputs = _check_inputs(inputs, "gradcheck")
    if fast_mode and n_projections < 1:
        raise ValueError(f"gradcheck: n_projections must be at least 1, got {n_projections}")
    rng = np.random.default_rng(seed)
    first = _outputs(fn, inputs)
    floats = [k for k, o in enumerate(first) if o.dtype.kind == "f"]
    first = [np.array(first[k].data, np.float64) for k in floats]
    # the second evaluation's graph is the one checked (nn.DataParallel keeps only the
    # latest call's); the first's values must be the same
    outs = _outputs(fn, inputs)
    live = [k for k in floats if outs[k].requires_grad]
    wrt = [t for t in inputs if t.requires_grad]
    wrt_idx = [i for i, t in enumerate(inputs) if t.requires_grad]

    def values() -> list[np.ndarray]:
        o = _outputs(fn, inputs)  # recorded: fn may itself call backward (gradgradcheck)
        return [np.array(o[k].data, np.float64) for k in floats]  # (copies: o may be a view)

    _check_deterministic(first, [np.asarray(outs[k].data, np.float64) for k in floats], floats)
    n_out = sum(int(outs[k].size) for k in floats)
    n_in = sum(int(t.size) for t in wrt)
    if not fast_mode and n_out <= JACOBIAN_MAX_OUTPUTS and n_out * n_in <= JACOBIAN_MAX_ENTRIES:
        fresh = lambda: _outputs(fn, inputs)  # noqa: E731
        return _check_jacobian(outs, fresh, floats, live, wrt, wrt_idx, values, eps, atol, rtol)

    too_many = (  # (why not entry by entry, for the report)
        f"the outputs have {n_out} elements, more than JACOBIAN_MAX_OUTPUTS"
        if n_out > JACOBIAN_MAX_OUTPUTS
        else f"the Jacobian has {n_out} x {n_in} entries, more than JACOBIAN_MAX_ENTRIES"
    )
    us = {k: rng.standard_normal(outs[k].shape) for k in floats}
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

    def projected(plus, minus, span) -> float:  # sum u . (out+ - out-) / span, output by output
        return float(
            sum(np.sum(us[k] * (p - m)) for k, p, m in zip(floats, plus, minus, strict=True))
            / span
        )

    if fast_mode:
        noise = float(np.sqrt(sum(np.sum((us[k] * np.asarray(outs[k].data, np.float64)) ** 2)
                                  for k in floats)))  # fmt: skip
        for p in range(n_projections):
            vs = [rng.standard_normal(t.shape) for t in wrt]
            num, allowed = _directional(
                wrt, vs, analytic, eps, atol, rtol, values, projected, noise
            )
            ana = float(sum(np.sum(a * v) for a, v in zip(analytic, vs, strict=True)))
            finite = np.isfinite(ana) and np.isfinite(num)
            if not (finite and abs(ana - num) <= allowed) and not (np.isinf(ana) and ana == num):
                culprit = _fast_culprit(
                    wrt, wrt_idx, analytic, vs, eps, atol, rtol, values, projected, noise
                )
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
                    analytic=ana,
                    numerical=num,
                )
        return True

    for t, i_in, ana in zip(wrt, wrt_idx, analytic, strict=True):
        num = np.zeros(t.shape)
        flat = _flat_data(t)
        for j in range(flat.size):
            plus, minus, span = _columns(flat, j, eps, values)
            num.flat[j] = projected(plus, minus, span)
        bad, err, allowed, nonfinite = _compare(ana, num, atol, rtol)
        if bad.any():
            excess = np.where(bad, err - allowed, -np.inf)
            excess[nonfinite] = np.inf  # (a non-finite element is the worst)
            j = int(np.argmax(excess))
            index = _index(j, t.shape)
            kinks = _kinks(flat, np.flatnonzero(bad), excess.reshape(-1), eps, values, None)
            frac = float(bad.mean())
            msg = (
                f"gradcheck failed for inputs[{i_in}] (shape {tuple(t.shape)}), gradient J^T u "
                f"for a random upstream gradient u ({too_many}): worst element "
                f"{index}: analytic {ana.flat[j]:.6g}, numerical {num.flat[j]:.6g} "
                f"(difference {err.flat[j]:.3g}, allowed {allowed.flat[j]:.3g}); "
                f"{int(bad.sum())} of {bad.size} elements ({100 * frac:.1f}%) fail."
            )
            raise GradcheckError(
                msg + _kink_note(kinks),
                input_index=i_in,
                index=index,
                analytic=float(ana.flat[j]),
                numerical=float(num.flat[j]),
                fraction=frac,
                at_kink=kinks[0],
            )
    return True


def _check_deterministic(first: list, second: list, which: list[int]) -> None:
    """Raise unless two evaluations of fn at the same inputs gave the same values: finite
    differences of a random function (dropout, noise) check nothing."""
    for k, a, b in zip(which, first, second, strict=True):  # (k: fn's output index)
        if not np.array_equal(a, b, equal_nan=True):
            diff = np.abs(a - b)
            raise GradcheckError(
                f"gradcheck: fn is not deterministic: two evaluations at the same inputs "
                f"differ (output {k}, by up to {np.nanmax(diff):.3g}), so finite differences "
                "cannot check it; fix its randomness (a seeded generator, dropout off) first"
            )


def _flat_data(t: Tensor) -> np.ndarray:
    """t's data as a flat view that writes through (made contiguous first if need be)."""
    if not t.data.flags.c_contiguous:
        t.data = np.ascontiguousarray(t.data)
    return t.data.reshape(-1)


def _columns(flat: np.ndarray, j: int, eps: float, values) -> tuple[list, list, float]:
    """The outputs at element j of ``flat`` moved by +eps and by -eps, and how far apart
    the two points really are: x + eps rounds (by up to half an ulp of x, a large share
    of eps where |x| is large), and their difference is exact (Sterbenz)."""
    old = flat[j]
    try:
        flat[j] = old + eps
        up = float(flat[j])
        plus = values()
        flat[j] = old - eps
        down = float(flat[j])
        minus = values()
    finally:
        flat[j] = old
    if not np.isfinite(old):  # (an inf or NaN input stays one: the nominal step)
        return plus, minus, 2 * eps
    if not abs(up - down - 2 * eps) <= eps:  # (x so large that x +- eps rounds to x)
        raise _step_lost(f"an element of {float(old):.6g}", f"a move of {up - down:.3g} "
                         f"instead of {2 * eps:.3g}")  # fmt: skip
    return plus, minus, up - down


def _step_lost(what: str, how: str) -> GradcheckError:
    return GradcheckError(
        f"gradcheck: at {what} the step x +- eps rounds to {how}, so finite differences "
        "cannot measure the derivative there: pass an eps of about 1e-6 times the inputs' "
        "size (eps=...)"
    )


def _compare(ana: np.ndarray, num: np.ndarray, atol: float, rtol: float):
    """(bad, err, allowed, nonfinite): an entry fails when the two differ, or when either
    is not finite (unless both are the same infinity): a gradient of inf against a
    difference of nan fails, as in PyTorch, and one non-finite entry cannot excuse the
    others."""
    with np.errstate(invalid="ignore"):  # (inf - inf)
        err = np.abs(ana - num)
    allowed = atol + rtol * np.abs(num)
    same_inf = np.isinf(ana) & (ana == num)
    nonfinite = ~(np.isfinite(ana) & np.isfinite(num)) & ~same_inf
    return (err > allowed) | nonfinite, err, allowed, nonfinite


def _index(j: int, shape) -> tuple[int, ...]:
    return tuple(int(k) for k in np.unravel_index(j, shape)) if len(shape) else ()


def _check_jacobian(outs, fresh, floats, live, wrt, wrt_idx, values, eps, atol, rtol) -> bool:
    """Every entry of the Jacobian: rows by one backward pass per output element, columns
    by central differences of each output. A graph that one backward frees whatever
    retain_graph says (nn.DataParallel's) gets a forward (``fresh()``) per row."""
    sizes = [int(outs[k].size) for k in floats]
    starts = np.cumsum([0] + sizes)
    n_out = int(starts[-1])
    analytic = [np.zeros((n_out, t.size)) for t in wrt]
    again = False
    for pos, k in enumerate(floats):
        if k not in live:
            continue  # (an output that does not require grad: a zero row)
        o = outs[k]
        for i in range(o.size):
            u = np.zeros(o.shape, dtype=o.dtype)
            u.flat[i] = 1
            try:
                o_i = fresh()[k] if again else o
                rows = grad([o_i], wrt, [Tensor(u)], retain_graph=True, allow_unused=True)
            except RuntimeError:
                if again or i + pos == 0:
                    raise
                again = True  # (the first backward freed it: the error was not fn's)
                rows = grad([fresh()[k]], wrt, [Tensor(u)], allow_unused=True)
            for a, r in zip(analytic, rows, strict=True):
                if r is not None:
                    a[starts[pos] + i] = np.asarray(r.data, np.float64).reshape(-1)
    for t, i_in, ana in zip(wrt, wrt_idx, analytic, strict=True):
        num = np.zeros((n_out, t.size))
        flat = _flat_data(t)
        for j in range(flat.size):
            plus, minus, span = _columns(flat, j, eps, values)
            if n_out:
                num[:, j] = _cat([p - m for p, m in zip(plus, minus, strict=True)], None) / span
        bad, err, allowed, nonfinite = _compare(ana, num, atol, rtol)
        if not bad.any():
            continue
        excess = np.where(bad, err - allowed, -np.inf)
        excess[nonfinite] = np.inf
        row, j = np.unravel_index(int(np.argmax(excess)), excess.shape)
        pos = int(np.searchsorted(starts, row, side="right")) - 1
        k = floats[pos]
        out_index = _index(int(row - starts[pos]), outs[k].shape)
        index = _index(int(j), t.shape)
        bad_inputs = bad.any(axis=0)
        frac = float(bad_inputs.mean())
        worst = np.max(excess, axis=0)
        kinks = _kinks(flat, np.flatnonzero(bad_inputs), worst, eps, values, bad)
        what = f"outputs[{k}][{', '.join(map(str, out_index))}]" if len(outs) > 1 else (
            f"output[{', '.join(map(str, out_index))}]"
        )
        msg = (
            f"gradcheck failed for inputs[{i_in}] (shape {tuple(t.shape)}): worst element "
            f"{index}, its entry d {what} / d inputs[{i_in}][{', '.join(map(str, index))}]: "
            f"analytic {ana[row, j]:.6g}, numerical {num[row, j]:.6g} (difference "
            f"{err[row, j]:.3g}, allowed {allowed[row, j]:.3g}); {int(bad_inputs.sum())} of "
            f"{t.size} elements ({100 * frac:.1f}%) fail ({int(bad.sum())} of {bad.size} "
            "Jacobian entries)."
        )
        raise GradcheckError(
            msg + _kink_note(kinks),
            input_index=i_in,
            index=index,
            output_index=k,
            output_element=out_index,
            analytic=float(ana[row, j]),
            numerical=float(num[row, j]),
            fraction=frac,
            at_kink=kinks[0],
        )
    return True


def _kinks(flat, failing, excess, eps, values, bad) -> tuple[bool, int, int, tuple]:
    """(all at kinks, how many of the checked failing input elements sit at a kink, how
    many were checked, the worst one's one-sided slopes): up to KINK_CHECKS failing
    elements, the worst first, are tested (``_at_kink``) on the outputs that fail there
    (``bad``: failing Jacobian entries, rows by columns; None: all outputs)."""
    order = failing[np.argsort(-excess[failing], kind="stable")][:KINK_CHECKS]
    at, slopes = 0, None
    for n, j in enumerate(order):
        rows = None if bad is None else np.flatnonzero(bad[:, j])
        kink, s = _at_kink(flat, int(j), eps, values, rows)
        at += kink
        if n == 0:
            slopes = s
    return bool(len(order)) and at == len(order), at, len(order), slopes


def _kink_note(kinks) -> str:
    every, at, checked, slopes = kinks
    if every:
        who = "this element sits" if checked == 1 else f"the {checked} failing elements sit"
        return (
            f" Note: {who} at a kink (one-sided slopes {slopes[0]:.6g} and {slopes[1]:.6g} "
            "differ), e.g. relu at 0 or a max tie, where the derivative is not defined: move "
            "the input off the kink rather than call it a bug."
        )
    if at:
        return (
            f" ({at} of the {checked} failing elements checked sit at a kink, the others do "
            "not: the fault is real.)"
        )
    return ""


def _directional(wrt, vs, analytic, eps, atol, rtol, values, projected, noise):
    """<J^T u, v> by central differences along v, and the difference allowed from it.

    A projection sums N per-element terms, so an error in one element is diluted
    by about sqrt(N) against ``rtol * |value|``. The allowance is therefore
    tightened to the finite differences' own error, estimated from a second
    step 2*eps (Richardson: the two differ by about 3x the O(eps^2) error), and
    loosened back to ``rtol`` only where that estimate is large (kinks, noise).
    ``noise``: the root of the summed squares of output times u, for the rounding of
    the outputs (each output's difference is rounded on its own, at random). The points
    x +- h v round; what that moves (by ``analytic``, the backward's J^T u) is taken off
    the difference, so that it measures J along v itself.
    """

    def step(h: float) -> float:
        saved = [t.data.copy() for t in wrt]  # (x + h v - 2 h v + h v is not x to the bit)
        try:
            for t, v in zip(wrt, vs, strict=True):
                t.data += h * v
            ups = [t.data.copy() for t in wrt]
            plus = values()
            for t, v, x in zip(wrt, vs, saved, strict=True):
                np.subtract(x, h * v, out=t.data)
            # what rounding did to the move x+ - x- (not where x is inf or NaN: it stays)
            with np.errstate(invalid="ignore"):  # (inf - inf, masked out)
                errs = [
                    np.where(np.isfinite(x), (up - t.data) - 2 * h * v, 0.0)
                    for up, t, v, x in zip(ups, wrt, vs, saved, strict=True)
                ]
            off = sum(  # <J^T u, (x+ - x-) - 2 h v>: the rounding of the two points
                float(np.sum(a * e)) for a, e in zip(analytic, errs, strict=True)
            )
            lost = np.sqrt(sum(float(np.sum(e * e)) for e in errs))
            meant = 2 * h * np.sqrt(sum(float(np.sum(v * v)) for v in vs))
            if not lost <= 0.5 * meant:  # (then the check would be mostly the correction)
                raise _step_lost("these inputs", f"a move {lost / meant:.0%} off the one meant")
            minus = values()
        finally:
            for t, x in zip(wrt, saved, strict=True):
                np.copyto(t.data, x)
        return projected(plus, minus, 2 * h) - off / (2 * h)

    num = step(eps)
    fd_err = abs(num - step(2 * eps))
    rounding = 10 * np.finfo(np.float64).eps * noise / eps
    return num, atol + min(rtol * abs(num), 1e-7 * abs(num) + 10 * fd_err + rounding)


def _fast_culprit(wrt, wrt_idx, analytic, vs, eps, atol, rtol, values, projected, noise):
    """Repeat a failed projection one input at a time; the index of the first that disagrees."""
    for t, i_in, a, v in zip(wrt, wrt_idx, analytic, vs, strict=True):
        num, allowed = _directional([t], [v], [a], eps, atol, rtol, values, projected, noise)
        if abs(float(np.sum(a * v)) - num) > allowed:
            return i_in
    return None


def _cat(arrays: list[np.ndarray], rows) -> np.ndarray:
    """The outputs as one flat vector (``rows`` of it, when given)."""
    flat = np.concatenate([a.reshape(-1) for a in arrays]) if arrays else np.zeros(0)
    return flat if rows is None else flat[rows]


def _at_kink(flat: np.ndarray, j: int, eps: float, values, rows=None):
    """Whether the function has a kink within eps of element j (where the step eps
    crosses it, so that the finite difference and the derivative disagree for a good
    reason), for some output entry (of ``rows``, flat indices over the outputs; None:
    all); and the one-sided slopes of the entry where they disagree most.

    The one-sided slopes at steps h = eps, eps/2, eps/4 differ by jumps j_h. For a
    smooth function j_h = |f''| h: it halves with the step. A kink at distance d < h adds
    about J (1 - d/h) to j_h, which does not halve; one beyond eps leaves all three
    smooth (there the failure is the backward's)."""
    f0 = _cat(values(), rows)
    if f0.size == 0:
        return False, (0.0, 0.0)
    jumps, slopes = [], None
    for h in (eps, eps / 2, eps / 4):
        try:
            plus, minus, _ = _columns(flat, j, h, values)
        except GradcheckError:  # (a step too short for x: no telling; not called a kink)
            return False, (0.0, 0.0)
        right, left = (_cat(plus, rows) - f0) / h, (f0 - _cat(minus, rows)) / h
        with np.errstate(invalid="ignore"):
            jumps.append(np.abs(right - left))
        if slopes is None:
            slopes = (left, right)
    left, right = slopes
    scale = np.maximum(np.maximum(np.abs(right), np.abs(left)), 1e-3)
    j1, j2, j4 = jumps
    with np.errstate(invalid="ignore"):
        smooth = (np.abs(j1 - 2 * j2) <= 0.3 * j1) & (np.abs(j2 - 2 * j4) <= 0.3 * j2 + 1e-9)
        kink = (j1 > 0.1 * scale) & ~smooth
    m = int(np.argmax(np.where(np.isfinite(j1), j1, 0)))
    return bool(kink.any()), (float(left[m]), float(right[m]))


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
