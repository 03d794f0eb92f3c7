"""Arithmetic explainer: the numbers behind a convolution or pooling call, written out.

``explain.conv2d(input_shape, weight_shape, stride=2)`` prints (and returns) the
output-size formula per dimension with the numbers filled in, how ``"same"``
splits its padding, which input rows no window reads (they get zero
gradient), the shapes inside each VJP step, and the scratch memory of the
algorithm the op would choose. All arithmetic comes from ``tinygrad_np.convmath``,
the module the ops themselves use, so the explanation and the op cannot disagree.

>>> from tinygrad_np import explain
>>> e = explain.conv1d((1, 1, 8), (1, 1, 3), stride=2, quiet=True)
>>> e.output_shape
(1, 1, 3)
>>> print(e.lines[3])
  dim 0 (L): floor((8 + 0 + 0 - 1*(3-1) - 1) / 2) + 1 = floor(5 / 2) + 1 = 3
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Sequence

import numpy as np

from tinygrad_np import _parallel as par
from tinygrad_np import convmath as cm

__all__ = [
    "Explanation",
    "avg_pool1d",
    "avg_pool2d",
    "avg_pool3d",
    "conv1d",
    "conv2d",
    "conv3d",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose3d",
    "max_pool1d",
    "max_pool2d",
    "max_pool3d",
    "output_size_lines",
]

_DIM_NAMES = {1: ("L",), 2: ("H", "W"), 3: ("D", "H", "W")}


@dataclasses.dataclass
class Explanation:
    """What ``explain.*`` found. ``str()`` is the full text; ``lines`` the same, split;
    ``output_shape``, ``pads`` (per-dim (before, after)), ``unread`` (per dim, the input
    rows no window reads), ``algorithm`` and ``scratch_bytes`` for conv."""

    op: str
    output_shape: tuple[int, ...]
    lines: list[str]
    pads: tuple[tuple[int, int], ...] = ()
    unread: tuple[tuple[int, ...], ...] = ()
    algorithm: str | None = None
    scratch_bytes: int | None = None

    def __str__(self) -> str:
        return "\n".join(self.lines)

    def __repr__(self) -> str:
        return f"<Explanation of {self.op}: output {self.output_shape}>"


# ----------------------------------------------------------------------------- helpers


def _shape(value, name: str, rank: int | None = None, batch: bool = False) -> tuple[int, ...]:
    """A shape given as a tuple or as 'NxCxHxW' (with ``batch``, its first size may be 0:
    an empty batch, which the ops take)."""
    if isinstance(value, str):
        try:
            value = tuple(int(v) for v in value.lower().split("x"))
        except ValueError as e:
            raise ValueError(f"{name} must look like 128x3x96x96, got {value!r}") from e
    try:
        shape = tuple(int(v) for v in value)
    except TypeError as e:
        raise TypeError(f"{name} must be a shape (a tuple of ints), got {value!r}") from e
    if any(v <= 0 for v in shape[1 if batch else 0 :]) or any(v < 0 for v in shape[:1]):
        raise ValueError(f"{name} must have positive sizes, got {shape}")
    if rank is not None and len(shape) != rank:
        raise ValueError(f"{name} must have {rank} entries, got {len(shape)}: {shape}")
    return shape


def _ranges(idx: Sequence[int]) -> str:
    """[0, 1, 2, 7] -> '0-2, 7'."""
    parts, start = [], None
    idx = list(idx)
    for i, v in enumerate(idx):
        if start is None:
            start = v
        if i + 1 == len(idx) or idx[i + 1] != v + 1:
            parts.append(f"{start}" if start == v else f"{start}-{v}")
            start = None
    return ", ".join(parts)


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def _size_line(i, name, n, k, s, pads, d, ceil_mode=False) -> tuple[str, int]:
    """The output-size formula for one dim with the numbers filled in, and its value."""
    pb, pa = pads
    out = cm.conv_output_size(n, k, s, (pb, pa), d, ceil_mode)
    span = n + pb + pa - cm.dilated_size(k, d)
    rnd = "ceil" if ceil_mode else "floor"
    text = (
        f"  dim {i} ({name}): {rnd}(({n} + {pb} + {pa} - {d}*({k}-1) - 1) / {s}) + 1 = "
        f"{rnd}({span} / {s}) + 1 = "
    )
    plain = (-(-span // s) if ceil_mode else span // s) + 1
    if out <= 0:
        text += f"0 (the dilated kernel, {cm.dilated_size(k, d)}, is longer than the padded "
        text += f"input, {n + pb + pa})"
    elif plain != out:
        text += f"{plain}, minus the last window, which would start in the padding: {out}"
    else:
        text += f"{out}"
    return text, out


def _unread_lines(sizes, kernel, strides, pads, dilations, names) -> tuple[list[str], tuple]:
    lines, unread = [], []
    masks = [cm.read_mask(*a) for a in zip(sizes, kernel, strides, pads, dilations, strict=True)]
    empty = [i for i, mask in enumerate(masks) if not mask.any()]
    if empty:  # every window of one dim lies in its padding: no position is read at all
        i = empty[0]
        lines.append(
            f"  dim {i} ({names[i]}): no window reads any of its {sizes[i]} rows (each lies "
            "in the padding, or its dilation skips them)"
        )
        lines.append("  so no input position is read: the whole input gradient is zero")
        return lines, tuple(tuple(range(n)) for n in sizes)
    for i, (n, k, s, p, d) in enumerate(zip(sizes, kernel, strides, pads, dilations, strict=True)):
        missed = tuple(int(j) for j in np.flatnonzero(~masks[i]))
        unread.append(missed)
        if not missed:
            lines.append(f"  dim {i} ({names[i]}): every one of the {n} rows is read")
            continue
        pb = p[0] if isinstance(p, tuple) else p
        out = cm.conv_output_size(n, k, s, p if isinstance(p, tuple) else (p, p), d)
        reach = (out - 1) * s + d * (k - 1) - pb  # the last row the last window spans
        tail = max(0, n - 1 - reach)
        why = []
        if tail:
            why.append(f"the last {tail} after the last window")
        if len(missed) > tail:
            why.append("gaps between windows (stride larger than the dilated kernel, or "
                       "dilation skipping rows)")  # fmt: skip
        lines.append(
            f"  dim {i} ({names[i]}): rows {_ranges(missed)} of 0-{n - 1} are never read "
            f"({'; '.join(why)}): their gradient is zero"
        )
    return lines, tuple(unread)


def _same_lines(sizes, kernel, strides, dilations, names) -> list[str]:
    lines = ['"same" padding (TensorFlow\'s rule: output ceil(n / s), the odd one goes after):']
    for i, (n, k, s, d) in enumerate(zip(sizes, kernel, strides, dilations, strict=True)):
        pb, pa = cm.same_padding(n, k, s, d)
        out = -(-n // s)
        lines.append(
            f"  dim {i} ({names[i]}): total = max((ceil({n}/{s}) - 1)*{s} + {d}*({k}-1) + 1 - "
            f"{n}, 0) = max(({out} - 1)*{s} + {cm.dilated_size(k, d)} - {n}, 0) = {pb + pa}"
            f" -> {pb} before, {pa} after"
        )
    return lines


def _positive_groups(groups, what) -> int:
    """The ops' check (``ops/conv._check_groups``): a positive int, NumPy's too, no bool."""
    if not isinstance(groups, (int, np.integer)) or isinstance(groups, bool) or groups <= 0:
        raise ValueError(f"{what}: groups must be a positive int, got {groups!r}")
    return int(groups)


def _geometry(nd, stride, dilation, what):
    strides = cm.expand_arg(stride, nd, "stride", what)
    dilations = cm.expand_arg(dilation, nd, "dilation", what)
    cm.check_positive(strides, "stride", what)
    cm.check_positive(dilations, "dilation", what)
    return strides, dilations


def _thin_lines(lines, maps, xs, ws, pads, dilations, outs, itemsize) -> int:
    """The volume route's lines (convmath's stacked wide grid); returns its scratch."""
    o, kernel = ws[0], tuple(ws[2:])
    grid = cm._ThinGrid(xs, kernel, pads, dilations, math.prod(ws[1:]) + 1, o, itemsize)
    chunk = (
        f"{grid.samples} sample(s) a chunk"
        if grid.samples > 1 or grid.first == grid.axes[0]
        else f"{grid.first} of a sample's {grid.axes[0]} rows a chunk"
    )
    threads = par.get_num_threads()
    per_thread = grid.units * (grid.rows + o) * grid.width + grid.samples * xs[1] * grid.plane
    scratch = threads * (per_thread + grid.slack) * itemsize
    lines.append(
        f"  {' and '.join(maps)}: on the stacked wide grid (a volume, stride 1, {o} <= "
        f"{cm.THIN_MAX_OUTPUTS} filters): pieces of {grid.lines} line(s) of the padded last "
        f"dim's {grid.wp} entries ({outs[-1]} of them windows) = {grid.width} columns, copied "
        f"as one contiguous run a tap and input channel, each product within OpenBLAS's "
        f"small-matrix size (m*n*k <= {cm.SMALL_GEMM_MACS:.0e}); {chunk}; scratch "
        f"{_bytes(scratch)} ({threads} thread(s))"
        + ("; no im2col matrix kept" if "forward" in maps else "")
    )
    return scratch


def _rows_lines(lines, n_, c, o, kernel, strides, outs, padded, itemsize) -> tuple[int, bool]:
    """The row-window route's lines (the forward, and dw where the forward keeps R:
    convmath's partial im2col whose kernel rows are contiguous blocks); returns its scratch
    and whether R is kept for dw."""
    rows, taps, _ = cm._row_geometry(kernel, strides, outs, n_, c)
    r = cm._row_windows_size(kernel, strides, outs, n_, c) * itemsize
    per = cm._rows_chunk_bytes(c, o, kernel, strides, outs, padded, itemsize)
    shares = cm._rows_shares(n_, per)
    threads, chunk = len(shares), shares[0][0].stop - shares[0][0].start
    length = math.prod(outs[1:]) * chunk  # (the columns of one chunk's rows)
    kept = all(len(chunks) == 1 for chunks in shares) and r <= cm._settings["cache_bytes"]
    rest = "x".join(map(str, kernel[1:]))
    lines.append(
        f"  {'forward and dw' if kept else 'forward'}: by row windows ({len(kernel)}-D; "
        f"{threads} thread(s), each on its "
        "share of "
        f"the samples): the input copied once per "
        f"kernel tap of the other dims ({rest}) into R, {rows} rows x C x {rest} x "
        f"{'x'.join(map(str, outs[1:]))} outputs x N = {_bytes(r)} for the batch; each "
        f"output row's columns are {kernel[0]} consecutive rows of R ({taps} taps x {length} "
        f"columns), multiplied in place; {chunk} sample(s) a chunk: scratch "
        f"{_bytes(threads * chunk * per)}; "
        + (
            f"R kept from the forward for dw (at most {_bytes(cm._settings['cache_bytes'])})"
            if kept
            else "R not kept (over the cache or chunked): dw takes the GEMM route below"
        )
    )
    return threads * chunk * per, kept


def _im2col_lines(lines, n_, c, o, groups, kernel, outs, itemsize, who) -> int:
    """The im2col matrix's lines (its size, chunks, whether kept) for the maps ``who``
    ("the forward and dw" or "dw"); returns the scratch."""
    budget = cm._settings["scratch_bytes"]
    per = cm.im2col_scratch_bytes(1, c, kernel, outs, itemsize)
    total = cm.im2col_scratch_bytes(n_, c, kernel, outs, itemsize)
    chunk = cm.batch_chunk(per, n_)
    scratch = chunk * per
    lines.append(
        f"  im2col matrix: N*C*prod(k)*prod(out)*{itemsize} B = {n_}*{c}*"
        f"{math.prod(kernel)}*{math.prod(outs)}*{itemsize} = {_bytes(total)} for the batch;"
    )
    cache = cm._settings["cache_bytes"]
    og = o // groups
    kept = chunk == n_ and total <= cache
    rows = cm._per_sample_rows(og, outs, per)
    what = (
        "one sample's columns"
        if rows == outs[0]
        else f"one sample's columns in pieces of {rows} of its {outs[0]} output rows"
    )
    if rows and kept:
        scratch = total
        lines.append(
            f"  kept from the forward for dw (at most {_bytes(cache)}): the forward writes "
            f"{what} at a time into it on each thread, each multiplied at once"
        )
    elif rows:
        piece = per * rows // outs[0]
        scratch = par.get_num_threads() * piece
        lines.append(
            f"  not kept for dw (over {_bytes(cache)} or chunked): {who} "
            f"{'build' if ' and ' in who else 'builds'} {what} at a time on each thread, "
            f"each multiplied at once: scratch {_bytes(piece)} a thread"
        )
    else:
        lines.append(
            f"  built {chunk} sample(s) at a time (budget {_bytes(budget)}): "
            f"scratch {_bytes(scratch)}; "
            + (
                f"kept from the forward for dw (at most {_bytes(cache)})"
                if kept
                else f"not kept (over {_bytes(cache)} or chunked): dw builds them again"
            )
        )
    return scratch


def _dx_on_rows(xs, ws, out_shape, sizes, pads, strides, dilations, groups) -> bool:
    """Whether dx takes the row windows: on one thread, which it has when tinygrad_np runs
    one, or when a small conv's two backward maps run at once (ops/conv.py)."""
    from tinygrad_np.ops import conv as conv_op

    padded = (*xs[:2], *cm.padded_sizes(sizes, pads))
    macs = math.prod(out_shape) * math.prod(ws[1:])
    if par.get_num_threads() > 1 and not conv_op.maps_side_by_side(macs, groups, ws):
        return False  # (dx on every thread: no row windows)
    with par.single_threaded():
        return cm._rows_route(padded, ws, strides, dilations, groups, "input_grad")


