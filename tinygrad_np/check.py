"""Conformance kit: check your own NumPy convolution, pooling or any VJP against the framework.

You write ``forward`` and ``backward`` with NumPy; the kit runs them over the
project's sweep of configurations (strides that leave rows over, dilation,
groups, asymmetric and SAME padding, non-square kernels, 1-D/2-D/3-D), in
float64, compares values and gradients with tinygrad_np's own layers, and
reports the first failure shrunk to the smallest configuration that still
fails, with expected and actual shapes and the worst element by index.

>>> import numpy as np
>>> from tinygrad_np import check
>>> def forward(x, w, b, stride, padding):  # 1-D only, no dilation, no groups
...     x = np.pad(x, [(0, 0), (0, 0), *padding])
...     k, s = w.shape[-1], stride[0]
...     n = (x.shape[-1] - k) // s + 1
...     cols = np.stack([x[:, :, i * s : i * s + k] for i in range(n)], axis=2)
...     return np.einsum("ncok,fck->nfo", cols, w) + b[None, :, None]
>>> report = check.conv(forward=forward, ndim=(1,))
>>> report.ok
True

Your functions take and return NumPy arrays, channels-first::

    forward(x, w, b, stride, padding, dilation, groups) -> y
    backward(x, w, b, dy, stride, padding, dilation, groups) -> (dx, dw, db)

with ``stride``/``dilation`` one int per spatial dimension and ``padding`` one
``(before, after)`` pair per spatial dimension. The kit reads the signatures
and only sweeps what they accept: without a ``groups`` parameter groups is 1,
without ``dilation`` dilation is 1, without ``b`` there is no bias. Either
function may be omitted. A wrong result or an exception inside your code is a
failure in the report, never an exception out of the kit; only unusable
arguments raise (``TypeError``/``ValueError`` naming the argument).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import traceback
import zlib
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

__all__ = ["ConvConfig", "Failure", "PoolConfig", "Report", "conv", "pool", "vjp"]

_HERE = os.path.abspath(__file__)
_MAX_SHRINK_STEPS = 300
_LIB_MARK = os.sep + "numpy" + os.sep


# ----------------------------------------------------------------------------- configurations


@dataclasses.dataclass(frozen=True)
class ConvConfig:
    """One convolution to check: shapes and hyper-parameters, per spatial dimension."""

    batch: int
    in_channels: int
    out_channels: int
    size: tuple[int, ...]  # input spatial sizes
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[tuple[int, int], ...]  # (before, after) per spatial dim
    dilation: tuple[int, ...]
    groups: int
    bias: bool = True
    label: str = dataclasses.field(default="", compare=False)

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (self.batch, self.in_channels, *self.size)

    @property
    def w_shape(self) -> tuple[int, ...]:
        return (self.out_channels, self.in_channels // self.groups, *self.kernel)

    def valid(self) -> bool:
        """Whether the framework accepts it (kernel fits the padded input, channels split)."""
        if min(self.batch, self.in_channels, self.out_channels, self.groups) < 1:
            return False
        if self.in_channels % self.groups or self.out_channels % self.groups:
            return False
        for n, k, s, (pb, pa), d in zip(
            self.size, self.kernel, self.stride, self.padding, self.dilation, strict=True
        ):
            if min(n, k, s, d) < 1 or min(pb, pa) < 0 or n + pb + pa < d * (k - 1) + 1:
                return False
        return True

    def cost(self) -> int:
        """Size of the problem, for shrinking: elements of x and w, then the hyper-parameters."""
        hyper = sum(self.stride) + sum(self.dilation) + sum(map(sum, self.padding)) + self.groups
        return 1000 * (int(np.prod(self.x_shape)) + int(np.prod(self.w_shape))) + hyper

    def describe(self) -> str:
        return (
            f"x {self.x_shape}, w {self.w_shape}{'' if self.bias else ' (no bias)'}, "
            f"stride {self.stride}, padding {self.padding}, dilation {self.dilation}, "
            f"groups {self.groups}"
        )


@dataclasses.dataclass(frozen=True)
class PoolConfig:
    """One pooling window to check, per spatial dimension (padding is symmetric)."""

    batch: int
    channels: int
    size: tuple[int, ...]
    kernel: tuple[int, ...]
    stride: tuple[int, ...]
    padding: tuple[int, ...]
    dilation: tuple[int, ...]
    ceil_mode: bool = False
    count_include_pad: bool = True
    ties: bool = False  # x rounded to integers: windows hold equal maxima
    label: str = dataclasses.field(default="", compare=False)

    @property
    def ndim(self) -> int:
        return len(self.size)

    @property
    def x_shape(self) -> tuple[int, ...]:
        return (self.batch, self.channels, *self.size)

    def valid(self) -> bool:
        if min(self.batch, self.channels) < 1:
            return False
        for n, k, s, p, d in zip(
            self.size, self.kernel, self.stride, self.padding, self.dilation, strict=True
        ):
            span = d * (k - 1) + 1
            if min(n, k, s, d) < 1 or p < 0 or 2 * p > span or n + 2 * p < span:
                return False
        return True

    def cost(self) -> int:
        hyper = sum(self.stride) + sum(self.dilation) + sum(self.padding) + sum(self.kernel)
        return 1000 * int(np.prod(self.x_shape)) + hyper + self.ceil_mode + self.ties

    def describe(self) -> str:
        text = (
            f"x {self.x_shape}, kernel_size {self.kernel}, stride {self.stride}, "
            f"padding {tuple((p, p) for p in self.padding)}, dilation {self.dilation}"
        )
        if self.ceil_mode:
            text += ", ceil_mode True"
        if not self.count_include_pad:
            text += ", count_include_pad False"
        if self.ties:
            text += ", x rounded to integers (tied maxima)"
        return text


# Each row: label, then per-dimension values for 3 dims (1-D and 2-D use the leading entries).
# Sizes are chosen so that (n + pads - span) % stride leaves rows over where the label says so.
_CONV_ROWS: list[dict[str, Any]] = [
    dict(label="basic", n=2, cin=2, cout=3, size=(6, 5, 5), k=(3, 3, 2)),
    dict(label="non-square kernel", n=1, cin=2, cout=2, size=(6, 7, 5), k=(2, 4, 3)),
    dict(label="1x1 kernel", n=2, cin=3, cout=2, size=(4, 3, 3), k=(1, 1, 1)),
    dict(
        label="stride 2 leaves a row over",
        n=2, cin=2, cout=3, size=(8, 7, 6), k=(3, 2, 3), s=(2, 2, 2),
    ),
    dict(
        label="stride 3, a different stride per dim",
        n=1, cin=2, cout=2, size=(9, 8, 6), k=(2, 3, 2), s=(3, 2, 3),
    ),
    dict(
        label="stride larger than the kernel",
        n=1, cin=1, cout=2, size=(9, 8, 7), k=(2, 1, 2), s=(3, 4, 3),
    ),
    dict(
        label="symmetric padding",
        n=2, cin=2, cout=2, size=(5, 5, 4), k=(3, 3, 3), p=((1, 1), (2, 2), (1, 1)),
    ),
    dict(
        label="asymmetric padding",
        n=1, cin=2, cout=3, size=(5, 6, 4), k=(3, 2, 2), p=((0, 2), (1, 0), (2, 1)),
    ),
    dict(label="SAME padding, stride 1, even kernel", n=1, cin=2, cout=2, size=(6, 5, 4),
         k=(4, 2, 2), same=True),
    dict(label="SAME padding, stride 2", n=1, cin=2, cout=2, size=(7, 6, 5), k=(3, 4, 2),
         s=(2, 2, 2), same=True),
    dict(label="dilation 2", n=1, cin=2, cout=2, size=(7, 6, 6), k=(3, 2, 2), d=(2, 2, 2)),
    dict(
        label="dilation with stride and padding",
        n=2, cin=2, cout=2, size=(8, 7, 6), k=(2, 3, 2), s=(2, 1, 2), d=(3, 2, 2),
        p=((1, 0), (2, 2), (0, 1)),
    ),
    dict(label="groups 2", n=2, cin=4, cout=6, size=(5, 4, 4), k=(3, 2, 2), g=2),
    dict(label="depthwise (groups = channels)", n=1, cin=3, cout=3, size=(5, 5, 4),
         k=(2, 3, 2), g=3),
    dict(label="depthwise, 3 filters a channel, strided", n=2, cin=2, cout=6, size=(6, 5, 4),
         k=(3, 2, 2), s=(2, 1, 1), p=((1, 1), (0, 1), (1, 0)), g=2),
    dict(
        label="everything at once",
        n=2, cin=4, cout=2, size=(9, 8, 7), k=(3, 2, 2), s=(2, 3, 2), d=(2, 1, 2),
        p=((2, 1), (0, 1), (1, 0)), g=2,
    ),
]  # fmt: skip

_POOL_ROWS: list[dict[str, Any]] = [
    dict(label="basic 2x2, stride 2", n=2, c=2, size=(6, 6, 4), k=(2, 2, 2)),
    dict(label="window 3, stride 2 leaves a row over", n=1, c=2, size=(8, 7, 6), k=(3, 3, 2),
         s=(2, 2, 2)),
    dict(label="overlapping windows (stride 1)", n=1, c=2, size=(5, 4, 4), k=(3, 2, 2),
         s=(1, 1, 1)),
    dict(label="non-square window", n=1, c=1, size=(6, 7, 5), k=(2, 3, 2), s=(2, 2, 1)),
    dict(label="stride larger than the window", n=1, c=2, size=(9, 8, 7), k=(2, 2, 1),
         s=(3, 3, 2)),
    dict(label="padding 1", n=2, c=2, size=(5, 6, 4), k=(3, 2, 2), s=(2, 2, 2), p=(1, 1, 1)),
    dict(label="dilation 2", n=1, c=2, size=(7, 6, 6), k=(2, 3, 2), s=(1, 2, 2), d=(2, 2, 2)),
    dict(label="ceil_mode keeps the partial window", n=1, c=2, size=(7, 6, 5), k=(2, 3, 2),
         s=(2, 2, 2), ceil=True),
    dict(label="ceil_mode drops a last window that would start in the padding", n=1, c=2,
         size=(5, 5, 5), k=(2, 2, 2), s=(2, 2, 2), p=(1, 1, 1), ceil=True),
    dict(label="padding without counting it", n=1, c=2, size=(5, 4, 4), k=(3, 3, 2),
         s=(2, 1, 2), p=(1, 1, 1), cip=False),
    dict(label="ceil_mode and padding without counting it", n=1, c=2, size=(6, 5, 4),
         k=(3, 2, 3), s=(2, 2, 2), p=(1, 1, 1), ceil=True, cip=False),
    dict(label="equal values in a window: the first maximum takes the gradient", n=2, c=2,
         size=(6, 5, 4), k=(3, 2, 2), s=(2, 1, 2), ties=True),
]  # fmt: skip


def _same_padding(cfg: ConvConfig) -> tuple[tuple[int, int], ...]:
    """The (before, after) pairs that "same" means for this configuration (from convmath)."""
    from tinygrad_np import convmath

    return tuple(
        tuple(int(v) for v in convmath.same_padding(n, k, s, d))
        for n, k, s, d in zip(cfg.size, cfg.kernel, cfg.stride, cfg.dilation, strict=True)
    )


def conv_configs(
    ndim: int, stride: bool = True, padding: bool = True, dilation: bool = True,
    groups: bool = True, bias: bool = True,
) -> list[ConvConfig]:  # fmt: skip
    """The sweep for ``ndim`` spatial dimensions, restricted to what the user's functions take."""
    out: list[ConvConfig] = []
    seen: set[ConvConfig] = set()
    allowed = {"stride": stride, "padding": padding, "dilation": dilation, "groups": groups}
    for row in _CONV_ROWS:
        label = row["label"].replace("depthwise", "groups").replace("SAME", "padding")
        if any(not ok and name in label for name, ok in allowed.items()):
            continue  # the row is about a feature the user's code does not take
        g = row.get("g", 1) if groups else 1
        cfg = ConvConfig(
            batch=row["n"],
            in_channels=row["cin"],
            out_channels=row["cout"],
            size=tuple(row["size"][:ndim]),
            kernel=tuple(row["k"][:ndim]),
            stride=tuple(row.get("s", (1, 1, 1))[:ndim]) if stride else (1,) * ndim,
            padding=tuple(row.get("p", ((0, 0),) * 3)[:ndim]) if padding else ((0, 0),) * ndim,
            dilation=tuple(row.get("d", (1, 1, 1))[:ndim]) if dilation else (1,) * ndim,
            groups=g,
            bias=bias,
            label=row["label"],
        )
        if row.get("same"):
            if not padding:
                continue
            cfg = dataclasses.replace(cfg, padding=_same_padding(cfg))
        if cfg not in seen and cfg.valid():
            seen.add(cfg)
            out.append(cfg)
    return out


