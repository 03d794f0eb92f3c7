"""Convolution arithmetic on plain NumPy arrays: sizes, padding rules, windows, im2col and FFT.

Everything here is NumPy/SciPy only (no Tensors, no graph) so that the ops in
``tinygrad_np.ops.conv`` / ``ops.pool`` and tools that explain a layer can share it.

Conventions: arrays are channels-first ``(N, C, *spatial)``; a conv weight is
``(O, C // groups, *K)``; per-dimension tuples are plural (``strides``,
``dilations``); ``pads`` is one ``(before, after)`` pair per spatial dim. A
negative pad amount crops, so ``pad_spatial(pad_spatial(x, pads), negate(pads))``
gives back ``x``'s shape.

The three linear maps of a convolution (for one geometry: strides s, pads p,
dilations d, groups G) are

- ``correlate(xp, w)``:            y[n,o,i]  = sum_{c,k} xp[n,c,i*s + k*d] w[o,c,k]
- ``correlate_transpose(g, w)``:   gxp[n,c,j] = sum_{o,i,k: i*s + k*d = j} g[n,o,i] w[o,c,k]
- ``correlate_weight_grad(xp, g)``: gw[o,c,k] = sum_{n,i} xp[n,c,i*s + k*d] g[n,o,i]

(channel sums run over one group), where ``xp`` is the padded input. Each has
an im2col/GEMM and an FFT implementation; ``choose_algorithm`` picks one by a
cost estimate unless ``conv_algorithm("gemm" | "fft")`` (or the environment
variable ``TINYGRAD_NP_CONV_ALGO``) forces it.
"""

from __future__ import annotations

import contextlib
import functools
import math
import os
import threading
from collections.abc import Iterator, Sequence

import numpy as np
import scipy.fft

from tinygrad_np import _compiled
from tinygrad_np import _parallel as par

Pair = tuple[int, int]

ALGORITHMS = ("auto", "gemm", "fft")

_settings: dict = {
    "algorithm": os.environ.get("TINYGRAD_NP_CONV_ALGO", "auto").lower(),
    # temporary memory one im2col (or FFT) chunk may use, beyond inputs and outputs
    "scratch_bytes": int(os.environ.get("TINYGRAD_NP_CONV_SCRATCH", 64 * 2**20)),
    # the largest im2col matrix a conv keeps from its forward for its weight gradient
    # (it lives until the backward, so it adds to peak memory)
    "cache_bytes": int(os.environ.get("TINYGRAD_NP_CONV_CACHE", 16 * 2**20)),
    # im2col layout of the GEMM route: "auto", "batch" or "samples_last" (see below)
    "layout": os.environ.get("TINYGRAD_NP_CONV_LAYOUT", "auto").lower(),
    # depthwise convs by compiled loops where numba is installed (tinygrad_np/_compiled.py)
    "compiled": _compiled.enabled_by_environment(),
}
LAYOUTS = ("auto", "batch", "samples_last")
if _settings["layout"] not in LAYOUTS:
    raise ValueError(
        f"TINYGRAD_NP_CONV_LAYOUT must be one of {LAYOUTS}, got {_settings['layout']!r}"
    )
if _settings["algorithm"] not in ALGORITHMS:
    raise ValueError(
        f"TINYGRAD_NP_CONV_ALGO must be one of {ALGORITHMS}, got {_settings['algorithm']!r}"
    )

# an FFT flop is worth this many GEMM flops (BLAS runs near peak; FFTs and the small
# per-frequency complex matmuls do not). Fitted to seven 2-D convs timed forward and
# backward on the benchmark machine (2 threads): a 5x5 64->64 conv at 32x32 runs 1.45x
# slower by FFT (estimate with 4.0: 1.16x), a 7x7 3->16 one at 64x64 1.7x faster (1.1x),
# an 11x11 16->32 one at 64x64 5.8x faster (4.0x)
FFT_PENALTY = 4.0
# A conv of one input channel (one group) whose columns of one sample outgrow the L2
# cache (FEW_CHANNELS_COLUMNS entries) is bound on GEMM by its taps x positions matrices
# (the input gradient's product contracts O rows of g, the rest is memory traffic), not
# by its flops: the estimate of its backward maps is scaled by ONE_CHANNEL_SCALE / O
# (where above 1), of its forward (whose GEMM stays quicker) by ONE_CHANNEL_FORWARD_SCALE
# for one output channel. Forward and backward, one thread, ms, GEMM against FFT: conv1d
# 1->1 on 1e5 samples, kernel 40 7.1 / 5.1, 64 16 / 6, 260 67 / 7.5 (and 100 MiB of
# scratch against 5); conv2d 1->1 7x7 on 256x256 (b4) 18.9 / 5.7 (a speed hunt: the
# switch was at 261 taps). Forward alone: 1->1 kernel 40 1.3 / 2.5, 128 8.1 / 3.5. With
# more output channels the GEMM backward splits better over two threads: 1->8 on 16 x
# 16,000, kernel 48, 18.6 / 14.3 on one thread but 11.7 / 14.9 on two; with two input
# channels it held its own: 2->3 k35 on 30,000 (b3) 7.8 / 14.2, 2->4 k40 7.5 / 10.1.
# Short signals stay on GEMM (the cache bound).
ONE_CHANNEL_SCALE = 8.0
ONE_CHANNEL_FORWARD_SCALE = 4.0
FEW_CHANNELS_COLUMNS = 1 << 19


# ----------------------------------------------------------------------------- settings


def get_conv_algorithm() -> str:
    """The current algorithm setting: "auto", "gemm" or "fft"."""
    return _settings["algorithm"]


# The settings are the process's (the pool's threads read them), set by ``with`` blocks.
# Blocks of two threads may overlap and end in any order, so each block's value waits on
# a stack until its block ends, and the setting is the latest open block's value, or once
# none is open the value from before the first (restoring what a block saw on entry
# would leave the other thread's value in place for good).
_open_blocks: dict[str, list] = {}
_before_blocks: dict[str, object] = {}
_blocks_lock = threading.Lock()


@contextlib.contextmanager
def _override(key: str, value) -> Iterator[None]:
    """``_settings[key] = value`` while the ``with`` block runs (see above)."""
    token = object()
    with _blocks_lock:
        stack = _open_blocks.setdefault(key, [])
        if not stack:
            _before_blocks[key] = _settings[key]
        stack.append((token, value))
        _settings[key] = value
    try:
        yield
    finally:
        with _blocks_lock:
            stack[:] = [entry for entry in stack if entry[0] is not token]
            _settings[key] = stack[-1][1] if stack else _before_blocks.pop(key)


@contextlib.contextmanager
def _setting(key: str, name: str, allowed: tuple[str, ...], what: str) -> Iterator[None]:
    """``_settings[key] = name`` inside a ``with`` block (``name`` one of ``allowed``)."""
    name = str(name).lower()
    if name not in allowed:
        raise ValueError(f"{what}: name must be one of {allowed}, got {name!r}")
    with _override(key, name):
        yield


@contextlib.contextmanager
def conv_algorithm(name: str) -> Iterator[None]:
    """Force the convolution algorithm inside a ``with`` block: "gemm", "fft" or "auto".

    >>> with conv_algorithm("fft"):
    ...     get_conv_algorithm()
    'fft'
    """
    with _setting("algorithm", name, ALGORITHMS, "conv_algorithm"):
        yield


@contextlib.contextmanager
def conv_layout(name: str) -> Iterator[None]:
    """Force the im2col layout of the GEMM route inside a ``with`` block: "batch" (samples
    outside, rows of the output copied one by one), "samples_last" (samples innermost:
    long contiguous runs for small outputs, four extra transposes) or "auto". A forced
    layout also turns off the routes that build no window columns (the full correlation
    and wide grid of the input gradient, the volumes' stacked wide grid and tap views).
    Results agree to float rounding; only the speed differs.

    >>> with conv_layout("samples_last"):
    ...     _settings["layout"]
    'samples_last'
    """
    with _setting("layout", name, LAYOUTS, "conv_layout"):
        yield


@contextlib.contextmanager
def compiled_kernels(enabled: bool) -> Iterator[None]:
    """Turn the compiled depthwise kernels (``tinygrad_np/_compiled.py``, where numba is
    installed) on or off inside a ``with`` block; off, depthwise convs take the NumPy
    routes. Results agree to float rounding.

    >>> with compiled_kernels(False):
    ...     _settings["compiled"]
    False
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"compiled_kernels: enabled must be a bool, got {enabled!r}")
    with _override("compiled", enabled):
        yield


def has_compiled_kernels() -> bool:
    """Whether depthwise convs can run as compiled loops here: numba imports, and neither
    ``compiled_kernels(False)`` nor ``TINYGRAD_NP_COMPILED=0`` turned them off."""
    return _settings["compiled"] and _compiled.available()


@contextlib.contextmanager
def scratch_budget(nbytes: int) -> Iterator[None]:
    """Bound the temporary memory of one im2col / FFT chunk to ``nbytes`` inside a block."""
    if nbytes <= 0:
        raise ValueError(f"scratch_budget: nbytes must be positive, got {nbytes}")
    with _override("scratch_bytes", int(nbytes)):
        yield


# ----------------------------------------------------------------------------- arguments


def one_for_every_dim(value, nd: int):
    """``value`` with a sequence of one int (not bool) repeated for each of ``nd`` dims, as
    PyTorch's functions take ``stride=(2,)``; anything else as it is."""
    if (
        nd > 1
        and isinstance(value, Sequence)
        and not isinstance(value, str)
        and len(value) == 1
        and isinstance(value[0], (int, np.integer))
        and not isinstance(value[0], bool)
    ):
        return (int(value[0]),) * nd
    return value


def expand_arg(value, nd: int, name: str, what: str = "conv") -> tuple[int, ...]:
    """An int or a sequence of ``nd`` ints as a tuple of ``nd`` ints (``name`` in errors);
    a sequence of one int counts for every dim, as in PyTorch (``stride=(2,)``)."""
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return (int(value),) * nd
    value = one_for_every_dim(value, nd)
    if isinstance(value, Sequence) and not isinstance(value, str):
        vals = tuple(value)
        if len(vals) == nd and all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for v in vals
        ):
            return tuple(int(v) for v in vals)
    raise ValueError(
        f"{what}: {name} must be an int or {nd} ints (one per spatial dim), got {value!r}"
    )


def check_positive(values: tuple[int, ...], name: str, what: str = "conv") -> None:
    """Raise ValueError naming ``name`` unless every entry is positive."""
    if any(v <= 0 for v in values):
        raise ValueError(f"{what}: {name} must be positive, got {values}")


def check_transpose_padding(pads, out_pads, strides, dilations, padding, output_padding,
                            what: str) -> None:  # fmt: skip
    """A transposed conv's padding must be non-negative, its output_padding non-negative
    and below stride or dilation (as PyTorch); ValueError naming the argument."""
    if any(p < 0 for p in pads):
        raise ValueError(f"{what}: padding must be non-negative, got {padding!r}")
    for op_, s, d in zip(out_pads, strides, dilations, strict=True):
        if op_ < 0 or op_ >= max(s, d):
            raise ValueError(
                f"{what}: output_padding must be non-negative and smaller than stride or "
                f"dilation, got output_padding={output_padding!r} with stride={strides}, "
                f"dilation={dilations}"
            )


def negate(pads: Sequence[Pair]) -> tuple[Pair, ...]:
    """The pads that undo ``pads`` (crop what was added, zero-fill what was cropped)."""
    return tuple((-b, -a) for b, a in pads)


# ----------------------------------------------------------------------------- sizes


def padded_sizes(sizes: Sequence[int], pads: Sequence[Pair]) -> tuple[int, ...]:
    """Each spatial size with its (before, after) padding added."""
    return tuple(n + pb + pa for n, (pb, pa) in zip(sizes, pads, strict=True))


def dilated_size(kernel: int, dilation: int = 1) -> int:
    """Extent of a kernel of ``kernel`` taps spaced ``dilation`` apart: d*(K-1) + 1."""
    return dilation * (kernel - 1) + 1


def conv_output_size(
    n: int,
    kernel: int,
    stride: int = 1,
    padding: int | Pair = 0,
    dilation: int = 1,
    ceil_mode: bool = False,
) -> int:
    """Number of windows along one dim: floor((n + p_before + p_after - d*(K-1) - 1) / s) + 1.

    ``padding`` is an int (both sides) or a ``(before, after)`` pair. With
    ``ceil_mode`` (pooling) the division rounds up, but a last window that
    would start in the right padding is dropped, as in PyTorch; so a window may
    hang over the end, even when the dilated kernel is longer than the padded
    input (a 2-wide window over 1 row gives 1 output). Otherwise returns 0 when
    the dilated kernel is longer than the padded input.

    >>> conv_output_size(96, 4, stride=2)
    47
    >>> conv_output_size(5, 2, stride=2, ceil_mode=True)
    3
    """
    pb, pa = (padding, padding) if isinstance(padding, (int, np.integer)) else padding
    span = n + pb + pa - dilated_size(kernel, dilation)
    if not ceil_mode:
        return span // stride + 1 if span >= 0 else 0
    out = (span + stride - 1) // stride + 1  # (floor division, as PyTorch's div_rtn)
    if (out - 1) * stride >= n + pb:
        out -= 1
    return max(out, 0)


