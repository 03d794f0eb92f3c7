"""Convolution in any number of spatial dims: conv, transposed conv, and their VJPs.

One geometry (strides s, pads (before, after), dilations d, groups G) defines
three linear maps, and each one's VJP is made of the other two:

    Conv            y  = conv(x, w)            gx = ConvTranspose(g, w)  gw = ConvWeightGrad(x, g)
    ConvTranspose   x' = conv_transpose(y, w)  gy = Conv(g, w)           gw = ConvWeightGrad(g, y)
    ConvWeightGrad  w' = weight_grad(x, y)     gx = ConvTranspose(y, g)  gy = Conv(x, g)

so every order of derivative works (``create_graph=True``). The NumPy work
lives in ``tinygrad_np.convmath`` (im2col/GEMM or FFT, chosen by a cost
estimate; force one with ``F.conv_algorithm("gemm" | "fft")``, and the GEMM route's
im2col layout with ``F.conv_layout("batch" | "samples_last")``). Where numba is
installed, depthwise convs run as compiled loops instead (``tinygrad_np/_compiled.py``;
``F.compiled_kernels(False)`` turns them off).

Input gradient, two equal routes. In a plain ``backward`` (nothing recorded)
``Conv.vjp`` calls the fused ``ConvTranspose`` (one GEMM, then col2im: a
strided add per kernel tap; for stride-1 convs with no more outputs than inputs,
the full correlation below as one GEMM, ``convmath.correlate_transpose_full``; for
stride-1 volume convs, col2im as one shift per tap of the flattened padded volume,
``convmath.correlate_transpose_wide``). A depthwise conv whose maps take
convmath's channel-major grids (the compiled kernels off or missing) computes its
input, weight and bias gradients in one pass over g (``Conv._depthwise_backward``,
``convmath.backward_depthwise_channels``).
When the backward pass is itself recorded
(``create_graph=True``) it spells the same math out as visible nodes:

    # The forward read x at o*s + k*d - p_before. To send g back: put s-1
    # zeros between its entries (stride dilation, node "dilate"), pad
    # d*(K-1) - p_before in front and up to x's length behind (node "pad";
    # negative amounts crop), correlate with the flipped kernel at dilation d
    # (node "convNd", stride 1). Rows no window reached get zero gradient.

Both routes give the same numbers up to float rounding (tests/test_conv.py).
"""

from __future__ import annotations

import functools
import math

import numpy as np

from tinygrad_np import _parallel as par
from tinygrad_np import convmath as cm
from tinygrad_np.autograd import Op, bilinear_reads, is_grad_enabled
from tinygrad_np.ops.elementwise import const
from tinygrad_np.ops.movement import Getitem
from tinygrad_np.tensor import Tensor

conv_algorithm = cm.conv_algorithm
conv_layout = cm.conv_layout
scratch_budget = cm.scratch_budget
compiled_kernels = cm.compiled_kernels
has_compiled_kernels = cm.has_compiled_kernels


def _geometry(args: dict) -> dict:
    """The keywords that define a conv geometry, taken from an op's args."""
    return {k: args[k] for k in ("stride", "padding", "dilation", "groups")}


class _Cols:
    """What the forward kept for its backward maps (short repr for viz): the im2col matrix
    (GEMM route), a ``convmath.RowWindows`` (row windows) or a ``convmath.Spectra`` (FFT
    route), or None."""

    __slots__ = ("cols",)

    def __init__(self, cols):
        self.cols = cols

    def __repr__(self) -> str:
        if isinstance(self.cols, cm.Spectra):
            return "FFT cache"
        if isinstance(self.cols, cm.RowWindows):
            return "row-window cache"
        return "im2col cache" if self.cols is not None else "None"