def pool_configs(
    ndim: int, kind: str, stride: bool = True, padding: bool = True, dilation: bool = True,
    ceil_mode: bool = True, count_include_pad: bool = True,
) -> list[PoolConfig]:  # fmt: skip
    """The pooling sweep for ``ndim`` spatial dimensions, restricted like ``conv_configs``."""
    out: list[PoolConfig] = []
    seen: set[PoolConfig] = set()
    for row in _POOL_ROWS:
        k = tuple(row["k"][:ndim])
        if row.get("d") and (kind != "max" or not dilation):
            continue
        if row.get("ceil") and not ceil_mode:
            continue
        if "cip" in row and (kind != "avg" or not count_include_pad):
            continue
        if row.get("ties") and kind != "max":
            continue
        cfg = PoolConfig(
            batch=row["n"],
            channels=row["c"],
            size=tuple(row["size"][:ndim]),
            kernel=k,
            stride=tuple(row.get("s", row["k"])[:ndim]) if stride else k,
            padding=tuple(row.get("p", (0, 0, 0))[:ndim]) if padding else (0,) * ndim,
            dilation=tuple(row.get("d", (1, 1, 1))[:ndim]),
            ceil_mode=bool(row.get("ceil", False)),
            count_include_pad=bool(row.get("cip", True)),
            ties=bool(row.get("ties", False)),
            label=row["label"],
        )
        if cfg not in seen and cfg.valid():
            seen.add(cfg)
            out.append(cfg)
    return out