def same_padding(n: int, kernel: int, stride: int = 1, dilation: int = 1) -> Pair:
    """TensorFlow's SAME rule: output ceil(n / s); total padding split with the extra after.

    total = max((ceil(n/s) - 1) * s + d*(K-1) + 1 - n, 0); before = total // 2.

    >>> same_padding(36, 5, stride=7)   # ceil(36/7) = 6 windows need 5*7 + 5 = 40 rows
    (2, 2)
    >>> same_padding(10, 4)
    (1, 2)
    """
    out = -(-n // stride)
    total = max((out - 1) * stride + dilated_size(kernel, dilation) - n, 0)
    return total // 2, total - total // 2


def resolve_padding(
    padding,
    in_sizes: Sequence[int],
    kernel: Sequence[int],
    strides: Sequence[int],
    dilations: Sequence[int],
    what: str = "conv",
) -> tuple[Pair, ...]:
    """Per-dim ``(before, after)`` pairs for a conv ``padding`` argument.

    ``padding`` is an int, one int per dim, ``"valid"`` (none), ``"same"``
    (``same_padding`` per dim) or one ``(before, after)`` pair per dim.

    >>> resolve_padding("same", (36, 47), (5, 8), (7, 4), (1, 1))
    ((2, 2), (2, 3))
    >>> resolve_padding(((1, 2), (0, 3)), (8, 8), (3, 3), (1, 1), (1, 1))
    ((1, 2), (0, 3))
    """
    nd = len(in_sizes)
    if isinstance(padding, str):
        mode = padding.lower()
        if mode == "valid":
            return ((0, 0),) * nd
        if mode == "same":
            return tuple(
                same_padding(n, k, s, d)
                for n, k, s, d in zip(in_sizes, kernel, strides, dilations, strict=True)
            )
        raise ValueError(
            f"{what}: padding must be 'valid' or 'same' when a string, got {padding!r}"
        )
    padding = one_for_every_dim(padding, nd)
    if isinstance(padding, Sequence) and len(padding) == nd and nd > 0:
        pairs = []
        for p in padding:
            if isinstance(p, Sequence) and len(p) == 2:
                pairs.append((p[0], p[1]))
            else:
                pairs.append((p, p))
        if all(
            isinstance(v, (int, np.integer)) and not isinstance(v, bool) for pr in pairs for v in pr
        ):
            pads = tuple((int(b), int(a)) for b, a in pairs)
            if any(b < 0 or a < 0 for b, a in pads):
                raise ValueError(f"{what}: padding must be non-negative, got {padding!r}")
            return pads
    if isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
        if padding < 0:
            raise ValueError(f"{what}: padding must be non-negative, got {padding!r}")
        return ((int(padding), int(padding)),) * nd
    raise ValueError(
        f"{what}: padding must be an int, {nd} ints, 'valid', 'same' or {nd} (before, after) "
        f"pairs, got {padding!r}"
    )


def pool_padding(
    n: int, kernel: int, stride: int, padding: int, dilation: int = 1, ceil_mode: bool = False
) -> Pair:
    """Pooling pads as an array pair: ``(p, p + extra)`` where ``extra`` rows make the last
    ceil_mode window fit (those rows are never counted as input)."""
    out = conv_output_size(n, kernel, stride, padding, dilation, ceil_mode)
    need = (out - 1) * stride + dilated_size(kernel, dilation)
    return padding, padding + max(0, need - (n + 2 * padding))


def unread_rows(
    n: int, kernel: int, stride: int = 1, padding: int | Pair = 0, dilation: int = 1
) -> int:
    """How many trailing input rows no window reads (their gradient is zero).

    The last window starts at (out-1)*s in the padded input and ends at
    (out-1)*s + d*(K-1); input rows after the last tap it reads are never read.

    >>> unread_rows(8, 3, stride=2)   # windows start at 0, 2, 4: rows 0..6 read, row 7 not
    1
    """
    mask = read_mask(n, kernel, stride, padding, dilation)
    hits = np.flatnonzero(mask)
    return int(n - (hits[-1] + 1)) if hits.size else n


def read_mask(
    n: int, kernel: int, stride: int = 1, padding: int | Pair = 0, dilation: int = 1
) -> np.ndarray:
    """Bool mask of the input rows some window reads (interior gaps appear when s > d*(K-1)+1
    or when the dilation skips rows)."""
    pb, pa = (padding, padding) if isinstance(padding, (int, np.integer)) else padding
    out = conv_output_size(n, kernel, stride, (pb, pa), dilation)
    pos = (np.arange(out)[:, None] * stride + np.arange(kernel)[None, :] * dilation - pb).ravel()
    mask = np.zeros(n, dtype=bool)
    mask[pos[(pos >= 0) & (pos < n)]] = True
    return mask


def im2col_scratch_bytes(
    batch: int,
    channels: int,
    kernel: Sequence[int],
    out_sizes: Sequence[int],
    itemsize: int = 4,
) -> int:
    """Bytes of the im2col matrix of a whole batch: N * C * prod(K) * prod(out) * itemsize.

    The GEMM path never holds more than ``scratch_bytes`` of it at once: it
    processes ``batch_chunk`` samples at a time.
    """
    return batch * channels * math.prod(kernel) * math.prod(out_sizes) * itemsize


def batch_chunk(per_sample_bytes: int, batch: int, budget: int | None = None) -> int:
    """How many samples fit the scratch budget (at least one)."""
    budget = _settings["scratch_bytes"] if budget is None else budget
    return max(1, min(batch, budget // max(per_sample_bytes, 1)))


def _chunks(batch: int, per_sample_bytes: int) -> Iterator[tuple[int, int]]:
    step = batch_chunk(per_sample_bytes, batch)
    for n0 in range(0, batch, step):
        yield n0, min(batch, n0 + step)


# ----------------------------------------------------------------------------- array helpers


def pad_spatial(x: np.ndarray, pads: Sequence[Pair], value: float = 0.0) -> np.ndarray:
    """Pad (or, for negative amounts, crop) the trailing ``len(pads)`` axes of ``x``.

    Returns ``x`` itself when nothing changes and a view when it only crops.
    """
    lead = x.ndim - len(pads)
    if all(b == 0 and a == 0 for b, a in pads):
        return x
    src = [slice(None)] * lead
    dst = [slice(None)] * lead
    shape = list(x.shape[:lead])
    for n, (b, a) in zip(x.shape[lead:], pads, strict=True):
        m = n + b + a
        if m < 0:
            raise ValueError(f"pad_spatial: pads {tuple(pads)} crop more than the size {n}")
        shape.append(m)
        s0, d0 = max(-b, 0), max(b, 0)
        length = max(0, min(n - s0, m - d0))
        src.append(slice(s0, s0 + length))
        dst.append(slice(d0, d0 + length))
    if all(b <= 0 and a <= 0 for b, a in pads):
        return x[tuple(src)]
    out = np.full(shape, value, dtype=x.dtype) if value else np.zeros(shape, dtype=x.dtype)
    out[tuple(dst)] = x[tuple(src)]
    return out


def dilate(x: np.ndarray, strides: Sequence[int]) -> np.ndarray:
    """Insert ``s - 1`` zeros between neighbours along each of the trailing axes.

    A length-n axis becomes (n - 1) * s + 1 long; this is the stride dilation
    of an upstream gradient (``x[..., ::s]`` undoes it).

    >>> dilate(np.array([1, 2, 3]), (2,)).tolist()
    [1, 0, 2, 0, 3]
    """
    nd = len(strides)
    if all(s == 1 for s in strides):
        return x
    lead = x.ndim - nd
    shape = x.shape[:lead] + tuple(
        max((n - 1) * s + 1, 0) for n, s in zip(x.shape[lead:], strides, strict=True)
    )
    out = np.zeros(shape, dtype=x.dtype)
    out[(Ellipsis,) + tuple(slice(None, None, s) for s in strides)] = x
    return out


def strided_slice(offset: Sequence[int], dilations, strides, out_sizes) -> tuple[slice, ...]:
    """The slices that pick, for kernel tap ``offset``, the input row of every window:
    rows k*d + i*s for i < out, per dim."""
    return tuple(
        slice(k * d, k * d + (o - 1) * s + 1, s)
        for k, d, s, o in zip(offset, dilations, strides, out_sizes, strict=True)
    )


@functools.lru_cache(maxsize=256)
def tap_slices(kernel, dilations, strides, out_sizes, lead: int = 0) -> tuple:
    """``(k, strided_slice(k, ...))`` for every kernel tap ``k``, after ``lead`` full
    slices (the leading axes), made once per geometry (tuple arguments; a conv's backward
    asked for them 25 times per call, a pool once per tap and pass)."""
    full = (slice(None),) * lead
    return tuple(
        (k, full + strided_slice(k, dilations, strides, out_sizes)) for k in np.ndindex(*kernel)
    )


def window_view(
    xp: np.ndarray, kernel: Sequence[int], strides: Sequence[int], dilations: Sequence[int]
) -> np.ndarray:
    """A read-only strided view ``(*lead, *out, *K)`` of every window of ``xp`` (no copy).

    ``view[..., i, k] = xp[..., i*s + k*d]`` per spatial dim.
    """
    nd = len(kernel)
    lead = xp.ndim - nd
    out_sizes = tuple(
        conv_output_size(n, k, s, 0, d)
        for n, k, s, d in zip(xp.shape[lead:], kernel, strides, dilations, strict=True)
    )
    sp = xp.strides[lead:]
    shape = xp.shape[:lead] + out_sizes + tuple(kernel)
    st = (
        xp.strides[:lead]
        + tuple(a * s for a, s in zip(sp, strides, strict=True))
        + tuple(a * d for a, d in zip(sp, dilations, strict=True))
    )
    return np.lib.stride_tricks.as_strided(xp, shape, st, writeable=False)


def _out_sizes(sp, kernel, strides, dilations) -> tuple[int, ...]:
    return tuple(
        conv_output_size(n, k, s, 0, d)
        for n, k, s, d in zip(sp, kernel, strides, dilations, strict=True)
    )


def par_copy(dst: np.ndarray, src: np.ndarray, axis: int = 0) -> None:
    """``dst[...] = src`` with the copy split along ``axis`` onto threads."""

    def run(s):
        key = (slice(None),) * axis + (s,)
        np.copyto(dst[key], src[key])

    par.for_slices(dst.shape[axis], run, dst.size)


# ----------------------------------------------------------------------------- im2col / GEMM
#
# Two layouts of the im2col matrix:
#   batch-wide  cols (G, Cg*K, nb*P):   one GEMM per group for a chunk of nb samples; the
#               result (O, nb, P) is transposed into (N, O, P). Used for every chunk of
#               more than one sample; kept by the forward for the weight gradient.
#   per-sample  cols (nb, G, Cg*K, P):  the GEMM writes straight into y; used when the
#               budget only fits one sample at a time.


def _bmm(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """Batched matmul over broadcast leading dims as a loop of 2-D BLAS calls.

    (np.matmul on stacks with broadcasting or ``out=`` can fall back to a slow
    non-BLAS loop; one 2-D call per matrix never does.)
    """
    lead = np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    if out is None:
        dtype = np.result_type(a.dtype, b.dtype)
        out = np.empty(lead + (a.shape[-2], b.shape[-1]), dtype=dtype)
    a = np.broadcast_to(a, lead + a.shape[-2:])
    b = np.broadcast_to(b, lead + b.shape[-2:])
    for idx in np.ndindex(*lead):
        par.matmul(a[idx], b[idx], out=out[idx])
    return out


def _im2col_per_sample(xp, kernel, strides, dilations, groups) -> np.ndarray:
    """cols (nb, G, Cg*prod(K), P) of the padded chunk ``xp`` (nb, C, *Sp)."""
    nb, c = xp.shape[:2]
    nd = len(kernel)
    win = window_view(xp, kernel, strides, dilations)  # (nb, C, *out, *K)
    out_sizes = win.shape[2 : 2 + nd]
    perm = (0, 1) + tuple(range(2 + nd, 2 + 2 * nd)) + tuple(range(2, 2 + nd))
    cols = np.empty((nb, c) + tuple(kernel) + out_sizes, dtype=xp.dtype)
    par_copy(cols, win.transpose(perm))  # (nb, C, *K, *out)
    return cols.reshape(nb, groups, -1, math.prod(out_sizes))


def _batch_windows(xp, kernel, strides, dilations, empty=True):
    """The batch-wide im2col layout (C, *K, nb, *out) of the padded chunk ``xp``: the
    windows as a strided view in that layout, and an empty array to copy them into
    (None unless ``empty``; the sample axis, number ``1 + len(kernel)``, is where copies
    are split)."""
    nd = len(kernel)
    win = window_view(xp, kernel, strides, dilations)  # (nb, C, *out, *K)
    perm = (1,) + tuple(range(2 + nd, 2 + 2 * nd)) + (0,) + tuple(range(2, 2 + nd))
    src = win.transpose(perm)
    return src, (np.empty(src.shape, dtype=xp.dtype) if empty else None)


class _Padded:
    """``x`` zero-padded by ``pads`` (no negative amounts), not made yet. The per-sample
    im2col routes pad one sample at a time into a buffer of the thread's own, which stays
    in the cache (``_SampleWindows``); every other route makes the padded copy
    (``_array``). A padded copy of the batch is written to memory and read back: it took
    0.55-0.7 ms of each of a 3x3 conv's forward and weight gradient on 2 threads (32->64
    at 32x32 and 128->128 at 16x16, b32)."""

    __slots__ = ("x", "pads", "shape", "dtype", "itemsize")

    def __init__(self, x: np.ndarray, pads: Sequence[Pair]):
        self.x, self.pads = x, tuple(pads)
        self.shape = x.shape[:2] + padded_sizes(x.shape[2:], pads)
        self.dtype, self.itemsize = x.dtype, x.itemsize

    def __getitem__(self, samples: slice) -> _Padded:
        return _Padded(self.x[samples], self.pads)


def _interior(sizes: Sequence[int], pads: Sequence[Pair]) -> tuple[slice, ...]:
    """Where an array of spatial ``sizes`` lies inside itself padded by ``pads`` (>= 0)."""
    return tuple(slice(b, b + n) for n, (b, _) in zip(sizes, pads, strict=True))


def _padded(x: np.ndarray, pads: Sequence[Pair]):
    """``x`` padded by ``pads``: a ``_Padded`` where that can wait, else the padded copy."""
    if any(b < 0 or a < 0 for b, a in pads) or all(b == a == 0 for b, a in pads):
        return pad_spatial(x, pads)
    return _Padded(x, pads)


def _array(xp) -> np.ndarray:
    """The padded array itself (made here for a ``_Padded``)."""
    return pad_spatial(xp.x, xp.pads) if isinstance(xp, _Padded) else xp


class _SampleWindows:
    """Stands for ``_batch_windows(xp)[0]``, the windows (C, *K, nb, *out), of a
    ``_Padded`` xp, for ``_sample_columns``: reading sample j pads it into the calling
    thread's buffer (its zero border made once) and reads the windows there."""

    def __init__(self, xp: _Padded, kernel, strides, dilations):
        self.xp, self.geometry = xp, (tuple(kernel), tuple(strides), tuple(dilations))
        out = _out_sizes(xp.shape[2:], kernel, strides, dilations)
        self.shape = (xp.shape[1],) + tuple(kernel) + (xp.shape[0],) + out
        self.dtype, self.itemsize = xp.dtype, xp.itemsize
        self.size = math.prod(self.shape)
        self.lead = 1 + len(kernel)  # the sample axis
        self.inner = (slice(None),) + _interior(xp.x.shape[2:], xp.pads)
        self.local = threading.local()

    def __getitem__(self, key: tuple) -> np.ndarray:
        j, here = key[self.lead], self.local
        if getattr(here, "sample", None) != j:
            if not hasattr(here, "buf"):
                here.buf = np.zeros(self.xp.shape[1:], dtype=self.dtype)
                here.win = _batch_windows(here.buf[None], *self.geometry, empty=False)[0]
            np.copyto(here.buf[self.inner], self.xp.x[j])
            here.sample = j
        return here.win[key[: self.lead] + (0,) + key[self.lead + 1 :]]


def _sample_windows(xp, kernel, strides, dilations):
    """The windows (C, *K, nb, *out) that ``_sample_columns`` reads: of the padded array, or
    padded one sample at a time for a ``_Padded``."""
    if isinstance(xp, _Padded):
        return _SampleWindows(xp, kernel, strides, dilations)
    return _batch_windows(xp, kernel, strides, dilations, empty=False)[0]


def _im2col_batch(xp, kernel, strides, dilations, groups) -> np.ndarray:
    """cols (G, Cg*prod(K), nb*P) of the padded chunk ``xp`` (nb, C, *Sp)."""
    src, cols = _batch_windows(xp, kernel, strides, dilations)
    par_copy(cols, src, axis=1 + len(kernel))
    return cols.reshape(groups, -1, math.prod(cols.shape[1 + len(kernel) :]))


def _samples_last(gv: np.ndarray) -> np.ndarray:
    """(nb, G, Og, P) -> contiguous (G, Og, nb*P): the upstream gradient as GEMM columns."""
    nb, groups, og, p = gv.shape
    out = np.empty((groups, og, nb, p), dtype=gv.dtype)
    par_copy(out, gv.transpose(1, 2, 0, 3), axis=2)
    return out.reshape(groups, og, nb * p)


def correlate_gemm(xp, w, strides, dilations, groups, keep_cols: bool = False, bias=None):
    """y (N, O, *out) = windows of xp times w (+ ``bias`` (O,), added in the same pass that
    writes y), by im2col and one BLAS matmul per group.

    With ``keep_cols`` returns ``(y, cols)`` where ``cols`` (G, Cg*K, N*P) is the
    whole batch's im2col matrix when it was made in one chunk and is at most
    ``cache_bytes`` (the weight gradient can reuse it), else ``None``.
    """
    n, c = xp.shape[:2]
    o = w.shape[0]
    og = o // groups
    kernel = w.shape[2:]
    out_sizes = _out_sizes(xp.shape[2:], kernel, strides, dilations)
    p = math.prod(out_sizes)
    dtype = np.result_type(xp.dtype, w.dtype)
    y = np.empty((n, o) + out_sizes, dtype=dtype)
    wg = w.reshape(groups, og, -1)  # (G, Og, Cg*K)
    yv = y.reshape(n, groups, og, p)
    per_sample = im2col_scratch_bytes(1, c, kernel, out_sizes, xp.itemsize)
    cols = None
    for n0, n1 in _chunks(n, per_sample):
        if n1 - n0 == 1:  # one sample: the GEMM writes straight into y
            cols = _im2col_per_sample(_array(xp[n0:n1]), kernel, strides, dilations, groups)
            _bmm(wg, cols, out=yv[n0:n1])  # (1, G, Og, P)
            if bias is not None:
                yv[n0:n1] += bias.reshape(groups, og, 1)
            cols = cols[0] if n == 1 and cols.nbytes <= _settings["cache_bytes"] else None
            continue
        keep = keep_cols and n1 - n0 == n and per_sample * n <= _settings["cache_bytes"]
        cols = _correlate_chunk(xp[n0:n1], wg, kernel, strides, dilations, yv[n0:n1], bias, keep)
    return (y, cols) if keep_cols else y


# A GEMM with few output channels does few flops per im2col entry and runs at the speed
# it reads the im2col matrix from memory. Below FEW_OUTPUTS per group each thread builds
# and multiplies its columns in blocks of about BLOCK_ELEMS entries, which stay in the
# L2 cache between the copy and the product (LeNet-5's first conv, 6 filters, batch 64:
# 1.2 -> 0.7 ms; with 16 or more filters blocks measured no faster or slower).
FEW_OUTPUTS = 16
BLOCK_ELEMS = 1 << 17


# A forward with at least PER_SAMPLE_MIN_P positions per sample runs one sample at a time:
# its im2col columns in a buffer of the thread's own (in the cache: 2 MiB of L2 a core on
# the benchmark machine), then one GEMM that writes that sample's (Og, P) output straight
# into y, with no transposing copy after. Measured forward, 2 threads: 3x3 32->64 at 32x32
# (b32) 6.55 -> 5.81 ms, 3x3 128->128 at 16x16 11.0 -> 9.9 ms; one thread 11.2 -> 9.6 and
# 19.4 -> 17.9 ms; 9x9 and 10x10 outputs (P < 256) gained nothing. A forward that keeps its
# columns for the weight gradient writes each sample's into the kept matrix instead, and
# multiplies them there (seventh session; the sixth measured it on 2 threads only, 3.12
# against 3.29 ms and 3.39 against 3.52 ms, and kept the batch-wide route): the 96x96
# network's 4x4 s2 and 40->105 layers at b16 on one thread (each process of
# nn.DataParallel) 2.66 -> 2.15 and 2.56 -> 2.33 ms, at b32 5.08 -> 4.03 and 5.12 -> 4.70 ms;
# on 2 threads 1.50 -> 1.43, 1.51 -> 1.47, 2.73 -> 2.44, 2.95 -> 2.93 ms.
#
# A sample with more than PER_SAMPLE_L2_BYTES of columns is done in pieces of about
# PER_SAMPLE_PIECE_BYTES, each a range of the output's first spatial dim, so that the
# columns the GEMM reads are still in L2 (until the seventh session such samples ran whole
# up to 8 MiB with 32 or more filters, else batch-wide). Measured, 2 threads (one thread),
# ms, forward / weight gradient: 3x3 16->32 at 128x128 (b8, 9 MiB a sample) 14.7 -> 8.6 /
# 19.0 -> 11.2 (24-28 -> 15.4 / 29-31 -> 21.3), 3x3 64->64 at 112x112 (b4, 28 MiB) 23 -> 18.5
# / 27 -> 22 (57 -> 35 / 51 -> 42), 3x3 32->16 at 64x64 (b16, 4.5 MiB) 11-12 -> 7-9 / 12 ->
# 9.5 (21 -> 10.5 / 20 -> 17), 3x3x3 16->16 at 32^3 (b2, 54 MiB) 15.5 -> 11 / 23 -> 14 (25 ->
# 22 / 29 -> 26), 3x3x3 8->16 at 16^3 (b8, 3.4 MiB) 3.2 -> 3.0 / 3.9 -> 3.8 (4.7 -> 4.6-5.0 /
# 7.8 -> 6.5); and against whole samples of 3-7 MiB: 3x3 64->64 at 56x56 (b8) 10.4 -> 9.6 /
# 11.1 -> 11.2 (19.7 -> 18.1 / 21.3 -> 21.2), 32->64 at 64x64 (b8) 6.7 -> 6.3 / 7.6 -> 7.5
# (12.9 -> 11.2 / 14.5 -> 14.1).
PER_SAMPLE_L2_BYTES = 2 * 2**20
PER_SAMPLE_PIECE_BYTES = 2**20


def _per_sample_rows(og: int, out_sizes, per_sample_bytes: int) -> int:
    """For a map with ``og`` filters a group, output sizes ``out_sizes`` and that many bytes
    of im2col columns a sample: how many rows of the output's first dim the per-sample route
    builds at once (all of them: whole samples), or 0 where it is not taken. Each thread's
    buffer stays within its share of the scratch budget."""
    p = math.prod(out_sizes)
    if og < FEW_OUTPUTS or p < PER_SAMPLE_MIN_P:
        return 0
    share = _settings["scratch_bytes"] // par.get_num_threads()
    if per_sample_bytes <= min(PER_SAMPLE_L2_BYTES, share):
        return out_sizes[0]
    rows = min(PER_SAMPLE_PIECE_BYTES, share) * out_sizes[0] // per_sample_bytes
    if rows < 1 or rows * (p // out_sizes[0]) < PER_SAMPLE_MIN_P:
        return 0
    return min(rows, out_sizes[0])


def _correlate_chunk(xp, wg, kernel, strides, dilations, yv, bias=None, keep=False):
    """One batch-wide chunk of ``correlate_gemm``: im2col of ``xp`` (nb, C, *Sp), the GEMM
    per group, the result (+ bias) written to ``yv`` (nb, G, Og, P); returns the im2col matrix
    (G, Cg*K, nb*P) when ``keep``, else None. With threads, each runs all three steps for
    its own samples (one hand-off instead of one per step, and its columns stay in its
    cache)."""
    nb = xp.shape[0]
    groups, og = wg.shape[:2]
    nd = len(kernel)
    out_sizes = _out_sizes(xp.shape[2:], kernel, strides, dilations)
    p = math.prod(out_sizes)
    per_sample = im2col_scratch_bytes(1, xp.shape[1], kernel, out_sizes, xp.itemsize)
    rows = _per_sample_rows(og, out_sizes, per_sample)
    if rows:  # (kept columns are written into the matrix itself, one sample at a time)
        src = _sample_windows(xp, kernel, strides, dilations)  # (C, *K, nb, *out)
        cols = np.empty(src.shape, dtype=xp.dtype) if keep else None
        _correlate_per_sample(src, wg, yv, bias, nd, rows, cols)
        return cols.reshape(groups, -1, nb * p) if keep else None
    xp = _array(xp)
    src, _ = _batch_windows(xp, kernel, strides, dilations, empty=False)  # (C, *K, nb, *out)
    if og < FEW_OUTPUTS:
        return _correlate_few(src, wg, yv, bias, nd, keep)
    cols = np.empty(src.shape, dtype=xp.dtype)
    by_sample = cols.reshape(groups, -1, nb, p)  # (G, CgK, nb, P)
    r = np.empty((groups, og, nb, p), dtype=np.result_type(xp.dtype, wg.dtype))
    b = None if bias is None else bias.reshape(groups, og, 1)

    def run(samples):  # for samples: their im2col columns, GEMM columns, outputs
        key = (slice(None),) * (1 + nd) + (samples,)
        np.copyto(cols[key], src[key])
        ns = samples.stop - samples.start
        for gi in range(groups):
            np.matmul(wg[gi], by_sample[gi, :, samples].reshape(-1, ns * p),
                      out=r[gi, :, samples].reshape(og, ns * p))  # fmt: skip
        if b is not None:  # on this thread's GEMM result while it is fresh (a separate
            r[:, :, samples] += b[:, :, :, None]  # pass over y cost 0.7 ms at 2.8M outputs)
        np.copyto(yv[samples], r[:, :, samples].transpose(2, 0, 1, 3))

    # (when BLAS keeps its own threads, GEMMs from several threads would oversubscribe)
    par.for_slices(nb, run, cols.size * 4 if par.owns_blas() else 0)
    return cols.reshape(groups, -1, nb * p) if keep else None


def _correlate_few(src, wg, yv, bias, nd: int, keep: bool):
    """``_correlate_chunk`` for fewer than FEW_OUTPUTS filters a group: the columns are
    built and multiplied in blocks of about BLOCK_ELEMS entries (see above), and each
    sample's product, ``(Og, Cg*K) @ (Cg*K, P)``, is written straight into its place in y
    by one stacked matmul per block and group. The bias is one more weight column, times a
    row of ones under the columns. Returns the columns (G, Cg*K, nb*P) when ``keep``.
    (Until the twelfth session: one GEMM per block into a buffer, the bias added there,
    then a transposing copy into y. LeNet-5's first conv at batch 64, one thread, ms:
    0.96 -> 0.76-0.86; 3x3 3->12 s2 at 64x64 (b32) 1.23 -> 0.84-0.96, 3x3 3->8 at 32x32
    (b32) 0.83-0.89 -> 0.68-0.73, 3x3 16->4 at 32x32 (b16) 1.5-1.8 -> 1.25-1.74.)"""
    groups, og, cgk = wg.shape
    nb = src.shape[1 + nd]
    p = yv.shape[-1]
    ones = bias is not None
    if ones:
        wg = np.concatenate([wg, bias.reshape(groups, og, 1).astype(wg.dtype)], axis=2)
    cg = src.shape[0] // groups
    step = max(1, BLOCK_ELEMS // (cgk * groups * p))
    out_sizes = src.shape[nd + 2 :]
    rest = p // max(out_sizes[0], 1)
    if not keep and cgk * p > BLOCK_ELEMS and out_sizes[0] > 1:
        # one group's columns of a sample are more than the cache holds (a 1-D sequence
        # of thousands): pieces of its output's first dim, each built in a buffer of the
        # thread's own (whole samples ran 3.8x PyTorch's time at 4000 positions, 32 -> 8)
        rows = max(1, BLOCK_ELEMS // (cgk * rest))
        _correlate_few_pieces(src, wg, yv, nd, cg, cgk, ones, rows, out_sizes)
        return None
    ext = np.empty((groups, cgk + ones, nb, p), dtype=src.dtype)
    if ones:
        ext[:, cgk] = 1
    copies = [  # (the columns, the windows) of each group, in the windows' layout
        (ext[gi, :cgk].reshape(src[:cg].shape), src[gi * cg : (gi + 1) * cg])
        for gi in range(groups)
    ]

    def run(samples):  # for samples: each group's im2col columns, then its outputs
        for n0 in range(samples.start, samples.stop, step):
            s = slice(n0, min(samples.stop, n0 + step))
            key = (slice(None),) * (1 + nd) + (s,)
            for gi, (dst, windows) in enumerate(copies):  # (a group's columns are still
                np.copyto(dst[key], windows[key])  # in the cache for its product, where
                # all groups' of a long sample were not: 4 groups at 4000 positions, 2.4x)
                # (ns, Og, P) = (Og, CgK) @ (ns, CgK, P)
                np.matmul(wg[gi], ext[gi, :, s].transpose(1, 0, 2), out=yv[s, gi])

    # few filters: memory-bound, split by the data alone (LeNet-5's first conv at batch 64
    # ran 0.88 ms split and 0.78 ms not, and the relu after it, reading what the other
    # core wrote, 0.16 against 0.09 ms)
    par.for_slices(nb, run, ext.size if par.owns_blas() else 0)
    return ext[:, :cgk].reshape(groups, cgk, nb * p) if keep else None


def _correlate_few_pieces(src, wg, yv, nd, cg, cgk, ones, rows, out_sizes):
    """``_correlate_few`` for samples too large for the cache: each sample's output in
    pieces of ``rows`` rows of its first dim, each piece's columns built in a buffer of
    the thread's own and multiplied there (no columns kept)."""
    groups, og = wg.shape[:2]
    nb = src.shape[1 + nd]
    rest = math.prod(out_sizes[1:])
    y5 = yv.reshape(nb, groups, og, out_sizes[0], rest)
    local = threading.local()

    def run(samples):
        buf = getattr(local, "buf", None)
        if buf is None:
            buf = local.buf = np.empty((cgk + ones, rows * rest), dtype=src.dtype)
            if ones:
                buf[cgk] = 1
        for n in range(samples.start, samples.stop):
            for r0 in range(0, out_sizes[0], rows):
                r1 = min(out_sizes[0], r0 + rows)
                piece = buf[:, : (r1 - r0) * rest]
                key = (slice(None),) * (1 + nd) + (n, slice(r0, r1))
                for gi in range(groups):
                    windows = src[gi * cg : (gi + 1) * cg][key]  # (Cg, *K, r, *out[1:])
                    np.copyto(piece[:cgk].reshape(windows.shape), windows)
                    y5[n, gi, :, r0:r1] = (wg[gi] @ piece).reshape(og, r1 - r0, rest)

    par.for_slices(nb, run, nb * groups * cgk * math.prod(out_sizes) if par.owns_blas() else 0)


def _sample_columns(src, nd: int, samples: slice, groups: int, rows: int, into=None, ones=False):
    """For each sample j in ``samples`` and each piece of ``rows`` rows of its output's first
    dim: j, the piece's positions (a slice of the flattened output) and its im2col columns
    as (G, Cg*K, positions), copied from the windows ``src`` (C, *K, nb, *out) into one
    buffer made here and reused (so on the thread that runs the loop; see
    PER_SAMPLE_L2_BYTES), or into their place in ``into`` (shaped as ``src``). With
    ``ones`` (one group, own buffer) the columns have one more row, all ones, for a bias
    column in the weight."""
    lead = 1 + nd  # the sample axis
    out = src.shape[lead + 1 :]
    rest = math.prod(out[1:])
    k = math.prod(src.shape[:lead])
    if into is None:  # (the last, shorter piece: the first columns of each row)
        own = np.empty((k + ones, rows * rest), dtype=src.dtype)
        if ones:
            own[k] = 1
    else:
        by_sample = into.reshape(groups, -1, into.shape[lead], math.prod(out))
    for j in range(samples.start, samples.stop):
        for r0 in range(0, out[0], rows):
            r1 = min(out[0], r0 + rows)
            at = slice(r0 * rest, r1 * rest)
            key = (slice(None),) * lead + (j, slice(r0, r1))
            if into is not None:
                np.copyto(into[key], src[key])
                yield j, at, by_sample[:, :, j, at]
                continue
            cols = own[:, : (r1 - r0) * rest]
            np.copyto(cols[:k].reshape(src.shape[:lead] + (r1 - r0,) + out[1:]), src[key])
            yield j, at, cols.reshape(groups, -1, (r1 - r0) * rest)


def _correlate_per_sample(src, wg, yv, bias, nd, rows, into=None) -> None:
    """``_correlate_chunk`` one sample (or piece of ``rows`` rows) at a time: its columns (a
    buffer of the thread's own, or their place in ``into``, the kept matrix shaped as
    ``src``) multiplied into ``yv`` (nb, G, Og, P), + ``bias``. With one group and its own
    buffer the bias is a column of the weight times a row of ones in the columns: one
    NumPy call and one pass over y a sample less, for one more row in the GEMM (0-3 %).
    Forward with bias, 2 threads, alternating: 3x3 32->64 at 32x32 (b32) 8.9-9.2 ->
    7.9-8.3 ms, 128->128 at 16x16 13.0-13.5 -> 12.6-13.2."""
    nb, groups, og, _ = yv.shape
    b = None if bias is None else bias.reshape(groups, og, 1)
    ones = b is not None and into is None and groups == 1
    if ones:
        wg = np.concatenate([wg, b.astype(wg.dtype, copy=False)], axis=2)  # (1, Og, K + 1)
        b = None

    def run(samples):
        for j, at, cols in _sample_columns(src, nd, samples, groups, rows, into, ones):
            for gi in range(groups):
                np.matmul(wg[gi], cols[gi], out=yv[j, gi, :, at])
            if b is not None:
                yv[j, :, :, at] += b

    par.for_slices(nb, run, src.size * 4 if par.owns_blas() else 0)


def _transpose_operands(g, w, groups):
    """What both layouts' input-gradient maps read off g (N, O, *out) and w (O, Cg, *K):
    N, C, Og, the kernel and output sizes, the result dtype, and w as (G, Cg*K, Og)."""
    n, o = g.shape[:2]
    og = o // groups
    wt = w.reshape(groups, og, -1).transpose(0, 2, 1)
    dtype = np.result_type(g.dtype, w.dtype)
    return n, w.shape[1] * groups, og, tuple(w.shape[2:]), g.shape[2:], dtype, wt


def correlate_transpose_gemm(g, w, padded_sizes, strides, dilations, groups) -> np.ndarray:
    """gxp (N, C, *padded_sizes): each g value times the kernel, added back onto the window
    it came from (col2im: one strided add per kernel tap; rows no window reached stay 0).
    Batch-wide layout always: it measured faster than per-sample GEMMs for this map."""
    n, c, og, kernel, out_sizes, dtype, wt = _transpose_operands(g, w, groups)
    p = math.prod(out_sizes)
    gx = np.zeros((n, c) + tuple(padded_sizes), dtype=dtype)
    per_sample = im2col_scratch_bytes(1, c, kernel, out_sizes, np.dtype(dtype).itemsize)
    per_sample += og * groups * p * g.itemsize  # (g's transposed copy, gt, counts too)
    gv = g.reshape(n, groups, og, p)
    nd = len(kernel)
    taps = tap_slices(tuple(kernel), tuple(dilations), tuple(strides), tuple(out_sizes))

    for n0, n1 in _chunks(n, per_sample):
        nb = n1 - n0
        # buffers made here, not on the threads (glibc's per-thread arenas would hand
        # them back to the OS and page-fault them in again on every call)
        gt = np.empty((groups, og, nb, p), dtype=g.dtype)
        dcols = np.empty((groups, wt.shape[1], nb, p), dtype=dtype)
        by_tap = dcols.reshape((c,) + tuple(kernel) + (nb,) + tuple(out_sizes))
        target = gx[n0:n1].transpose((1, 0) + tuple(range(2, 2 + nd)))  # (C, nb, *padded)

        def run(s, gv=gv[n0:n1], gt=gt, dcols=dcols, by_tap=by_tap, target=target):
            ns = s.stop - s.start  # samples s: g's columns, the GEMM, col2im, on a thread
            np.copyto(gt[:, :, s], gv[s].transpose(1, 2, 0, 3))
            for gi in range(groups):
                par.matmul(wt[gi], gt[gi, :, s].reshape(og, ns * p),
                           out=dcols[gi, :, s].reshape(-1, ns * p))  # fmt: skip
            tgt = target[:, s]
            for k, sl in taps:
                tgt[(slice(None), slice(None)) + sl] += by_tap[(slice(None),) + k][:, s]

        # one hand-off per thread for all three steps (not when BLAS keeps its own threads)
        work = c * math.prod(kernel) * nb * p * 4 if par.owns_blas() else 0
        par.for_slices(nb, run, work)
        del run, gt, dcols, by_tap, target  # (before the next chunk's: one at a time)
    return gx


# The weight gradient of a chunk is sum_n g[n] (Og, P) @ cols[:, n, :]^T, which needs no
# transposed copy of g, as one product per sample when the products stay long (P at least
# PER_SAMPLE_MIN_P) and g's copy would cost much next to the GEMM (Cg*K at most
# PER_SAMPLE_MAX_ROWS). Measured on 2 threads: the 96x96 network's 4x4 s2 first layer
# 3.3 -> 2.0 ms, its 40->105 layer 3.4 -> 2.5 ms, LeNet-5's first 0.55 -> 0.45 ms; no
# change for the layers outside these bounds.
PER_SAMPLE_MIN_P = 256
PER_SAMPLE_MAX_ROWS = 192


# The per-sample weight-gradient products run as gw^T (Cg*K, Og) = cols @ g^T, not as
# gw = g @ cols^T: the same flops, but OpenBLAS runs them faster this way round (one
# thread, 32 products, ms): (64, 1024) x (1024, 288) 11.3 -> 9.2, (128, 256) x (256, 1152)
# 17.9 -> 15.6, (32, 4096) x (4096, 144) 17.2 -> 12.3, (16, 100) x (100, 150) 0.33 ->
# 0.19, (105, 506) x (506, 160) 4.7 -> 4.5; (158, 81) x (81, 420) the same (ninth session).


def _weight_grad_chunk_t(cols: np.ndarray, gv: np.ndarray) -> np.ndarray:
    """gw^T (G, Cg*K, Og), contiguous: the sum over samples and positions of the columns
    times g: ``cols`` (G, Cg*K, nb*P), ``gv`` (nb, G, Og, P). Callers add chunks up in this
    layout and transpose once (``_untransposed``): adding a chunk to gw through a transposed
    view was a cache-hostile strided add, 6x the products' time for 8M entries (a
    transposed conv's 1024 -> 512 4x4 weight at 4x4 positions)."""
    nb, groups, og, p = gv.shape
    rows = cols.shape[1]
    if p < PER_SAMPLE_MIN_P or rows > PER_SAMPLE_MAX_ROWS or nb * groups > 512:
        gt = _samples_last(gv)  # (G, Og, nb*P)
        # gw^T = cols @ g^T: BLAS is faster with the long nb*P axis inside than outside
        return _bmm(cols, gt.transpose(0, 2, 1))
    by_sample = cols.reshape(groups, rows, nb, p)
    parts = par.split(nb, par.get_num_threads())  # fixed: the same sums for a thread count
    partial = [None] * len(parts)

    def run(s):  # each thread sums its samples' products, transposed (see above): one
        for i in range(len(parts))[s]:  # stacked matmul a group, summed in sample order
            part = parts[i]
            acc = np.empty((groups, rows, og), dtype=np.result_type(cols.dtype, gv.dtype))
            for gi in range(groups):
                each = np.matmul(by_sample[gi, :, part].transpose(1, 0, 2),
                                 gv[part, gi].transpose(0, 2, 1))  # fmt: skip
                np.sum(each, axis=0, out=acc[gi])
            partial[i] = acc

    # split by the data read, not the flops: the products are short and memory-bound
    # (LeNet-5's first conv at batch 64, in a training step: 0.68 ms split, 0.44 not).
    # One stacked matmul instead of a product and an add per sample: that weight gradient
    # 0.57 -> 0.42 ms in the step, one thread (twelfth session).
    par.for_slices(len(parts), run, cols.size)
    return _summed(partial)


def _summed(partial: list) -> np.ndarray:
    """The threads' partial sums added in a fixed order (the same bits for a thread count)."""
    for q in partial[1:]:
        partial[0] += q
    return partial[0]


def _untransposed(gwt: np.ndarray) -> np.ndarray:
    """gw (G, Og, Cg*K), contiguous, from gw^T (G, Cg*K, Og): by cache-sized tiles where
    it is large."""
    if gwt.size < (1 << 16):
        return np.ascontiguousarray(gwt.transpose(0, 2, 1))
    out = np.empty((gwt.shape[0], gwt.shape[2], gwt.shape[1]), dtype=gwt.dtype)
    for gi in range(gwt.shape[0]):
        transpose_2d(gwt[gi], out=out[gi])
    return out


def _summed_transposed(partial: list) -> np.ndarray:
    """The threads' partial sums of gw^T (G, Cg*K, Og), added in a fixed order, as gw."""
    return _untransposed(_summed(partial))


def correlate_weight_grad_gemm(xp, g, kernel, strides, dilations, groups, cols=None):
    """gw (O, Cg, *K) = sum over batch and positions of g times the window it came from,
    per group, by GEMMs over each chunk's im2col columns (``_weight_grad_chunk_t``).
    ``cols``: the forward's whole-batch im2col matrix (G, Cg*K, N*P), reused when given."""
    n, c = xp.shape[:2]
    o = g.shape[1]
    og, cg = o // groups, c // groups
    out_sizes = g.shape[2:]
    p = math.prod(out_sizes)
    dtype = np.result_type(xp.dtype, g.dtype)
    gv = g.reshape(n, groups, og, p)
    if cols is not None:  # one product: gw as a transposed view of it where its shape
        gwt = _weight_grad_chunk_t(cols, gv)  # allows (no copy), else by tiles (NumPy's
        try:  # own copy of the transposed view took 57 ms for 1024x512x4x4 entries)
            gw = gwt.transpose(0, 2, 1).reshape((o, cg) + tuple(kernel), copy=False)
        except ValueError:
            gw = _untransposed(gwt).reshape((o, cg) + tuple(kernel))
        return gw.astype(dtype, copy=False)
    per_sample = im2col_scratch_bytes(1, c, kernel, out_sizes, xp.itemsize)
    rows = _per_sample_rows(og, out_sizes, per_sample)
    if rows:
        gw = _weight_grad_per_sample(xp, gv, kernel, strides, dilations, dtype, rows)
        return gw.reshape((o, cg) + tuple(kernel))
    gwt = None  # gw^T, summed over the chunks in that layout, transposed once at the end
    for n0, n1 in _chunks(n, per_sample):
        cols = _im2col_batch(_array(xp[n0:n1]), kernel, strides, dilations, groups)
        part = _weight_grad_chunk_t(cols, gv[n0:n1])
        cols = None  # (before the next chunk's are made: one chunk's at a time)
        if gwt is None:
            gwt = part.astype(dtype, copy=False)
        else:
            gwt += part
    if gwt is None:  # (no samples)
        return np.zeros((o, cg) + tuple(kernel), dtype=dtype)
    return _untransposed(gwt).reshape((o, cg) + tuple(kernel))


def _weight_grad_per_sample(xp, gv, kernel, strides, dilations, dtype, rows) -> np.ndarray:
    """(G, Og, Cg*K): the weight gradient without the forward's columns, one sample (or
    piece of ``rows`` rows) at a time (as the forward, PER_SAMPLE_L2_BYTES): its im2col
    columns, in a buffer of the thread's own, times its part of g. Each thread sums its
    own samples (a fixed split: the same bits for a thread count). Measured against
    batch-wide columns and one product, calls alternating, 2 threads (one thread in
    brackets), ms: 3x3 32->64 at 32x32 (b32) 9.4 -> 7.7 (16.5 -> 14.4), 3x3 64->64 at 32x32
    17.1 -> 14.2 (32.7 -> 27.5), 3x3x3 8->16 at 16^3 (b8) 4.0 -> 3.7 (7.7 -> 7.0), 3x3
    128->128 at 16x16 12.6 -> 12.5 (24.2 -> 22.1); pieces: see PER_SAMPLE_L2_BYTES."""
    nb, groups, og, _ = gv.shape
    src = _sample_windows(xp, kernel, strides, dilations)  # (C, *K, nb, *out)
    ckk = math.prod(src.shape[: 1 + len(kernel)]) // groups  # Cg*K
    parts = par.split(nb, par.get_num_threads())
    partial = [None] * len(parts)

    def run(s):  # each thread sums its samples' products, transposed (see _weight_grad_chunk_t)
        for i in range(len(parts))[s]:
            acc = np.zeros((groups, ckk, og), dtype=dtype)
            tmp = np.empty((ckk, og), dtype=dtype)
            for j, at, cols in _sample_columns(src, len(kernel), parts[i], groups, rows):
                for gi in range(groups):
                    acc[gi] += np.matmul(cols[gi], gv[j, gi, :, at].T, out=tmp)
            partial[i] = acc

    par.for_slices(len(parts), run, src.size * 4 if par.owns_blas() else 0)
    return _summed_transposed(partial)


# ----------------------------------------------------------------------------- samples-last im2col
#
# The batch-wide layout copies every window row by row: with LeNet's 10-wide output rows
# each im2col copy and col2im add runs over 10 elements at a time, and NumPy's per-row
# overhead dominates. With the batch moved innermost, x as (C, *Sp, N), a window row of
# a stride-1 conv is one run of out_w * N contiguous elements, and so is every col2im
# add. The price is four 2-D transposes (x in, y out, g in, gx out), done in cache-sized
# tiles. ``_use_samples_last`` picks the layout per conv.
#
#   cols (G, Cg*K, P*nb): rows (c, *k), columns (output position, sample)


def transpose_2d(a: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """(A, B) -> contiguous (B, A), copied in tiles that fit the cache (a plain transposing
    copy of a (65536, 32) float32 array read with a 128 KiB stride and ran 6x slower),
    split over threads by tiles."""
    rows, cols = a.shape
    if out is None:
        out = np.empty((cols, rows), dtype=a.dtype)
    if rows <= 128:  # few source rows: the plain copy streams them (split by columns)
        par.for_slices(cols, lambda s: np.copyto(out[s], a[:, s].T), a.size)
        return out
    tb = min(cols, 128)
    ta = max(128, 8192 // tb)
    tiles = [(i, j) for j in range(0, cols, tb) for i in range(0, rows, ta)]

    def run(s):
        for i, j in tiles[s]:
            np.copyto(out[j : j + tb, i : i + ta], a[i : i + ta, j : j + tb].T)

    par.for_slices(len(tiles), run, a.size)
    return out


def _to_samples_last(xp: np.ndarray) -> np.ndarray:
    """(nb, C, *Sp) -> contiguous (C, *Sp, nb)."""
    nb = xp.shape[0]
    return transpose_2d(np.ascontiguousarray(xp).reshape(nb, -1)).reshape(xp.shape[1:] + (nb,))


def _sl_windows(xt: np.ndarray, kernel, strides, dilations) -> np.ndarray:
    """The windows of ``xt`` (C, *Sp, nb) as a strided view (C, *K, *out, nb)."""
    nd = len(kernel)
    out_sizes = _out_sizes(xt.shape[1 : 1 + nd], kernel, strides, dilations)
    sp = xt.strides[1 : 1 + nd]
    shape = (xt.shape[0],) + tuple(kernel) + out_sizes + (xt.shape[-1],)
    st = (
        (xt.strides[0],)
        + tuple(a * d for a, d in zip(sp, dilations, strict=True))
        + tuple(a * s for a, s in zip(sp, strides, strict=True))
        + (xt.strides[-1],)
    )
    return np.lib.stride_tricks.as_strided(xt, shape, st, writeable=False)


def _split_leading(dst: np.ndarray, fn, work: int) -> None:
    """``fn(key)`` over slices of dst's first axis, or of its second when the first is
    too short to give every thread a share (one input channel: split the kernel taps)."""
    if dst.shape[0] >= par.get_num_threads() or dst.ndim < 2:
        par.for_slices(dst.shape[0], lambda s: fn((s,)), work)
    else:
        par.for_slices(dst.shape[1], lambda s: fn((slice(None), s)), work)


def _im2col_samples_last(xp, kernel, strides, dilations, groups) -> np.ndarray:
    """cols (G, Cg*K, P*nb) of the padded chunk ``xp`` (nb, C, *Sp)."""
    src = _sl_windows(_to_samples_last(xp), kernel, strides, dilations)
    cols = np.empty(src.shape, dtype=xp.dtype)
    _split_leading(cols, lambda key: np.copyto(cols[key], src[key]), cols.size)
    return cols.reshape(groups, -1, math.prod(src.shape[1 + len(kernel) :]))


def _sl_upstream(g: np.ndarray, groups: int) -> np.ndarray:
    """g (nb, O, *out) -> gt (G, Og, P*nb), the upstream gradient as GEMM columns."""
    nb, o = g.shape[:2]
    gt = transpose_2d(np.ascontiguousarray(g).reshape(nb, -1))
    return gt.reshape(groups, o // groups, -1)


def _small_pieces(n: int, macs_per_column: int) -> int:
    """Into how many equal pieces to cut ``n`` GEMM columns so that each piece's product
    is within SMALL_GEMM_MACS (OpenBLAS's small-matrix kernels, see there): the fewest
    that divides ``n`` and leaves pieces of at least SMALL_PIECE_COLUMNS, else 1."""
    least = max(1, -(-n * macs_per_column // SMALL_GEMM_MACS))
    for pieces in range(least, n // SMALL_PIECE_COLUMNS + 1):
        if n % pieces == 0:
            return pieces
    return 1


def _correlate_sl_by_rows(xp, wg, kernel, strides, dilations, keep=True):
    """im2col and GEMM of a samples-last chunk one output row (first spatial dim) at a
    time, on one thread: each row's columns are multiplied while they are in the cache.
    Returns cols (G, Cg*K, P*nb), as ``_im2col_samples_last``, or None when not ``keep``
    (one row's buffer then serves every row), and yt (G, Og, P*nb).
    (LeNet-5's 6->16 conv at batch 64: 0.87-0.97 -> 0.70-0.80 ms; the columns of the
    whole chunk, 3.8 MB, had made its GEMM wait on memory. Without keeping them, 0.57 ms.)
    A row's product larger than OpenBLAS's small-matrix size runs as a stack of pieces
    within it (``_small_pieces``): that conv's forward 0.83 -> 0.64-0.73 ms, 0.63 -> 0.45-0.48
    without keeping its columns (twelfth session; one row (16, 150) x (150, 640) 38 us,
    as two pieces of 320 columns 28 us)."""
    src = _sl_windows(_to_samples_last(xp), kernel, strides, dilations)  # (C, *K, *out, nb)
    nd = len(kernel)
    groups, og = wg.shape[:2]
    rows = src.shape[1 + nd]
    per_row = math.prod(src.shape[2 + nd :])
    shape = src.shape if keep else src.shape[: 1 + nd] + src.shape[2 + nd :]
    cols = np.empty(shape, dtype=xp.dtype)
    by_row = cols.reshape(groups, -1, rows if keep else 1, per_row)
    yt = np.empty((groups, og, rows, per_row), dtype=np.result_type(xp.dtype, wg.dtype))
    lead = (slice(None),) * (1 + nd)
    cgk = by_row.shape[1]
    pieces = _small_pieces(per_row, og * cgk)
    size = per_row // pieces
    for r in range(rows):
        np.copyto(cols[lead + (r,)] if keep else cols, src[lead + (r,)])
        for gi in range(groups):  # (pieces, Og, size) = (Og, CgK) @ (pieces, CgK, size)
            row = by_row[gi, :, r if keep else 0].reshape(cgk, pieces, size)
            out = yt[gi, :, r].reshape(og, pieces, size)
            np.matmul(wg[gi], row.transpose(1, 0, 2), out=out.transpose(1, 0, 2))
    kept = cols.reshape(groups, by_row.shape[1], -1) if keep else None
    return kept, yt.reshape(groups, og, -1)


def correlate_samples_last(xp, w, strides, dilations, groups, keep_cols: bool = False):
    """``correlate_gemm`` in the samples-last layout (same results, same ``keep_cols``).
    (Threaded step by step: each thread running GEMM rows and the transpose back for its
    own output channels measured slower.)"""
    n = xp.shape[0]
    o = w.shape[0]
    kernel = w.shape[2:]
    out_sizes = _out_sizes(xp.shape[2:], kernel, strides, dilations)
    dtype = np.result_type(xp.dtype, w.dtype)
    y = np.empty((n, o) + out_sizes, dtype=dtype)
    wg = w.reshape(groups, o // groups, -1)
    per_sample = im2col_scratch_bytes(1, xp.shape[1], kernel, out_sizes, xp.itemsize)
    cols = None
    for n0, n1 in _chunks(n, per_sample):
        nb = n1 - n0
        if par.threads_here() == 1 and out_sizes[0] > 1:
            keep = keep_cols and nb == n and per_sample * n <= _settings["cache_bytes"]
            cols, yt = _correlate_sl_by_rows(xp[n0:n1], wg, kernel, strides, dilations, keep)
        else:
            cols = _im2col_samples_last(xp[n0:n1], kernel, strides, dilations, groups)
            yt = _bmm(wg, cols)  # (G, Og, P*nb) == (O, *out, nb)
        transpose_2d(yt.reshape(-1, nb), out=y[n0:n1].reshape(nb, -1))
        if cols is not None and (nb != n or cols.nbytes > _settings["cache_bytes"]):
            cols = None
    return (y, SamplesLastCols(cols) if cols is not None else None) if keep_cols else y


class SamplesLastCols:
    """A forward's whole-batch samples-last im2col matrix (G, Cg*K, P*N), kept for the
    weight gradient (the batch-wide matrix is kept as a plain array)."""

    __slots__ = ("cols",)

    def __init__(self, cols: np.ndarray):
        self.cols = cols

    @property
    def nbytes(self) -> int:
        return self.cols.nbytes


def correlate_transpose_samples_last(g, w, padded_sizes, strides, dilations, groups):
    """``correlate_transpose_gemm`` in the samples-last layout: GEMM, then one add per
    kernel tap over runs of out_w * nb elements, then back to (N, C, *padded). With
    threads, each runs all three for its own input channels."""
    n, c, og, kernel, out_sizes, dtype, wt = _transpose_operands(g, w, groups)
    cg = c // groups
    ktaps = math.prod(kernel)
    plane = math.prod(padded_sizes)
    gx = np.empty((n, c) + tuple(padded_sizes), dtype=dtype)
    per_sample = im2col_scratch_bytes(1, c, kernel, out_sizes, np.dtype(dtype).itemsize)
    taps = tap_slices(tuple(kernel), tuple(dilations), tuple(strides), tuple(out_sizes))
    for n0, n1 in _chunks(n, per_sample):
        nb = n1 - n0
        gt = _sl_upstream(g[n0:n1], groups)  # (G, Og, P*nb)
        dcols = np.empty((c * ktaps, gt.shape[-1]), dtype=dtype)
        by_tap = dcols.reshape((c,) + kernel + tuple(out_sizes) + (nb,))
        gxt = np.zeros((c,) + tuple(padded_sizes) + (nb,), dtype=dtype)
        target = gx[n0:n1].reshape(nb, c * plane)

        def run(s, gt=gt, dcols=dcols, by_tap=by_tap, gxt=gxt, target=target, nb=nb):
            for gi in range(groups):  # the GEMM rows of channels s, group by group
                lo, hi = max(s.start, gi * cg), min(s.stop, (gi + 1) * cg)
                if lo < hi:
                    rows = slice((lo - gi * cg) * ktaps, (hi - gi * cg) * ktaps)
                    np.matmul(wt[gi, rows], gt[gi], out=dcols[lo * ktaps : hi * ktaps])
            for k, sl in taps:
                gxt[(s,) + sl] += by_tap[(s,) + k]
            cols = slice(s.start * plane, s.stop * plane)
            transpose_2d(gxt[s].reshape(-1, nb), out=target[:, cols])

        par.for_slices(c, run, dcols.size * og if par.owns_blas() else 0)
    return gx


def correlate_weight_grad_samples_last(xp, g, kernel, strides, dilations, groups, cols=None):
    """``correlate_weight_grad_gemm`` in the samples-last layout (``cols``: the forward's
    ``SamplesLastCols``, reused when given)."""
    n, c = xp.shape[:2]
    o = g.shape[1]
    og, cg = o // groups, c // groups
    out_sizes = g.shape[2:]
    dtype = np.result_type(xp.dtype, g.dtype)
    if cols is not None:
        gt = _sl_upstream(g, groups)
        gw = _bmm(cols.cols, gt.transpose(0, 2, 1)).transpose(0, 2, 1)  # (G, Og, Cg*K)
        return gw.reshape((o, cg) + tuple(kernel)).astype(dtype, copy=False)
    gw = np.zeros((groups, og, cg * math.prod(kernel)), dtype=dtype)
    per_sample = im2col_scratch_bytes(1, c, kernel, out_sizes, xp.itemsize)
    for n0, n1 in _chunks(n, per_sample):
        chunk = _im2col_samples_last(xp[n0:n1], kernel, strides, dilations, groups)
        gt = _sl_upstream(g[n0:n1], groups)
        gw += _bmm(chunk, gt.transpose(0, 2, 1)).transpose(0, 2, 1)
    return gw.reshape((o, cg) + tuple(kernel))


# ----------------------------------------------------------------------------- row windows
#
# A samples-last im2col along every spatial dim but the first: R[h, c, k', o', n] =
# xt[c, h, o'*s' + k'*d', n] for every input row h that a window reads (k', o', s', d':
# the kernel taps, output positions, strides and dilations of the other dims). With
# dilation 1 along the first dim, the columns of output row r are then rows r*s .. r*s +
# K0 - 1 of R, one contiguous block: a (K0*C*prod(K'), prod(out')*N) matrix with its taps
# ordered (k0, c, k'), so each row's GEMM reads R in place and the copy is prod(K') times
# the input instead of prod(K) times (5x less for a 5x5 kernel). The weight is permuted to
# (O, K0, C, *K') to match. The weight gradient sums each row's g times that block, and
# the input gradient adds each row's w^T g into the block of a zeroed R, then folds R back
# onto the input (one add per tap of the other dims).
#
# Measured against the samples-last routes, LeNet-5's second conv at batch 64 (one thread,
# ms): forward 0.92 -> 0.55 (keeping what the weight gradient reads), weight gradient 0.64
# -> 0.48, input gradient 1.20 -> 0.99.


class RowWindows:
    """A forward's row-window matrices R (see above), kept for the weight gradient: one
    ``(samples, R)`` a thread's share of the batch."""

    __slots__ = ("parts",)

    def __init__(self, parts: list):
        self.parts = parts


# Where it is taken (2-D, groups 1, stride 1 along the last dim: each copy then runs over
# out[-1] * N numbers): the forward, whose row windows the weight gradient then reuses,
# where a window has at least ROWS_MIN_TAPS taps and a row at least SAMPLES_LAST_MIN_RUN
# columns of each thread's share of the samples (below, the weight gradient from the row
# windows lost:
# 1->6 5x5 at 28x28, b64, 0.36 -> 0.53 ms; 3->16 3x3 at 32x32, b32, 0.52 -> 0.84) and the
# other dims' kernel has at least 3 taps (the 96x96 network's 2x2 kernels lost every map:
# 1.1-1.2x); the input gradient where a col2im route would run. Measured, one
# thread, ms, the forward / dw / dx before -> after: 3x3 32->64 at 32x32 (b16) 7.1 / 7.2 /
# - -> 6.6 / 6.4 / -, 128->128 at 16x16 (b16) 12.5 / 12.5 / - -> 11.7 / 11.3 / -, 16->32 at
# 64x64 (b8) 5.3 / 5.6 / - -> 5.1 / 4.8 / -, 64->64 at 16x16 (b16) 5.1 / 2.8 / - -> 3.4 /
# 2.9 / -, 16->32 at 16x16 (b32) 1.95 / 1.25 / 2.20 -> 1.43 / 1.32 / 2.15, 8->16 5x5 at
# 12x12 (b64) 0.89 / 0.57 / 1.41 -> 0.51 / 0.54 / 1.03, 32->64 at 8x8 (b32) 1.57 / 0.95 /
# 1.52 -> 1.08 / 0.98 / 1.42, 6->16 3x3 at 14x14 (b64) 0.62 / 0.49 / 0.87 -> 0.44 / 0.42 /
# 0.70, 8->8 at 16x16 (b32) 0.50 / 0.36 / - -> 0.32 / 0.22 / -; and the input gradient
# against the batch-wide col2im: 6->16 5x5 at 28x28 (b32) 4.12 -> 2.97, 8->16 at 32x32
# (b16) 1.84 -> 1.69, 16->32 at 24x24 (b32) 3.94 -> 3.52. It lost against the full
# correlation and the wide grid (64->64 at 16x16 3.8 -> 4.7, 3x3 32->64 at 32x32 7.2 ->
# 9.0, 16->32 at 40x40 (b8) 2.2 -> 3.0), which stay where they are taken.
#
# With threads, each runs the forward and the weight gradient for its own share of the
# samples (its own R; the shares' weight gradients added in sample order), and the input
# gradient runs on one thread only (as it does beside the weight gradient for small convs).
# Against the per-sample route, split by samples, they lost or tied there (2 threads, ms,
# forward + dw: 3x3 32->64 at 32x32 (b32) 15.5-16.2 -> 15.5-16.1 but the forward 7.8-8.1 ->
# 9.1-9.5, 16->32 at 64x64 (b8) 6.1 -> 6.9), so with threads only convs with fewer than
# PER_SAMPLE_MIN_P outputs a sample take them: LeNet-5's second conv at b128 forward 1.46-
# 1.60 -> 1.03-1.06, 8->16 5x5 at 12x12 (b64) 0.83 -> 0.50-0.55, 16->16 at 10x10 (b128)
# 1.63 -> 1.38-1.43.
#
# Volumes take the forward (before the stacked wide grid when the forward keeps what dw
# reads) and the weight gradient where R fits the cache and is kept, on any thread count;
# their input gradient stays on its routes (tap views, the wide grid, the full
# correlation: 1.2-2.3x faster there). Forward + dw, ms, one thread (two) before -> after:
# 3x3x3 8->16 at 16^3 (b8) 8.0 (5.1) -> 7.7 (4.4), 16->32 at 16^3 (b4) 14.6 (8.2) -> 12.3
# (6.6), 32->32 at 12^3 (b4) 14.1 (7.9) -> 9.2 (5.2); a whole training step of the last,
# one thread (two): 22.0-22.2 (12.3-12.5) -> 15.6-17.0 (9.9-10.4). Where R did not fit
# (16->16 at 24^3, b2, 17 MB) its forward lost on one thread: 5.7 -> 9.1.
ROWS_MIN_TAPS = 48


def _rows_route(x_shape, w_shape, strides, dilations, groups, which="forward", itemsize=4):
    """Whether a GEMM map of this conv (x_shape: padded) may run by row windows (see
    above): the forward of images and volumes, the input gradient of images; the callers
    add what each map needs besides."""
    kernel = tuple(w_shape[2:])
    nd = len(kernel)
    if (
        _settings["layout"] != "auto"
        or groups != 1
        or nd not in ((2,) if which == "input_grad" else (2, 3))
        or dilations[0] != 1
        or any(s != 1 for s in strides[1:])
        or math.prod(kernel[1:]) < 3
        or (which == "input_grad" and par.threads_here() != 1)
    ):
        return False
    out = _out_sizes(x_shape[2:], kernel, strides, dilations)
    if min(out) < 1:
        return False
    n, c = x_shape[:2]
    taps = _row_geometry(kernel, strides, out, n, c)[1]
    if taps < ROWS_MIN_TAPS:
        return False
    if nd == 3:  # volumes: where the weight gradient gets R kept (see below)
        return _row_windows_size(kernel, strides, out, n, c) * itemsize <= _settings["cache_bytes"]
    threads = par.threads_here()
    if threads > 1 and math.prod(out) >= PER_SAMPLE_MIN_P:
        return False  # (the per-sample route, split by samples, was as fast or faster)
    share = n // threads  # (the samples of each thread's GEMM columns)
    return math.prod(out[1:]) * share >= SAMPLES_LAST_MIN_RUN


def _row_geometry(kernel, strides, out_sizes, nb: int, c: int):
    """(rows of R, taps a window reads (K0*C*prod(K')), columns a row (prod(out')*nb))."""
    rows = (out_sizes[0] - 1) * strides[0] + kernel[0]
    return rows, kernel[0] * c * math.prod(kernel[1:]), math.prod(out_sizes[1:]) * nb


def _row_windows_size(kernel, strides, out_sizes, nb: int, c: int) -> int:
    """Entries of R for ``nb`` samples of ``c`` channels."""
    rows, taps, length = _row_geometry(kernel, strides, out_sizes, nb, c)
    return rows * taps // kernel[0] * length


def _row_windows(xt: np.ndarray, kernel, strides, dilations, out_sizes) -> np.ndarray:
    """R (rows, C, *K[1:], *out[1:], nb) of the samples-last padded chunk xt (C, *Sp, nb)."""
    nd = len(kernel)
    st = xt.strides
    rows = _row_geometry(kernel, strides, out_sizes, 1, 1)[0]
    shape = (rows, xt.shape[0]) + tuple(kernel[1:]) + tuple(out_sizes[1:]) + (xt.shape[-1],)
    steps = (
        (st[1], st[0])
        + tuple(st[1 + i] * dilations[i] for i in range(1, nd))
        + tuple(st[1 + i] * strides[i] for i in range(1, nd))
        + (st[-1],)
    )
    src = np.lib.stride_tricks.as_strided(xt, shape, steps, writeable=False)
    r = np.empty(shape, dtype=xt.dtype)
    np.copyto(r, src)
    return r


def _row_blocks(r, kernel, strides, out_sizes, pieces: int = 1, writeable=False) -> np.ndarray:
    """Each output row's block of R as a stack (out0, pieces, taps, columns / pieces); the
    blocks overlap where the stride is below K0 (``writeable``: for adds one row at a time)."""
    _, taps, length = _row_geometry(kernel, strides, out_sizes, r.shape[-1], r.shape[1])
    size, item = length // pieces, r.itemsize
    return np.lib.stride_tricks.as_strided(
        r, (out_sizes[0], pieces, taps, size),
        (strides[0] * r.strides[0], size * item, length * item, item), writeable=writeable,
    )  # fmt: skip


def _rows_weight(w: np.ndarray) -> np.ndarray:
    """w (O, C, K0, *K') as the row windows' (O, K0*C*prod(K')) matrix."""
    perm = (0, 2, 1) + tuple(range(3, w.ndim))
    return np.ascontiguousarray(w.transpose(perm)).reshape(w.shape[0], -1)


def _rows_chunk_bytes(c: int, o: int, kernel, strides, out_sizes, padded, itemsize: int):
    """Scratch of the row-window maps a sample (the batch is cut into chunks within the
    budget): R, the samples-last copies of the input and of y or g, and a row's product."""
    _, taps, length = _row_geometry(kernel, strides, out_sizes, 1, c)
    r = _row_windows_size(kernel, strides, out_sizes, 1, c)
    return (r + c * math.prod(padded) + o * math.prod(out_sizes) + taps * length) * itemsize


def _rows_shares(n: int, per_sample: int) -> list[list[slice]]:
    """The batch cut for the row-window maps: one share of samples a thread, each cut into
    chunks within that thread's part of the scratch budget."""
    shares = par.split(n, par.threads_here())
    budget = _settings["scratch_bytes"] // len(shares)
    out = []
    for share in shares:
        step = batch_chunk(per_sample, share.stop - share.start, budget)
        starts = range(share.start, share.stop, step)
        out.append([slice(a, min(share.stop, a + step)) for a in starts])
    return out


def correlate_rows(xp, w, strides, dilations, keep_cols: bool = False):
    """``correlate_samples_last`` by row windows (see above; groups 1, dilation 1 along the
    first dim), each thread on its share of the samples. With ``keep_cols`` returns
    ``(y, RowWindows or None)``: the windows are kept when each share was one chunk and
    they fit ``cache_bytes``."""
    n, c = xp.shape[:2]
    o, kernel = w.shape[0], tuple(w.shape[2:])
    out_sizes = _out_sizes(xp.shape[2:], kernel, strides, dilations)
    dtype = np.result_type(xp.dtype, w.dtype)
    y = np.empty((n, o) + out_sizes, dtype=dtype)
    wr = _rows_weight(w)
    per_sample = _rows_chunk_bytes(c, o, kernel, strides, out_sizes, xp.shape[2:], xp.itemsize)
    shares = _rows_shares(n, per_sample)
    kept: list = [None] * len(shares)

    def run(which):  # a thread's shares, chunk by chunk
        for i in range(len(shares))[which]:
            for s in shares[i]:
                nb = s.stop - s.start
                r = _row_windows(_to_samples_last(xp[s]), kernel, strides, dilations, out_sizes)
                _, taps, length = _row_geometry(kernel, strides, out_sizes, nb, c)
                pieces = _small_pieces(length, o * taps)
                yt = np.empty((o, out_sizes[0], pieces, length // pieces), dtype=dtype)
                blocks = _row_blocks(r, kernel, strides, out_sizes, pieces)
                np.matmul(wr, blocks, out=yt.transpose(1, 2, 0, 3))  # (out0, pieces, O, size)
                transpose_2d(yt.reshape(-1, nb), out=y[s].reshape(nb, -1))
                kept[i] = (s, r) if keep_cols and len(shares[i]) == 1 else None
                r = blocks = yt = None  # (before the next chunk's are made)

    par.for_slices(len(shares), run, y.size * len(shares) * par.MIN_ELEMENTS)
    if not keep_cols:
        return y
    fits = sum(r.nbytes for _, r in filter(None, kept)) <= _settings["cache_bytes"]
    return y, (RowWindows(kept) if all(kept) and fits else None)


def _rows_upstream(g: np.ndarray, out0: int) -> np.ndarray:
    """g (nb, O, *out) samples-last, as (O, out0, prod(out')*nb)."""
    return _sl_upstream(g, 1)[0].reshape(g.shape[1], out0, -1)


def correlate_weight_grad_rows(xp, g, kernel, strides, dilations, kept=None):
    """``correlate_weight_grad`` by row windows: gw' = sum over output rows of g's row
    times that row's block of R (``kept``: the forward's ``RowWindows``), each thread on
    its share of the samples, the shares' sums added in sample order."""
    n, c = xp.shape[:2]
    o, out_sizes = g.shape[1], tuple(g.shape[2:])
    dtype = np.result_type(xp.dtype, g.dtype)
    taps = _row_geometry(kernel, strides, out_sizes, 1, c)[1]
    if kept is not None:
        shares = [[part] for part in kept.parts]
    else:
        per = _rows_chunk_bytes(c, o, kernel, strides, out_sizes, xp.shape[2:], xp.itemsize)
        shares = [[(s, None) for s in chunks] for chunks in _rows_shares(n, per)]
    partial: list = [None] * len(shares)

    def run(which):  # a thread's shares: the sum over its samples, in row order
        for i in range(len(shares))[which]:
            acc = np.zeros((taps, o), dtype=dtype)
            tmp = np.empty((taps, o), dtype=dtype)
            for s, r in shares[i]:
                if r is None:
                    r = _row_windows(_to_samples_last(_array(xp[s])), kernel, strides,
                                     dilations, out_sizes)  # fmt: skip
                blocks = _row_blocks(r, kernel, strides, out_sizes)[:, 0]  # (out0, taps, L)
                gt = _rows_upstream(g[s], out_sizes[0])
                for row in range(out_sizes[0]):  # (taps, O) = block @ g_row^T
                    acc += np.matmul(blocks[row], gt[:, row].T, out=tmp)
                r = blocks = gt = None  # (before the next chunk's are made)
            partial[i] = acc

    par.for_slices(len(shares), run, g.size * len(shares) * par.MIN_ELEMENTS)
    acc = partial[0]
    for more in partial[1:]:
        acc = acc + more
    k0, rest = kernel[0], tuple(kernel[1:])
    gw = acc.T.reshape((o, k0, c) + rest)
    return np.ascontiguousarray(gw.transpose((0, 2, 1) + tuple(range(3, 3 + len(rest)))))


def correlate_transpose_rows(g, w, padded_sizes, strides, dilations) -> np.ndarray:
    """gxp (N, C, *padded_sizes) by row windows: each output row's w'^T g added into its
    block of a zeroed R, then R folded back onto the input, one add per tap of the other
    dims (the padded rows no window reads stay zero)."""
    n, o = g.shape[:2]
    c, kernel = w.shape[1], tuple(w.shape[2:])
    nd = len(kernel)
    out_sizes = tuple(g.shape[2:])
    dtype = np.result_type(g.dtype, w.dtype)
    wt = np.ascontiguousarray(_rows_weight(w).T)  # (taps, O)
    gxp = np.empty((n, c) + tuple(padded_sizes), dtype=dtype)
    per_sample = _rows_chunk_bytes(
        c, o, kernel, strides, out_sizes, padded_sizes, np.dtype(dtype).itemsize
    )
    for n0, n1 in _chunks(n, per_sample):
        nb = n1 - n0
        rows, taps, length = _row_geometry(kernel, strides, out_sizes, nb, c)
        shape = (rows, c) + kernel[1:] + out_sizes[1:] + (nb,)
        r = np.zeros(shape, dtype=dtype)
        blocks = _row_blocks(r, kernel, strides, out_sizes, writeable=True)[:, 0]
        gt = _rows_upstream(g[n0:n1], out_sizes[0])
        tmp = np.empty((taps, length), dtype=dtype)
        for i in range(out_sizes[0]):  # (overlapping blocks: one row at a time)
            np.add(blocks[i], np.matmul(wt, gt[:, i], out=tmp), out=blocks[i])
        gxt = np.zeros((c,) + tuple(padded_sizes) + (nb,), dtype=dtype)
        for k in np.ndindex(*kernel[1:]):  # fold R back: gxt[c, h, o'*s' + k'*d'] += R
            at = tuple(
                slice(k[i] * dilations[1 + i], k[i] * dilations[1 + i]
                      + (out_sizes[1 + i] - 1) * strides[1 + i] + 1, strides[1 + i])
                for i in range(nd - 1)
            )  # fmt: skip
            for ci in range(c):  # (a channel at a time: both sides in the same order, so
                view = gxt[(ci, slice(0, rows)) + at]  # NumPy needs no buffers)
                np.add(view, r[(slice(None), ci) + k], out=view)
        transpose_2d(gxt.reshape(-1, nb), out=gxp[n0:n1].reshape(nb, -1))
        r = blocks = gt = tmp = gxt = view = None  # (before the next chunk's are made)
    return gxp


# ----------------------------------------------------------------------------- depthwise
#
# With one input channel per group (depthwise, Cg == 1) the im2col GEMMs degenerate into
# (1 x K) times (K x P) products; a multiply-add per kernel tap on whole arrays is faster
# and needs no im2col scratch at all. Output channel o = c*m + j reads input channel c.


def _tap_view(xp, k, dilations, strides, out_sizes):
    return xp[(slice(None), slice(None)) + strided_slice(k, dilations, strides, out_sizes)]


# elements per block of the depthwise loops: small enough that a block and its temporary
# stay in cache across the prod(K) taps (the loops are memory-bound otherwise)
_DEPTHWISE_BLOCK = 1 << 16


def _nc_blocks(n: int, c: int, per_channel: int) -> Iterator[tuple[slice, slice]]:
    """(samples, channels) slices covering n x c in blocks of about ``_DEPTHWISE_BLOCK``."""
    cb = max(1, min(c, _DEPTHWISE_BLOCK // max(per_channel, 1)))
    nb = max(1, _DEPTHWISE_BLOCK // max(per_channel * c, 1)) if cb == c else 1
    for n0 in range(0, n, nb):
        for c0 in range(0, c, cb):
            yield slice(n0, min(n, n0 + nb)), slice(c0, min(c, c0 + cb))


def _each_block(n: int, c: int, per_channel: int, fn) -> None:
    """Call ``fn(ns, cs)`` for (samples, channels) blocks covering n x c, the channels
    split over threads: a thread owns its channels, so per-channel sums are race-free."""

    def run(s):
        for ns, cs in _nc_blocks(n, s.stop - s.start, per_channel):
            fn(ns, slice(s.start + cs.start, s.start + cs.stop))

    par.for_slices(c, run, n * c * per_channel)


class _WideGrid:
    """Stride-1 taps as shifts of a flattened image.

    With stride 1, tap k of window i reads x_pad at i + k*d, so over the flattened padded
    image (C order, ``plane`` entries per channel) every tap is the same contiguous run
    shifted by ``offset[k] = sum_i k_i d_i e_i`` (``e`` the C-order element strides).
    Outputs are computed on the "wide" grid: every padded position whose first index is
    below out[0] (``length`` entries); ``crop`` keeps the real windows, the rest read
    past the row ends and are dropped. Long contiguous runs keep NumPy's inner loops
    long, which matters for these memory-bound loops. Tap k's run is cut to ``run(k)``
    entries so it stays inside the plane: what it cuts off are only such dropped
    positions (a real window's taps all lie inside the image), so no copy of the image
    with a zero margin is needed.
    """

    def __init__(self, padded_sizes, kernel, dilations, out_sizes):
        self.padded = tuple(padded_sizes)
        elem = np.cumprod((1,) + self.padded[:0:-1])[::-1]
        self.kernel = tuple(kernel)
        self.tap_steps = tuple(int(d * e) for d, e in zip(dilations, elem, strict=True))
        self.offsets = [
            sum(k[i] * self.tap_steps[i] for i in range(len(kernel))) for k in np.ndindex(*kernel)
        ]
        self.plane = math.prod(self.padded)
        self.length = out_sizes[0] * int(elem[0])
        self.wide_shape = (out_sizes[0],) + self.padded[1:]
        self.crop = tuple(slice(0, o) for o in out_sizes)

    def tap_buffer(self, channels: int, dtype) -> np.ndarray:
        """A zeroed flat buffer for one sample's ``channels`` padded planes, with the zeros
        after them that the last dropped positions' taps read."""
        return np.zeros(channels * self.plane + max(self.offsets), dtype=dtype)

    def tap_views(self, buf: np.ndarray, channels: int, start: int, m: int) -> np.ndarray:
        """(*K, channels, m): tap k's entries of positions start..start+m-1 of every
        channel's plane in ``buf``, a strided view (no copy)."""
        it = buf.itemsize
        steps = tuple(step * it for step in self.tap_steps) + (self.plane * it, it)
        return np.lib.stride_tricks.as_strided(
            buf[start:], self.kernel + (channels, m), steps, writeable=False
        )

    def run(self, i: int) -> int:
        """How many wide-grid entries tap ``i`` covers without leaving the plane."""
        return min(self.length, self.plane - self.offsets[i])

    def flat(self, a: np.ndarray) -> np.ndarray:
        """(N, C, *padded) -> (N, C, plane), a view when ``a`` is contiguous."""
        return a.reshape(a.shape[:2] + (self.plane,))

    def to_wide(self, g: np.ndarray) -> np.ndarray:
        """(N, C, *out) -> (N, C, length) with zeros at the positions that are not windows."""
        n, c = g.shape[:2]
        wide = np.zeros((n, c) + self.wide_shape, dtype=g.dtype)
        wide[(slice(None), slice(None)) + self.crop] = g
        return wide.reshape(n, c, self.length)

    def from_wide(self, y: np.ndarray) -> np.ndarray:
        n, c = y.shape[:2]
        return y.reshape((n, c) + self.wide_shape)[(slice(None), slice(None)) + self.crop]


# ----------------------------------------------------------------------------- depthwise by BLAS
#
# Along the last spatial dim, a depthwise conv's taps are a band (Toeplitz) matrix: row j of
# the output reads x_pad[j*s + kw*d] for kw < K, so y[..., i, :] = x_pad[..., i', :] @ T
# with T (Wp, out_w) holding w[kw] at (j*s + kw*d, j). Every other tap dim is a shifted,
# strided view of rows. So the conv is prod(K[:-1]) batched matrix products per plane, in
# BLAS, doing Wp/K times the multiply-adds of the direct loop, which still measured 1.6x
# faster than the per-tap multiply-adds in NumPy (64 channels at 56x56: 10.0 -> 6.4 ms).
# Used while that excess stays below TOEPLITZ_MAX_EXCESS and the band matrices are small,
# and (since the tenth session) where the channel-major route below is not estimated faster.

TOEPLITZ_MAX_EXCESS = 24
_TOEPLITZ_MAX_BYTES = 16 * 2**20


def _toeplitz_ok(c: int, m: int, kernel, wp: int, ow: int, itemsize: int) -> bool:
    nbytes = math.prod(kernel[:-1]) * c * m * wp * ow * itemsize
    return wp <= TOEPLITZ_MAX_EXCESS * kernel[-1] and nbytes <= _TOEPLITZ_MAX_BYTES


def _band_matrices(w, c, m, w_in, ow, stride, dilation, dtype, before: int = 0):
    """T (*K[:-1], C, m, W_in, out_w): T[k, c, j, i*s + kw*d - before, i] = w[c*m + j, 0, k,
    kw] where that row lies in [0, W_in) (rows in the padding read zeros: left out)."""
    kernel = w.shape[2:]
    nd = len(kernel)
    wk = w.reshape((c, m) + tuple(kernel)).astype(dtype, copy=False)
    wk = np.moveaxis(wk, tuple(range(2, 1 + nd)), tuple(range(nd - 1)))  # (*K[:-1], C, m, Kw)
    t = np.zeros(tuple(kernel[:-1]) + (c, m, w_in, ow), dtype=dtype)
    cols = np.arange(ow)
    for kw in range(kernel[-1]):
        rows = cols * stride + kw * dilation - before
        inside = (rows >= 0) & (rows < w_in)
        t[..., rows[inside], cols[inside]] = wk[..., kw, None]
    return t


def _lead_boxes(in_sizes, out_sizes, kernel, strides, dilations, pads):
    """Per tap k of the lead dims (all but the last): (k, out_box, in_box), the output rows
    whose row for tap k lies inside the unpadded input, and those input rows (one slice
    per lead dim); taps that read only padding are left out."""
    boxes = []
    for k in np.ndindex(*kernel[:-1]):
        out_box, in_box = [], []
        for n_in, n_out, kk, s_, d, (pb, _) in zip(
            in_sizes, out_sizes, k, strides, dilations, pads, strict=False
        ):
            shift = kk * d - pb  # output o reads input o*s + shift: inside for
            lo = max(0, -(shift // s_))  # o >= ceil(-shift / s)
            hi = min(n_out, (n_in - 1 - shift) // s_ + 1)  # and o <= (n_in - 1 - shift) / s
            if lo >= hi:
                break
            out_box.append(slice(lo, hi))
            in_box.append(slice(lo * s_ + shift, (hi - 1) * s_ + shift + 1, s_))
        else:
            boxes.append((k, tuple(out_box), tuple(in_box)))
    return boxes


def correlate_depthwise_band(x, w, strides, dilations, pads, dtype) -> np.ndarray:
    """y (N, C*m, *out) of the depthwise conv of ``x`` padded by ``pads`` (zeros), by
    band-matrix products (see above), reading ``x`` itself: no padded copy is made."""
    n, c = x.shape[:2]
    kernel = w.shape[2:]
    nd = len(kernel)
    m = w.shape[0] // c
    in_sizes = x.shape[2:]
    out_sizes = tuple(
        conv_output_size(i, k, s_, p, d)
        for i, k, s_, p, d in zip(in_sizes, kernel, strides, pads, dilations, strict=True)
    )
    w_in, ow = in_sizes[-1], out_sizes[-1]
    t = _band_matrices(w, c, m, w_in, ow, strides[-1], dilations[-1], dtype, pads[-1][0])
    t = t.reshape(t.shape[: nd + 1] + (1,) * max(nd - 2, 0) + (w_in, ow))  # (*K', C, m, .., W, ow)
    boxes = _lead_boxes(in_sizes, out_sizes, kernel, strides, dilations, pads)
    full = tuple(slice(0, o) for o in out_sizes[:-1])
    # a tap that covers every output row writes y first; without one, y starts at zero
    boxes.sort(key=lambda b: b[1] != full)
    y = np.empty((n, c, m) + out_sizes, dtype=dtype)
    x = x.astype(dtype, copy=False)

    def run(s):  # samples s: one batched product per lead tap, summed
        ys = y[s]
        ns = s.stop - s.start
        if not boxes or boxes[0][1] != full:
            ys[...] = 0
        for i, (k, out_box, in_box) in enumerate(boxes):
            rows = x[s][(slice(None), slice(None)) + in_box]  # (ns, C, *box, W)
            rows = rows.reshape((ns, c, 1) + rows.shape[2:])
            if nd == 1:
                rows = rows[..., None, :]  # one row per plane
            shape = (ns, c, m) + rows.shape[3:-1] + (ow,)
            target = ys[(slice(None),) * 3 + out_box]
            if i == 0 and out_box == full:
                np.matmul(rows, t[k], out=target.reshape(shape))
            else:
                target += np.matmul(rows, t[k]).reshape(target.shape)

    par.for_slices(n, run, y.size * max(1, len(boxes)) * w_in)
    return y.reshape((n, c * m) + out_sizes)


def correlate_transpose_depthwise_band(g, w, in_sizes, strides, dilations, pads, c, m, dtype):
    """gx (N, C, *in_sizes), the adjoint of ``correlate_depthwise_band`` in x (C channels, m
    outputs each): per lead tap, g's rows times T^T are input rows, added where that tap
    read them. Rows and columns in the padding are never made."""
    n, kernel, out_sizes = g.shape[0], w.shape[2:], g.shape[2:]
    nd = len(kernel)
    w_in, ow = in_sizes[-1], out_sizes[-1]
    t = _band_matrices(w, c, m, w_in, ow, strides[-1], dilations[-1], dtype, pads[-1][0])
    t = np.ascontiguousarray(np.swapaxes(t, -1, -2))
    t = t.reshape(t.shape[: nd + 1] + (1,) * max(nd - 2, 0) + (ow, w_in))
    gv = g.astype(dtype, copy=False).reshape((n, c, m) + tuple(out_sizes))
    boxes = _lead_boxes(in_sizes, out_sizes, kernel, strides, dilations, pads)
    gx = np.zeros((n, c) + tuple(in_sizes), dtype=dtype)

    def run(s):  # samples s
        gs = gx[s]
        lead = tuple(out_sizes[:-1]) if nd > 1 else (1,)
        buf = np.empty((s.stop - s.start, c, m) + lead + (w_in,), dtype=dtype)
        for k, out_box, in_box in boxes:
            rows = gv[s][(slice(None),) * 3 + out_box]  # (ns, C, m, *box, ow)
            if nd == 1:
                rows = rows[..., None, :]
            part = tuple(slice(0, b.stop - b.start) for b in out_box)
            prod = np.matmul(rows, t[k], out=buf[(slice(None),) * 3 + part])  # (.., *box, W)
            contrib = prod[:, :, 0] if m == 1 else prod.sum(2)
            target = gs[(slice(None), slice(None)) + in_box]
            target += contrib.reshape(target.shape)

    par.for_slices(n, run, gx.size * max(1, len(boxes)) * ow)
    return gx


# ------------------------------------------------------------------------- depthwise, whole planes
#
# On small planes each output plane of a depthwise conv is a fixed linear map of its
# channel's input plane: y_c (N, m*Q) = x_c (N, P) @ M_c (P, m*Q), where M_c holds w's
# taps at (p, q) wherever output q reads input p (P, Q: the input and output plane sizes,
# padding left out). One batched product over the channels, each a BLAS call reading x and
# writing y in place through their strides, replaces the other routes' calls per tap, row
# or channel block, which on planes of a few entries cost far more than their arithmetic.
# The input gradient is g_c @ M_c^T, the weight gradient x_c^T g_c (P, m*Q) with the entries
# of each tap's (p, q) pairs added up (``_plane_taps`` lists them). It does
# P / taps times the direct sum's multiply-adds, so it is kept to small planes (2 threads,
# forward and backward, ms: 3x3 on 1024 channels at 4x4 (b64) 3.6 against 25 on the band
# and channel routes, 512 at 7x7 (b32) 4.4 against 11, 128 at 14x14 stride 2 (b32) 4.5
# against 11.5; 256 at 14x14 stride 1 (P*Q = 38416) 136 against 51).
PLANE_MAX_ENTRIES = 10_000  # P * Q, per channel
PLANE_MAX_BYTES = 8 << 20  # the matrices M_c of all channels
# Making the matrices costs a few passes over their C*m*P*Q entries, the other routes about
# N*C*m*Q*taps steps: with few samples they stay ahead. Taken for N >= PLANE_SAMPLES * P /
# taps (fitted on 14 shapes, A/B against the other routes: one sample of 64 channels at
# 10x10 took 2.4 ms here against 0.6 there, 16 of 64 channels along 100 entries (3 taps)
# 1.9 against 1.5, 8 of 16 at 9x9 stride 2 0.23 against 0.77).
PLANE_SAMPLES = 0.6
PLANE_MAX_EXCESS = 24  # P / taps: the multiply-adds against the direct sum's (32 samples of
# 64 channels along 100 entries, 3 taps: 2.5 ms against 1.8; along 64, 0.8 against 3.4)


@functools.lru_cache(maxsize=64)
def _plane_taps(in_sizes, kernel, strides, dilations, pads):
    """(pq, t): the index p*Q + q of every (input p, output q) pair that some tap t reads,
    and that tap, sorted by tap."""
    out_sizes = _out_sizes(padded_sizes(in_sizes, pads), kernel, strides, dilations)
    per_dim = []  # per dim: (tap, output, input) of every read inside the input
    for n, k, s_, d, (pb, _), o in zip(in_sizes, kernel, strides, dilations, pads, out_sizes,
                                       strict=True):  # fmt: skip
        kk, oo = np.meshgrid(np.arange(k), np.arange(o), indexing="ij")
        ii = oo * s_ + kk * d - pb
        inside = (ii >= 0) & (ii < n)
        per_dim.append((kk[inside], oo[inside], ii[inside]))
    t = q = p = np.zeros(1, dtype=np.int64)
    for (kk, oo, ii), k, o, n in zip(per_dim, kernel, out_sizes, in_sizes, strict=True):
        t = (t[:, None] * k + kk[None, :]).ravel()  # (row-major over the dims)
        q = (q[:, None] * o + oo[None, :]).ravel()
        p = (p[:, None] * n + ii[None, :]).ravel()
    pq = p * math.prod(out_sizes) + q
    order = np.argsort(t, kind="stable")  # (each tap's pairs together, for reduceat)
    pq, t = pq[order], t[order]
    for a in (pq, t):
        a.flags.writeable = False
    return pq, t


def _depthwise_plane_route(x_shape, w_shape, pads, strides, dilations, groups, itemsize) -> bool:
    """Whether the depthwise conv of an input of ``x_shape`` padded by ``pads`` runs as
    whole-plane matrices (see above): small planes, GEMM rather than FFT."""
    if groups != x_shape[1] or any(min(p) < 0 for p in pads):
        return False
    sizes = _depthwise_on_gemm(x_shape, w_shape, pads, strides, dilations, groups)
    if sizes is None:
        return False
    p, q = math.prod(x_shape[2:]), math.prod(sizes[1])
    return (
        0 < p * q <= PLANE_MAX_ENTRIES
        and w_shape[0] * p * q * itemsize <= PLANE_MAX_BYTES
        and x_shape[0] * math.prod(w_shape[2:]) >= PLANE_SAMPLES * p
        and p <= PLANE_MAX_EXCESS * math.prod(w_shape[2:])
    )


def _plane_matrices(w, in_sizes, strides, dilations, pads, dtype):
    """(W (C*m, P*Q), out_sizes, P, Q): W[c*m + j, p*Q + q] = w[c*m + j]'s tap at which
    output q reads input p (each (p, q) pair belongs to one tap at most: exact)."""
    kernel = tuple(w.shape[2:])
    pq, t = _plane_taps(tuple(in_sizes), kernel, tuple(strides), tuple(dilations), tuple(pads))
    out_sizes = _out_sizes(padded_sizes(in_sizes, pads), kernel, strides, dilations)
    p, q = math.prod(in_sizes), math.prod(out_sizes)
    flat = np.zeros((w.shape[0], p * q), dtype=dtype)
    flat[:, pq] = w.reshape(w.shape[0], -1)[:, t]  # (placed, not multiplied: an inf stays put)
    return flat, out_sizes, p, q


def correlate_depthwise_plane(x, w, strides, dilations, pads, dtype) -> np.ndarray:
    """y (N, C*m, *out) of the depthwise conv of ``x`` padded by ``pads``, one product of
    whole planes per channel (see above)."""
    n, c = x.shape[:2]
    m = w.shape[0] // c
    flat, out_sizes, p, q = _plane_matrices(w, x.shape[2:], strides, dilations, pads, dtype)
    mt = np.ascontiguousarray(flat.reshape(c, m, p, q).transpose(0, 2, 1, 3)).reshape(c, p, m * q)
    y = np.empty((n, c * m) + tuple(out_sizes), dtype=dtype)
    xc = x.astype(dtype, copy=False).reshape(n, c, p).transpose(1, 0, 2)  # (C, N, P), a view
    yc = y.reshape(n, c, m * q).transpose(1, 0, 2)

    def run(cs):
        np.matmul(xc[cs], mt[cs], out=yc[cs])

    par.for_slices(c, run, n * c * p * m * q // 4)  # (work: multiply-adds / 4)
    return y


def correlate_transpose_depthwise_plane(g, w, in_sizes, strides, dilations, pads, c, dtype):
    """gx (N, C, *in_sizes): g_c @ M_c^T per channel, the adjoint of the above."""
    n = g.shape[0]
    m = w.shape[0] // c
    flat, _, p, q = _plane_matrices(w, in_sizes, strides, dilations, pads, dtype)
    # (per channel: (m, P, Q) -> the (m*Q, P) it needs)
    mq = np.ascontiguousarray(flat.reshape(c, m, p, q).transpose(0, 1, 3, 2)).reshape(c, m * q, p)
    gx = np.empty((n, c) + tuple(in_sizes), dtype=dtype)
    gc = g.astype(dtype, copy=False).reshape(n, c, m * q).transpose(1, 0, 2)  # (C, N, m*Q)
    xc = gx.reshape(n, c, p).transpose(1, 0, 2)

    def run(cs):
        np.matmul(gc[cs], mq[cs], out=xc[cs])

    par.for_slices(c, run, n * c * p * m * q // 4)  # (work: multiply-adds / 4)
    return gx


def correlate_weight_grad_depthwise_plane(x, g, kernel, strides, dilations, pads, dtype):
    """gw (C*m, 1, *K): x_c^T g_c (P, m*Q) per channel, each tap's (p, q) entries summed."""
    n, c = x.shape[:2]
    o = g.shape[1]
    m = o // c
    in_sizes = x.shape[2:]
    pq, t = _plane_taps(tuple(in_sizes), tuple(kernel), tuple(strides), tuple(dilations),
                        tuple(pads))  # fmt: skip
    p, q = math.prod(in_sizes), math.prod(g.shape[2:])
    xc = x.astype(dtype, copy=False).reshape(n, c, p).transpose(1, 2, 0)  # (C, P, N)
    gc = g.astype(dtype, copy=False).reshape(n, c, m * q).transpose(1, 0, 2)  # (C, N, m*Q)
    d = np.empty((c, p, m * q), dtype=dtype)

    def run(cs):
        np.matmul(xc[cs], gc[cs], out=d[cs])

    par.for_slices(c, run, n * c * p * m * q // 4)  # (work: multiply-adds / 4)
    d = d.reshape(c, p, m, q).transpose(0, 2, 1, 3).reshape(c * m, p * q)
    # each tap's own pairs added up (not a product with a 0/1 matrix: an overflowing
    # product of a pair no tap reads, inf, times 0 was NaN in every tap)
    taps = math.prod(kernel)
    gw = np.zeros((c * m, taps), dtype=dtype)
    if t.size:
        starts = np.flatnonzero(np.r_[True, t[1:] != t[:-1]])
        gw[:, t[starts]] = np.add.reduceat(d[:, pq], starts, axis=1)
    return gw.reshape((o, 1) + tuple(kernel))


def _depthwise_wide(xp, w, strides, dilations):
    """The wide grid for a stride-1 depthwise conv with one output per channel, else None."""
    if any(s != 1 for s in strides) or w.shape[0] != xp.shape[1]:
        return None
    out_sizes = _out_sizes(xp.shape[2:], w.shape[2:], strides, dilations)
    return _WideGrid(xp.shape[2:], w.shape[2:], dilations, out_sizes)


def correlate_depthwise(xp, w, strides, dilations, groups) -> np.ndarray:
    """``correlate`` for Cg == 1: y[n, c*m + j] = sum_k w[c*m + j, 0, k] x_pad[n, c, i*s + k*d]."""
    n, c = xp.shape[:2]
    kernel = w.shape[2:]
    nd = len(kernel)
    m = w.shape[0] // c
    out_sizes = _out_sizes(xp.shape[2:], kernel, strides, dilations)
    dtype = np.result_type(xp.dtype, w.dtype)
    itemsize = np.dtype(dtype).itemsize
    if _toeplitz_ok(c, m, kernel, xp.shape[-1], out_sizes[-1], itemsize) and all_finite(xp):
        return correlate_depthwise_band(xp, w, strides, dilations, ((0, 0),) * nd, dtype)
    grid = _depthwise_wide(xp, w, strides, dilations)
    if grid is not None:
        xf = grid.flat(xp.astype(dtype, copy=False))  # (N, C, plane)
        wf = w.reshape(c, -1).astype(dtype, copy=False)  # (C, prod K)
        yw = np.empty((n, c, grid.length), dtype=dtype)

        def wide_block(ns, cs):  # all taps while a block is in cache
            yb, xb, wb = yw[ns, cs], xf[ns, cs], wf[None, cs, :, None]
            tmp = np.empty_like(yb)
            for i, off in enumerate(grid.offsets):  # offsets[0] == 0: a full run
                r = grid.run(i)
                if i == 0:
                    np.multiply(xb[:, :, off : off + r], wb[:, :, i], out=yb)
                else:
                    yb[:, :, :r] += np.multiply(xb[:, :, off : off + r], wb[:, :, i],
                                                out=tmp[:, :, :r])  # fmt: skip

        _each_block(n, c, grid.length, wide_block)
        return np.ascontiguousarray(grid.from_wide(yw))
    y = np.empty((n, c, m) + out_sizes, dtype=dtype)
    wk = w.reshape((c, m) + tuple(kernel)).astype(dtype, copy=False)
    taps = list(np.ndindex(*kernel))

    def block(ns, cs):
        yb = y[ns, cs]  # (nb, cb, m, *out)
        tmp = np.empty_like(yb)
        xb = xp[ns, cs]
        for i, k in enumerate(taps):
            xs = _tap_view(xb, k, dilations, strides, out_sizes)[:, :, None]  # (nb, cb, 1, *out)
            wt = wk[(cs, slice(None)) + k].reshape((1, -1, m) + (1,) * nd)
            if i == 0:
                np.multiply(xs, wt, out=yb)
            else:
                yb += np.multiply(xs, wt, out=tmp)

    _each_block(n, c, m * math.prod(out_sizes), block)
    return y.reshape((n, c * m) + out_sizes)


def correlate_transpose_depthwise(g, w, padded_sizes, strides, dilations, groups) -> np.ndarray:
    """``correlate_transpose`` for Cg == 1: one strided multiply-add per kernel tap."""
    n = g.shape[0]
    kernel = w.shape[2:]
    nd = len(kernel)
    c = groups
    m = w.shape[0] // c
    out_sizes = g.shape[2:]
    dtype = np.result_type(g.dtype, w.dtype)
    itemsize = np.dtype(dtype).itemsize
    if _toeplitz_ok(c, m, kernel, padded_sizes[-1], out_sizes[-1], itemsize) and all_finite(g):
        return correlate_transpose_depthwise_band(
            g, w, padded_sizes, strides, dilations, ((0, 0),) * nd, c, m, dtype
        )
    if m == 1 and all(s_ == 1 for s_ in strides) and all_finite(w):
        # (g on the wide grid has zeros off the windows: an inf or NaN tap would spread
        # 0 * inf = NaN from them onto inputs that tap never reads)
        grid = _WideGrid(padded_sizes, kernel, dilations, out_sizes)
        gw_ = grid.to_wide(g.astype(dtype, copy=False))  # (N, C, length)
        wf = w.reshape(c, -1).astype(dtype, copy=False)
        gxf = np.zeros((n, c, grid.plane), dtype=dtype)

        def wide_block(ns, cs):
            gb, xb, wb = gw_[ns, cs], gxf[ns, cs], wf[None, cs, :, None]
            tmp = np.empty_like(gb)
            for i, off in enumerate(grid.offsets):
                r = grid.run(i)
                xb[:, :, off : off + r] += np.multiply(gb[:, :, :r], wb[:, :, i],
                                                       out=tmp[:, :, :r])  # fmt: skip

        _each_block(n, c, grid.plane, wide_block)
        return gxf.reshape((n, c) + tuple(padded_sizes))
    gx = np.zeros((n, c) + tuple(padded_sizes), dtype=dtype)
    gv = g.reshape((n, c, m) + tuple(out_sizes))
    wk = w.reshape((c, m) + tuple(kernel)).astype(dtype, copy=False)

    def block(ns, cs):
        gb, xb = gv[ns, cs], gx[ns, cs]
        tmp = np.empty(gb.shape, dtype=dtype)
        for k in np.ndindex(*kernel):
            wt = wk[(cs, slice(None)) + k].reshape((1, -1, m) + (1,) * nd)
            np.multiply(gb, wt, out=tmp)
            contrib = tmp[:, :, 0] if m == 1 else tmp.sum(2)
            _tap_view(xb, k, dilations, strides, out_sizes)[...] += contrib

    _each_block(n, c, max(m * math.prod(out_sizes), math.prod(padded_sizes)), block)
    return gx


def correlate_weight_grad_depthwise(xp, g, kernel, strides, dilations, groups) -> np.ndarray:
    """``correlate_weight_grad`` for Cg == 1 (``xp`` already padded)."""
    return correlate_weight_grad_depthwise_unpadded(
        xp, g, kernel, strides, dilations, ((0, 0),) * len(kernel), groups
    )


def correlate_weight_grad_depthwise_unpadded(x, g, kernel, strides, dilations, pads, groups):
    """gw (C*m, 1, *K) of the depthwise conv of ``x`` padded by ``pads``: per kernel tap
    and sample, one dot product per channel over the output box whose reads lie inside
    ``x`` (those in the padding read zeros and are left out, so no padded copy is made).
    Threads split the channels. (Measured on the benchmark's 64 channels at 56x56: 5.5 ms,
    where the padded copy and a dot product per tap on the flattened padded image took
    1.4 + 5.3-5.7 ms.)"""
    n, c = x.shape[:2]
    o = g.shape[1]
    m = o // c
    dtype = np.result_type(x.dtype, g.dtype)
    x = x.astype(dtype, copy=False)
    gv = g.astype(dtype, copy=False).reshape((n, c, m) + g.shape[2:])
    boxes = _lead_boxes(x.shape[2:], g.shape[2:], tuple(kernel) + (1,), strides, dilations, pads)
    gw = np.zeros((c, m) + tuple(kernel), dtype=dtype)
    box = "".join(chr(ord("p") + i) for i in range(len(kernel)))  # the spatial subscripts
    spec = f"cm{box},c{box}->cm"

    def run(cs):  # channels cs: per sample and tap, the sum over the tap's box
        for j in range(n):
            for k, out_box, in_box in boxes:
                gb = gv[(j, cs, slice(None)) + out_box]  # (Cs, m, *box)
                xb = x[(j, cs) + in_box]  # (Cs, *box)
                gw[(cs, slice(None)) + k] += np.einsum(spec, gb, xb)

    # Threads split the channels for strided convs, whose strided reads make each call
    # long (3x3 s2, 64 channels at 112x112, b16: 12 ms on 2 threads, 29 on one). With
    # stride 1 the calls are short, and on 2 threads they ran up to 2x slower than on one
    # (the GIL's hand-offs; 128 samples of 32 channels at 14x14: 15.7 against 5.7 ms).
    if any(s_ > 1 for s_ in strides):
        par.for_slices(c, run, gv.size * len(boxes))
    else:
        run(slice(0, c))
    return gw.reshape((o, 1) + tuple(kernel))


# ------------------------------------------------------------------------- depthwise, channel-major
#
# With stride 1 every tap of a depthwise conv is the same flat run of the padded image,
# shifted (as on _WideGrid); with a stride, of one of the input's phase planes (see
# _ChannelGrid). Stored channel-major, one channel's padded planes of a block
# of samples are one contiguous run, and each tap is one BLAS axpy over it (y += w * x
# shifted, one pass that reads two runs and writes one) with the channel's weight, the
# block staying in L2 across the taps (``DEPTHWISE_BLOCK_ELEMS``). A window never leaves
# its own sample's plane, so only positions that are not windows read across a plane's
# end, and those are dropped. The weight gradient is one dot product per channel and tap,
# with the upstream gradient placed on the grid with zeros at the positions that are not
# windows. Each block is copied in from (N, C, ...) and out again while it is in cache;
# no padded copy of the batch is made.
#
# SciPy's axpy wrappers hold the GIL, so this route runs on the calling thread. The same
# loops in NumPy (a multiply and an add a tap, several channels a call) ran no faster on
# 2 threads than on one: ~20 short calls a block, and the threads' hand-offs of the GIL
# cost as much as the second core gave (two processes running half the channels each did
# scale). Measured on the benchmark's depthwise 3x3 (64 channels at 56x56, b16), ms, the
# band matrices on 2 threads against this route on one: forward 6.4 -> 4.8, input gradient
# 7.8 -> 4.5, weight gradient (dot products per sample over the output boxes) 6.0 -> 3.8-4.4;
# 32 channels at 112x112 (b2, rows too wide for band matrices): 2.3 -> 1.2, 2.5 -> 1.3.

DEPTHWISE_BLOCK_ELEMS = 1 << 17

# Where the channel-major route replaces the others: a cost estimate of each, fitted to the
# timings of each map on 11 depthwise convs (3x3 at 7x7 to 112x112 with 32-512 channels,
# 5x5, 3x3x3; b1-b128) on the 2-core VM, in ms: this route per grid entry copied in and
# out ("copy"), per axpy or dot call ("call") and per entry a tap ("entry"); the band
# matrices per multiply-add and per small GEMM, x1.15 for the input gradient, /1.7 on two
# threads; the per-sample weight gradient per einsum call and entry. The band route wins
# for small planes of many channels (3x3 at 14x14: the axpy calls are short), this one
# for long rows (56x56 and up) and for most weight gradients. With a stride the input is
# copied into its phase planes by strided reads, which costs more than the estimate has
# it: strided convs take this route only where the rows are too wide for band matrices
# (3x3 s2, 64 channels at 112x112, b16, ms: forward 27.7 -> 16.1, input gradient 62.7 ->
# 19.2 against the per-tap multiply-adds); with band matrices they stay there (at 56x56:
# 2.7 against 3.1, 4.2 against 3.7; 128 channels 5.4 against 6.9, 8.3 against 9.0).
DEPTHWISE_COSTS = {
    "copy": 0.18e-6,
    "call": 0.9e-3,
    "entry": 0.083e-6,
    "band_mac": 0.022e-6,
    "band_gemm": 0.09e-3,
    "band_input_grad": 1.15,
    "band_threads": 1.7,
    "box_call": 5.6e-3,
    "box_entry": 0.177e-6,
    "channel": 3e-3,
    "band_gemm_width": 14,
}
# (Fifteenth session, a speed hunt: many channels of tiny planes took this route at 2-4x
# the band matrices' time: 3x3 on 1024 channels at 4x4 (b64), forward 18.0 ms against 6.9.
# Against the band matrices, refitted on 9 shapes on 1 and 2 threads: "channel" is the
# fixed cost of a channel's block (its copies in and out, the loop; 3-7 us measured), and
# the band matrices' small GEMMs cost less when their rows are short, so "band_gemm"
# counts in proportion to the output width up to "band_gemm_width". Of 36 forward and
# input-gradient maps, one near-tie is now taken the slower way (0.99 against 1.44 ms).)


class _ChannelGrid:
    """Geometry of a depthwise conv of an input of spatial ``in_sizes`` padded by ``pads``
    (>= 0), on channel-major wide grids.

    With stride s, tap k of window i reads padded position i*s + k*d = (i + q)*s + r
    (q, r = divmod(k*d, s)): entry i + q of the input's phase plane r, the positions
    r, r + s, r + 2s, ... So every tap is a shift by q of one phase plane, the same for
    all windows; with stride 1 there is one phase, the padded input itself. All phase
    planes get the same sizes, out + max(q) per dim (zeros past the input's entries), so
    that one output grid serves every tap: ``planes`` (entries a sample), each tap's
    ``phase`` and flat ``offsets``, where the input lies in each phase plane
    (``inside[phase]``: the input's slices and the plane's), and where the outputs lie on
    the grid (``crop``). Samples go in blocks of ``nb`` (about DEPTHWISE_BLOCK_ELEMS
    entries)."""

    def __init__(self, n: int, in_sizes, kernel, strides, dilations, pads, itemsize: int = 8):
        padded = padded_sizes(in_sizes, pads)
        self.out = _out_sizes(padded, kernel, strides, dilations)
        shifts = [
            [divmod(k * d, s) for k in range(kk)]
            for kk, s, d in zip(kernel, strides, dilations, strict=True)
        ]
        self.padded = tuple(
            o + max(q for q, _ in qr) for o, qr in zip(self.out, shifts, strict=True)
        )
        elem = np.cumprod((1,) + self.padded[:0:-1])[::-1]
        phases: dict[tuple, int] = {}
        self.phase, self.offsets = [], []
        for k in np.ndindex(*kernel):
            qr = [shifts[i][k[i]] for i in range(len(kernel))]
            self.phase.append(phases.setdefault(tuple(r for _, r in qr), len(phases)))
            self.offsets.append(int(sum(q * e for (q, _), e in zip(qr, elem, strict=True))))
        self.inside = [self._inside(r, in_sizes, strides, pads) for r in phases]
        self.plane = math.prod(self.padded)
        self.crop = (slice(None),) + tuple(slice(0, o) for o in self.out)
        # at most 2 runs a phase and one more (the backward's), within the scratch budget
        self.runs = 2 * len(self.inside) + 1
        fit = _settings["scratch_bytes"] // (self.runs * itemsize) - max(self.offsets)
        self.n, self.nb = n, max(1, min(n, DEPTHWISE_BLOCK_ELEMS // self.plane, fit // self.plane))
        self.scratch = self.runs * (self.nb * self.plane + max(self.offsets)) * itemsize
        self.whole = len(phases) == 1 and all(s == 1 for s in strides)  # every input read

    def _inside(self, phase, in_sizes, strides, pads):
        """(input slices, plane slices): the input's entries in phase plane ``phase``,
        and where they go there (empty where the phase holds none of the input)."""
        xs, ps = [slice(None)], [slice(None)]
        for r, n, s, (before, _), size in zip(
            phase, in_sizes, strides, pads, self.padded, strict=True
        ):
            t0 = max(0, -(-(before - r) // s))  # the first plane entry on the input
            x0 = t0 * s + r - before
            count = max(0, min(-(-(n - x0) // s), size - t0)) if x0 < n else 0
            xs.append(slice(x0, x0 + (count - 1) * s + 1 if count else x0, s))
            ps.append(slice(t0, t0 + count))
        return tuple(xs), tuple(ps)

    def buffer(self, dtype, slack: bool = False) -> np.ndarray:
        """A zero-filled run for one block, with room past its end for the taps' shifts
        when ``slack`` (only the input's or outputs' entries are ever written in it)."""
        return np.zeros(self.nb * self.plane + (max(self.offsets) if slack else 0), dtype)

    def buffers(self, dtype, slack: bool = False) -> list[np.ndarray]:
        """One ``buffer`` a phase plane."""
        return [self.buffer(dtype, slack) for _ in self.inside]

    def planes(self, buf: np.ndarray, q: int) -> np.ndarray:
        """The first q sample planes of a block's run, (q, *padded)."""
        return buf[: q * self.plane].reshape((q,) + self.padded)

    def copy_in(self, bufs, x: np.ndarray, q: int) -> None:
        """The input block ``x`` (q, *in_sizes) into its phase planes."""
        for buf, (xs, ps) in zip(bufs, self.inside, strict=True):
            np.copyto(self.planes(buf, q)[ps], x[xs])

    def blocks(self) -> Iterator[tuple[slice, int]]:
        """(samples, the length of their run) for each block of samples."""
        for n0 in range(0, self.n, self.nb):
            n1 = min(self.n, n0 + self.nb)
            yield slice(n0, n1), (n1 - n0) * self.plane


def _axpy(dtype):
    """``axpy(x, y, n, a, offx, offy)``: y[offy:offy+n] += a * x[offx:offx+n] in place,
    by SciPy's BLAS for float32 and float64 (bounds checked there), else in NumPy."""
    blas = {np.dtype(np.float32): "saxpy", np.dtype(np.float64): "daxpy"}.get(np.dtype(dtype))
    if blas is not None:
        import scipy.linalg.blas  # (here: it adds 26 ms to importing tinygrad_np)

        fn = getattr(scipy.linalg.blas, blas)

        def axpy(x, y, n, a, offx, offy):
            fn(x, y, n=n, a=a, offx=offx, offy=offy)  # (y is contiguous: changed in place)

        return axpy

    def axpy_numpy(x, y, n, a, offx, offy):
        y[offy : offy + n] += np.multiply(x[offx : offx + n], a, dtype=y.dtype)

    return axpy_numpy


def zero_tap_meets_nonfinite(w: np.ndarray, a: np.ndarray) -> bool:
    """Whether a kernel tap of ``w`` is 0 while ``a`` holds an inf or NaN: the channel-major
    route's BLAS axpy skips a multiple of 0 (0 * inf is NaN by IEEE and in PyTorch, and
    the skipped tap would give a finite sum). One pass over ``a`` only where a tap is 0."""
    return bool((w == 0).any()) and not all_finite(a)


def _depthwise_channel_route(x_shape, w_shape, pads, strides, dilations, groups, which, itemsize):
    """Whether map ``which`` ("forward", "input_grad" or "weight_grad") of the depthwise
    conv of an input of ``x_shape`` padded by ``pads`` takes the channel-major wide grids:
    no cropping, GEMM rather than FFT, and a lower cost estimate than the route it
    replaces (see DEPTHWISE_COSTS)."""
    if groups != x_shape[1] or any(min(p) < 0 for p in pads):
        return False
    sizes = _depthwise_on_gemm(x_shape, w_shape, pads, strides, dilations, groups)
    if sizes is None:
        return False
    padded, out_sizes = sizes
    n, c = x_shape[:2]
    kernel = tuple(w_shape[2:])
    m = w_shape[0] // c
    grid = _ChannelGrid(n, x_shape[2:], kernel, strides, dilations, pads, itemsize)
    if grid.scratch > _settings["scratch_bytes"]:  # (one sample's planes do not fit)
        return False
    toeplitz = _toeplitz_ok(c, m, kernel, padded[-1], out_sizes[-1], itemsize)
    if any(s > 1 for s in strides):  # only where the band matrices are out (see above)
        return not toeplitz
    taps, plane, p = math.prod(kernel), grid.plane, math.prod(out_sizes)
    cost = DEPTHWISE_COSTS
    blocks = -(-n // grid.nb)
    runs = n * c * m * plane  # one output channel's grid entries, all of them
    channels = cost["copy"] * (n * c * plane * len(grid.inside) + runs) + taps * (
        cost["call"] * c * m * blocks + cost["entry"] * runs
    )
    if which == "weight_grad":  # against a dot product per sample and tap over all channels
        other = n * taps * (cost["box_call"] + cost["box_entry"] * c * m * p)
    elif not toeplitz:
        return True  # (against the per-tap multiply-adds, which it always beat)
    else:  # against the band matrices
        channels += cost["channel"] * c * m * blocks
        lead = math.prod(kernel[:-1])
        other = cost["band_mac"] * n * c * m * p * padded[-1] * lead
        narrow = min(1.0, out_sizes[-1] / cost["band_gemm_width"])
        other += cost["band_gemm"] * narrow * n * c * m * lead * math.prod(out_sizes[:-2])
        other *= cost["band_input_grad"] if which == "input_grad" else 1.0
        if n > 1 and par.get_num_threads() > 1:  # (the band route splits the samples)
            other /= cost["band_threads"]
    return channels < other


def correlate_depthwise_channels(x, w, strides, dilations, pads, dtype, bias=None):
    """y (N, C*m, *out) of the depthwise conv of ``x`` padded by ``pads`` (+ ``bias``,
    added as each block is copied out: a separate pass took 0.8 ms on the benchmark's
    3.2M outputs)."""
    n, c = x.shape[:2]
    kernel = w.shape[2:]
    m = w.shape[0] // c
    grid = _ChannelGrid(n, x.shape[2:], kernel, strides, dilations, pads, np.dtype(dtype).itemsize)
    wk = w.reshape(c, m, -1).astype(dtype, copy=False).tolist()  # (C, m, taps)
    b = None if bias is None else bias.astype(dtype, copy=False).reshape(c, m)
    y = np.empty((n, c, m) + grid.out, dtype=dtype)
    xbs, acc = grid.buffers(dtype, slack=True), grid.buffer(dtype)
    axpy = _axpy(dtype)
    taps = list(zip(grid.phase, grid.offsets, strict=True))
    for ci in range(c):
        for ns, length in grid.blocks():
            q = ns.stop - ns.start
            grid.copy_in(xbs, x[ns, ci], q)
            for j in range(m):
                for i, ((ph, off), a) in enumerate(zip(taps, wk[ci][j], strict=True)):
                    if i == 0:
                        np.multiply(xbs[ph][off : off + length], a, out=acc[:length])
                    else:
                        axpy(xbs[ph], acc, length, a, off, 0)
                out = grid.planes(acc, q)[grid.crop]
                if b is None:
                    np.copyto(y[ns, ci, j], out)
                else:
                    np.add(out, b[ci, j], out=y[ns, ci, j])
    return y.reshape((n, c * m) + grid.out)


def _add_taps(axpy, gp, accs, taps, length: int, fresh: set) -> None:
    """Each tap's (phase, offset, weight) share of the upstream gradient on the grid
    ``gp`` added into its phase's accumulator, shifted; a phase in ``fresh`` is set by
    its first tap instead (zero-filled first unless that tap is unshifted). What a tap
    would add past the run is all zeros, and dropped."""
    for ph, off, a in taps:
        acc = accs[ph]
        if ph in fresh:
            fresh.discard(ph)
            if off == 0:
                np.multiply(gp[:length], a, out=acc[:length])
                continue
            acc[:length] = 0
        axpy(gp, acc, length - off, a, 0, off)


def _copy_out(grid, accs, gx: np.ndarray, q: int) -> None:
    """The phase accumulators' input entries into the input gradient block gx."""
    for acc, (xs, ps) in zip(accs, grid.inside, strict=True):
        np.copyto(gx[xs], grid.planes(acc, q)[ps])


def correlate_transpose_depthwise_channels(g, w, in_sizes, strides, dilations, pads, c, dtype):
    """gx (N, C, *in_sizes), the adjoint of ``correlate_depthwise_channels`` in x (C
    channels): each tap adds the upstream gradient times its weight, shifted, into its
    phase plane; the phase planes' input entries are gx (zero where no tap reads)."""
    x = np.broadcast_to(np.zeros((), dtype), (g.shape[0], c) + tuple(in_sizes))  # (a shape)
    need = (True, False, False)
    return backward_depthwise_channels(x, g, w, strides, dilations, pads, need, dtype)[0]


def correlate_weight_grad_depthwise_channels(x, g, kernel, strides, dilations, pads, dtype):
    """gw (C*m, 1, *K) of the depthwise conv of ``x`` padded by ``pads``: per block,
    channel and tap one dot product of the upstream gradient on the grid (zeros where no
    window is) with the tap's shifted run of its phase plane."""
    w = np.broadcast_to(np.zeros((), dtype), (g.shape[1], 1) + tuple(kernel))  # (a shape)
    need = (False, True, False)
    return backward_depthwise_channels(x, g, w, strides, dilations, pads, need, dtype)[1]


def backward_depthwise_channels(x, g, w, strides, dilations, pads, need, dtype):
    """(gx, gw, gb) of the depthwise conv of ``x`` padded by ``pads``, for the maps
    ``need`` (three bools; None for the others) in one pass over g: each block of g is
    placed on the grid once for all three (the input gradient's axpys, the weight
    gradient's dots and the bias gradient's sum), where the separate maps copied it twice
    and summed it in a third pass (the benchmark case's forward and backward, alternating
    runs: 15.8 -> 15.3 ms; the backward alone 9.5 -> 9.2-9.4). Only x's shape is read
    when the weight gradient is not needed, only w's values when the input's is."""
    n, c = x.shape[:2]
    kernel = w.shape[2:]
    o = w.shape[0]
    m = o // c
    grid = _ChannelGrid(n, x.shape[2:], kernel, strides, dilations, pads, np.dtype(dtype).itemsize)
    gv = g.reshape((n, c, m) + grid.out)
    need_x, need_w, need_b = need
    gx = gw = gb = None
    if need_x:
        gx = (np.empty if grid.whole else np.zeros)(x.shape, dtype=dtype)
        wk = w.reshape(c, m, -1).astype(dtype, copy=False).tolist()
        accs = grid.buffers(dtype)
    if need_w:
        gw = np.zeros((c, m, len(grid.offsets)), dtype=dtype)
        xbs = grid.buffers(dtype, slack=True)
    if need_b:
        gb = np.zeros((c, m), dtype=dtype)
    gp = grid.buffer(dtype)
    axpy = _axpy(dtype)
    for ci in range(c):
        for ns, length in grid.blocks():
            q = ns.stop - ns.start
            if need_w:
                grid.copy_in(xbs, x[ns, ci], q)
            fresh = set(grid.phase)
            for j in range(m):  # gp: g on the grid, zeros where no window is
                np.copyto(grid.planes(gp, q)[grid.crop], gv[ns, ci, j])
                run = gp[:length]
                if need_b:
                    gb[ci, j] += run.sum()
                if need_w:
                    sums = gw[ci, j]
                    for i, (ph, off) in enumerate(zip(grid.phase, grid.offsets, strict=True)):
                        sums[i] += np.dot(run, xbs[ph][off : off + length])
                if need_x:
                    taps = zip(grid.phase, grid.offsets, wk[ci][j], strict=True)
                    _add_taps(axpy, gp, accs, taps, length, fresh)
            if need_x:
                _copy_out(grid, accs, gx[ns, ci], q)
    gw = None if gw is None else gw.reshape((o, 1) + tuple(kernel))
    return gx, gw, None if gb is None else gb.reshape(o)


# ------------------------------------------------------------------- volumes on a stacked wide grid
#
# OpenBLAS (0.3 on AVX-512) multiplies small matrices, m*n*k up to about 1e6, with kernels
# that read the operands where they lie instead of packing them first; a product with
# few rows runs much faster there, cut into such pieces and stacked in one np.matmul call
# (one hand-off of the GIL), than as one product: one thread, (16, 216) x (216, 256) at
# 126-163 GFLOP/s, x (216, 2048+) at 73-78.
#
# A stride-1 volume conv with few filters takes its im2col columns from a grid that is
# wide along the last dim only (as ``_WideGrid``: every padded[-1] positions of a line
# computed, the first out[-1] kept). ``lines`` consecutive lines are one contiguous run
# of the flattened padded image, the same run shifted for every tap, so a piece's
# columns are C*prod(K) contiguous copies (the window copy runs over out[-1] numbers at
# a time). Pieces are stacked per chunk of samples, or of first-dim rows of one sample:
# THIN_CHUNK_BYTES of columns on one thread (in L2), 4x that on more (fewer, longer
# calls: each return to Python waits for the GIL). The forward's bias is a column of the
# weight times a row of ones; the weight gradient multiplies the columns, channel-major,
# by g laid on the same positions.
#
# Measured against the earlier routes (window im2col, per sample or batch-wide), alternating
# in one process, 2 threads (one thread), ms, 3x3x3, b8 unless noted. Forward: 8->16 at
# 16^3 3.65 -> 3.35 (6.23 -> 4.77), 16->16 at 32^3 (b2) 26.5 -> 12.1 (30.3 -> 19.8), 16->8
# at 24^3 (b4) 11.9 -> 7.6 (27.0 -> 9.5), 1->8 at 32^3 3.9 -> 2.7 (7.2 -> 3.4); with 32
# filters no gain (8->32 at 32^3: 7.5 -> 7.8). Weight gradient (where the tap views below
# do not take it): 16->8 at 24^3 14.9 -> 9.0 (25.8 -> 12.8), 16->16 at 32^3 on one thread
# 33.5 -> 20.4; on two threads with 16 filters no gain (16->16 at 16^3: 5.8 -> 5.7).
# Input gradient as the full correlation, with as many inputs as outputs or more: 16->16
# at 32^3 15.8 -> 11.5 (29.7 -> 18.2), 16->16 at 16^3 7.5 -> 6.4 (10.5 -> 8.0). Where
# the forward's columns fit ``cache_bytes`` they are kept for the weight gradient, and on
# two threads that beat the grid (4->8 and 8->8 at 16^3 with their weight gradients on
# this grid: 2.8-3.0 -> 3.0-3.3), so the forward stays on the window route there unless
# the weight gradient takes the tap views. Images (2 dims) gained too little on two
# threads to take it (0.92-1.15 of the present routes).
SMALL_GEMM_MACS = 10**6
SMALL_PIECE_COLUMNS = 256
THIN_MAX_OUTPUTS = 16  # filters (for the input gradient: input channels)
THIN_MIN_ROWS = 64  # C*prod(K), for the weight gradient on more than one thread
THIN_MIN_WIDTH = 64
THIN_CHUNK_BYTES = 2**20


class _ThinGrid:
    """The stacked wide grid of a stride-1 conv (see above) of an input of ``x_shape``
    padded by ``pads``, for a product of ``filters`` rows by ``rows`` (C*prod(K), plus one
    for a bias) by each piece's ``width`` columns."""

    def __init__(self, x_shape, kernel, pads, dilations, rows, filters, itemsize):
        self.n, self.c = x_shape[:2]
        self.kernel, self.dilations = tuple(kernel), tuple(dilations)
        self.before = tuple(p[0] for p in pads)
        self.padded = padded = padded_sizes(x_shape[2:], pads)
        self.out = out = _out_sizes(padded, kernel, (1,) * len(kernel), dilations)
        self.wp = padded[-1]
        fit = SMALL_GEMM_MACS // max(1, filters * rows * self.wp)  # lines a piece, at most
        self.lines = max(d for d in range(1, max(1, min(fit, out[-2])) + 1) if out[-2] % d == 0)
        self.width = self.lines * self.wp
        self.axes = tuple(out[:-2]) + (out[-2] // self.lines,)  # a sample's pieces
        self.elem = [math.prod(padded[i + 1 :]) for i in range(len(padded))]
        self.plane = math.prod(padded)
        self.rows = rows
        piece = rows * self.width * itemsize
        per_sample = math.prod(self.axes)
        chunk = THIN_CHUNK_BYTES * (4 if par.threads_here() > 1 else 1)
        self.samples = max(1, min(self.n, chunk // (piece * per_sample)))
        rest = per_sample // self.axes[0]
        self.first = max(1, min(self.axes[0], chunk // (piece * rest)))
        if self.samples > 1:
            self.first = self.axes[0]
        self.units = self.samples * self.first * rest  # pieces in a chunk, at most
        reach = sum((k - 1) * d * e for k, d, e in zip(kernel, dilations, self.elem, strict=True))
        last = sum((o - 1) * e for o, e in zip(out[:-1], self.elem[:-1], strict=True)) + self.wp - 1
        self.slack = max(0, last + reach + 1 - self.plane)  # read past the last sample

    def taken(self, filters: int, itemsize: int) -> bool:
        """Whether the pieces are wide enough, the dropped columns few, and a thread's
        buffers (a chunk's columns and products, its samples padded) within its share of
        the scratch budget."""
        share = _settings["scratch_bytes"] // par.get_num_threads()
        scratch = self.units * (self.rows + filters) * self.width
        scratch += self.samples * self.c * self.plane + self.slack
        return (
            self.width >= THIN_MIN_WIDTH
            and self.wp <= WIDE_MAX_EXCESS * self.out[-1]
            and scratch * itemsize <= share
        )

    def buffer(self, dtype) -> tuple[np.ndarray, np.ndarray]:
        """A thread's zeroed buffer for ``samples`` padded samples (``slack`` more zeros
        after them: the last windows' dropped columns read past the end), and the view
        (samples, *axes, C, *K, width) of every piece's columns in it."""
        buf = np.zeros(self.samples * self.c * self.plane + self.slack, dtype=dtype)
        steps = (self.c * self.plane,) + tuple(self.elem[:-2]) + (self.width, self.plane)
        steps += tuple(d * e for d, e in zip(self.dilations, self.elem, strict=True)) + (1,)
        shape = (self.samples,) + self.axes + (self.c,) + self.kernel + (self.width,)
        windows = np.lib.stride_tricks.as_strided(
            buf, shape, tuple(step * buf.itemsize for step in steps), writeable=False
        )
        return buf, windows

    def fill(self, buf: np.ndarray, x: np.ndarray) -> None:
        """x's samples (up to ``samples``) into the buffer's interior (the rest stays 0)."""
        m = x.shape[0]
        inner = tuple(slice(b, b + s) for b, s in zip(self.before, x.shape[2:], strict=True))
        planes = buf[: m * self.c * self.plane].reshape((m, self.c) + self.padded)
        np.copyto(planes[(Ellipsis,) + inner], x)

    def chunks(self, samples: slice):
        """(samples, first-axis range) of each chunk over the samples ``samples``; the
        first chunk of each block of samples has range 0:first."""
        for j in range(samples.start, samples.stop, self.samples):
            for a in range(0, self.axes[0], self.first):
                yield slice(j, min(samples.stop, j + self.samples)), slice(a, a + self.first)

    def lined(self, a: np.ndarray, lead: int) -> np.ndarray:
        """A view of ``a`` (``lead`` axes, *out) as (lead axes, *axes, lines, out[-1])."""
        shape = a.shape[:lead] + self.axes + (self.lines, self.out[-1])
        return a.reshape(shape, copy=False)


def _thin_route(x_shape, w_shape, pads, strides, dilations, groups, which, itemsize, keep=False):
    """Whether map ``which`` ("forward", "weight_grad") of this conv runs on the stacked
    wide grid (see above): a volume, stride 1, one group, up to THIN_MAX_OUTPUTS filters,
    on the GEMM side. On more than one thread, the forward only where its columns would
    not be kept (``keep``: asked to keep them), and the weight gradient only with fewer
    than FEW_OUTPUTS filters and THIN_MIN_ROWS rows (where the other routes run the
    batch-wide columns)."""
    kernel = tuple(w_shape[2:])
    o, rows = w_shape[0], math.prod(w_shape[1:])
    threads = par.threads_here()
    if (
        _settings["layout"] != "auto"
        or groups != 1
        or len(kernel) < 3
        or any(s != 1 for s in strides)
        or any(p < 0 for pair in pads for p in pair)
        or o > THIN_MAX_OUTPUTS
        or (which == "weight_grad" and threads > 1 and (o >= FEW_OUTPUTS or rows < THIN_MIN_ROWS))
    ):
        return False
    out = _out_sizes(padded_sizes(x_shape[2:], pads), kernel, strides, dilations)
    if min(out) < 1:
        return False
    grid = _ThinGrid(x_shape, kernel, pads, dilations, rows + (which == "forward"), o, itemsize)
    if not grid.taken(o, itemsize):
        return False
    n, c = x_shape[:2]
    if which == "forward" and keep and threads > 1:
        fits = im2col_scratch_bytes(n, c, kernel, grid.out, itemsize) <= _settings["cache_bytes"]
        if fits and not _taps_route(x_shape, w_shape, pads, strides, dilations, 1, itemsize):
            return False  # (kept columns serve the weight gradient better than the grid)
    back = which != "forward"
    return choose_algorithm(n, c, o, 1, grid.padded, kernel, grid.out, back) == "gemm"


def _full_pads(kernel, dilations, pads) -> tuple[Pair, ...]:
    """g's padding for the input gradient of a stride-1 conv as a full correlation:
    d*(K-1) - p on each side (negative: cropped)."""
    return tuple(
        (dilated_size(k, d) - 1 - pb, dilated_size(k, d) - 1 - pa)
        for k, d, (pb, pa) in zip(kernel, dilations, pads, strict=True)
    )


def _thin_input_grad(g_shape, w_shape, pads, strides, dilations, groups, itemsize) -> bool:
    """Whether the input gradient of a stride-1 conv runs as its full correlation (g
    padded, the kernel flipped, C filters) on the stacked wide grid."""
    kernel = tuple(w_shape[2:])
    if any(s != 1 for s in strides):
        return False
    flipped = (w_shape[1] * groups, w_shape[0] // groups) + kernel
    full = _full_pads(kernel, dilations, pads)
    ones = (1,) * len(kernel)
    return _thin_route(g_shape, flipped, full, ones, dilations, groups, "forward", itemsize)


# The weight gradient of a stride-1 volume conv with few input channels needs no im2col
# columns at all: on the wide grid (``_WideGrid``) tap k's columns, (C, positions), are a
# strided view of the flattened padded sample (rows a plane apart), so gw[:, :, k] = g_wide
# (O, positions) @ that view^T, every tap in one stacked np.matmul over slabs of
# positions (g's slab, TAPS_SLAB_BYTES, stays in cache across the taps). Measured against
# the other routes (the stacked wide grid or per-sample columns), 2 threads (one thread),
# ms, 3x3x3 at 16^3 b8 unless noted: 8->16 3.21 -> 2.36 (5.58 -> 4.07), 4->8 1.66 -> 0.81
# (2.19 -> 0.94), 8->8 2.82 -> 1.23 (3.98 -> 1.89), 1->8 at 32^3 6.72 -> 4.41 (5.86 ->
# 3.78), 8->16 at 24^3 (b4) 4.83 -> 3.25, 8->32 at 32^3 (b2) 7.33 -> 7.20 (13.45 -> 11.43),
# 8->16 dilated 2 3.21 -> 2.66. It lost with 16 input channels (16->16 at 16^3: 5.5 ->
# 7.7), with many filters (3->64 at 32^3, b2: 6.0 -> 9.6; 1->32 at 48^3, b4: 11.7 -> 17.9;
# 4->128 at 16^3: 1.8 -> 2.8; 8->32 at 32^3 even), and on images (3x3 32->64 at 32x32:
# 7.8 -> 9.7; LeNet-5's 1->6: 0.88 -> 1.70). The input gradient's tap views (below) lost
# with many filters too (3->64: 13.9 -> 24.6, 1->32: 19.5 -> 41.0, 4->128: 2.9 -> 6.6).
TAPS_MAX_CHANNELS = 8
TAPS_MAX_OUTPUTS = 16
TAPS_SLAB_BYTES = 2**18


def _taps_route(x_shape, w_shape, pads, strides, dilations, groups, itemsize) -> bool:
    """Whether the weight gradient runs on tap views of the wide grid (see above)."""
    kernel = tuple(w_shape[2:])
    c, o = x_shape[1], w_shape[0]
    if (
        _settings["layout"] != "auto"
        or groups != 1
        or len(kernel) < 3
        or c > TAPS_MAX_CHANNELS
        or o > TAPS_MAX_OUTPUTS
        or any(s != 1 for s in strides)
        or any(p < 0 for pair in pads for p in pair)
    ):
        return False
    padded = padded_sizes(x_shape[2:], pads)
    out = _out_sizes(padded, kernel, strides, dilations)
    if min(out) < 1:
        return False
    grid = _WideGrid(padded, kernel, dilations, out)
    if grid.length > WIDE_MAX_EXCESS * math.prod(out):
        return False
    scratch = (c * grid.plane + max(grid.offsets) + o * grid.length) * itemsize
    if scratch > _settings["scratch_bytes"] // par.get_num_threads():
        return False
    return choose_algorithm(x_shape[0], c, o, 1, padded, kernel, out, True) == "gemm"


def correlate_weight_grad_taps(x, g, kernel, pads, dilations) -> np.ndarray:
    """gw (O, C, *K) of a stride-1, one-group conv by tap views of the wide grid (see
    above): per sample, x padded into the thread's buffer and g laid on the grid (zeros
    where no window starts), then per slab of positions one stacked product over the
    taps. Each thread sums its own samples. As with the stacked wide grid, the caller
    redoes a result that is not finite (an inf of x read by a dropped position)."""
    dtype = np.result_type(x.dtype, g.dtype)
    n, c = x.shape[:2]
    o = g.shape[1]
    kernel = tuple(kernel)
    padded = padded_sizes(x.shape[2:], pads)
    grid = _WideGrid(padded, kernel, dilations, g.shape[2:])
    plane, length = grid.plane, grid.length
    inner = tuple(slice(b, b + s) for (b, _), s in zip(pads, x.shape[2:], strict=True))
    slab = max(1, TAPS_SLAB_BYTES // (o * np.dtype(dtype).itemsize))
    parts = par.split(n, par.get_num_threads())
    partial = [None] * len(parts)

    def run(s):
        with np.errstate(invalid="ignore"):  # (a NaN made here is redone by the caller)
            sums(s)

    def sums(s):
        xp = grid.tap_buffer(c, dtype)
        planes = xp[: c * plane].reshape((c,) + padded)
        wide = np.zeros((o,) + grid.wide_shape, dtype=dtype)  # zeros stay off the windows
        g_on_grid, flat = wide[(slice(None),) + grid.crop], wide.reshape(o, length)
        tmp = np.empty(kernel + (o, c), dtype=dtype)
        for i in range(len(parts))[s]:
            acc = np.zeros(kernel + (o, c), dtype=dtype)
            for j in range(parts[i].start, parts[i].stop):
                np.copyto(planes[(slice(None),) + inner], x[j])
                np.copyto(g_on_grid, g[j])
                for p0 in range(0, length, slab):
                    m = min(slab, length - p0)
                    taps = grid.tap_views(xp, c, p0, m)
                    acc += np.matmul(flat[:, p0 : p0 + m], taps.swapaxes(-1, -2), out=tmp)
            partial[i] = acc

    work = n * math.prod(kernel) * c * length
    par.for_slices(len(parts), run, work * 4 if par.owns_blas() else 0)
    for q in partial[1:]:
        partial[0] += q
    return np.ascontiguousarray(np.moveaxis(partial[0], (-2, -1), (0, 1)))


# The input gradient, as the full correlation (g padded by d*(K-1) - p, the kernel flipped),
# from the same tap views: tap k's (O, positions) is a strided view of the padded g, so the
# taps' shares are one stacked product (*K, C, O) x (*K, O, positions) a slab of
# positions, summed over the taps in one call. Taken with up to 8 inputs, fewer than the
# outputs, and up to 16 outputs (see above; with as many inputs as outputs the stacked
# grid's full correlation is faster, 8->8 at 16^3: 2.9 against 3.5 ms). Against the wide
# grid's GEMM and shifted adds, 2 threads (one thread), ms: 3x3x3 8->16 at 16^3 (b8) 4.42
# -> 3.88 (6.53 -> 6.47), 4->8 2.31 -> 1.87, 1->8 at 32^3 5.70 -> 4.13 (12.4 -> 8.1),
# 8->16 at 24^3 (b4) 7.7 -> 5.6 (14.0 -> 10.9); 8->32 at 32^3 (b2) gained as well (16.1 ->
# 11.6) but 1->32 at 48^3 lost (19.5 -> 41.0). On one thread the adds kept up at 16^3 (8->16: 6.1
# against 6.1; 4->8: 2.5-2.6 against 2.9-3.0), so there it takes at least
# TAPS_DX_MIN_POSITIONS grid positions a sample. TAPS_DX_SLAB_BYTES of the stacked product
# a slab (1 MiB: up to 1.3x slower at 16^3; whole samples: slower at 24^3 and 32^3).
TAPS_DX_SLAB_BYTES = 2**22
TAPS_DX_MIN_POSITIONS = 8192


def _taps_dx_slab(length: int, taps: int, c: int, itemsize: int) -> int:
    """Positions a slab of the input gradient's stacked product: a whole sample up to twice
    TAPS_DX_SLAB_BYTES (8->16 at 16^3, 4.3 MiB a sample: 3.78 ms in slabs of 4 MiB, 3.02
    whole), else TAPS_DX_SLAB_BYTES (8->16 at 24^3, 13.4 MiB a sample: 4.97 against 5.38
    in slabs of 8 MiB and 7.05 whole)."""
    per_position = taps * c * itemsize
    if length * per_position <= 2 * TAPS_DX_SLAB_BYTES:
        return length
    return max(1, TAPS_DX_SLAB_BYTES // per_position)


def _taps_input_grad(g_shape, w_shape, pads, strides, dilations, groups, itemsize) -> bool:
    """Whether the input gradient runs on tap views of g's wide grid (see above)."""
    kernel = tuple(w_shape[2:])
    o, c = w_shape[0], w_shape[1] * groups
    if (
        _settings["layout"] != "auto"
        or groups != 1
        or len(kernel) < 3
        or c > TAPS_MAX_CHANNELS
        or c >= o
        or o > TAPS_MAX_OUTPUTS
        or any(s != 1 for s in strides)
    ):
        return False
    full = _full_pads(kernel, dilations, pads)
    if any(p < 0 for pair in full for p in pair):
        return False
    padded = padded_sizes(g_shape[2:], full)
    out = _out_sizes(padded, kernel, strides, dilations)
    grid = _WideGrid(padded, kernel, dilations, out)
    if grid.length > WIDE_MAX_EXCESS * math.prod(out):
        return False
    if par.threads_here() == 1 and grid.length < TAPS_DX_MIN_POSITIONS:
        return False
    slab = _taps_dx_slab(grid.length, math.prod(kernel), c, itemsize)
    scratch = o * grid.plane + max(grid.offsets) + math.prod(kernel) * c * slab
    if (scratch + c * grid.length) * itemsize > _settings["scratch_bytes"] // par.get_num_threads():
        return False
    return choose_algorithm(g_shape[0], c, o, 1, padded, kernel, out, True) == "gemm"


def correlate_transpose_taps(g, w, input_size, pads, dilations) -> np.ndarray:
    """gx (N, C, *input_size) of a stride-1, one-group conv whose input was padded by
    ``pads``, on tap views of the padded g's wide grid (see above): per sample, g padded
    into the thread's buffer, then per slab of positions one stacked product over the
    taps and one sum over them; the windows' positions copied into gx."""
    dtype = np.result_type(g.dtype, w.dtype)
    n, o = g.shape[:2]
    c = w.shape[1]
    kernel = tuple(w.shape[2:])
    nd, taps = len(kernel), math.prod(kernel)
    full = _full_pads(kernel, dilations, pads)
    padded = padded_sizes(g.shape[2:], full)
    grid = _WideGrid(padded, kernel, dilations, tuple(input_size))
    plane, length = grid.plane, grid.length
    flip = (slice(None),) * 2 + (slice(None, None, -1),) * nd
    wf = np.moveaxis(w[flip].astype(dtype, copy=False), (0, 1), (-1, -2))  # (*K, C, O)
    wf = np.ascontiguousarray(wf)
    slab = _taps_dx_slab(length, taps, c, np.dtype(dtype).itemsize)
    inner = tuple(slice(b, b + s) for (b, _), s in zip(full, g.shape[2:], strict=True))
    gx = np.empty((n, c) + tuple(input_size), dtype=dtype)

    def run(s):  # samples s, with buffers of the thread's own
        gp = grid.tap_buffer(o, dtype)
        planes = gp[: o * plane].reshape((o,) + padded)
        shares = np.empty(kernel + (c, slab), dtype=dtype)
        wide = np.empty((c,) + grid.wide_shape, dtype=dtype)
        flat = wide.reshape(c, length)
        for j in range(s.start, s.stop):
            np.copyto(planes[(slice(None),) + inner], g[j])
            for p0 in range(0, length, slab):
                m = min(slab, length - p0)
                np.matmul(wf, grid.tap_views(gp, o, p0, m), out=shares[..., :m])
                np.sum(shares[..., :m].reshape(taps, c, m), axis=0, out=flat[:, p0 : p0 + m])
            np.copyto(gx[j], wide[(slice(None),) + grid.crop])

    par.for_slices(n, run, n * taps * c * length * 4 if par.owns_blas() else 0)
    return gx


def correlate_thin(x, w, pads, dilations, bias=None) -> np.ndarray:
    """y (N, O, *out) of a stride-1, one-group conv of ``x`` zero-padded by ``pads``, on
    the stacked wide grid: per chunk, the pieces' columns copied from the padded image,
    one stacked product (the bias as a weight column times a row of ones), the windows'
    columns copied into y."""
    dtype = np.result_type(x.dtype, w.dtype)
    n, o, k = x.shape[0], w.shape[0], math.prod(w.shape[1:])
    ones = bias is not None
    grid = _ThinGrid(x.shape, w.shape[2:], pads, dilations, k + ones, o, np.dtype(dtype).itemsize)
    wm = w.reshape(o, k).astype(dtype, copy=False)
    if ones:
        wm = np.concatenate([wm, bias.reshape(o, 1).astype(dtype, copy=False)], axis=1)
    y = np.empty((n, o) + grid.out, dtype=dtype)
    lined = grid.lined(y, 2)  # (N, O, *axes, lines, out[-1])
    o_axis = 1 + len(grid.axes)  # O in a chunk's (samples, *axes, O, lines, width)

    def run(s):  # samples s, with buffers of the thread's own
        buf, windows = grid.buffer(dtype)
        cols = np.empty((grid.units, k + ones, grid.width), dtype=dtype)
        if ones:
            cols[:, k] = 1
        prod = np.empty((grid.units, o, grid.width), dtype=dtype)
        for js, a in grid.chunks(s):
            m = js.stop - js.start
            if a.start == 0:
                grid.fill(buf, x[js])
            src = windows[:m, a]  # (samples, first, *axes[1:], C, *K, width)
            units = math.prod(src.shape[:o_axis])
            np.copyto(cols[:units, :k].reshape(src.shape, copy=False), src)
            np.matmul(wm, cols[:units], out=prod[:units])
            got = prod[:units].reshape(src.shape[:o_axis] + (o, grid.lines, grid.wp))
            np.copyto(lined[js, :, a], np.moveaxis(got[..., : grid.out[-1]], o_axis, 1))

    work = n * math.prod(grid.axes) * k * grid.width
    par.for_slices(n, run, work * 4 if par.owns_blas() else 0)
    return y


def correlate_weight_grad_thin(x, g, kernel, pads, dilations) -> np.ndarray:
    """gw (O, C, *K) of a stride-1, one-group conv, on the stacked wide grid: per chunk,
    the columns (C*K, positions), g laid on the same positions (zeros at the columns that
    are not windows), one product. Each thread sums its own samples. The caller redoes a
    result that is not finite by the window route (a dropped column that reads an inf of
    x adds 0 * inf = NaN where the windows' sum is inf)."""
    dtype = np.result_type(x.dtype, g.dtype)
    n, o = g.shape[:2]
    k = x.shape[1] * math.prod(kernel)
    grid = _ThinGrid(x.shape, kernel, pads, dilations, k, o, np.dtype(dtype).itemsize)
    nd = len(kernel)
    lead = 1 + len(grid.axes)  # (samples, *axes) in a chunk's windows
    g_lined = grid.lined(g, 2)
    parts = par.split(n, par.get_num_threads())
    partial = [None] * len(parts)
    order = tuple(range(lead, lead + 1 + nd)) + tuple(range(lead)) + (lead + 1 + nd,)

    def run(s):
        with np.errstate(invalid="ignore"):  # (a NaN made here is redone by the caller)
            sums(s)

    def sums(s):
        buf, windows = grid.buffer(dtype)
        cols = np.empty((k, grid.units * grid.width), dtype=dtype)
        g_wide = np.zeros((o, grid.units * grid.width), dtype=dtype)  # zeros stay
        tmp = np.empty((k, o), dtype=dtype)
        for i in range(len(parts))[s]:
            acc = np.zeros((k, o), dtype=dtype)
            for js, a in grid.chunks(parts[i]):
                m = js.stop - js.start
                if a.start == 0:
                    grid.fill(buf, x[js])
                src = windows[:m, a]
                units = math.prod(src.shape[:lead])
                span = units * grid.width
                moved = src.transpose(order)  # (C, *K, samples, first, ..., width)
                np.copyto(cols[:, :span].reshape(moved.shape, copy=False), moved)
                on_grid = g_wide[:, :span].reshape(
                    (o,) + src.shape[:lead] + (grid.lines, grid.wp), copy=False
                )[..., : grid.out[-1]]
                np.copyto(on_grid, np.moveaxis(g_lined[js, :, a], 1, 0))
                acc += np.matmul(cols[:, :span], g_wide[:, :span].T, out=tmp)
            partial[i] = acc

    work = n * math.prod(grid.axes) * k * grid.width
    par.for_slices(len(parts), run, work * 4 if par.owns_blas() else 0)
    gw = _summed_transposed([p[None] for p in partial])[0]
    return gw.reshape((o, x.shape[1]) + tuple(kernel))


# ----------------------------------------------------------------------------- FFT
#
# Correlation is a product in frequency space: with F the real FFT over the spatial
# axes (size >= the padded input, so no wrap-around reaches a valid output),
#   y   = F^-1[ sum_c F(xp) conj(F(w_d)) ]  sampled at i*s        (w_d: kernel dilated by d)
#   gxp = F^-1[ sum_o F(g_s) F(w_d) ]                               (g_s: g dilated by s)
#   gw  = F^-1[ sum_n conj(F(g_s)) F(xp) ]  sampled at k*d
# The channel sums are small complex matmuls, one per frequency, batched by np.matmul.
# Those want spectra frequency-major, (F, A, B). Inputs, outputs and gradients are
# transformed plane by plane (contiguous planes transform fastest) and their spectra
# transposed; a kernel, whose planes are many and small, is transposed before its
# transform instead (a 64x64-channel 5x5 kernel: 22 MB of complex spectrum not moved).


def fft_shape(sizes: Sequence[int]) -> tuple[int, ...]:
    """FFT sizes at least ``sizes`` with small prime factors (fast transforms)."""
    return tuple(scipy.fft.next_fast_len(int(n), real=True) for n in sizes)


def _rfft(a, fs):
    """rfftn over the trailing ``len(fs)`` axes, zero-padded to ``fs``."""
    axes = tuple(range(a.ndim - len(fs), a.ndim))
    return scipy.fft.rfftn(a, s=fs, axes=axes, workers=par.threads_here())


def _spatial_first(a: np.ndarray, nd: int) -> np.ndarray:
    """(A, B, *S) -> contiguous (*S, A, B)."""
    return np.ascontiguousarray(a.transpose(tuple(range(2, 2 + nd)) + (0, 1)))


def _spectrum(a: np.ndarray, fs: Sequence[int]) -> np.ndarray:
    """(A, B, *S) real -> (F, A, B) complex: the rfft of every (a, b) plane, zero-padded to
    ``fs``, frequencies first (F = prod of the bins, the last dim halved)."""
    f = _rfft(a, fs)  # planes are contiguous: the fast way to transform them
    out = np.empty((math.prod(f.shape[2:]),) + a.shape[:2], dtype=f.dtype)
    par_copy(out, f.reshape(a.shape[:2] + (-1,)).transpose(2, 0, 1))
    return out


# A kernel axis of at most DFT_MAX_TAPS taps is transformed by one matrix product with the
# DFT's rows at those taps (the taps of a dilated kernel only, not its zeros), else by a
# zero-padded FFT. Measured, conj(F(w)) alone, one thread, ms, FFT -> matrix: (32, 16, 11,
# 11) in 75x75 5.4 -> 1.9, (64, 32, 5, 5) in 36x36 4.8 -> 1.4, (16, 8, 31, 31) in 96x96
# 2.5 -> 1.8, (8, 4, 15, 15, 15) in 40^3 4.0 -> 2.4; but (8, 8, 64, 64) in 128x128
# 2.4 -> 3.5 and (32, 32, 101) in 300 0.66 -> 1.2.
DFT_MAX_TAPS = 32
# ... and only where the matrix's complex exponentials (taps x bins of them, about 20 ns
# each) are shared by enough rows: at most DFT_TAPS_PER_ROW taps for each row transformed.
# A 1->1 conv1d on 1e5 samples with 24 taps, by FFT, forward and backward: 60 ms with
# the matrices (2.4M exponentials), 3 without.
DFT_TAPS_PER_ROW = 2


def _dft_by_matrix(taps: int, rows: int) -> bool:
    """Whether a transform of ``rows`` rows at ``taps`` taps takes the DFT matrix."""
    return taps <= DFT_MAX_TAPS and taps <= DFT_TAPS_PER_ROW * rows


def _dft_at_taps(n: int, bins: int, taps: np.ndarray, dtype) -> np.ndarray:
    """(bins, len(taps)): exp(+2 pi i u t / n), the conjugated DFT's rows u at taps t
    (u t reduced mod n in integers first, so that large products keep their precision)."""
    ut = np.outer(np.arange(bins), taps) % n
    return np.exp((2j * np.pi / n) * ut).astype(dtype)


def _kernel_spectrum(w: np.ndarray, fs: Sequence[int], groups: int, dtype, dilations=None):
    """conj(F(w dilated by ``dilations``)) zero-padded to ``fs``, as (F, G, Og, Cg). One
    dim at a time, last first, each pass over the taps alone: a DFT matrix product for
    short axes (see DFT_MAX_TAPS), else an FFT of only the rows that are not all zero
    padding (an 11x11 kernel in a 75x75 transform: 7x fewer rows in the first pass)."""
    nd = len(fs)
    o, cg = w.shape[:2]
    dilations = tuple(dilations or (1,) * nd)
    cdtype = np.result_type(dtype, np.complex64)
    a = _spatial_first(w.astype(dtype, copy=False), nd)  # (*K, O, Cg)
    for ax in range(nd - 1, -1, -1):
        n, k, d = fs[ax], a.shape[ax], dilations[ax]
        bins = n // 2 + 1 if ax == nd - 1 else n
        if _dft_by_matrix(k, a.size // max(k, 1)):
            m = _dft_at_taps(n, bins, np.arange(k) * d, cdtype)
            lead, rest = a.shape[:ax], a.shape[ax + 1 :]
            b = a.reshape((math.prod(lead), k, math.prod(rest))).astype(cdtype, copy=False)
            a = par.matmul(m, b[0]) if not lead else np.matmul(m, b)
            a = a.reshape(lead + (bins,) + rest)
            continue
        if d > 1:  # the zeros between taps, along this axis only
            z = np.zeros(a.shape[:ax] + ((k - 1) * d + 1,) + a.shape[ax + 1 :], a.dtype)
            z[(slice(None),) * ax + (slice(None, None, d),)] = a
            a = z
        if ax == nd - 1:
            a = scipy.fft.rfft(a, n=n, axis=ax, workers=par.threads_here())
            np.conjugate(a, out=a)
        else:  # sum_t a[t] exp(+2 pi i u t / n) on a complex a: the unscaled inverse FFT
            a = scipy.fft.ifft(a, n=n, axis=ax, norm="forward", workers=par.threads_here())
    return a.reshape(-1, groups, o // groups, cg)


def _grad_spectrum(g: np.ndarray, strides, fs: Sequence[int]) -> np.ndarray:
    """conj(F(g dilated by the strides)) as (F, N, O)."""
    f = _spectrum(dilate(g, strides), fs)
    return np.conjugate(f, out=f)


def _grouped(f: np.ndarray, groups: int) -> np.ndarray:
    """(F, N, G*B) -> the view (F, G, N, B) that the per-group matmuls take."""
    nf, n, gb = f.shape
    return f.reshape(nf, n, groups, gb // groups).transpose(0, 2, 1, 3)


def _planes_of(f: np.ndarray, block: int = 64) -> np.ndarray:
    """(F, A, B) -> contiguous (A, B, F), copied ``block`` frequencies at a time: a plain
    transposing copy reads F with a stride of A*B entries and ran 6x slower (5.2 against
    0.8 ms for 2850 x 8 x 32 complex64)."""
    nf = f.shape[0]
    out = np.empty(f.shape[1:] + (nf,), dtype=f.dtype)
    starts = range(0, nf, block)

    def run(s):
        for f0 in starts[s]:
            np.copyto(out[:, :, f0 : f0 + block], f[f0 : f0 + block].transpose(1, 2, 0))

    par.for_slices(len(starts), run, f.size)
    return out


def _from_spectrum(f: np.ndarray, fs: Sequence[int], take: tuple, out: np.ndarray) -> None:
    """``out`` (A, B, *T) = the inverse rfft of ``f`` (F, A, B) read at ``take`` (one slice
    per spatial dim)."""
    nd = len(fs)
    fshape = tuple(fs[:-1]) + (fs[-1] // 2 + 1,)
    planes = _planes_of(f).reshape(f.shape[1:] + fshape)
    r = scipy.fft.irfftn(planes, s=fs, axes=tuple(range(2, 2 + nd)), workers=par.threads_here())
    np.copyto(out, r[(slice(None), slice(None)) + take])


def _freq_matmul(a: np.ndarray, b: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """``np.matmul`` of two stacks of small matrices, one per frequency (axis 0), with
    the frequencies split onto threads."""
    if out is None:
        shape = np.broadcast_shapes(a.shape[:-2], b.shape[:-2]) + (a.shape[-2], b.shape[-1])
        out = np.empty(shape, dtype=np.result_type(a.dtype, b.dtype))

    def run(s):
        np.matmul(a[s], b[s], out=out[s])

    par.for_slices(out.shape[0], run, out.size * a.shape[-1])
    return out


def _fft_per_sample_bytes(c, o, fs, itemsize) -> int:
    bins = math.prod(fs[:-1]) * (fs[-1] // 2 + 1)
    return 2 * itemsize * bins * (2 * c + 2 * o) + itemsize * math.prod(fs) * (c + o)


class Spectra:
    """Fourier transforms a conv's forward hands to its two backward maps (FFT route).

    ``x``: the padded input's, (F, N, C); ``w``: conj of the dilated kernel's,
    (F, G, Og, Cg); ``g``: conj of the stride-dilated upstream gradient's, (F, N, O),
    filled by whichever backward map runs first (``for_backward`` gives each backward
    pass a fresh copy, so a second backward never sees the first one's ``g``).
    """

    __slots__ = ("fs", "x", "w", "g")

    def __init__(self, fs, x, w, g=None):
        self.fs, self.x, self.w, self.g = tuple(fs), x, w, g

    @property
    def nbytes(self) -> int:
        return sum(a.nbytes for a in (self.x, self.w, self.g) if a is not None)

    def for_backward(self) -> Spectra:
        return Spectra(self.fs, self.x, self.w)

    def __repr__(self) -> str:
        return f"Spectra(fft {self.fs})"


def correlate_fft(xp, w, strides, dilations, groups, keep: bool = False):
    """Same as ``correlate_gemm``, through FFTs (cheaper for large kernels).

    With ``keep`` returns ``(y, spectra)``: a ``Spectra`` for the backward maps when the
    batch was transformed in one chunk and the spectra fit ``cache_bytes``, else None.
    """
    n, c = xp.shape[:2]
    o = w.shape[0]
    kernel = w.shape[2:]
    out_sizes = _out_sizes(xp.shape[2:], kernel, strides, dilations)
    dtype = np.result_type(xp.dtype, w.dtype)
    fs = fft_shape(xp.shape[2:])
    wf = _kernel_spectrum(w, fs, groups, dtype, dilations)  # (F, G, Og, Cg)
    wt = wf.transpose(0, 1, 3, 2)
    y = np.empty((n, o) + out_sizes, dtype=dtype)
    take = tuple(slice(0, (m - 1) * s + 1, s) for m, s in zip(out_sizes, strides, strict=True))
    spectra = None
    for n0, n1 in _chunks(n, _fft_per_sample_bytes(c, o, fs, xp.itemsize)):
        xf = _spectrum(xp[n0:n1], fs)  # (F, nb, C)
        yf = np.empty((xf.shape[0], n1 - n0, o), dtype=xf.dtype)
        _freq_matmul(_grouped(xf, groups), wt, out=_grouped(yf, groups))
        _from_spectrum(yf, fs, take, y[n0:n1])
        if keep and n1 - n0 == n and xf.nbytes + wf.nbytes <= _settings["cache_bytes"]:
            spectra = Spectra(fs, xf, wf)
    return (y, spectra) if keep else y


def correlate_transpose_fft(
    g, w, padded_sizes, strides, dilations, groups, spectra: Spectra | None = None
) -> np.ndarray:
    """Same as ``correlate_transpose_gemm``, through FFTs. ``spectra``: the forward's
    (kernel spectrum reused; the upstream gradient's is left in it for the weight grad)."""
    n, o = g.shape[:2]
    cg = w.shape[1]
    c = cg * groups
    dtype = np.result_type(g.dtype, w.dtype)
    fs = fft_shape(padded_sizes)
    if spectra is not None and spectra.fs != fs:
        spectra = None
    wf = spectra.w if spectra is not None else None
    if wf is None:
        wf = _kernel_spectrum(w, fs, groups, dtype, dilations)  # (F, G, Og, Cg)
    gx = np.empty((n, c) + tuple(padded_sizes), dtype=dtype)
    take = tuple(slice(0, m) for m in padded_sizes)
    for n0, n1 in _chunks(n, _fft_per_sample_bytes(c, o, fs, g.itemsize)):
        gc = _grad_spectrum(g[n0:n1], strides, fs)  # (F, nb, O), conjugated
        if spectra is not None and n1 - n0 == n:
            spectra.g = gc
        xf = np.empty((gc.shape[0], n1 - n0, c), dtype=gc.dtype)
        xg = _grouped(xf, groups)
        _freq_matmul(_grouped(gc, groups), wf, out=xg)  # conj(F(g) F(w)), summed over O
        np.conjugate(xf, out=xf)
        _from_spectrum(xf, fs, take, gx[n0:n1])
    return gx


def _irfft_taps(r: np.ndarray, fs: Sequence[int], taps: Sequence[np.ndarray]) -> np.ndarray:
    """``irfftn(r)`` read only at the positions ``taps[i]`` of each spatial dim.

    ``r`` is (*bins, B): the real FFT of size ``fs`` over the leading dims (last one
    halved). An inverse DFT restricted to the few taps a kernel has, one small matrix
    product per dim, costs far less than the full inverse transform.
    """
    nd = len(fs)
    workers = par.threads_here()
    for ax in range(nd - 1):  # complex inverse DFT of the leading dims, at the taps only
        n = fs[ax]
        if not _dft_by_matrix(len(taps[ax]), r.size // max(n, 1)):  # (a long kernel: the
            # whole inverse FFT, then the taps; its K x n DFT matrix took 800 MB for 1001
            # taps in a 50001 transform)
            r = np.take(scipy.fft.ifft(r, axis=ax, workers=workers), taps[ax], axis=ax)
            continue
        m = (np.exp(2j * np.pi * np.outer(taps[ax], np.arange(n)) / n) / n).astype(r.dtype)
        lead = r.shape[:ax]
        if ax == 0:  # one (K, F) x (F, rest) product, split onto threads when large
            r = par.matmul(m, r.reshape(n, -1)).reshape((len(taps[0]),) + r.shape[1:])
        else:
            r = np.matmul(m, r.reshape((math.prod(lead), n, -1))).reshape(
                lead + (len(taps[ax]),) + r.shape[ax + 1 :]
            )
    # the halved last dim: bins 1..ceil(n/2)-1 stand for their conjugate mirror too
    n = fs[-1]
    if not _dft_by_matrix(len(taps[-1]), r.size // max(r.shape[nd - 1], 1)):
        out = scipy.fft.irfft(r, n=n, axis=nd - 1, workers=workers)
        return np.take(out, taps[-1], axis=nd - 1)
    bins = n // 2 + 1
    weight = np.full(bins, 2.0)
    weight[0] = 1.0
    if n % 2 == 0:
        weight[-1] = 1.0
    m = (weight * np.exp(2j * np.pi * np.outer(taps[-1], np.arange(bins)) / n) / n).astype(r.dtype)
    lead = r.shape[: nd - 1]
    out = np.matmul(m, r.reshape((math.prod(lead), bins, -1)))
    return out.real.reshape(lead + (len(taps[-1]),) + r.shape[nd:])


def correlate_weight_grad_fft(
    xp, g, kernel, strides, dilations, groups, spectra: Spectra | None = None
) -> np.ndarray:
    """Same as ``correlate_weight_grad_gemm``, through FFTs. ``spectra``: the forward's
    input spectrum and, when the input-gradient map ran first, the upstream gradient's."""
    n, c = xp.shape[:2]
    o = g.shape[1]
    cg = c // groups
    dtype = np.result_type(xp.dtype, g.dtype)
    fs = fft_shape(xp.shape[2:])
    fshape = fs[:-1] + (fs[-1] // 2 + 1,)
    if spectra is not None and spectra.fs != fs:
        spectra = None
    if n == 0:  # (an empty batch: no products to sum)
        return np.zeros((o, cg) + tuple(kernel), dtype=dtype)
    acc = None
    for n0, n1 in _chunks(n, _fft_per_sample_bytes(c, o, fs, xp.itemsize)):
        whole = spectra is not None and n1 - n0 == n
        xf = spectra.x if whole else _spectrum(_array(xp[n0:n1]), fs)  # (F, nb, C)
        gc = spectra.g if whole and spectra.g is not None else None
        if gc is None:
            gc = _grad_spectrum(g[n0:n1], strides, fs)  # (F, nb, O)
        gt = _grouped(gc, groups).transpose(0, 1, 3, 2)  # (F, G, Og, nb)
        part = _freq_matmul(gt, _grouped(xf, groups))  # (F, G, Og, Cg)
        acc = part if acc is None else acc + part
    taps = [np.arange(k) * d for k, d in zip(kernel, dilations, strict=True)]
    r = _irfft_taps(acc.reshape(fshape + (-1,)), fs, taps)  # (*K, G*Og*Cg)
    nd = len(kernel)
    r = r.reshape(tuple(kernel) + (o, cg)).transpose((nd, nd + 1) + tuple(range(nd)))
    return np.ascontiguousarray(r).astype(dtype, copy=False)


# ----------------------------------------------------------------------------- dispatch


def estimate_costs(
    batch: int,
    in_channels: int,
    out_channels: int,
    groups: int,
    padded_sizes: Sequence[int],
    kernel: Sequence[int],
    out_sizes: Sequence[int],
    backward: bool = False,
) -> dict[str, float]:
    """Rough flop counts of the two algorithms for one of the three conv maps (``backward``:
    the input or weight gradient, or a transposed conv's forward).

    gemm: 2 N O Cg prod(out) prod(K) (scaled up for one input channel:
    ``ONE_CHANNEL_SCALE``).
    fft: real transforms of the input, the
    kernel and the output (2.5 M log2 M each, M = prod(fft sizes)) plus the
    per-frequency complex channel sums (8 N O Cg flops per bin), times
    ``FFT_PENALTY``.
    """
    cg = in_channels // groups
    gemm = 2.0 * batch * out_channels * cg * math.prod(out_sizes) * math.prod(kernel)
    if in_channels == groups == 1 and (
        math.prod(kernel) * math.prod(out_sizes) > FEW_CHANNELS_COLUMNS
    ):
        if backward:
            gemm *= max(1.0, ONE_CHANNEL_SCALE / out_channels)
        elif out_channels == 1:
            gemm *= ONE_CHANNEL_FORWARD_SCALE
    fs = fft_shape(padded_sizes)
    m = math.prod(fs)
    bins = math.prod(fs[:-1]) * (fs[-1] // 2 + 1)
    transforms = (
        2.5
        * m
        * max(math.log2(m), 1.0)
        * (batch * in_channels + batch * out_channels + out_channels * cg)
    )
    fft = FFT_PENALTY * (transforms + 8.0 * batch * out_channels * cg * bins)
    return {"gemm": gemm, "fft": fft}


def _fft_declined(algo: str, *arrays) -> bool:
    """Whether an FFT route that the cost estimate (not the setting) chose gives way to
    GEMM: where an operand holds an inf or NaN, which the transforms would spread over
    the whole sample (PyTorch's direct convs keep it to the windows that read it)."""
    if algo != "fft" or _settings["algorithm"] != "auto":
        return False
    return not all(all_finite(a.x if isinstance(a, _Padded) else a) for a in arrays)


def choose_algorithm(
    batch, in_channels, out_channels, groups, padded_sizes, kernel, out_sizes, backward=False
) -> str:
    """ "gemm" or "fft": the forced setting, else the cheaper by ``estimate_costs`` (for a
    backward map with ``backward``)."""
    setting = _settings["algorithm"]
    if setting != "auto":
        return setting
    if math.prod(kernel) < 16:  # small kernels: im2col always wins
        return "gemm"
    cost = estimate_costs(
        batch, in_channels, out_channels, groups, padded_sizes, kernel, out_sizes, backward
    )
    return "fft" if cost["fft"] < cost["gemm"] else "gemm"


# the samples-last layout is used for output rows up to this long (longer rows already
# copy fast in the batch-wide layout, which then saves the transposes)
SAMPLES_LAST_MAX_ROW = 16
# the forward's samples-last runs (out_w * N numbers) must be at least this long: one
# thread, forward alone, samples-last against batch-wide, ms: the 96x96 network's
# 105->158 k2 at 9x9 outputs, b16 (runs of 144) 1.58 against 1.42, 158->158 at 8x8 (128)
# 2.03 against 1.79, 3x3 64->128 at 8x8 (128) 1.52 against 1.43, 5x5 16->120 at 1x1, b64
# (64) 0.094 against 0.075; 3x3 16->16 at 8x8, b32 (256) 0.22 against 0.31, 6->64 (256)
# 0.21 against 0.22, LeNet-5's 6->16 at 10x10, b64 (640) 0.70 against 1.08
SAMPLES_LAST_MIN_RUN = 256


def _use_samples_last(which: str, batch: int, out_sizes) -> bool:
    """Whether the GEMM route of map ``which`` ("forward", "input_grad", "weight_grad") uses
    the samples-last im2col layout: the ``conv_layout`` setting, else by measurement
    (2 cores, LeNet-5 and the 96x96 network's convs, 3x3 and 3x3x3 convs): the input
    gradient for output rows of up to 16 (col2im 10-35 % faster), the forward too when
    it runs on one thread (with threads the batch-wide per-thread pipeline wins) and its
    runs of out_w * N numbers are at least SAMPLES_LAST_MIN_RUN long, the weight gradient
    never unless forced (it reuses whatever the forward kept)."""
    layout = _settings["layout"]
    if layout != "auto":
        return layout == "samples_last"
    if batch < 8 or out_sizes[-1] > SAMPLES_LAST_MAX_ROW:
        return False
    if which == "input_grad":
        return True
    return (
        which == "forward"
        and par.threads_here() == 1
        and out_sizes[-1] * batch >= SAMPLES_LAST_MIN_RUN
    )


def add_bias(y: np.ndarray, bias: np.ndarray) -> None:
    """``y += bias`` along axis 1 of (N, O, *out), split over samples onto threads."""
    b = bias.reshape((-1,) + (1,) * (y.ndim - 2))
    par.for_slices(y.shape[0], lambda s: np.add(y[s], b, out=y[s]), y.size)


def correlate(xp, w, strides, dilations, groups, keep_cols: bool = False, bias=None):
    """y (N, O, *out): y[n,o,i] = sum_{c in group, k} xp[n,c,i*s + k*d] w[o,c,k] (+ bias[o]).

    With ``keep_cols`` returns ``(y, cols)``: the im2col matrix for
    ``correlate_weight_grad`` when the GEMM route made one that fits the budget, else None.
    """
    kernel = w.shape[2:]
    out_sizes = _out_sizes(xp.shape[2:], kernel, strides, dilations)
    algo = choose_algorithm(
        xp.shape[0], xp.shape[1], w.shape[0], groups, xp.shape[2:], kernel, out_sizes
    )
    if _fft_declined(algo, xp, w):
        algo = "gemm"
    depthwise = algo == "gemm" and groups > 1 and w.shape[1] == 1
    rows = algo == "gemm" and _rows_route(
        xp.shape, w.shape, strides, dilations, groups, "forward", xp.itemsize
    )
    samples_last = algo == "gemm" and _use_samples_last("forward", xp.shape[0], out_sizes)
    if algo != "gemm" or depthwise or samples_last or rows:
        xp = _array(xp)  # (the batch-wide GEMM route pads one sample at a time)
    if rows:
        y = correlate_rows(xp, w, strides, dilations, keep_cols=keep_cols)
        y, cols = y if keep_cols else (y, None)
    elif depthwise:
        y, cols = correlate_depthwise(xp, w, strides, dilations, groups), None
    elif samples_last:
        y = correlate_samples_last(xp, w, strides, dilations, groups, keep_cols=keep_cols)
        y, cols = y if keep_cols else (y, None)
    elif algo == "gemm":  # adds the bias itself
        y = correlate_gemm(xp, w, strides, dilations, groups, keep_cols=keep_cols, bias=bias)
        y, cols = y if keep_cols else (y, None)
        bias = None
    elif keep_cols:
        y, cols = correlate_fft(xp, w, strides, dilations, groups, keep=True)
    else:
        y, cols = correlate_fft(xp, w, strides, dilations, groups), None
    if bias is not None:
        add_bias(y, bias)
    return (y, cols) if keep_cols else y


def _depthwise_on_gemm(x_shape, w_shape, pads, strides, dilations, groups):
    """(padded sizes, output sizes) of a depthwise conv (one input channel per group) of
    an input of ``x_shape`` padded by ``pads`` that the cost estimate leaves on the GEMM
    side (not FFT); None for any other conv."""
    if groups == 1 or w_shape[1] != 1:
        return None
    n, c = x_shape[:2]
    kernel = tuple(w_shape[2:])
    padded = padded_sizes(x_shape[2:], pads)
    out_sizes = _out_sizes(padded, kernel, strides, dilations)
    if choose_algorithm(n, c, w_shape[0], groups, padded, kernel, out_sizes) != "gemm":
        return None
    return padded, out_sizes


def _compiled_route(x_shape, w_shape, pads, strides, dilations, groups, dtype) -> bool:
    """Whether the conv of an input of ``x_shape`` padded by ``pads`` is a depthwise conv
    that runs as compiled loops (``_compiled``): turned on, the algorithm left to "auto",
    float32 or float64, and GEMM rather than FFT by the cost estimate."""
    if not _settings["compiled"] or _settings["algorithm"] != "auto":
        return False
    if groups == 1 or groups != x_shape[1] or w_shape[1] != 1:
        return False
    if np.dtype(dtype) not in _compiled.DTYPES:
        return False
    if math.prod(w_shape[2:]) > COMPILED_MAX_TAPS and (
        _depthwise_on_gemm(x_shape, w_shape, pads, strides, dilations, groups) is None
    ):  # (FFT by the estimate, and kernels this large: see COMPILED_MAX_TAPS)
        return False
    itemsize = np.dtype(dtype).itemsize
    if math.prod(x_shape[2:]) <= PLANE_OVER_COMPILED and _depthwise_plane_route(
        x_shape, w_shape, pads, strides, dilations, groups, itemsize
    ):
        return False
    return _compiled.available()


# Depthwise convs on the compiled kernels against the other routes, forward and backward,
# 2 threads, float32, ms. Tiny planes (up to PLANE_OVER_COMPILED entries) stay on the
# whole-plane matrices, whose kernels' copies in and out are rows of a few numbers: 3x3 on
# 1024 channels at 4x4 (b64) 4.6 against 7.8 compiled, 512 at 5x5 3.3 / 5.5, at 6x6 5.7 /
# 8.8; at 7x7 (b32) 7.8 / 6.3, 256 at 8x8 5.9 / 2.2. Large kernels, where the cost estimate
# takes FFT, stay compiled up to COMPILED_MAX_TAPS taps (the estimate is of the GEMM routes):
# 15x15 on 64 channels at 56x56 (b16) 198 by FFT against 95 compiled; 31x31 321 by FFT
# against 569 compiled.
PLANE_OVER_COMPILED = 36
COMPILED_MAX_TAPS = 400


def all_finite(a: np.ndarray) -> bool:
    """Whether ``a`` holds no inf or NaN (by its sum, one fast pass: a sum that overflows
    says no too, which only costs a slower route where this guards one)."""
    with np.errstate(over="ignore", invalid="ignore"):
        return bool(np.isfinite(np.sum(a)))


def _depthwise_band_route(x_shape, w_shape, pads, strides, dilations, groups, dtype) -> bool:
    """Whether the conv of an input of ``x_shape`` padded by ``pads`` takes the depthwise
    band route, which reads the unpadded input (and writes the unpadded input gradient)."""
    sizes = _depthwise_on_gemm(x_shape, w_shape, pads, strides, dilations, groups)
    if sizes is None:
        return False
    padded, out_sizes = sizes
    c, m = x_shape[1], w_shape[0] // x_shape[1]
    return _toeplitz_ok(c, m, w_shape[2:], padded[-1], out_sizes[-1], np.dtype(dtype).itemsize)


def correlate_padded(x, w, pads, strides, dilations, groups, keep_cols=False, bias=None):
    """``correlate`` of ``x`` zero-padded by ``pads`` (one (before, after) pair per spatial
    dim); the padded copy is made only for the routes that read it."""
    dtype = np.result_type(x.dtype, w.dtype)
    itemsize = np.dtype(dtype).itemsize
    # The plane and band matrices leave the padding out: with an inf or NaN tap that
    # would read it, the output is NaN there (0 * inf), as PyTorch's float64 conv has it.
    def skip_pads() -> bool:  # (only asked where those routes are taken: w is summed)
        return not any(p for pair in pads for p in pair) or all_finite(w)

    if _compiled_route(x.shape, w.shape, pads, strides, dilations, groups, dtype):
        y = _compiled.forward(x, w, bias, pads, strides, dilations, dtype)
        return (y, None) if keep_cols else y

    if _depthwise_plane_route(x.shape, w.shape, pads, strides, dilations, groups, itemsize) and (
        all_finite(x)  # (the matrices' zeros would spread an inf or NaN over the plane)
        and skip_pads()
    ):
        y = correlate_depthwise_plane(x, w, strides, dilations, pads, dtype)
        if bias is not None:
            add_bias(y, bias)
        return (y, None) if keep_cols else y
    if _depthwise_channel_route(x.shape, w.shape, pads, strides, dilations, groups, "forward",
                                itemsize) and not zero_tap_meets_nonfinite(w, x):  # fmt: skip
        y = correlate_depthwise_channels(
            x.astype(dtype, copy=False), w, strides, dilations, pads, dtype, bias
        )
        return (y, None) if keep_cols else y
    if _depthwise_band_route(x.shape, w.shape, pads, strides, dilations, groups, dtype) and (
        all_finite(x)  # (the band matrices' zeros would spread an inf or NaN along a row)
        and skip_pads()
    ):
        y = correlate_depthwise_band(x, w, strides, dilations, pads, dtype)
        if bias is not None:
            add_bias(y, bias)
        return (y, None) if keep_cols else y
    padded_shape = x.shape[:2] + padded_sizes(x.shape[2:], pads)
    rows = (keep_cols and w.ndim == 5) and _rows_route(
        padded_shape, w.shape, strides, dilations, groups, "forward", itemsize
    )  # (a volume's row windows come before the stacked grid, where dw gets them)
    if not rows and _thin_route(
        x.shape, w.shape, pads, strides, dilations, groups, "forward", itemsize, keep_cols
    ):
        y = correlate_thin(x, w, pads, dilations, bias)
        return (y, None) if keep_cols else y
    xp = _padded(x, pads)
    return correlate(xp, w, strides, dilations, groups, keep_cols=keep_cols, bias=bias)


def correlate_weight_grad_padded(x, g, kernel, pads, strides, dilations, groups, cols=None):
    """``correlate_weight_grad`` for an input padded by ``pads``; the depthwise route reads
    ``x`` unpadded, the others pad it (``cols``: what the forward kept, if anything)."""
    dtype = np.result_type(x.dtype, g.dtype)
    w_shape = (g.shape[1], 1) + tuple(kernel)
    if cols is None and _compiled_route(x.shape, w_shape, pads, strides, dilations, groups,
                                        dtype):  # fmt: skip
        return _compiled.weight_grad(x, g, kernel, pads, strides, dilations, dtype)
    if (
        cols is None
        and _depthwise_plane_route(x.shape, w_shape, pads, strides, dilations, groups,
                                   dtype.itemsize)  # fmt: skip
        and all_finite(x)
        and all_finite(g)
    ):
        return correlate_weight_grad_depthwise_plane(x, g, kernel, strides, dilations, pads, dtype)
    if cols is None and _depthwise_channel_route(
        x.shape, w_shape, pads, strides, dilations, groups, "weight_grad", dtype.itemsize
    ):
        x, g = x.astype(dtype, copy=False), g.astype(dtype, copy=False)
        gw = correlate_weight_grad_depthwise_channels(x, g, kernel, strides, dilations, pads, dtype)
        if np.isfinite(gw).all():  # (else an inf in x read where no window is, times 0:
            return gw  # redone below, where every product is a window's)
    w_shape = (g.shape[1], x.shape[1] // groups) + tuple(kernel)
    args = (x.shape, w_shape, pads, strides, dilations, groups)
    gw = None
    if cols is None and _taps_route(*args, dtype.itemsize):
        gw = correlate_weight_grad_taps(x, g, kernel, pads, dilations)
    elif cols is None and _thin_route(*args, "weight_grad", dtype.itemsize):
        gw = correlate_weight_grad_thin(x, g, kernel, pads, dilations)
    if gw is not None and np.isfinite(gw).all():  # (else an inf in x, read where no
        return gw  # window is: see correlate_weight_grad_thin)
    if cols is None and groups > 1 and x.shape[1] == groups:  # depthwise
        padded = padded_sizes(x.shape[2:], pads)
        n, c, o = x.shape[0], x.shape[1], g.shape[1]
        if choose_algorithm(n, c, o, groups, padded, kernel, g.shape[2:], True) == "gemm":
            gw = correlate_weight_grad_depthwise_unpadded(
                x, g, kernel, strides, dilations, pads, groups
            )
            if all_finite(g):
                return gw
            # an inf or nan in g: the padded route below multiplies the windows that read
            # padding by its zeros (nan, as PyTorch), which the unpadded one skips
    return correlate_weight_grad(_padded(x, pads), g, kernel, strides, dilations, groups, cols)


# The input gradient of a stride-1 conv is also a plain correlation: g padded by d*(K-1) - p
# on each side, with the kernel flipped and its two channel axes swapped (the "full"
# correlation of docs/convolution.md). As a GEMM it sums over O*prod(K) instead of O and
# needs no col2im adds, at the price of copying g's im2col columns. Measured against GEMM +
# col2im (the samples-last col2im for rows up to 16), 2 threads, ms (one thread in
# brackets): 3x3 128->128 at 16x16 (b32) 13.1 -> 10.6 (24.2 -> 21.7), 128->64 at 16x16
# 9.0 -> 5.3 (16.9 -> 10.5), 48->32 at 32x32 11.1 -> 5.6 (23.4 -> 9.7), 16->8 at 32x32
# 3.1 -> 1.4 (5.6 -> 1.8), 64->32 at 112x112 (b4) 25.3 -> 14.4 (49.5 -> 29.4), 3x3x3
# 16->8 at 16^3 (b8) 8.8 -> 3.5 (20.4 -> 6.4). It lost with more outputs than inputs
# (32->64 at 32x32: 8.4 -> 13.3; LeNet-5's 6->16: 1.0 -> 2.6) and under 256 input
# positions a sample (16->16 at 10x10: 1.0 -> 1.5; 158->105 k2 at 8x8: 0.9 -> 1.4).


def _input_grad_by_correlation(w_shape, input_size, strides, groups) -> bool:
    """Whether the GEMM route's input gradient runs as a full correlation (see above)."""
    o, cg = w_shape[0], w_shape[1]
    if _settings["layout"] != "auto" or any(s != 1 for s in strides) or cg == 1:
        return False
    return cg >= o // groups and math.prod(input_size) >= PER_SAMPLE_MIN_P


def correlate_transpose_full(g, w, pads, dilations, groups) -> np.ndarray:
    """gx (N, C, *input_size) of a stride-1 conv whose input was padded by ``pads``: the
    correlation of g, padded by d*(K-1) - p (a negative amount crops), with w flipped and
    transposed per group to (C, O/G, *K)."""
    o, cg = w.shape[:2]
    kernel = tuple(w.shape[2:])
    nd = len(kernel)
    full = _full_pads(kernel, dilations, pads)
    flip = (slice(None),) * 3 + (slice(None, None, -1),) * nd
    wf = w.reshape((groups, o // groups, cg) + kernel).swapaxes(1, 2)[flip]
    wf = np.ascontiguousarray(wf).reshape((groups * cg, o // groups) + kernel)
    itemsize = np.result_type(g.dtype, w.dtype).itemsize
    if _thin_input_grad(g.shape, w.shape, pads, (1,) * nd, dilations, groups, itemsize):
        return correlate_thin(g, wf, full, dilations)
    return correlate_gemm(_padded(g, full), wf, (1,) * nd, tuple(dilations), groups)


# The input gradient of a stride-1 conv, one sample at a time on the wide grid of
# ``_WideGrid``: g laid on the padded image's grid (zeros where no window starts), one GEMM
# per group gives every tap's share for every grid position, and col2im is one contiguous
# add per tap over the flattened image. The batch-wide and samples-last col2im add rows of
# out_w entries (27 taps x C x out_d x out_h of them for a 3x3x3 kernel), so NumPy's
# per-row cost dominated. The GEMM also computes the grid positions that are not windows,
# so only where they are few (WIDE_MAX_EXCESS).
#
# Volumes (3 or more spatial dims), measured against the samples-last col2im, b8 unless
# noted, 2 threads, ms (one thread in brackets): 3x3x3 8->16 at 16^3 4.6 -> 3.8 (7.2 ->
# 5.4), 16->16 at 16^3 7.5-9.1 -> 6.2-6.4 (18.8 -> 10.3), 32->32 at 16^3 (b4) 9.2-9.7 -> 7.1
# (19.2-22.3 -> 13.2), 8->16 at 24^3 (b4) 7.6-8.2 -> 4.7 (14.8 -> 8.0), 4->8 at 32^3 (b2)
# 4.2 -> 2.5 (7.7 -> 4.2), 1->8 at 32^3 (b4) 2.4 -> 2.1 (3.9 -> 2.8), unpadded 8->8 at 16^3
# 3.1 -> 2.4-2.9 (6.1 -> 3.5), dilation 2 (excess 1.56) 4.7 -> 4.4 (8.0 -> 6.3). It lost
# where the dropped positions are many: 16->16 at 8^3 (excess 1.56) 1.3 -> 2.2, a 5x5x5
# kernel at 12^3 (1.78) 7.0 -> 13.0.
#
# Images (2 spatial dims) gained only once each tap's add ran over all channels as one
# flat run (ninth session; before, a (C, length) block, which NumPy adds 3-5x slower than
# the same numbers in one run): against the batch-wide col2im, 2 threads (one thread), ms:
# 3x3 32->64 at 32x32 (b32) 9.6 -> 6.7 (19.5-20.9 -> 12.2-15.9), the same dilated by 2
# 9.3 -> 7.0 (19.2-20.1 -> 12.5-13.1), 3x3 16->32 at 64x64 (b8) 3.3-3.5 -> 2.5-2.6 (6.1 ->
# 4.1), the 96x96 network's 40->105 k2 at 23x23 (b16) 1.9-2.0 -> 1.5 (2.9-3.1 -> 2.4-2.5).
# It lost where the per-sample products are small: 3x3 3->16 at 32x32 (b32, 0.5M
# multiply-adds a sample) 0.91 -> 1.21, 8->8 at 16x16 0.45 -> 0.89, 3x3 64->128 at 8x8
# (80 grid positions a sample) 2.2 -> 3.6, LeNet-5's 5x5 6->16 at 14x14 (252) 1.6 -> 3.3;
# and against the full correlation with as many outputs as inputs: 5x5 32->32 at 32x32
# 8.6 -> 12.4, 3x3 128->128 at 16x16 11.0-11.7 -> 10.5-11.2. So images take it with fewer
# inputs than outputs, at least PER_SAMPLE_MIN_P grid positions and WIDE_MIN_MACS
# multiply-adds in a sample's product.
WIDE_MAX_EXCESS = 1.35
WIDE_MIN_MACS = 1 << 22
# The GEMM gives the taps' rows in blocks of about WIDE_BLOCK_BYTES, the taps split evenly,
# each block's adds done while its rows are in the L2 cache. Measured, input gradient
# alone, 2 threads (one thread), ms, all taps at once -> blocks: 3x3x3 8->16 at 16^3 (b8,
# 5 MiB of rows a sample) 3.9-4.0 -> 3.2-3.3 (5.6-5.9 -> 4.9-5.0), 16->16 at 16^3 6.6-6.9
# -> 5.4-5.5, 3x3 16->32 at 64x64 (b8) 2.8-2.9 -> 2.2-2.3, 3x3 32->64 at 32x32 (b32, 1.3
# MiB) 5.8-6.5 -> 5.9-6.4; blocks of 512 KiB were slower for the volumes (ninth session).
WIDE_BLOCK_BYTES = 2**20


def _wide_tap_block(taps: int, tap_bytes: int) -> int:
    """How many taps' rows (``tap_bytes`` each) the wide grid's GEMM gives at once."""
    blocks = -(-taps * tap_bytes // WIDE_BLOCK_BYTES)
    return -(-taps // blocks)  # (the taps split evenly)


def _input_grad_on_wide_grid(w_shape, input_size, pads, strides, dilations, groups, itemsize):
    """Whether the GEMM route's input gradient runs on the wide grid (see above)."""
    kernel = tuple(w_shape[2:])
    cg, og = w_shape[1], w_shape[0] // groups
    if (
        _settings["layout"] != "auto"
        or len(kernel) < 2
        or any(s != 1 for s in strides)
        or cg == 1  # depthwise: a route of its own
        or cg > og  # more inputs than outputs: the full correlation
        or any(p < 0 for pair in pads for p in pair)  # (a transposed conv's cut rows)
    ):
        return False
    padded = padded_sizes(input_size, pads)
    out = _out_sizes(padded, kernel, strides, dilations)
    length = out[0] * math.prod(padded[1:])
    if length > WIDE_MAX_EXCESS * math.prod(out):
        return False
    taps = math.prod(kernel)
    if len(kernel) == 2 and (
        cg == og or length < PER_SAMPLE_MIN_P or og * cg * taps * length < WIDE_MIN_MACS
    ):
        return False
    c, o, plane = cg * groups, w_shape[0], math.prod(padded)
    block = _wide_tap_block(taps, cg * plane * itemsize)
    per_thread = ((block * cg + c) * plane + o * length) * itemsize
    return per_thread <= _settings["scratch_bytes"] // par.get_num_threads()


def correlate_transpose_wide(g, w, input_size, pads, dilations, groups) -> np.ndarray:
    """gx (N, C, *input_size) of a stride-1 conv whose input was padded by ``pads``, one
    sample at a time on the wide grid: dcols = w^T g_wide (the grid's other positions hold
    zeros in g_wide, so their dcols are zeros too), each tap's dcols added at its shift,
    the padding cropped.

    dcols is laid out tap-major, (K, C, plane) with each channel's row as long as the
    padded image and zeros past the grid's ``length``, so that a tap's add runs over all
    channels at once as one flat add (a channel's shifted row may run into the next
    channel's start, but only with the zeros no window reached). NumPy adds a 2-D strided
    block of (C, length) 3-5x slower than a flat run of the same size. The GEMM gives a
    block of taps' rows at a time (``WIDE_BLOCK_BYTES``), added before the next block."""
    n, c, og, kernel, out_sizes, dtype, wt = _transpose_operands(g, w, groups)
    cg = c // groups
    taps = math.prod(kernel)
    padded = padded_sizes(input_size, pads)
    grid = _WideGrid(padded, kernel, dilations, out_sizes)
    plane, length = grid.plane, grid.length
    wt = _tap_major_weights(w, groups, dtype)  # (G, K*Cg, Og)
    gx = np.empty((n, c) + tuple(input_size), dtype=dtype)
    inner = (slice(None), slice(None)) + _interior(input_size, pads)
    gx_groups = gx.reshape((n, groups, cg) + tuple(input_size))
    size = cg * plane
    block = _wide_tap_block(taps, size * np.dtype(dtype).itemsize)  # (see WIDE_BLOCK_BYTES)

    def run(s):  # samples s, each thread with buffers of its own
        wide = np.zeros((groups, og) + grid.wide_shape, dtype=dtype)  # zero off the windows
        g_on_grid = wide[(slice(None), slice(None)) + grid.crop]
        wide = wide.reshape(groups, og, length)
        dcols = np.zeros((block, cg, plane), dtype=dtype)  # zero past length, never written
        rows = dcols.reshape(block * cg, plane)[:, :length]  # what the GEMM writes
        flat = dcols.reshape(block, size)
        sums = np.empty((groups, size), dtype=dtype)  # the adds' target, group by group

        def add_taps(gi: int, t0: int, t1: int) -> None:  # taps t0..t1-1 of group gi
            np.matmul(wt[gi, t0 * cg : t1 * cg], wide[gi], out=rows[: (t1 - t0) * cg])
            for i in range(t0, t1):
                off = grid.offsets[i]
                if i == 0:  # offset 0: the whole run, zeros past length included
                    np.copyto(sums[gi], flat[0])
                else:
                    sums[gi, off:] += flat[i - t0, : size - off]

        for j in range(s.start, s.stop):
            np.copyto(g_on_grid, g[j].reshape((groups, og) + tuple(out_sizes)))
            for gi in range(groups):
                for t0 in range(0, taps, block):
                    add_taps(gi, t0, min(taps, t0 + block))
            np.copyto(gx_groups[j], sums.reshape((groups, cg) + padded)[inner])

    work = n * c * taps * length * 4 if par.owns_blas() else 0
    par.for_slices(n, run, work)
    return gx


def _tap_major_weights(w: np.ndarray, groups: int, dtype) -> np.ndarray:
    """w^T with its rows ordered (tap, input channel) in each group: (G, K*Cg, Og),
    contiguous. The (Og, K*Cg) -> (K*Cg, Og) transpose goes by cache-sized tiles (NumPy's
    copy of the transposed view took 57 ms for a 1024x512x4x4 weight, the tiles 10)."""
    o, cg = w.shape[:2]
    og, taps = o // groups, math.prod(w.shape[2:])
    rows = np.ascontiguousarray(  # (G, Og, K, Cg): the short swap within each row
        w.reshape(groups, og, cg, taps).swapaxes(2, 3), dtype=dtype
    ).reshape(groups, og, taps * cg)
    out = np.empty((groups, taps * cg, og), dtype=dtype)
    for gi in range(groups):
        transpose_2d(rows[gi], out=out[gi])
    return out


class _PhaseGrid:
    """Strided taps as shifts on phase planes (the sub-pixel split of a strided conv).

    With stride s, tap k of window i reaches padded position i*s + k*d = (i + q)*s + r
    with r = k*d mod s and q = k*d div s: position i + q of phase plane r, the plane of
    positions r, r + s, r + 2s, ... So on each phase plane the taps of its class are a
    stride-1 transposed correlation, each tap a shift of g laid on the plane's grid, and
    one flat add a tap over the flattened planes of all channels (as ``_WideGrid`` for
    stride 1). Every plane is ``q_sizes`` = ceil(P / s) per dim; g sits in its first
    out[0] rows (``length`` entries a channel), zeros elsewhere. No tap reaches past a
    plane's rows (every window lies in the padded input), so a shifted run that spills
    into the next channel's plane carries only those zeros.
    """

    def __init__(self, padded_sizes, kernel, strides, dilations, out_sizes):
        self.strides = tuple(strides)
        self.q_sizes = tuple(-(-p // s) for p, s in zip(padded_sizes, strides, strict=True))
        elem = np.cumprod((1,) + self.q_sizes[:0:-1])[::-1]
        self.phases = math.prod(strides)
        self.tap_phase, self.offsets = [], []
        for k in np.ndindex(*kernel):
            reach = [ki * d for ki, d in zip(k, dilations, strict=True)]
            r = [a % s for a, s in zip(reach, strides, strict=True)]
            self.tap_phase.append(int(np.ravel_multi_index(r, self.strides)))
            self.offsets.append(int(sum(a // s * e for a, s, e in
                                        zip(reach, strides, elem, strict=True))))  # fmt: skip
        self.plane = math.prod(self.q_sizes)
        self.length = out_sizes[0] * int(elem[0])
        self.crop = tuple(slice(0, o) for o in out_sizes)

    def interleave(self, sums: np.ndarray, out: np.ndarray) -> None:
        """``out`` (*lead, *padded) from the phase planes ``sums`` (phases, *lead, plane)."""
        nd = len(self.strides)
        lead = out.shape[: out.ndim - nd]
        keep = (slice(None),) * len(lead)
        for r in np.ndindex(*self.strides):
            dst = out[keep + tuple(slice(a, None, s) for a, s in
                                   zip(r, self.strides, strict=True))]  # fmt: skip
            src = sums[int(np.ravel_multi_index(r, self.strides))].reshape(lead + self.q_sizes)
            np.copyto(dst, src[keep + tuple(slice(0, n) for n in dst.shape[len(lead) :])])


# Strided input gradients (and transposed convs' forwards) take the phase planes where a
# block of samples' rows (C x taps x plane positions, all groups) number at least
# PHASE_MIN_ENTRIES. Against the route taken before, one thread (two in brackets), ms (the
# same sums: each position's taps are added in the same order): g (16, 64, 32, 32) through
# a 4x4 s2 64->32 kernel 18.6 -> 10.9 (10.5 -> 7.8), the same 3->3 at b512 50 -> 26, 4->4
# (b256) 34 -> 14, the 96x96 network's 4x4 s2 3->40 layer (b32) 7.1 -> 4.8 (4.0 -> 3.8),
# 4x4x4 s2 32->16 at 8^3 (b2) 2.6 -> 1.5, 1-D k16 s8 64->32 on 1000 (b8) 11.7 -> 6.2; 32
# groups of 4 (k4 s2 at 16x16, b16; one tap of all groups a product) 20 -> 8 (10.6 ->
# 7.3), 8 groups of 16 18 -> 9 (10.2 -> 6.2). Not where the samples-last layout serves
# one group: 3x3 s2 64->128 at 7x7 (b32) 4.0 -> 3.7 but (2.7 -> 3.0).
PHASE_MIN_ENTRIES = 96 << 10


def _phases_route(g_shape, w_shape, padded_sizes, strides, dilations, groups, itemsize):
    """Whether a strided input gradient on the GEMM side runs on the phase planes."""
    kernel = tuple(w_shape[2:])
    og, cg = w_shape[0] // groups, w_shape[1]
    if (
        _settings["layout"] != "auto"
        or all(s == 1 for s in strides)
        or cg == 1
        or g_shape[0] < max(4, par.get_num_threads())  # (its threads split samples: b1
        # on two threads ran on one, where col2im's GEMM takes both; b2 lost 20 %)
        or any(len({k * d % s for k in range(kk)}) < s  # (a phase plane no tap reaches:
               for kk, s, d in zip(kernel, strides, dilations, strict=True))  # fmt: skip
    ):  # its zeros and interleaving cost more than col2im's few adds, e.g. 1x1 s2)
        return False
    n, out = g_shape[0], g_shape[2:]
    q = [-(-p // s) for p, s in zip(padded_sizes, strides, strict=True)]
    length = out[0] * math.prod(q[1:])
    taps = math.prod(kernel)
    plane, phases = math.prod(q), math.prod(strides)
    nb = _phase_block(n, taps, cg * groups, plane, itemsize)
    if (
        cg * groups * taps * (length if nb == 1 else nb * plane) < PHASE_MIN_ENTRIES
        or 4 * og > n * length  # (reordering a large weight to tap-major rows: a quarter
        # of the rows' cost at most; 1024->512 4x4 at 4x4, b1, was 2.2x slower)
        or (groups == 1 and _use_samples_last("input_grad", n, out))  # (a tie at best)
    ):
        return False
    block = _wide_tap_block(taps, cg * groups * nb * plane * itemsize)
    per_thread = (groups * og + (block + phases) * cg * groups) * nb * plane * itemsize
    return per_thread <= _settings["scratch_bytes"] // par.get_num_threads()


def _phase_block(n: int, taps: int, c: int, plane: int, itemsize: int) -> int:
    """How many samples the phase planes take a block (see PHASE_BLOCK_BYTES): no more
    than a thread's share of the batch."""
    share = -(-n // max(1, min(n, par.get_num_threads())))
    return max(1, min(share, PHASE_BLOCK_BYTES // (taps * c * plane * itemsize)))


# The phase planes take samples in blocks whose rows for all taps fit PHASE_BLOCK_BYTES:
# one GEMM and one flat add a tap for the block, so that two threads' calls stay long (a
# sample at a time, the 96x96 network's first layer's dx ran no faster on two threads
# than on one: NumPy's calls of a few microseconds queue for the GIL).
PHASE_BLOCK_BYTES = 2**21


def correlate_transpose_phases(g, w, padded_sizes, strides, dilations, groups) -> np.ndarray:
    """gxp (N, C, *padded_sizes) of a strided conv on the phase planes (``_PhaseGrid``), a
    block of samples at a time: dcols = w^T g per group (g laid on the planes' grid, the
    taps' rows a block at a time while they are in the cache), each tap's rows of every
    group added at its shift onto its phase plane (one add over the groups' runs), the
    planes interleaved into gxp. col2im's strided adds (rows of out_w entries, every
    other entry written) took 2-3x as long as these flat ones."""
    n, c, og, kernel, out_sizes, dtype, wt = _transpose_operands(g, w, groups)
    cg = c // groups
    taps = math.prod(kernel)
    itemsize = np.dtype(dtype).itemsize
    grid = _PhaseGrid(padded_sizes, kernel, strides, dilations, out_sizes)
    plane, length = grid.plane, grid.length
    wt = _tap_major_weights(w, groups, dtype)  # (G, K*Cg, Og): rows tap-major
    gx = np.empty((n, c) + tuple(padded_sizes), dtype=dtype)
    nb = _phase_block(n, taps, c, plane, itemsize)
    # one sample: its grid rows past out[0] hold only zeros, left out of the GEMM
    cols = length if nb == 1 else nb * plane
    size = cg * nb * plane  # one group's run of a tap
    block = _wide_tap_block(taps, c * nb * plane * itemsize)
    zero_row = (slice(None), slice(None), slice(None)) + grid.crop

    def run(s):  # samples s, each thread with buffers of its own
        wide = np.zeros((groups, og, nb) + grid.q_sizes, dtype=dtype)  # zero off the windows
        flat_g = wide.reshape(groups, og, nb * plane)[:, :, :cols]
        dcols = np.zeros((groups, block, cg, nb * plane), dtype=dtype)  # (past cols: never
        sums = np.empty((grid.phases, groups, size), dtype=dtype)  # written)

        for j0 in range(s.start, s.stop, nb):
            j1 = min(s.stop, j0 + nb)
            if j1 - j0 < nb:  # (a short last block: its other samples' g zeroed)
                wide[:, :, j1 - j0 :] = 0
            np.copyto(wide[zero_row][:, :, : j1 - j0],
                      g[j0:j1].reshape((j1 - j0, groups, og) + tuple(out_sizes))
                      .transpose((1, 2, 0) + tuple(range(3, 3 + len(kernel)))))  # fmt: skip
            started = [False] * grid.phases
            for t0 in range(0, taps, block):
                t1 = min(taps, t0 + block)
                rows = dcols[:, : t1 - t0].reshape(groups, (t1 - t0) * cg, nb * plane)
                np.matmul(wt[:, t0 * cg : t1 * cg], flat_g, out=rows[:, :, :cols])
                for i in range(t0, t1):
                    src = dcols[:, i - t0].reshape(groups, size)  # every group's run
                    r, off = grid.tap_phase[i], grid.offsets[i]
                    if not started[r]:
                        started[r] = True
                        if off == 0:  # the whole run, zeros past cols included
                            np.copyto(sums[r], src)
                            continue
                        sums[r] = 0
                    sums[r, :, off:] += src[:, : size - off]
            for r in range(grid.phases):
                if not started[r]:  # (a phase no tap reaches)
                    sums[r] = 0
            planes = sums.reshape(grid.phases, c, nb, plane).transpose(0, 2, 1, 3)
            grid.interleave(planes[:, : j1 - j0], gx[j0:j1])

    work = n * c * taps * length * 4 if par.owns_blas() else 0
    par.for_slices(n, run, work)
    return gx


def correlate_transpose_cropped(g, w, input_size, pads, strides, dilations, groups, cache=None):
    """gx (N, C, *input_size): ``correlate_transpose`` for an input padded by ``pads``, with
    the padding cropped off (the depthwise band route, the full correlation and the wide
    grid never make it)."""
    c = w.shape[1] * groups
    dtype = np.result_type(g.dtype, w.dtype)
    x_shape = (g.shape[0], c) + tuple(input_size)
    itemsize = np.dtype(dtype).itemsize
    if _compiled_route(x_shape, w.shape, pads, strides, dilations, groups, dtype):
        return _compiled.input_grad(g, w, c, tuple(input_size), pads, strides, dilations, dtype)
    if _depthwise_plane_route(x_shape, w.shape, pads, strides, dilations, groups, itemsize) and (
        all_finite(g)
    ):
        return correlate_transpose_depthwise_plane(
            g, w, tuple(input_size), strides, dilations, pads, c, dtype
        )
    if (
        _depthwise_channel_route(x_shape, w.shape, pads, strides, dilations, groups,
                                 "input_grad", itemsize)  # fmt: skip
        and not zero_tap_meets_nonfinite(w, g)
        and all_finite(w)  # (it correlates g's zero padding: 0 * inf would be NaN)
    ):
        return correlate_transpose_depthwise_channels(
            g.astype(dtype, copy=False), w, tuple(input_size), strides, dilations, pads, c, dtype
        )
    if _depthwise_band_route(x_shape, w.shape, pads, strides, dilations, groups, dtype) and (
        all_finite(g)  # (as in correlate_padded)
    ):
        return correlate_transpose_depthwise_band(
            g, w, tuple(input_size), strides, dilations, pads, c, w.shape[0] // c, dtype
        )
    padded = padded_sizes(input_size, pads)

    def gemm() -> bool:  # (the cost estimate only where a GEMM-only route could apply)
        n, o, kernel = g.shape[0], w.shape[0], w.shape[2:]
        return "gemm" == choose_algorithm(n, c, o, groups, padded, kernel, g.shape[2:], True)

    # The routes below correlate g padded with zeros: an inf or NaN in w would meet those
    # zeros (0 * inf = NaN) at inputs whose gradient has no such term; col2im, last, never
    # makes those products.
    if all_finite(w):
        if w.shape[1] >= w.shape[0] // groups and _thin_input_grad(
            g.shape, w.shape, pads, strides, dilations, groups, itemsize
        ):  # (as many inputs as outputs or more: before the wide grid)
            return correlate_transpose_full(g, w, pads, dilations, groups)
        if _taps_input_grad(g.shape, w.shape, pads, strides, dilations, groups, itemsize):
            return correlate_transpose_taps(g, w, input_size, pads, dilations)
        wide = _input_grad_on_wide_grid(
            w.shape, input_size, pads, strides, dilations, groups, itemsize
        )
        if wide and gemm():
            return correlate_transpose_wide(g, w, input_size, pads, dilations, groups)
        if _input_grad_by_correlation(w.shape, input_size, strides, groups) and gemm():
            return correlate_transpose_full(g, w, pads, dilations, groups)
    gxp = correlate_transpose(g, w, padded, strides, dilations, groups, cache)
    return np.ascontiguousarray(pad_spatial(gxp, negate(pads)))


def correlate_transpose(g, w, padded_sizes, strides, dilations, groups, cache=None) -> np.ndarray:
    """gxp (N, C, *padded_sizes), the adjoint of ``correlate`` in its input (``cache``: the
    forward's ``Spectra``, used when the FFT route is taken)."""
    kernel = w.shape[2:]
    algo = choose_algorithm(
        g.shape[0], w.shape[1] * groups, w.shape[0], groups, padded_sizes, kernel, g.shape[2:],
        backward=True,
    )
    if _fft_declined(algo, g, w):
        algo = "gemm"
    if algo == "gemm" and groups > 1 and w.shape[1] == 1:
        return correlate_transpose_depthwise(g, w, padded_sizes, strides, dilations, groups)
    if algo == "fft":
        spectra = cache if isinstance(cache, Spectra) else None
        return correlate_transpose_fft(g, w, padded_sizes, strides, dilations, groups, spectra)
    if _rows_route((g.shape[0], w.shape[1] * groups) + tuple(padded_sizes), w.shape, strides,
                   dilations, groups, "input_grad", g.itemsize):  # fmt: skip
        return correlate_transpose_rows(g, w, padded_sizes, strides, dilations)
    if _phases_route(g.shape, w.shape, padded_sizes, strides, dilations, groups, g.itemsize) and (
        all_finite(w)  # (its products include g's zeros off the windows: 0 * inf is NaN)
    ):
        return correlate_transpose_phases(g, w, padded_sizes, strides, dilations, groups)
    if _use_samples_last("input_grad", g.shape[0], g.shape[2:]):
        return correlate_transpose_samples_last(g, w, padded_sizes, strides, dilations, groups)
    return correlate_transpose_gemm(g, w, padded_sizes, strides, dilations, groups)


def correlate_weight_grad(xp, g, kernel, strides, dilations, groups, cols=None) -> np.ndarray:
    """gw (O, Cg, *K), the adjoint of ``correlate`` in its weight (``cols``: what the
    forward kept, its im2col matrix or its ``Spectra``, reused when given)."""
    if isinstance(cols, Spectra):
        if not _fft_declined("fft", g):
            return correlate_weight_grad_fft(xp, g, kernel, strides, dilations, groups, cols)
        cols = None
    if isinstance(cols, SamplesLastCols):  # (with the forward's columns, xp is not read)
        return correlate_weight_grad_samples_last(xp, g, kernel, strides, dilations, groups, cols)
    if isinstance(cols, RowWindows):  # (nor with its row windows)
        return correlate_weight_grad_rows(xp, g, kernel, strides, dilations, cols)
    if cols is not None:
        return correlate_weight_grad_gemm(xp, g, kernel, strides, dilations, groups, cols)
    algo = choose_algorithm(
        xp.shape[0], xp.shape[1], g.shape[1], groups, xp.shape[2:], kernel, g.shape[2:],
        backward=True,
    )
    if _fft_declined(algo, xp, g):
        algo = "gemm"
    if algo == "gemm" and groups > 1 and xp.shape[1] == groups:
        return correlate_weight_grad_depthwise(_array(xp), g, kernel, strides, dilations, groups)
    if algo == "fft":
        return correlate_weight_grad_fft(_array(xp), g, kernel, strides, dilations, groups)
    if _use_samples_last("weight_grad", xp.shape[0], g.shape[2:]):
        xp = _array(xp)
        return correlate_weight_grad_samples_last(xp, g, kernel, strides, dilations, groups)
    return correlate_weight_grad_gemm(xp, g, kernel, strides, dilations, groups)