def _with_bias_grad(op: Op, g: Tensor, g_input, g_weight) -> tuple:
    """The VJP tuple of a conv-like op: add the bias gradient (g summed over batch and
    space) when the op has a bias input."""
    if len(op.inputs) == 2:
        return g_input, g_weight
    if not op.needs_grad[2]:
        return g_input, g_weight, None
    if is_grad_enabled():  # recorded: a Sum node
        return g_input, g_weight, g.sum((0,) + tuple(range(2, g.ndim)))
    # not recorded: the space sums as one matrix-vector product (3-7x faster than
    # np.sum over axes (0, 2, 3)), then the batch
    n, c = g.shape[:2]
    if g.size == 0:  # (an empty batch or output: nothing to add up)
        return g_input, g_weight, const(np.zeros(c, dtype=g.dtype))
    gd = np.ascontiguousarray(g.data).reshape(n * c, -1)
    per_map = gd @ np.ones(gd.shape[1], dtype=gd.dtype)
    return g_input, g_weight, const(per_map.reshape(n, c).sum(0))


# the backward maps of a conv run concurrently below this many multiply-adds each
# (above it, each map splits its own work over the threads)
# (measured: LeNet-5's step at batch 64 9.9 -> 9.3 ms; the 96x96 step unchanged)
_CONCURRENT_MAPS_MAX = 1 << 26
# and not below this many: handing a map to a pool thread costs more than it saves (ms,
# forward and backward, two threads: a 3x3 1->2 conv at 8x8 0.52 -> 0.19, 5x5 6->16 at
# 14x14 (b4, 960K multiply-adds) 0.61-0.66 -> 0.44-0.46; at 3.8M the same either way)
_CONCURRENT_MAPS_MIN = 1 << 20


def maps_side_by_side(macs: int, groups: int, w_shape) -> bool:
    """Whether a conv's two backward maps of ``macs`` multiply-adds each run one on each
    of two threads (``par.both``), each then on one thread (explain.py asks the same):
    from _CONCURRENT_MAPS_MIN to _CONCURRENT_MAPS_MAX, with threads to spare, not for a
    depthwise conv (each of its maps splits its own loops better)."""
    return (
        par.get_num_threads() > 1
        and _CONCURRENT_MAPS_MIN <= macs < _CONCURRENT_MAPS_MAX
        and not (groups > 1 and w_shape[1] == 1)
    )


def _bias_shape(o: int, nd: int) -> tuple[int, ...]:
    return (o,) + (1,) * nd