# ----------------------------------------------------------------------------- failures, report


@dataclasses.dataclass
class Failure:
    """One disagreement between the user's function and the framework.

    ``what`` names the output (``"y"``, ``"dx"``, ``"dw"``, ``"db"``, ...), ``kind`` is
    ``"value"``, ``"shape"``, ``"type"`` or ``"exception"``. For a value failure
    ``index`` is the worst element's full index, ``expected``/``actual`` its values.
    """

    function: str  # "forward" or "backward"
    what: str
    kind: str
    config: Any
    message: str
    expected_shape: tuple[int, ...] | None = None
    actual_shape: tuple[int, ...] | None = None
    index: tuple[int, ...] | None = None
    expected: float | None = None
    actual: float | None = None
    fraction: float | None = None
    traceback: str | None = None
    shrunk_from: Any = None
    hint: str | None = None

    def same_fault(self, other: Failure) -> bool:
        return (self.function, self.what) == (other.function, other.what)

    def __str__(self) -> str:
        cfg = self.config
        lines = [f"FAIL {self.function} -> {self.what} ({self.kind})"]
        if hasattr(cfg, "describe"):
            lines.append(f"  configuration: {cfg.describe()}")
            if self.shrunk_from is not None:
                lines.append(
                    f"  (shrunk from '{self.shrunk_from.label}': {self.shrunk_from.describe()})"
                )
            elif getattr(cfg, "label", ""):
                lines.append(f"  ('{cfg.label}')")
        lines += ["  " + line for line in self.message.splitlines()]
        if self.traceback:
            lines += ["    " + line for line in self.traceback.splitlines()]
        if self.hint:
            lines.append(f"  hint: {self.hint}")
        return "\n".join(lines)


@dataclasses.dataclass
class Report:
    """What the kit found: ``ok``, ``failures`` (one per failing configuration, first
    fault each), ``first`` (the first failure shrunk to its smallest configuration),
    ``passed`` (labels of the configurations that passed), ``notes`` (what was not
    swept and why). ``str(report)`` is the readable report."""

    title: str
    checked: list[str] = dataclasses.field(default_factory=list)
    passed: list[str] = dataclasses.field(default_factory=list)
    failures: list[Failure] = dataclasses.field(default_factory=list)
    first: Failure | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failures and bool(self.checked)

    def __bool__(self) -> bool:
        return self.ok

    def __str__(self) -> str:
        n, bad = len(self.checked), len({id(f.config) for f in self.failures})
        head = f"{self.title}: " + (
            f"OK, {n} configuration{'s' if n != 1 else ''} pass{'' if n != 1 else 'es'}"
            if self.ok
            else f"{bad} of {n} configurations fail"
        )
        lines = [head]
        lines += [f"  note: {note}" for note in self.notes]
        if not self.checked:
            lines.append("  nothing was checked")
        if self.first is not None:
            lines.append("")
            lines.append("First failure, shrunk to the smallest configuration that still fails:")
            lines.append(str(self.first))
        if len(self.failures) > 1:
            lines.append("")
            lines.append("All failing configurations:")
            for f in self.failures:
                lines.append(f"  - '{getattr(f.config, 'label', '')}': {f.function} -> "
                             f"{f.what} ({f.kind})")  # fmt: skip
        if self.passed and self.failures:
            lines.append("Passing: " + ", ".join(f"'{p}'" for p in self.passed))
        return "\n".join(lines)


# ----------------------------------------------------------------------------- comparing