def _conv_dx_lines(lines, xs, ws, out_shape, sizes, pads, strides, dilations, groups,
                   itemsize, padded, kept):  # fmt: skip
    """How a conv's dx is computed, by the choices its map makes: the backward maps' own
    GEMM/FFT estimate, and on one thread where it runs beside dw (``kept``: the forward
    keeps its columns or row windows for dw, which then stays on GEMM)."""
    from tinygrad_np.ops import conv as conv_op

    n_, c = xs[:2]
    o, kernel, outs = ws[0], tuple(ws[2:]), tuple(out_shape[2:])
    if cm.choose_algorithm(n_, c, o, groups, padded, kernel, outs, backward=True) == "fft":
        lines.append(
            f"  {'dx' if kept else 'dx and dw'}: FFT, by the backward maps' own estimate (one "
            "input channel and columns past the cache: GEMM's copies count more than its "
            "flops; convmath.ONE_CHANNEL_SCALE)"
        )
        return
    concurrent = conv_op.maps_side_by_side(math.prod(out_shape) * math.prod(ws[1:]), groups, ws)
    with par.single_threaded() if concurrent else contextlib.nullcontext():
        _dx_lines(lines, xs, ws, out_shape, sizes, pads, strides, dilations, groups, itemsize)


def _dx_lines(lines, xs, ws, out_shape, sizes, pads, strides, dilations, groups, itemsize):
    """How the GEMM route computes dx."""
    n_, c = xs[:2]
    o, kernel = ws[0], tuple(ws[2:])
    og = o // groups
    outs = tuple(out_shape[2:])
    if c // groups >= og and cm._thin_input_grad(
        out_shape, ws, pads, strides, dilations, groups, itemsize
    ):
        lines.append(
            "  dx: the full correlation of steps 2-4 on the stacked wide grid (as a forward "
            f"with the {c} input channels as its filters; stride 1, inputs >= outputs)"
        )
        return
    if cm._taps_input_grad(out_shape, ws, pads, strides, dilations, groups, itemsize):
        full = cm.padded_sizes(out_shape[2:], cm._full_pads(kernel, dilations, pads))
        length = sizes[0] * math.prod(full[1:])  # (the padded g's grid rows for dx's rows)
        slab = cm._taps_dx_slab(length, math.prod(kernel), c, itemsize)
        lines.append(
            "  dx: the full correlation of steps 2-4 from tap views of the padded dy, no "
            f"columns (a volume, stride 1, {c} <= {cm.TAPS_MAX_CHANNELS} input channels, fewer "
            f"than the {o} outputs): every tap's share in one stacked product a slab of "
            f"{slab} positions, summed over the taps"
        )
        return
    if cm._input_grad_on_wide_grid(
        (o, c // groups) + kernel, sizes, pads, strides, dilations, groups, itemsize
    ):
        padded = cm.padded_sizes(sizes, pads)
        grid = math.prod(padded[1:]) * outs[0]
        taps = math.prod(kernel)
        block = cm._wide_tap_block(taps, c // groups * math.prod(padded) * itemsize)
        lines.append(
            "  dx: one sample at a time on the padded input's grid: GEMMs over "
            f"{outs[0]}x{'x'.join(map(str, padded[1:]))} = {grid} grid positions "
            f"({grid / math.prod(outs):.2f}x the {math.prod(outs)} windows, at most "
            f"{cm.WIDE_MAX_EXCESS:g}x) for {block} of the {taps} taps at a time, then each "
            "tap's share added as one shift of the flattened image over all channels "
            "(stride 1)"
        )
    elif cm._input_grad_by_correlation((o, c // groups) + kernel, sizes, strides, groups):
        lines.append(
            "  dx: the full correlation of steps 2-4 as one GEMM over O*prod(k), no "
            f"col2im (stride 1, {c // groups} >= {og} channels a group, "
            f"{math.prod(sizes)} >= {cm.PER_SAMPLE_MIN_P} positions a sample)"
        )
    elif _dx_on_rows(xs, ws, out_shape, sizes, pads, strides, dilations, groups):
        beside = "" if par.get_num_threads() == 1 else " (on one thread, beside dw)"
        lines.append(
            f"  dx: by row windows{beside}: each output row's w^T dy added into its block of "
            "a zeroed R, then R folded back onto the input (one add per kernel tap of the "
            "other dims)"
        )
    elif cm._phases_route(out_shape, ws, cm.padded_sizes(sizes, pads), strides, dilations,
                          groups, itemsize):  # fmt: skip
        phases = math.prod(strides)
        lines.append(
            f"  dx: a block of samples at a time on the {phases} phase planes of the stride "
            "(positions r, r + s, ...: the taps of each class are a stride-1 correlation "
            "there): w^T dy on the planes' grid, each tap's share added as one shift of its "
            "plane over all channels, the planes interleaved (no col2im)"
        )
    else:
        lines.append("  dx: GEMM with the transposed weight, then col2im (a strided add a tap)")
        layout = cm._settings["layout"]
        if layout != "auto":
            lines.append(f"  im2col layout: {layout} (forced by conv_layout('{layout}'))")
        elif n_ >= 8 and outs[-1] <= cm.SAMPLES_LAST_MAX_ROW:
            run = outs[-1] * n_
            fwd = (
                f"and for the forward on one thread (runs of {outs[-1]}*{n_} = {run} >= "
                f"{cm.SAMPLES_LAST_MIN_RUN})"
                if run >= cm.SAMPLES_LAST_MIN_RUN
                else f"not for the forward (runs of {outs[-1]}*{n_} = {run} < "
                f"{cm.SAMPLES_LAST_MIN_RUN})"
            )
            lines.append(
                f"  im2col layout: samples-last for dx (output rows of {outs[-1]} <= "
                f"{cm.SAMPLES_LAST_MAX_ROW}), {fwd}; else batch-wide"
            )


def _emit(e: Explanation, quiet: bool, unbatched: bool = False) -> Explanation:
    """Print ``e`` unless ``quiet``; for an unbatched input, the output shape without the
    batch of 1 the explanation computes with (as the op returns it)."""
    if unbatched:
        e.lines = [
            f"  -> output {e.output_shape[1:]}  (unbatched input: the op computes with a batch "
            f"of 1 and drops it)" if line.startswith("  -> output ") else line
            for line in e.lines
        ]
        e.output_shape = e.output_shape[1:]
    if not quiet:
        print(e)
    return e


def output_size_lines(cfg) -> list[str]:
    """The per-dim output-size lines for a ``check.ConvConfig`` (used by the check kit)."""
    names = _DIM_NAMES[cfg.ndim]
    return [
        _size_line(i, names[i], n, k, s, p, d)[0].strip()
        for i, (n, k, s, p, d) in enumerate(
            zip(cfg.size, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation, strict=True)
        )
    ]


# ----------------------------------------------------------------------------- conv


def _conv(nd, input_shape, weight_shape, stride, padding, dilation, groups, dtype, quiet):
    what = f"conv{nd}d"
    xs = _shape(input_shape, "input_shape", batch=True)
    unbatched = len(xs) == nd + 1
    if unbatched:
        xs = _shape(input_shape, "input_shape")
        xs = (1, *xs)  # (as the op takes it; the output has no batch dim then)
    if len(xs) != nd + 2:
        raise ValueError(f"{what}: input_shape must be (N, C, *{nd} spatial), got {xs}")
    ws = _shape(weight_shape, "weight_shape", nd + 2)
    strides, dilations = _geometry(nd, stride, dilation, what)
    n_, c = xs[:2]
    o, cg = ws[:2]
    groups = _positive_groups(groups, what)
    if c % groups or o % groups:
        raise ValueError(
            f"{what}: groups={groups!r} must divide the input channels ({c}) and the output "
            f"channels ({o})"
        )
    if cg * groups != c:
        raise ValueError(
            f"{what}: input has {c} channels but weight {ws} with groups={groups} expects "
            f"{cg * groups} (weight.shape[1] * groups)"
        )
    sizes, kernel = xs[2:], ws[2:]
    names = _DIM_NAMES[nd]
    pads = cm.resolve_padding(padding, sizes, kernel, strides, dilations, what)
    itemsize = np.dtype(dtype).itemsize

    head = (
        f"{what}: input {xs}, weight {ws}, stride {strides}, padding {pads}, "
        f"dilation {dilations}, groups {groups}"
    )
    lines = [head, ""]
    if isinstance(padding, str) and padding.lower() == "same":
        lines += _same_lines(sizes, kernel, strides, dilations, names) + [""]
    lines.append(
        "Output size per spatial dim: floor((n + p_before + p_after - d*(k-1) - 1) / s) + 1"
    )
    outs = []
    for i, (n, k, s, p, d) in enumerate(zip(sizes, kernel, strides, pads, dilations, strict=True)):
        text, out = _size_line(i, names[i], n, k, s, p, d)
        lines.append(text)
        outs.append(out)
    out_shape = (n_, o, *outs)
    if min(outs) <= 0:
        lines += ["", f"-> no output: {what} raises ValueError for this configuration"]
        return _emit(Explanation(what, out_shape, lines, pads), quiet, unbatched)
    lines.append(f"  -> output {out_shape}")
    lines.append(
        f"  channels: {groups} group(s); each output channel reads {cg} input channel(s)"
        + ("" if groups == 1 else f" (output channels g*{o // groups}.. read inputs g*{cg}..)")
    )
    lines += ["", "Input rows no window reads:"]
    unread_text, unread = _unread_lines(sizes, kernel, strides, pads, dilations, names)
    lines += unread_text

    # the VJP, as ops/conv.py spells it out when the backward is recorded
    padded = cm.padded_sizes(sizes, pads)
    dil = tuple((m - 1) * s + 1 for m, s in zip(outs, strides, strict=True))
    vjp_pads = []
    for n, k, d, (pb, _), m in zip(sizes, kernel, dilations, pads, dil, strict=True):
        front = d * (k - 1) - pb
        vjp_pads.append((front, n + d * (k - 1) - front - m))
    full = tuple(n + d * (k - 1) for n, k, d in zip(sizes, kernel, dilations, strict=True))
    lines += [
        "",
        "Backward (VJP) shapes:",
        f"  dy                                              {out_shape}",
        f"  1. stride dilation: {'s-1 zeros between entries':<27} -> {(n_, o, *dil)}"
        + ("" if any(s > 1 for s in strides) else "  (stride 1: nothing to do)"),
        f"  2. pad (d*(k-1) - p_before, rest) = {tuple(vjp_pads)}"
        f" -> {(n_, o, *full)}  (negative = crop)",
        f"  3. kernel flipped, channels swapped per group:  {ws} -> {(c, o // groups, *kernel)}",
        f"  4. correlate, stride 1, dilation {dilations}:        -> dx {xs}",
        f"  dw: correlate x padded {(n_, c, *padded)} with the dilated dy, sum over N -> {ws}",
        f"  db: dy summed over N and space -> ({o},)",
    ]

    # the algorithm the op would pick, and its temporary memory
    algo = cm.choose_algorithm(n_, c, o, groups, padded, kernel, outs)
    costs = cm.estimate_costs(n_, c, o, groups, padded, kernel, outs)
    setting = cm.get_conv_algorithm()
    why = (
        f"forced by conv_algorithm('{setting}')"
        if setting != "auto"
        else "kernel under 16 taps: im2col always wins"
        if math.prod(kernel) < 16
        else "the cheaper estimate"
    )
    lines += [
        "",
        f"Algorithm ({np.dtype(dtype).name}): {algo} ({why}; estimated flops: "
        f"gemm {costs['gemm']:.3g}, fft {costs['fft']:.3g})",
    ]
    budget = cm._settings["scratch_bytes"]
    if algo == "gemm" and groups > 1 and c == groups:  # depthwise: no im2col at all
        wp, ow = padded[-1], outs[-1]
        band = cm._toeplitz_ok(c, o // c, kernel, wp, ow, itemsize)
        lines.append("  depthwise (one input channel per group): no im2col;")
        if cm._compiled_route(xs, ws, pads, strides, dilations, groups, dtype):
            wide = cm._compiled._wide(tuple(sizes), tuple(kernel), tuple(pads),
                                      tuple(strides), tuple(dilations))  # fmt: skip
            how = (
                "each channel's planes laid, padded"
                + (", as their phase planes by the stride" if any(s > 1 for s in strides)
                   else "")
                + f", in a buffer of {wide[3]} entries a sample; each tap one loop over "
                "the buffer; dx on the row kernels where a weight is inf or NaN, dw where "
                "its sums came out so"
                if cm._compiled._wide_fits(wide, itemsize)
                else "each tap one loop along each output row, reading the input in place "
                "(a pad that crops, or a plane whose buffers outgrow the scratch budget)"
            )  # fmt: skip
            lines.append(
                f"    forward, dx and dw: compiled loops (numba; {how}; channels split over "
                "the threads; off with F.compiled_kernels(False))"
            )
            return _emit(Explanation(what, out_shape, lines, pads, unread, algo, 0), quiet,
                         unbatched)  # fmt: skip
        if cm._depthwise_plane_route(xs, ws, pads, strides, dilations, groups, itemsize):
            p, q = math.prod(sizes), math.prod(outs)
            lines.append(
                f"    forward, dx and dw: one product of whole planes per channel, a "
                f"{p}x{q * (o // c)} matrix holding its taps ({p}/{math.prod(kernel)} = "
                f"{p / math.prod(kernel):.1f}x the multiply-adds, in BLAS; planes this small "
                "cost more in calls than in arithmetic on the other routes)"
            )
            return _emit(Explanation(what, out_shape, lines, pads, unread, algo, 0), quiet,
                         unbatched)  # fmt: skip

        def channels(which: str) -> bool:
            return cm._depthwise_channel_route(
                xs, ws, pads, strides, dilations, groups, which, itemsize
            )

        maps = {"forward": "forward", "input_grad": "dx", "weight_grad": "dw"}
        on_grid = [name for which, name in maps.items() if channels(which)]
        if on_grid:
            grid = cm._ChannelGrid(n_, sizes, kernel, strides, dilations, pads, itemsize)
            planes = (
                f"{grid.plane} entries a sample"
                if len(grid.inside) == 1
                else f"the input split into {len(grid.inside)} phase planes by the stride, "
                f"{grid.plane} entries a sample each"
            )
            lines.append(
                f"    {', '.join(on_grid)}: one axpy (dw: one dot) per channel and kernel tap "
                f"over the channel's padded planes laid end to end ({planes}; on one thread; "
                f"estimated cheaper here)"
            )
        rest = [
            name for which, name in maps.items() if name not in on_grid and which != "weight_grad"
        ]
        if rest:
            lines.append(
                f"    {' and '.join(rest)}: band-matrix products along the last dim "
                f"({wp}/{kernel[-1]} = {wp / kernel[-1]:.1f}x the multiply-adds, in BLAS)"
                if band
                else f"    {' and '.join(rest)}: one multiply-add pass per kernel tap (rows "
                "too wide for band matrices)"
            )
        if "dw" not in on_grid:
            lines.append("    dw: one dot product per sample and kernel tap over all channels")
        return _emit(Explanation(what, out_shape, lines, pads, unread, algo, 0), quiet, unbatched)
    if algo == "gemm":
        per = cm.im2col_scratch_bytes(1, c, kernel, outs, itemsize)
        total = cm.im2col_scratch_bytes(n_, c, kernel, outs, itemsize)
        # the volume route (convmath's stacked wide grid): the forward, and dw where the
        # forward kept no columns for it
        args = (xs, ws, pads, strides, dilations, groups)
        if cm._rows_route((n_, c, *padded), ws, strides, dilations, groups, "forward", itemsize):
            scratch, kept = _rows_lines(lines, n_, c, o, kernel, strides, outs, padded,
                                        itemsize)  # fmt: skip
            if not kept:  # (dw without the forward's R: convmath.correlate_weight_grad)
                im2col = _im2col_lines(lines, n_, c, o, groups, kernel, outs, itemsize, "dw")
                scratch = max(scratch, im2col)
            _conv_dx_lines(lines, xs, ws, out_shape, sizes, pads, strides, dilations, groups,
                           itemsize, padded, True)  # fmt: skip
            return _emit(Explanation(what, out_shape, lines, pads, unread, algo, scratch), quiet,
                         unbatched)
        thin = ["forward"] if cm._thin_route(*args, "forward", itemsize, True) else []
        kept = not thin and cm.batch_chunk(per, n_) == n_ and total <= cm._settings["cache_bytes"]
        taps = not kept and cm._taps_route(*args, itemsize)
        if not kept and not taps and cm._thin_route(*args, "weight_grad", itemsize):
            thin.append("dw")
        scratch = 0
        if thin:
            scratch = _thin_lines(lines, thin, xs, ws, pads, dilations, outs, itemsize)
        if taps:
            slab = cm.TAPS_SLAB_BYTES // (o * itemsize)
            lines.append(
                f"  dw: from tap views of the wide grid, no columns (a volume, stride 1, {c} <= "
                f"{cm.TAPS_MAX_CHANNELS} input channels): tap k's (C, positions) is a strided "
                "view of the padded sample, so gw[:, :, k] = g on the grid (O, positions) @ its "
                f"transpose; every tap in one stacked product a slab of {slab} positions"
            )
            thin.append("dw")
        if len(thin) < 2:
            who = "dw" if thin else "the forward and dw"
            im2col = _im2col_lines(lines, n_, c, o, groups, kernel, outs, itemsize, who)
            scratch = max(scratch, im2col)
        _conv_dx_lines(lines, xs, ws, out_shape, sizes, pads, strides, dilations, groups,
                       itemsize, padded, kept)  # fmt: skip
    else:
        fs = cm.fft_shape(padded)
        per = cm._fft_per_sample_bytes(c, o, fs, itemsize)
        chunk = cm.batch_chunk(per, n_)
        scratch = chunk * per
        lines.append(
            f"  FFT size {fs} (padded input {padded}); spectra of {chunk} sample(s) at a time "
            f"(budget {_bytes(budget)}): scratch {_bytes(scratch)}"
        )
    e = Explanation(what, out_shape, lines, pads, unread, algo, scratch)
    return _emit(e, quiet, unbatched)


def conv1d(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
           dtype="float32", quiet=False) -> Explanation:  # fmt: skip
    """Explain ``F.conv1d`` for these shapes (see :func:`conv2d`)."""
    return _conv(1, input_shape, weight_shape, stride, padding, dilation, groups, dtype, quiet)


def conv2d(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
           dtype="float32", quiet=False) -> Explanation:  # fmt: skip
    """Explain ``F.conv2d(x, w, stride=..., padding=..., dilation=..., groups=...)``.

    Parameters
    ----------
    input_shape : tuple or "NxCxHxW"
        (N, C_in, H, W) (or unbatched (C_in, H, W)).
    weight_shape : tuple or "OxCxKhxKw"
        (C_out, C_in // groups, kh, kw).
    stride, padding, dilation, groups
        As for ``F.conv2d``: ``padding`` may be an int, one per dim, ``"same"``,
        ``"valid"`` or (before, after) pairs.
    dtype : str
        Element type for the scratch-memory estimate.
    quiet : bool
        Do not print; just return the :class:`Explanation`.

    >>> e = conv2d((128, 3, 97, 96), (40, 3, 4, 4), stride=2, quiet=True)
    >>> e.output_shape, e.unread
    ((128, 40, 47, 47), ((96,), ()))
    """
    return _conv(2, input_shape, weight_shape, stride, padding, dilation, groups, dtype, quiet)


def conv3d(input_shape, weight_shape, stride=1, padding=0, dilation=1, groups=1,
           dtype="float32", quiet=False) -> Explanation:  # fmt: skip
    """Explain ``F.conv3d`` for these shapes (see :func:`conv2d`)."""
    return _conv(3, input_shape, weight_shape, stride, padding, dilation, groups, dtype, quiet)


# ----------------------------------------------------------------------------- transposed conv


def _conv_transpose(nd, input_shape, weight_shape, stride, padding, output_padding, groups,
                    dilation, quiet):  # fmt: skip
    what = f"conv_transpose{nd}d"
    xs = _shape(input_shape, "input_shape", batch=True)
    unbatched = len(xs) == nd + 1
    if unbatched:
        xs = _shape(input_shape, "input_shape")
        xs = (1, *xs)  # (as the op takes it; the output has no batch dim then)
    if len(xs) != nd + 2:
        raise ValueError(f"{what}: input_shape must be (N, C, *{nd} spatial), got {xs}")
    ws = _shape(weight_shape, "weight_shape", nd + 2)
    strides, dilations = _geometry(nd, stride, dilation, what)
    pads = cm.expand_arg(padding, nd, "padding", what)
    out_pads = cm.expand_arg(output_padding, nd, "output_padding", what)
    cm.check_transpose_padding(pads, out_pads, strides, dilations, padding, output_padding, what)
    n_, c = xs[:2]
    cin, og = ws[:2]
    if c != cin:
        raise ValueError(f"{what}: input has {c} channels but weight {ws} expects {cin}")
    groups = _positive_groups(groups, what)
    if c % groups:
        raise ValueError(f"{what}: groups={groups!r} must divide the input channels ({c})")
    names = _DIM_NAMES[nd]
    lines = [
        f"{what}: input {xs}, weight {ws}, stride {strides}, padding {pads}, "
        f"output_padding {out_pads}, groups {groups}, dilation {dilations}",
        "",
        "The transposed conv is the input-gradient of a conv from its output back to its input.",
        "Output size per spatial dim: (n - 1)*s - 2*p + d*(k-1) + 1 + output_padding",
    ]
    outs = []
    for i, (n, k, s, p, d, op_) in enumerate(
        zip(xs[2:], ws[2:], strides, pads, dilations, out_pads, strict=True)
    ):
        m = (n - 1) * s - 2 * p + cm.dilated_size(k, d) + op_
        outs.append(m)
        lines.append(
            f"  dim {i} ({names[i]}): ({n} - 1)*{s} - 2*{p} + {d}*({k}-1) + 1 + {op_} = {m}"
        )
    out_shape = (n_, og * groups, *outs)
    if min(outs) <= 0:
        lines += ["", f"-> no output: {what} raises ValueError for this configuration"]
        return _emit(Explanation(what, out_shape, lines), quiet, unbatched)
    lines.append(f"  -> output {out_shape}")
    lines += ["", "Output rows no input position reaches (they hold only the bias):"]
    conv_pads = tuple((p, p - max(0, op_ - (s - 1)))
                      for p, op_, s in zip(pads, out_pads, strides, strict=True))  # fmt: skip
    unread_text, unread = _unread_lines(outs, ws[2:], strides, conv_pads, dilations, names)
    lines += [t.replace("never read", "never written").replace("is read", "is written")
              .replace("their gradient is zero", "bias only")
              .replace("no window reads", "no input position writes")
              .replace("no input position is read: the whole input gradient is zero",
                       "the whole output is the bias") for t in unread_text]  # fmt: skip
    symmetric = all(a == b for a, b in conv_pads)
    shown = tuple(a for a, _ in conv_pads) if symmetric else conv_pads
    lines += [
        "",
        "Backward (VJP) shapes:",
        f"  dy {out_shape} -> dx = conv{nd}d(dy, w, stride {strides}, padding {shown}, "
        f"dilation {dilations}) -> {xs}"
        + ("  (a negative pad crops dy)" if any(min(p) < 0 for p in conv_pads) else ""),
        f"  dw: correlate dy with the input at stride {strides} -> {ws}",
        f"  db: dy summed over N and space -> ({og * groups},)",
    ]
    # the forward is the matching conv's dx: its route, as explain.conv names it
    padded = cm.padded_sizes(outs, conv_pads)
    algo = cm.choose_algorithm(n_, og * groups, c, groups, padded, ws[2:], xs[2:], True)
    lines += ["", f"Algorithm of the forward (float32; the matching conv's dx): {algo}"]
    if algo == "gemm" and og == 1 and groups > 1:
        lines.append("  depthwise: the depthwise routes (see explain.conv for the matching conv)")
    elif algo == "gemm":
        _dx_lines(lines, out_shape, ws, xs, outs, conv_pads, strides, dilations, groups, 4)
    e = Explanation(what, out_shape, lines, tuple((p, p) for p in pads), unread, algo)
    return _emit(e, quiet, unbatched)


def conv_transpose1d(input_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, quiet=False) -> Explanation:  # fmt: skip
    """Explain ``F.conv_transpose1d``; weight is (C_in, C_out // groups, k)."""
    return _conv_transpose(1, input_shape, weight_shape, stride, padding, output_padding, groups,
                           dilation, quiet)  # fmt: skip


def conv_transpose2d(input_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, quiet=False) -> Explanation:  # fmt: skip
    """Explain ``F.conv_transpose2d``; weight is (C_in, C_out // groups, kh, kw)."""
    return _conv_transpose(2, input_shape, weight_shape, stride, padding, output_padding, groups,
                           dilation, quiet)  # fmt: skip


def conv_transpose3d(input_shape, weight_shape, stride=1, padding=0, output_padding=0, groups=1,
                     dilation=1, quiet=False) -> Explanation:  # fmt: skip
    """Explain ``F.conv_transpose3d``; weight is (C_in, C_out // groups, kd, kh, kw)."""
    return _conv_transpose(3, input_shape, weight_shape, stride, padding, output_padding, groups,
                           dilation, quiet)  # fmt: skip


# ----------------------------------------------------------------------------- pooling


def _pool(kind, nd, input_shape, kernel_size, stride, padding, dilation, ceil_mode,
          count_include_pad, quiet):  # fmt: skip
    what = f"{kind}_pool{nd}d"
    xs = _shape(input_shape, "input_shape", batch=True)
    unbatched = len(xs) == nd + 1
    if unbatched:
        xs = _shape(input_shape, "input_shape")
        xs = (1, *xs)  # (as the op takes it; the output has no batch dim then)
    if len(xs) != nd + 2:
        raise ValueError(f"{what}: input_shape must be (N, C, *{nd} spatial), got {xs}")
    kernel = cm.expand_arg(kernel_size, nd, "kernel_size", what)
    cm.check_positive(kernel, "kernel_size", what)
    if stride is None or (isinstance(stride, (tuple, list)) and len(stride) == 0):
        stride = kernel  # (the op's default, PyTorch's too, also for stride=())
    strides, dilations = _geometry(nd, stride, dilation, what)
    pads = cm.expand_arg(padding, nd, "padding", what)
    for k, p, d in zip(kernel, pads, dilations, strict=True):
        if p < 0 or 2 * p > cm.dilated_size(k, d):  # (the op's check, with its words)
            raise ValueError(
                f"{what}: padding must be between 0 and half the (dilated) kernel size "
                f"{cm.dilated_size(k, d)}, got padding={padding!r}"
            )
    names = _DIM_NAMES[nd]
    pairs = tuple((p, p) for p in pads)
    rnd = "ceil" if ceil_mode else "floor"
    lines = [
        f"{what}: input {xs}, kernel_size {kernel}, stride {strides}, padding {pads}"
        + (f", dilation {dilations}" if kind == "max" else "")
        + f", ceil_mode {ceil_mode}"
        + ("" if kind == "max" else f", count_include_pad {count_include_pad}"),
        "",
        f"Output size per spatial dim: {rnd}((n + 2p - d*(k-1) - 1) / s) + 1",
    ]
    outs = []
    for i, (n, k, s, p, d) in enumerate(zip(xs[2:], kernel, strides, pairs, dilations,
                                             strict=True)):  # fmt: skip
        text, out = _size_line(i, names[i], n, k, s, p, d, ceil_mode)
        lines.append(text)
        outs.append(out)
    out_shape = (*xs[:2], *outs)
    if min(outs) <= 0:
        lines += ["", f"-> no output: {what} raises ValueError for this configuration"]
        return _emit(Explanation(what, out_shape, lines, pairs), quiet, unbatched)
    lines.append(f"  -> output {out_shape}")
    lines += ["", "Input rows no window reads:"]
    reading = tuple(  # (ceil_mode's last window reaches into extra right padding)
        cm.pool_padding(n, k, s, p, d, ceil_mode)
        for n, k, s, p, d in zip(xs[2:], kernel, strides, pads, dilations, strict=True)
    )
    unread_text, unread = _unread_lines(xs[2:], kernel, strides, reading, dilations, names)
    lines += unread_text
    overlap = any(s < cm.dilated_size(k, d) for s, k, d in zip(strides, kernel, dilations,
                                                              strict=True))  # fmt: skip
    route = (
        "goes to its window's maximum (padding is -inf and never wins)"
        if kind == "max"
        else "is spread evenly over its window, divided by the window's "
        + ("size clipped to the padded input" if count_include_pad else "count of real inputs")
    )
    lines += [
        "",
        "Backward (VJP) shapes:",
        f"  dy {out_shape} -> dx {xs}: each dy entry {route}"
        + ("; overlapping windows add up" if overlap else ""),
        "",
        "Scratch: none beyond the output (windows are strided views of the padded input)",
    ]
    return _emit(Explanation(what, out_shape, lines, pairs, unread), quiet, unbatched)


def _make_pool(kind: str, nd: int):
    if kind == "max":

        def fn(input_shape, kernel_size, stride=None, padding=0, dilation=1, ceil_mode=False,
               quiet=False) -> Explanation:  # fmt: skip
            return _pool("max", nd, input_shape, kernel_size, stride, padding, dilation,
                         ceil_mode, True, quiet)  # fmt: skip

    else:

        def fn(input_shape, kernel_size, stride=None, padding=0, ceil_mode=False,
               count_include_pad=True, quiet=False) -> Explanation:  # fmt: skip
            return _pool("avg", nd, input_shape, kernel_size, stride, padding, 1, ceil_mode,
                         count_include_pad, quiet)  # fmt: skip

    fn.__name__ = fn.__qualname__ = f"{kind}_pool{nd}d"
    fn.__doc__ = f"Explain ``F.{kind}_pool{nd}d`` for this input shape (arguments as there)."
    return fn


max_pool1d = _make_pool("max", 1)
max_pool2d = _make_pool("max", 2)
max_pool3d = _make_pool("max", 3)
avg_pool1d = _make_pool("avg", 1)
avg_pool2d = _make_pool("avg", 2)
avg_pool3d = _make_pool("avg", 3)