class Conv(Op):
    """y[n,o,i] = sum_{c in o's group, k} x_pad[n,c,i*s + k*d] w[o,c,k] (+ b[o]).

    VJP: gx = conv_transpose(g, w) (== dilate g by s, pad, correlate with the
    flipped kernel); gw = correlation of x_pad with the s-dilated g, summed
    over the batch, per group; gb = g summed over batch and space.
    """

    inplace_reads = staticmethod(bilinear_reads)

    def forward(
        self, x, w, b=None, *, stride, padding, dilation, groups, kernel_size, _keep=True
    ):
        nd = x.ndim - 2
        self.name = f"conv{nd}d"
        # _keep: whether to keep the im2col matrix or spectra for the backward (False when
        # the weight needs no gradient: a frozen layer would hold them for nothing)
        out = cm.correlate_padded(x, w, padding, stride, dilation, groups, keep_cols=_keep, bias=b)
        y, self.cols = out if _keep else (out, None)
        return y

    def vjp(self, g):
        x, w = self.inputs[0], self.inputs[1]
        geo = _geometry(self.args)
        fused = self._depthwise_backward(g)
        if fused is not None:
            return fused
        # what the forward kept (im2col matrix or spectra) saves redoing it; not when
        # recording: a recorded op must not depend on a cache of x's values
        kept = None if is_grad_enabled() else self.cols
        if isinstance(kept, cm.Spectra):
            kept = kept.for_backward()  # g's spectrum, shared by the two maps below
        cache = None if kept is None else _Cols(kept)

        def input_grad():
            return conv_input_grad(g, w, x.shape[2:], **geo, _cache=cache)

        def weight_grad():
            return ConvWeightGrad.apply(x, g, kernel_size=tuple(w.shape[2:]), _cols=cache, **geo)

        if (
            all(self.needs_grad[:2])
            and not is_grad_enabled()
            and not isinstance(kept, cm.Spectra)
            and maps_side_by_side(g.size * math.prod(w.shape[1:]), self.args["groups"], w.shape)
        ):  # two small maps: one each on two threads
            gx, gw = par.both(input_grad, weight_grad)
        else:
            gx = input_grad() if self.needs_grad[0] else None
            gw = weight_grad() if self.needs_grad[1] else None
        return _with_bias_grad(self, g, gx, gw)

    def _depthwise_backward(self, g):
        """The VJP of a depthwise conv whose maps take the channel-major grids,
        in one pass over g (``convmath.backward_depthwise_channels``); None where that does
        not apply (recorded backward, other convs, other routes)."""
        x, w = self.inputs[0], self.inputs[1]
        a = self.args
        if is_grad_enabled() or a["groups"] == 1 or w.shape[1] != 1:
            return None
        dtype = np.result_type(x.dtype, w.dtype)
        route = functools.partial(
            cm._depthwise_channel_route, x.shape, w.shape, a["padding"], a["stride"],
            a["dilation"], a["groups"], itemsize=dtype.itemsize,
        )  # fmt: skip
        need = list(self.needs_grad) + [False] * (3 - len(self.needs_grad))
        if not (need[0] or need[1]):
            return None  # (the bias alone: one matrix-vector product, below)
        if cm._compiled_route(x.shape, w.shape, a["padding"], a["stride"], a["dilation"],
                              a["groups"], dtype):  # fmt: skip
            return None  # (compiled loops: each map on its own, below)
        if cm._depthwise_plane_route(x.shape, w.shape, a["padding"], a["stride"],
                                     a["dilation"], a["groups"], dtype.itemsize):  # fmt: skip
            return None  # (small planes: whole-plane products, below)
        if (need[0] and not route("input_grad")) or (need[1] and not route("weight_grad")):
            return None
        if need[0] and (
            cm.zero_tap_meets_nonfinite(w.data, g.data) or not cm.all_finite(w.data)
        ):  # (the axpy would skip 0 * inf; an inf tap would meet g's zero padding)
            return None  # (the separate maps, below)
        xd, gd = x.data.astype(dtype, copy=False), g.data.astype(dtype, copy=False)
        gx, gw, gb = cm.backward_depthwise_channels(
            xd, gd, w.data, a["stride"], a["dilation"], a["padding"], need, dtype
        )
        if gw is not None and not np.isfinite(gw).all():  # an inf in x read where no window
            # is (times 0), or one in g: redone where every product is one a window makes
            gw = cm.correlate_weight_grad_padded(
                xd, gd, w.shape[2:], a["padding"], a["stride"], a["dilation"], a["groups"]
            )
        grads = [None if t is None else const(t) for t in (gx, gw, gb)]
        return tuple(grads[: len(self.inputs)])


class ConvTranspose(Op):
    """x'[n,c,j] = sum_{o,i,k: i*s + k*d - p_before = j} y[n,o,i] w[o,c,k] (+ b[c]).

    The adjoint of ``Conv`` in its input for a conv whose input has spatial
    size ``input_size``; rows no window reaches are 0.
    VJP: gy = conv(g, w); gw = conv_weight_grad(g, y); gb = g summed.
    """

    inplace_reads = staticmethod(bilinear_reads)
    viz_hidden = ("input_size",)  # (its output's size: the node shows the conv's own args)

    def forward(
        self, y, w, b=None, *, stride, padding, dilation, groups, input_size, _cache=None, **shown
    ):
        nd = y.ndim - 2
        self.name = f"conv_transpose{nd}d"
        cache = None if _cache is None else _cache.cols
        x = cm.correlate_transpose_cropped(
            y, w, input_size, padding, stride, dilation, groups, cache
        )  # (N, C, *input_size): the padding cropped off
        if b is not None:
            x += b.reshape(_bias_shape(x.shape[1], nd))
        return x

    def vjp(self, g):
        y, w = self.inputs[0], self.inputs[1]
        geo = _geometry(self.args)
        kernel = tuple(w.shape[2:])
        gy = Conv.apply(g, w, kernel_size=kernel, **geo) if self.needs_grad[0] else None
        gw = ConvWeightGrad.apply(g, y, kernel_size=kernel, **geo) if self.needs_grad[1] else None
        return _with_bias_grad(self, g, gy, gw)