def _user_traceback(exc: BaseException) -> str:
    """The exception and the frames of it that lie outside this module, innermost last."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename != _HERE]
    while len(frames) > 1 and _LIB_MARK in frames[-1].filename:
        frames.pop()  # NumPy's own frames below the user's line
    lines = [f'{f.filename}:{f.lineno} in {f.name}: "{(f.line or "").strip()}"' for f in frames]
    lines = lines[-3:]
    lines.append("".join(traceback.format_exception_only(type(exc), exc)).strip())
    return "\n".join(lines)


def _fmt(v: float) -> str:
    return f"{v:.6g}"


def _compare(
    function: str, what: str, expected: np.ndarray, actual: Any, cfg: Any, atol: float,
    rtol: float,
) -> Failure | None:  # fmt: skip
    """None when ``actual`` matches ``expected``, else a Failure naming the worst element."""
    try:
        if actual is None:  # (np.asarray would make it a 0-d nan)
            raise TypeError
        arr = np.asarray(actual, dtype=np.float64)
    except (TypeError, ValueError):
        got = "None (nothing computed)" if actual is None else type(actual).__name__
        return Failure(
            function, what, "type", cfg,
            f"{what}: expected an array of shape {expected.shape}, got {got}",
            expected_shape=expected.shape,
        )  # fmt: skip
    if arr.shape != expected.shape:
        return Failure(
            function, what, "shape", cfg,
            f"{what}: expected shape {expected.shape}, got {arr.shape}",
            expected_shape=expected.shape, actual_shape=arr.shape,
        )  # fmt: skip
    err = np.abs(arr - expected)
    allowed = atol + rtol * np.abs(expected)
    bad = ~(err <= allowed)  # NaN counts as bad
    if not bad.any():
        return None
    excess = np.where(np.isnan(err), np.inf, err - allowed)
    j = int(np.argmax(np.where(bad, excess, -np.inf)))
    index = tuple(int(i) for i in np.unravel_index(j, arr.shape))
    frac = float(bad.mean())
    msg = (
        f"{what}: shape {arr.shape} is right, values differ: worst element {what}{list(index)}: "
        f"expected {_fmt(expected.flat[j])}, got {_fmt(arr.flat[j])} "
        f"(|difference| {_fmt(err.flat[j])}); {int(bad.sum())} of {bad.size} elements "
        f"({100 * frac:.1f}%) differ"
    )
    return Failure(
        function, what, "value", cfg, msg,
        expected_shape=expected.shape, actual_shape=arr.shape, index=index,
        expected=float(expected.flat[j]), actual=float(arr.flat[j]), fraction=frac,
    )  # fmt: skip


def _call(function: str, fn: Callable, cfg: Any, args: tuple, kwargs: dict):
    """Call user code; (result, None) or (None, Failure) when it raised."""
    try:
        return fn(*[np.array(a) for a in args], **kwargs), None
    except NotImplementedError as e:
        return None, Failure(function, "(call)", "not implemented", cfg, f"raised {e!r}",
                             traceback=_user_traceback(e))  # fmt: skip
    except Exception as e:  # noqa: BLE001 - any error in user code is a finding, not a crash
        return None, Failure(
            function, "(call)", "exception", cfg, f"{function} raised {type(e).__name__}",
            traceback=_user_traceback(e),
        )  # fmt: skip


def _rng(cfg: Any, seed: int) -> np.random.Generator:
    key = repr(dataclasses.replace(cfg, label="")).encode()
    return np.random.default_rng([seed, zlib.crc32(key)])


# ----------------------------------------------------------------------------- signatures

_CONV_NAMES = ("stride", "padding", "dilation", "groups")
_POOL_NAMES = ("kernel_size", "stride", "padding", "dilation", "ceil_mode", "count_include_pad")


class _Signature:
    """Which config keywords a user function takes, and how many arrays lead its arguments."""

    def __init__(self, fn: Callable, argname: str, names: Sequence[str], arrays: Sequence[int]):
        if not callable(fn):
            raise TypeError(f"{argname} must be a function, got {type(fn).__name__}")
        try:
            params = list(inspect.signature(fn).parameters.values())
        except (TypeError, ValueError) as e:
            raise TypeError(f"{argname}: cannot read the signature of {fn!r}: {e}") from e
        var_kw = any(p.kind is p.VAR_KEYWORD for p in params)
        named = [p.name for p in params if p.kind is not p.VAR_KEYWORD]
        self.keywords = {n for n in names if n in named or var_kw}
        # the leading arrays: parameters without defaults that are not config keywords
        self.n_arrays = len([p for p in params if p.kind in (p.POSITIONAL_ONLY,
                             p.POSITIONAL_OR_KEYWORD) and p.name not in names
                             and p.default is p.empty])  # fmt: skip
        if self.n_arrays not in arrays:
            want = " or ".join(str(a) for a in arrays)
            raise TypeError(
                f"{argname} must take {want} arrays followed by keywords among "
                f"{', '.join(names)}; {getattr(fn, '__name__', fn)!r} takes {named}"
            )
        self.fn = fn

    def kwargs(self, values: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in values.items() if k in self.keywords}


def _resolve(obj: Any, argname: str) -> Callable | None:
    """A function, or 'module:function' / 'path/file.py:function' given as a string."""
    if obj is None or callable(obj):
        return obj
    if isinstance(obj, str):
        return load_function(obj)
    raise TypeError(f"{argname} must be a function or 'module:function', got {obj!r}")


def load_function(spec: str) -> Callable:
    """Import ``module:function`` (or ``path/to/file.py:function``) and return the function."""
    import importlib
    import importlib.util

    if ":" not in spec:
        raise ValueError(f"expected 'module:function', got {spec!r}")
    mod_name, _, attr = spec.rpartition(":")
    if mod_name.endswith(".py") or os.sep in mod_name:
        name = os.path.splitext(os.path.basename(mod_name))[0]
        loc = importlib.util.spec_from_file_location(name, mod_name)
        if loc is None or loc.loader is None:
            raise ValueError(f"cannot load {mod_name!r}")
        module = importlib.util.module_from_spec(loc)
        loc.loader.exec_module(module)
    else:
        import sys

        if os.getcwd() not in sys.path and "" not in sys.path:
            sys.path.insert(0, os.getcwd())  # the console script does not look in the cwd
        module = importlib.import_module(mod_name)
    fn = module
    for part in attr.split("."):
        fn = getattr(fn, part, None)
        if fn is None:
            raise ValueError(f"{mod_name!r} has no attribute {attr!r}")
    if not callable(fn):
        raise TypeError(f"{spec!r} is not a function")
    return fn


def _check_ndim(ndim: Any) -> tuple[tuple[int, ...], bool]:
    if ndim is None:
        return (1, 2, 3), False
    dims = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if not dims or any(not isinstance(d, int) or d not in (1, 2, 3) for d in dims):
        raise ValueError(f"ndim must be 1, 2, 3 or a tuple of them, got {ndim!r}")
    return dims, True


def _check_tol(atol: float, rtol: float) -> None:
    for name, v in (("atol", atol), ("rtol", rtol)):
        if not isinstance(v, (int, float)) or v < 0:
            raise ValueError(f"{name} must be a non-negative number, got {v!r}")


# ----------------------------------------------------------------------------- shrinking


def _shrink_candidates(cfg: Any) -> list[Any]:
    """Smaller neighbours of a configuration: each changes one thing (or one coupled pair)."""
    rep = dataclasses.replace
    out = []
    nd = cfg.ndim
    if cfg.batch > 1:
        out.append(rep(cfg, batch=1))
    if isinstance(cfg, ConvConfig):
        g = cfg.groups
        if g > 1:
            out.append(rep(cfg, groups=1, in_channels=1, out_channels=1))
            out.append(rep(cfg, groups=1))
        for cin in (g, cfg.in_channels - g):
            if 0 < cin < cfg.in_channels:
                out.append(rep(cfg, in_channels=cin))
        for cout in (g, cfg.out_channels - g):
            if 0 < cout < cfg.out_channels:
                out.append(rep(cfg, out_channels=cout))
        if cfg.bias:
            out.append(rep(cfg, bias=False))
    elif cfg.channels > 1:
        out.append(rep(cfg, channels=1))

    def with_dim(field: str, i: int, v: Any) -> Any:
        vals = list(getattr(cfg, field))
        vals[i] = v
        return rep(cfg, **{field: tuple(vals)})

    for i in range(nd):
        for field in ("dilation", "stride"):
            v = getattr(cfg, field)[i]
            if v > 1:
                out.append(with_dim(field, i, 1))
                if v > 2:
                    out.append(with_dim(field, i, v - 1))
        p = cfg.padding[i]
        if isinstance(p, tuple):
            for side in (0, 1):
                if p[side] > 0:
                    for v in (0, p[side] - 1):
                        q = list(p)
                        q[side] = v
                        out.append(with_dim("padding", i, tuple(q)))
        elif p > 0:
            out.append(with_dim("padding", i, 0))
            out.append(with_dim("padding", i, p - 1))
        k = cfg.kernel[i]
        if k > 1:
            out.append(with_dim("kernel", i, 1))
            out.append(with_dim("kernel", i, k - 1))
        n = cfg.size[i]
        for v in (1, n // 2, n - 1):
            if 0 < v < n:
                out.append(with_dim("size", i, v))
    if getattr(cfg, "ceil_mode", False):
        out.append(rep(cfg, ceil_mode=False))
    if getattr(cfg, "ties", False):
        out.append(rep(cfg, ties=False))
    seen, uniq = set(), []
    for c in out:
        if c.valid() and c.cost() < cfg.cost() and c not in seen:
            seen.add(c)
            uniq.append(c)
    uniq.sort(key=lambda c: c.cost())
    return uniq


def _shrink(failure: Failure, run: Callable[[Any], list[Failure]]) -> Failure:
    """Greedy: move to the smallest neighbour that fails the same way, until none does."""
    best = failure
    steps = 0
    improved = True
    while improved and steps < _MAX_SHRINK_STEPS:
        improved = False
        for cand in _shrink_candidates(best.config):
            steps += 1
            try:
                same = [f for f in run(cand) if f.same_fault(failure)]
            except Exception:  # noqa: BLE001 - a configuration the framework rejects
                continue
            if same:
                best = same[0]
                improved = True
                break
            if steps >= _MAX_SHRINK_STEPS:
                break
    if best is not failure:
        best.shrunk_from = failure.config
        best.config = dataclasses.replace(best.config, label=failure.config.label)
    return best


# ----------------------------------------------------------------------------- conv


def _conv_reference(cfg: ConvConfig, x, w, b, seed: int):
    """The framework's conv in float64: y, then (dy, dx, dw, db) for a random dy."""
    from tinygrad_np import nn  # noqa: F401 - loads nn.functional
    from tinygrad_np.autograd import grad
    from tinygrad_np.nn import functional as F
    from tinygrad_np.tensor import Tensor

    fn = getattr(F, f"conv{cfg.ndim}d")
    xt = Tensor(x, requires_grad=True)
    wt = Tensor(w, requires_grad=True)
    bt = Tensor(b, requires_grad=True) if b is not None else None
    y = fn(xt, wt, bt, stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation,
           groups=cfg.groups)  # fmt: skip
    dy = _rng(cfg, seed + 1).standard_normal(y.shape)
    wrt = [xt, wt] + ([bt] if bt is not None else [])
    grads = grad(y, wrt, Tensor(dy))
    return np.asarray(y.data), dy, [np.asarray(g.data) for g in grads]


def _run_conv(cfg: ConvConfig, fwd: _Signature | None, bwd: _Signature | None, seed: int,
              atol: float, rtol: float) -> list[Failure]:  # fmt: skip
    rng = _rng(cfg, seed)
    x = rng.standard_normal(cfg.x_shape)
    w = rng.standard_normal(cfg.w_shape)
    b = rng.standard_normal(cfg.out_channels) if cfg.bias else None
    y, dy, grads = _conv_reference(cfg, x, w, b, seed)
    hyper = dict(stride=cfg.stride, padding=cfg.padding, dilation=cfg.dilation, groups=cfg.groups)
    fails: list[Failure] = []
    arrays = (x, w) if b is None else (x, w, b)
    if fwd is not None:
        out, err = _call("forward", fwd.fn, cfg, arrays, fwd.kwargs(hyper))
        if err is None:
            err = _compare("forward", "y", y, out, cfg, atol, rtol)
            if err is not None and err.kind == "shape":
                err.hint = _conv_shape_hint(cfg, err.actual_shape)
        if err is not None:
            fails.append(err)
    if bwd is not None:
        out, err = _call("backward", bwd.fn, cfg, (*arrays, dy), bwd.kwargs(hyper))
        if err is not None:
            return fails + [err]
        names = ["dx", "dw", "db"][: len(grads)]
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(outs) < 2 or len(outs) > len(names):
            fails.append(Failure(
                "backward", "(result)", "type", cfg,
                f"backward must return ({', '.join(names)}), got {len(outs)} value(s)",
            ))  # fmt: skip
            return fails
        for name, exp, act in zip(names, grads, outs, strict=False):
            if act is None and name == "db":  # (the docs allow it: a bias not trained)
                continue  # (dx and dw as None fail below: nothing would be checked)
            err = _compare("backward", name, exp, act, cfg, atol, rtol)
            if err is not None:
                err.hint = _conv_grad_hint(name, exp, act, cfg, atol, rtol)
                fails.append(err)
    return fails


def _conv_shape_hint(cfg: ConvConfig, actual: tuple[int, ...] | None) -> str | None:
    try:
        from tinygrad_np import explain

        lines = explain.output_size_lines(cfg)
    except Exception:  # noqa: BLE001 - a hint must never hide the failure
        return None
    return "the output size per dimension is\n    " + "\n    ".join(lines)


_GRAD_SHAPES = {
    "dx": "dx must have x's shape (N, C_in, *size)",
    "dw": "dw must have w's shape (C_out, C_in // groups, *kernel): sum over the batch",
    "db": "db must have b's shape (C_out,): sum dy over the batch and every spatial axis",
}


def _conv_grad_hint(name: str, exp, act, cfg: ConvConfig, atol: float, rtol: float) -> str | None:
    """What the (shrunk) failing configuration still needs, as advice; a guess, not a proof."""
    try:
        act = np.asarray(act, np.float64)
    except (TypeError, ValueError):
        return None
    if act.shape != exp.shape:
        return _GRAD_SHAPES.get(name)
    spatial = tuple(range(2, exp.ndim))
    if name == "dw" and np.allclose(np.flip(exp, spatial), act, atol=10 * atol, rtol=10 * rtol):
        return "dw is the right one flipped in space: correlate x with dy, do not convolve"
    tips = []
    if any(s > 1 for s in cfg.stride):
        tips.append(
            "stride > 1: put stride-1 zeros between dy's entries (dilate it) before the "
            "full correlation"
            if name == "dx"
            else "stride > 1: window o starts at o*stride"
        )
    if any(pb != pa for pb, pa in cfg.padding):
        tips.append(
            "asymmetric padding: crop dx by p_before in front and p_after behind"
            if name == "dx"
            else "asymmetric padding: pad x by (p_before, p_after), in that order"
        )
    if cfg.groups > 1:
        tips.append(
            "groups > 1: input channels of group g only meet output channels "
            "g*C_out/groups ... (g+1)*C_out/groups - 1"
        )
    if any(d > 1 for d in cfg.dilation):
        tips.append("dilation > 1: kernel tap k sits at k*dilation, in the backward too")
    if tips:
        return "the smallest failing configuration needs " + "; ".join(tips)
    plain = "it fails without stride, padding, dilation or groups: "
    if name == "dx" and any(k > 1 for k in cfg.kernel):
        return plain + "dx is a full correlation of dy with the kernel flipped in every spatial dim"
    if name == "db":
        return plain + "db is dy summed over the batch and every spatial axis"
    return None