class ConvWeightGrad(Op):
    """w'[o,c,k] = sum_{n,i} x_pad[n,c,i*s + k*d] y[n,o,i], per group.

    Bilinear in (x, y). VJP for an upstream h shaped like the weight:
    gx = conv_transpose(y, h), gy = conv(x, h).
    """

    inplace_reads = staticmethod(bilinear_reads)

    def forward(self, x, y, *, stride, padding, dilation, groups, kernel_size, _cols=None):
        self.name = f"conv{x.ndim - 2}d_weight_grad"
        cols = None if _cols is None else _cols.cols
        return cm.correlate_weight_grad_padded(
            x, y, kernel_size, padding, stride, dilation, groups, cols
        )

    def vjp(self, h):
        x, y = self.inputs
        geo = _geometry(self.args)
        gx = conv_input_grad(y, h, x.shape[2:], **geo) if self.needs_grad[0] else None
        kernel = tuple(h.shape[2:])
        gy = Conv.apply(x, h, kernel_size=kernel, **geo) if self.needs_grad[1] else None
        return gx, gy


class Dilate(Op):
    """y = x with s-1 zeros between neighbours along each spatial dim.   VJP: gx = g[..., ::s]."""

    saves_inputs = False

    def forward(self, x, *, stride):
        return cm.dilate(x, stride)

    def vjp(self, g):
        key = (Ellipsis,) + tuple(slice(None, None, s) for s in self.args["stride"])
        return (Getitem.apply(g, key=key),)