def conv(
    forward: Callable | str | None = None,
    backward: Callable | str | None = None,
    *,
    ndim: int | Sequence[int] | None = None,
    atol: float = 1e-8,
    rtol: float = 1e-6,
    seed: int = 0,
    shrink: bool = True,
) -> Report:
    """Check a NumPy convolution forward and/or backward against ``F.conv1d/2d/3d``.

    Parameters
    ----------
    forward : callable or "module:function", optional
        ``forward(x, w, b, stride, padding, dilation, groups) -> y`` with x (N, C_in,
        *spatial), w (C_out, C_in // groups, *kernel), b (C_out,), y (N, C_out, *out).
    backward : callable or "module:function", optional
        ``backward(x, w, b, dy, stride, padding, dilation, groups) -> (dx, dw, db)``;
        dy has y's shape. ``db`` (or any entry) may be None if you do not compute it.
    ndim : int or tuple of int, optional
        Spatial dimensionalities to check. By default 1, 2 and 3 are tried, and a
        dimensionality whose simplest configuration raises in your code is skipped
        with a note (name it here to have it count as a failure instead).
    atol, rtol : float
        An element passes when |actual - expected| <= atol + rtol |expected|.
    seed : int
        Seeds the random inputs and upstream gradients.
    shrink : bool
        Shrink the first failure to the smallest configuration that still fails.

    Leaving ``stride``, ``padding``, ``dilation`` or ``groups`` out of the signatures
    restricts the sweep (stride 1, no padding, dilation 1, groups 1); leaving ``b``
    out (``forward(x, w, ...)``, ``backward(x, w, dy, ...) -> (dx, dw)``) drops the bias.
    """
    forward = _resolve(forward, "forward")
    backward = _resolve(backward, "backward")
    if forward is None and backward is None:
        raise TypeError("check.conv needs forward=..., backward=... or both")
    dims, explicit = _check_ndim(ndim)
    _check_tol(atol, rtol)
    fwd = _Signature(forward, "forward", _CONV_NAMES, (2, 3)) if forward else None
    bwd = _Signature(backward, "backward", _CONV_NAMES, (3, 4)) if backward else None
    if fwd and bwd and (fwd.n_arrays == 3) != (bwd.n_arrays == 4):
        raise TypeError("forward and backward disagree about the bias argument b")
    sigs = [s for s in (fwd, bwd) if s is not None]
    has_bias = (fwd or bwd).n_arrays == (3 if fwd else 4)
    supports = {n: all(n in s.keywords for s in sigs) for n in _CONV_NAMES}
    names = " and ".join(n for n, s in (("forward", fwd), ("backward", bwd)) if s)
    report = Report(title=f"check.conv ({names})")
    for n, default in (("stride", "stride 1"), ("padding", "no padding"),
                       ("dilation", "dilation 1"), ("groups", "groups 1")):  # fmt: skip
        if not supports[n]:
            report.notes.append(f"no `{n}` parameter: {default} only")
    if not has_bias:
        report.notes.append("no `b` parameter: no bias")

    def run(cfg):
        return _run_conv(cfg, fwd, bwd, seed, atol, rtol)

    by_dim = {
        d: conv_configs(d, bias=has_bias, **{n: supports[n] for n in _CONV_NAMES}) for d in dims
    }
    _sweep(report, by_dim, run, explicit, shrink, "forward" if fwd else "backward")
    return report


def _sweep(report: Report, by_dim: dict[int, list], run: Callable, explicit: bool,
           shrink: bool, leading: str) -> None:  # fmt: skip
    """Run every configuration; skip a dimensionality the user's code does not support:
    its simplest configuration raised in ``leading``, the function called first (when
    the forward ran there and only the backward raised, the dimensionality is supported
    and the backward's exception is a failure)."""
    skipped: dict[int, Failure] = {}
    for d, cfgs in by_dim.items():
        for i, cfg in enumerate(cfgs):
            fails = run(cfg)
            call_fail = next((f for f in fails if f.what == "(call)"), None)
            if i == 0 and call_fail is not None:
                unsupported = call_fail.kind == "not implemented" or (
                    not explicit and call_fail.function == leading
                )
                if unsupported:
                    skipped[d] = call_fail
                    break
            report.checked.append(f"{d}-D {cfg.label}")
            if fails:
                report.failures.append(fails[0])
            else:
                report.passed.append(f"{d}-D {cfg.label}")
    for d, f in skipped.items():
        last = (f.traceback or f.message).splitlines()[-1]
        report.notes.append(
            f"{d}-D skipped: {f.function} raised on the simplest {d}-D configuration "
            f"({last}); pass ndim={d} to count that as a failure"
        )
    if not report.checked and skipped:
        # nothing ran at all: that is a failure, not a skip
        report.failures.extend(skipped.values())
        report.checked.extend(f"{d}-D {f.config.label}" for d, f in skipped.items())
    for f in report.failures:
        f.config = dataclasses.replace(f.config, label=f"{f.config.ndim}-D {f.config.label}")
    if report.failures:
        first = report.failures[0]
        report.first = _shrink(dataclasses.replace(first), run) if shrink else first


# ----------------------------------------------------------------------------- pool


def _pool_reference(cfg: PoolConfig, kind: str, x, seed: int):
    from tinygrad_np.autograd import grad
    from tinygrad_np.nn import functional as F
    from tinygrad_np.tensor import Tensor

    fn = getattr(F, f"{kind}_pool{cfg.ndim}d")
    xt = Tensor(x, requires_grad=True)
    kw = dict(stride=cfg.stride, padding=cfg.padding, ceil_mode=cfg.ceil_mode)
    if kind == "max":
        kw["dilation"] = cfg.dilation
    else:
        kw["count_include_pad"] = cfg.count_include_pad
    y = fn(xt, cfg.kernel, **kw)
    dy = _rng(cfg, seed + 1).standard_normal(y.shape)
    (dx,) = grad(y, [xt], Tensor(dy))
    return np.asarray(y.data), dy, np.asarray(dx.data)