class FlipKernel(Op):
    """The kernel of the transposed correlation: per group, swap the in/out channel axes and
    reverse every spatial axis, (O, C/G, *K) -> (C, O/G, *K).

    A permutation of the entries that is its own inverse, so VJP: gw = flip_kernel(g).
    """

    saves_inputs = False

    name = "flip_kernel"

    def forward(self, w, *, groups):
        o, cg = w.shape[:2]
        kernel = w.shape[2:]
        nd = len(kernel)
        wt = w.reshape((groups, o // groups, cg) + kernel)  # (G, Og, Cg, *K)
        wt = wt.transpose((0, 2, 1) + tuple(range(3, 3 + nd)))  # (G, Cg, Og, *K)
        wt = wt.reshape((groups * cg, o // groups) + kernel)  # (C, Og, *K)
        return np.ascontiguousarray(wt[(slice(None), slice(None)) + (slice(None, None, -1),) * nd])

    def vjp(self, g):
        return (FlipKernel.apply(g, groups=self.args["groups"]),)


def flip_kernel(w: Tensor, groups: int) -> Tensor:
    """(O, C/G, *K) -> (C, O/G, *K): channels swapped per group, spatial axes reversed."""
    return FlipKernel.apply(w, groups=groups)


def conv_input_grad(
    g: Tensor, w: Tensor, input_size, stride, padding, dilation, groups, _cache=None
):
    """gx (N, C, *input_size) for upstream g (N, O, *out): the transposed convolution.

    Not recording: the fused ``ConvTranspose`` (``_cache``: what the forward kept).
    Recording (create_graph=True): dilate -> pad -> conv with the flipped kernel, each a
    visible node.
    """
    if not is_grad_enabled():
        return ConvTranspose.apply(
            g,
            w,
            stride=stride,
            padding=padding,
            dilation=dilation,
            groups=groups,
            input_size=tuple(input_size),
            _cache=_cache,
        )
    kernel = tuple(w.shape[2:])
    nd = len(kernel)
    gd = Dilate.apply(g, stride=stride) if any(s > 1 for s in stride) else g
    pads, keep = [(0, 0), (0, 0)], [slice(None), slice(None)]
    for n, k, d, (pb, _), m in zip(
        input_size, kernel, dilation, padding, gd.shape[2:], strict=True
    ):
        # gd's entry i goes to i + front of a run of n + d*(K-1); those before or past it
        # are cropped first (padding beyond what the strided windows reach can crop more
        # than gd holds: the pad alone cannot), then zeros fill the rest
        front, length = d * (k - 1) - pb, n + d * (k - 1)
        start = min(max(0, -front), m)
        stop = max(start, min(m, length - front))
        f = min(max(front, 0), length)
        keep.append(slice(start, stop))
        pads.append((f, length - f - (stop - start)))
    cropped = [k.start or (k.stop is not None and k.stop < m)
               for k, m in zip(keep, gd.shape, strict=True)]
    if any(cropped):
        gd = gd[tuple(keep)]
    gp = gd.pad(pads)
    return Conv.apply(
        gp,
        flip_kernel(w, groups),
        stride=(1,) * nd,
        padding=((0, 0),) * nd,
        dilation=dilation,
        groups=groups,
        kernel_size=kernel,
    )


# ----------------------------------------------------------------------------- checks


def _check_common(what, input, weight, bias, nd, weight_in_axis) -> bool:
    """Validate ranks and dtypes; returns whether the input is batched."""
    if not isinstance(input, Tensor) or not isinstance(weight, Tensor):
        raise TypeError(f"{what}: input and weight must be Tensors")
    if input.ndim not in (nd + 1, nd + 2):
        raise ValueError(
            f"{what}: input must be {nd + 1}-D (C, *spatial) or {nd + 2}-D (N, C, *spatial), "
            f"got shape {tuple(input.shape)}"
        )
    if weight.ndim != nd + 2:
        raise ValueError(
            f"{what}: weight must be {nd + 2}-D {weight_in_axis}, got shape {tuple(weight.shape)}"
        )
    if input.dtype != weight.dtype:
        raise ValueError(
            f"{what}: input dtype {input.dtype} differs from weight dtype {weight.dtype}"
        )
    if 0 in weight.shape:  # (PyTorch rejects these too; NumPy's reshapes would fail later)
        raise ValueError(
            f"{what}: weight of shape {tuple(weight.shape)} has an empty dim: kernel sizes "
            "and channel counts must be positive"
        )
    if input.shape[-nd - 1] == 0 or 0 in input.shape[-nd:]:
        raise ValueError(
            f"{what}: input of shape {tuple(input.shape)} has no channels or an empty "
            "spatial dim (an empty batch is fine)"
        )
    if bias is not None:
        if not isinstance(bias, Tensor):
            raise TypeError(f"{what}: bias must be a Tensor or None")
        if bias.dtype != input.dtype:
            raise ValueError(
                f"{what}: bias dtype {bias.dtype} differs from input dtype {input.dtype}"
            )
    return input.ndim == nd + 2


def _check_groups(what, groups, in_channels, out_channels, c_in) -> None:
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups <= 0:
        raise ValueError(f"{what}: groups must be a positive int, got {groups!r}")
    if in_channels % groups:
        raise ValueError(
            f"{what}: groups={groups} does not divide the input channels ({in_channels})"
        )
    if out_channels % groups:
        raise ValueError(
            f"{what}: groups={groups} does not divide the output channels ({out_channels})"
        )
    del c_in


def _check_fits(what, sizes, pads, kernel, dilations) -> None:
    for i, (n, (pb, pa), k, d) in enumerate(zip(sizes, pads, kernel, dilations, strict=True)):
        if n + pb + pa < cm.dilated_size(k, d):
            raise ValueError(
                f"{what}: kernel size {k} (dilated extent {cm.dilated_size(k, d)}) is larger "
                f"than the padded input {n + pb + pa} (size {n} + padding ({pb}, {pa})) in "
                f"spatial dim {i}"
            )


# ----------------------------------------------------------------------------- functional


def _conv(nd, input, weight, bias, stride, padding, dilation, groups) -> Tensor:
    what = f"conv{nd}d"
    batched = _check_common(what, input, weight, bias, nd, "(out_channels, in_channels/groups, *K)")
    x = input if batched else input.unsqueeze(0)
    strides = cm.expand_arg(stride, nd, "stride", what)
    dilations = cm.expand_arg(dilation, nd, "dilation", what)
    cm.check_positive(strides, "stride", what)
    cm.check_positive(dilations, "dilation", what)
    o, cg = weight.shape[:2]
    c = x.shape[1]
    _check_groups(what, groups, c, o, c)
    if c != cg * groups:
        raise ValueError(
            f"{what}: input has {c} channels but weight of shape {tuple(weight.shape)} with "
            f"groups={groups} expects {cg * groups} (weight.shape[1] * groups)"
        )
    if bias is not None and bias.shape != (o,):
        raise ValueError(f"{what}: bias must have shape ({o},), got {tuple(bias.shape)}")
    kernel = tuple(weight.shape[2:])
    pads = cm.resolve_padding(padding, x.shape[2:], kernel, strides, dilations, what)
    _check_fits(what, x.shape[2:], pads, kernel, dilations)
    ins = (x, weight) if bias is None else (x, weight, bias)
    y = Conv.apply(
        *ins,
        stride=strides,
        padding=pads,
        dilation=dilations,
        groups=int(groups),
        kernel_size=kernel,
        _keep=is_grad_enabled() and weight.requires_grad,
    )
    return y if batched else y.squeeze(0)


def _conv_transpose(
    nd, input, weight, bias, stride, padding, output_padding, groups, dilation
) -> Tensor:
    what = f"conv_transpose{nd}d"
    batched = _check_common(what, input, weight, bias, nd, "(in_channels, out_channels/groups, *K)")
    y = input if batched else input.unsqueeze(0)
    strides = cm.expand_arg(stride, nd, "stride", what)
    dilations = cm.expand_arg(dilation, nd, "dilation", what)
    cm.check_positive(strides, "stride", what)
    cm.check_positive(dilations, "dilation", what)
    pad = cm.expand_arg(padding, nd, "padding", what)
    out_pad = cm.expand_arg(output_padding, nd, "output_padding", what)
    cm.check_transpose_padding(pad, out_pad, strides, dilations, padding, output_padding, what)
    cin, og = weight.shape[:2]
    c = y.shape[1]
    _check_groups(what, groups, c, og * groups, c)
    if c != cin:
        raise ValueError(
            f"{what}: input has {c} channels but weight of shape {tuple(weight.shape)} "
            f"expects {cin} (weight.shape[0])"
        )
    if bias is not None and bias.shape != (og * groups,):
        raise ValueError(f"{what}: bias must have shape ({og * groups},), got {tuple(bias.shape)}")
    kernel = tuple(weight.shape[2:])
    sizes, pads = [], []
    for n, k, s, d, p, op_ in zip(
        y.shape[2:], kernel, strides, dilations, pad, out_pad, strict=True
    ):
        m = (n - 1) * s - 2 * p + cm.dilated_size(k, d) + op_
        if m <= 0:
            raise ValueError(
                f"{what}: the output size would be {m} (input {n}, kernel {k}, stride {s}, "
                f"padding {p}, dilation {d}): the kernel is too small for this padding"
            )
        # the conv this transposes reads (m + 2p - d(K-1) - 1) // s + 1 windows; when
        # output_padding >= s that is one more than n, so the last after-pad rows are cut
        extra = max(0, op_ - (s - 1))
        sizes.append(m)
        pads.append((p, p - extra))
    ins = (y, weight) if bias is None else (y, weight, bias)
    x = ConvTranspose.apply(  # (in the order a graph's node lists them, six at most)
        *ins,
        kernel_size=kernel,
        stride=strides,
        padding=tuple(pads),
        output_padding=out_pad,
        dilation=dilations,
        groups=int(groups),
        input_size=tuple(sizes),
    )
    return x if batched else x.squeeze(0)


def conv1d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """1-D convolution (cross-correlation) over (N, C, L); see ``conv2d``."""
    return _conv(1, input, weight, bias, stride, padding, dilation, groups)


def conv2d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """2-D convolution (cross-correlation), PyTorch's ``F.conv2d``.

    Parameters
    ----------
    input : Tensor (N, C, H, W) or (C, H, W)
    weight : Tensor (O, C // groups, kH, kW)
    bias : Tensor (O,) or None
    stride, dilation : int or (sH, sW)
    padding : int, (pH, pW), "valid", "same" (TensorFlow's SAME when stride > 1:
        output ceil(n / s), the odd pixel after) or ((top, bottom), (left, right))
    groups : int dividing C and O (groups == C: depthwise)

    Returns (N, O, Ho, Wo) with Ho = floor((H + top + bottom - dH*(kH-1) - 1) / sH) + 1.

    VJP: gx = conv_transpose(g, w) (g dilated by the stride, padded, correlated
    with the flipped kernel; rows no window read get 0); gw[o, c] = sum over the
    batch of x_pad[:, c] correlated with the stride-dilated g[:, o]; gb = g summed
    over batch and space.

    >>> import tinygrad_np as tg
    >>> x = tg.ones(1, 1, 4, 4)
    >>> conv2d(x, tg.ones(1, 1, 3, 3), padding="same").shape
    (1, 1, 4, 4)
    """
    return _conv(2, input, weight, bias, stride, padding, dilation, groups)


def conv3d(input, weight, bias=None, stride=1, padding=0, dilation=1, groups=1) -> Tensor:
    """3-D convolution (cross-correlation) over (N, C, D, H, W); see ``conv2d``."""
    return _conv(3, input, weight, bias, stride, padding, dilation, groups)


def conv_transpose1d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
) -> Tensor:
    """1-D transposed convolution; see ``conv_transpose2d``."""
    return _conv_transpose(
        1, input, weight, bias, stride, padding, output_padding, groups, dilation
    )


def conv_transpose2d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
) -> Tensor:
    """2-D transposed convolution ("deconvolution"), PyTorch's ``F.conv_transpose2d``.

    The gradient of ``conv2d`` with respect to its input, used as a layer.
    ``weight`` is (C_in, C_out // groups, kH, kW); the output size per dim is
    (n - 1) * s - 2 * padding + d * (K - 1) + output_padding + 1.

    VJP: g_input = conv2d(g, w) with the same stride/padding/dilation/groups;
    g_weight = the conv weight gradient with input and upstream swapped.

    >>> import tinygrad_np as tg
    >>> conv_transpose2d(tg.ones(1, 2, 3, 3), tg.ones(2, 4, 2, 2), stride=2).shape
    (1, 4, 6, 6)
    """
    return _conv_transpose(
        2, input, weight, bias, stride, padding, output_padding, groups, dilation
    )


def conv_transpose3d(
    input, weight, bias=None, stride=1, padding=0, output_padding=0, groups=1, dilation=1
) -> Tensor:
    """3-D transposed convolution; see ``conv_transpose2d``."""
    return _conv_transpose(
        3, input, weight, bias, stride, padding, output_padding, groups, dilation
    )


def conv_flops(input_shape, weight_shape, output_shape, groups: int = 1) -> int:
    """Multiply-adds times two of one conv forward: 2 N O (C/G) prod(K) prod(out)."""
    n = input_shape[0]
    o, cg = weight_shape[:2]
    return 2 * n * o * cg * math.prod(weight_shape[2:]) * math.prod(output_shape[2:])