def _run_pool(cfg: PoolConfig, kind: str, fwd, bwd, seed: int, atol: float,
              rtol: float) -> list[Failure]:  # fmt: skip
    x = _rng(cfg, seed).standard_normal(cfg.x_shape)
    if cfg.ties:
        x = np.round(x)  # (mostly -1, 0 and 1: most windows hold a tie)
    y, dy, dx = _pool_reference(cfg, kind, x, seed)
    hyper = dict(
        kernel_size=cfg.kernel, stride=cfg.stride, padding=tuple((p, p) for p in cfg.padding),
        dilation=cfg.dilation, ceil_mode=cfg.ceil_mode, count_include_pad=cfg.count_include_pad,
    )  # fmt: skip
    fails = []
    if fwd is not None:
        out, err = _call("forward", fwd.fn, cfg, (x,), fwd.kwargs(hyper))
        err = err or _compare("forward", "y", y, out, cfg, atol, rtol)
        if err is not None:
            fails.append(err)
    if bwd is not None:
        out, err = _call("backward", bwd.fn, cfg, (x, dy), bwd.kwargs(hyper))
        if err is None and isinstance(out, (tuple, list)) and len(out) == 1:
            out = out[0]
        err = err or _compare("backward", "dx", dx, out, cfg, atol, rtol)
        if err is not None:
            err.hint = _pool_hint(cfg, kind) if err.kind == "value" else None
            fails.append(err)
    return fails


def _pool_hint(cfg: PoolConfig, kind: str) -> str | None:
    """Advice from what the (shrunk) failing pooling configuration still has."""
    tips = []
    if cfg.ties and kind == "max":
        tips.append("tied maxima: only the first (in row-major order) takes the gradient")
    from tinygrad_np.convmath import conv_output_size

    overlap = False  # (windows that share cells: a stride below the span, and two windows)
    for n, k, s_, p, d in zip(cfg.size, cfg.kernel, cfg.stride, cfg.padding, cfg.dilation,
                              strict=True):  # fmt: skip
        span = d * (k - 1) + 1
        windows = conv_output_size(n, k, s_, p, d, cfg.ceil_mode)
        overlap |= s_ < span and windows > 1
    if overlap:
        tips.append("overlapping windows: add (+=) each window's gradient, do not assign")
    if any(cfg.padding):
        tips.append(
            "padding: padded cells never receive gradient"
            + ("" if kind == "max" else "; the divisor counts them only with count_include_pad")
        )
    if cfg.ceil_mode:
        tips.append("ceil_mode: the last window is partial")
    if any(d > 1 for d in cfg.dilation):
        tips.append("dilation > 1: window tap k sits at k*dilation")
    return "the smallest failing configuration needs " + "; ".join(tips) if tips else None


def pool(
    forward: Callable | str | None = None,
    backward: Callable | str | None = None,
    *,
    kind: str = "max",
    ndim: int | Sequence[int] | None = None,
    atol: float = 1e-8,
    rtol: float = 1e-6,
    seed: int = 0,
    shrink: bool = True,
) -> Report:
    """Check a NumPy max or average pooling against ``F.max_pool*`` / ``F.avg_pool*``.

    ``forward(x, kernel_size, stride, padding, dilation, ceil_mode) -> y`` and
    ``backward(x, dy, kernel_size, stride, padding, dilation, ceil_mode) -> dx``
    (``count_include_pad`` may be taken too, for ``kind="avg"``); ``kernel_size``,
    ``stride``, ``dilation`` one int per spatial dim, ``padding`` one ``(before,
    after)`` pair per spatial dim (always symmetric here, as in PyTorch; max pooling
    pads with -inf, average pooling with zeros). Parameters the functions do not take
    are left at their defaults (stride = kernel_size, no padding, dilation 1, floor).
    Other arguments as for :func:`conv`.
    """
    if kind not in ("max", "avg"):
        raise ValueError(f"kind must be 'max' or 'avg', got {kind!r}")
    forward = _resolve(forward, "forward")
    backward = _resolve(backward, "backward")
    if forward is None and backward is None:
        raise TypeError("check.pool needs forward=..., backward=... or both")
    dims, explicit = _check_ndim(ndim)
    _check_tol(atol, rtol)
    fwd = _Signature(forward, "forward", _POOL_NAMES, (1,)) if forward else None
    bwd = _Signature(backward, "backward", _POOL_NAMES, (2,)) if backward else None
    sigs = [s for s in (fwd, bwd) if s is not None]
    if not all("kernel_size" in s.keywords for s in sigs):
        raise TypeError("forward and backward must take a `kernel_size` parameter")
    supports = {n: all(n in s.keywords for s in sigs) for n in _POOL_NAMES}
    names = " and ".join(n for n, s in (("forward", fwd), ("backward", bwd)) if s)
    report = Report(title=f"check.pool kind={kind!r} ({names})")
    relevant = ["stride", "padding", "ceil_mode"]
    relevant.append("dilation" if kind == "max" else "count_include_pad")
    for n in relevant:
        if not supports[n]:
            report.notes.append(f"no `{n}` parameter: left at its default")

    def run(cfg):
        return _run_pool(cfg, kind, fwd, bwd, seed, atol, rtol)

    by_dim = {
        d: pool_configs(d, kind, **{n: supports[n] for n in _POOL_NAMES if n != "kernel_size"})
        for d in dims
    }
    _sweep(report, by_dim, run, explicit, shrink, "forward" if fwd else "backward")
    return report


# ----------------------------------------------------------------------------- vjp


@dataclasses.dataclass(frozen=True)
class VjpConfig:
    """The input shapes of one call of an arbitrary function."""

    shapes: tuple[tuple[int, ...], ...]
    label: str = dataclasses.field(default="", compare=False)

    @property
    def ndim(self) -> int:
        return 0

    def cost(self) -> int:
        return sum(int(np.prod(s)) for s in self.shapes)

    def describe(self) -> str:
        return "inputs of shapes " + ", ".join(str(s) for s in self.shapes)


def _vjp_candidates(cfg: VjpConfig) -> list[VjpConfig]:
    """Shrink one axis length by one, or every axis of that length at once (coupled dims)."""
    out = []
    lengths = sorted({n for s in cfg.shapes for n in s if n > 1}, reverse=True)
    for n in lengths:
        for new in (1, n - 1):
            out.append(tuple(tuple(new if m == n else m for m in s) for s in cfg.shapes))
    for i, s in enumerate(cfg.shapes):
        for a, n in enumerate(s):
            if n > 1:
                shapes = list(cfg.shapes)
                shapes[i] = s[:a] + (n - 1,) + s[a + 1 :]
                out.append(tuple(shapes))
    uniq = []
    for shapes in out:
        c = VjpConfig(shapes)
        if c.cost() < cfg.cost() and c not in uniq:
            uniq.append(c)
    return sorted(uniq, key=lambda c: c.cost())


def vjp(
    fn: Callable | str,
    vjp_fn: Callable | str,
    *shapes: Sequence[int] | np.ndarray,
    configs: Sequence[Sequence[Sequence[int]]] | None = None,
    reference: Callable | None = None,
    eps: float = 1e-6,
    atol: float = 1e-6,
    rtol: float = 1e-5,
    seed: int = 0,
    shrink: bool = True,
) -> Report:
    """Check ``vjp_fn`` (and ``fn``) for an arbitrary NumPy function.

    ``fn(*arrays) -> y`` and ``vjp_fn(*arrays, dy) -> grads`` (one gradient per
    input, a single array when there is one input). With ``reference`` (a function
    of Tensors built from tinygrad_np ops) values and gradients are compared with
    the framework; without it the gradients are compared with central finite
    differences of ``fn`` in float64 (step ``eps``).

    Give the input shapes positionally (``check.vjp(f, f_vjp, (3, 4), (4,))``) for
    one configuration, or ``configs=[((3, 4), (4,)), ((1, 5), (5,))]`` for several.
    A failure is shrunk by shortening axes for as long as ``fn`` still runs and
    still fails.

    >>> import numpy as np
    >>> rep = vjp(np.tanh, lambda x, dy: dy * (1 - np.tanh(x) ** 2), (3, 2))
    >>> rep.ok
    True
    """
    fn = _resolve(fn, "fn")
    vjp_fn = _resolve(vjp_fn, "vjp_fn")
    if fn is None or vjp_fn is None:
        raise TypeError("check.vjp needs fn and vjp_fn")
    _check_tol(atol, rtol)
    fixed: dict[tuple, list[np.ndarray]] = {}
    if configs is None:
        if not shapes:
            raise TypeError("check.vjp needs the input shapes (positionally) or configs=[...]")
        configs = [shapes]
    cfgs = []
    for i, c in enumerate(configs):
        arrays = [a for a in c if isinstance(a, np.ndarray)]
        try:
            shp = tuple(
                tuple(int(n) for n in (a.shape if isinstance(a, np.ndarray) else a)) for a in c
            )
        except TypeError as e:
            raise ValueError(f"configs[{i}] must hold shapes (tuples of ints) or arrays") from e
        cfg = VjpConfig(shp, label=f"configuration {i}")
        if arrays:
            fixed[shp] = [np.asarray(a, np.float64) if isinstance(a, np.ndarray) else None
                          for a in c]  # fmt: skip
        cfgs.append(cfg)

    def run(cfg: VjpConfig) -> list[Failure]:
        rng = _rng(cfg, seed)
        given = fixed.get(cfg.shapes)
        xs = [
            given[i] if given and given[i] is not None else rng.standard_normal(s)
            for i, s in enumerate(cfg.shapes)
        ]
        out, err = _call("fn", fn, cfg, tuple(xs), {})
        if err is not None:
            return [err]
        try:
            y_user = np.asarray(out, np.float64)
        except (TypeError, ValueError):
            return [Failure("fn", "y", "type", cfg, f"fn returned {type(out).__name__}")]
        fails = []
        if reference is not None:
            from tinygrad_np.autograd import grad
            from tinygrad_np.tensor import Tensor

            ts = [Tensor(x, requires_grad=True) for x in xs]
            try:
                yt = reference(*ts)
            except Exception as e:  # noqa: BLE001
                return [Failure("reference", "(call)", "exception", cfg, "reference raised",
                                traceback=_user_traceback(e))]  # fmt: skip
            y_ref = np.asarray(yt.data, np.float64)
            err = _compare("fn", "y", y_ref, y_user, cfg, atol, rtol)
            if err is not None:
                return [err]
            dy = rng.standard_normal(y_ref.shape)
            gr = grad(yt, ts, Tensor(dy), allow_unused=True)
            expected = [np.zeros(x.shape) if g is None else np.asarray(g.data) for x, g in
                        zip(xs, gr, strict=True)]  # fmt: skip
        else:
            dy = rng.standard_normal(y_user.shape)
            expected = [_numerical(fn, xs, i, dy, eps) for i in range(len(xs))]
        out, err = _call("vjp_fn", vjp_fn, cfg, (*xs, dy), {})
        if err is not None:
            return fails + [err]
        outs = list(out) if isinstance(out, (tuple, list)) else [out]
        if len(outs) != len(xs):
            return fails + [Failure("vjp_fn", "(result)", "type", cfg,
                                    f"vjp_fn returned {len(outs)} gradients for {len(xs)} "
                                    "inputs")]  # fmt: skip
        for i, (e, a) in enumerate(zip(expected, outs, strict=True)):
            if a is None and not np.any(e):  # (None for a zero gradient, as PyTorch's)
                continue
            err = _compare("vjp_fn", f"grad[{i}]", e, a, cfg, atol, rtol)
            if err is not None:
                fails.append(err)
        return fails

    report = Report(title="check.vjp (" + ("vs the framework" if reference else
                                           "vs finite differences") + ")")  # fmt: skip
    for cfg in cfgs:
        fails = run(cfg)
        report.checked.append(cfg.label)
        if fails:
            report.failures.append(fails[0])
        else:
            report.passed.append(cfg.label)
    if report.failures:
        first = min(report.failures, key=lambda f: f.config.cost())
        if shrink and not fixed:
            first = _shrink_vjp(dataclasses.replace(first), run)
        report.first = first
    return report


def _shrink_vjp(failure: Failure, run: Callable) -> Failure:
    best, steps, improved = failure, 0, True
    while improved and steps < _MAX_SHRINK_STEPS:
        improved = False
        for cand in _vjp_candidates(best.config):
            steps += 1
            same = [f for f in run(cand) if f.same_fault(failure)]
            if same:
                best, improved = same[0], True
                break
    if best is not failure:
        best.shrunk_from = failure.config
        best.config = dataclasses.replace(best.config, label=failure.config.label)
    return best


def _numerical(fn: Callable, xs: list[np.ndarray], i: int, dy: np.ndarray, eps: float):
    """d<dy, fn(xs)>/d xs[i] by central differences."""
    x = xs[i].copy()
    out = np.zeros(x.shape)
    args = list(xs)
    for j in range(x.size):
        old = x.flat[j]
        x.flat[j] = old + eps
        args[i] = x
        fp = np.sum(np.asarray(fn(*args), np.float64) * dy)
        x.flat[j] = old - eps
        fm = np.sum(np.asarray(fn(*args), np.float64) * dy)
        x.flat[j] = old
        out.flat[j] = (fp - fm) / (2 * eps)
    return out
