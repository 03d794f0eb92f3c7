"""Tensor: a NumPy array, its dtype rules, and the link into the graph.

Methods are one-liners that call the ops in ``tinygrad_np.ops``; each op
records itself when an input requires grad and grad mode is on.
"""

from __future__ import annotations

import math
import numbers
import operator
from collections.abc import Sequence
from typing import Any

import numpy as np

from tinygrad_np import autograd
from tinygrad_np.autograd import run_backward, weak

_FLOAT_DEFAULT = np.float32
# float16's dtype: compared with ``is`` on the hot paths (the builtin dtypes are singletons;
# a byte-swapped float16 array's is not, and takes the plain float16 arithmetic)
FLOAT16 = np.dtype(np.float16)


def _float16_misses(o) -> bool:
    """Whether ``o`` is a Python or NumPy real scalar that float16 cannot hold exactly (out
    of its range, NaN, or between its values): a float16 op then applies it in float32."""
    if not isinstance(o, (float, int, np.floating, np.integer)) or isinstance(
        o, (bool, np.bool_)
    ):
        return False
    f = float(o)
    if not abs(f) <= 65504.0:  # (beyond float16, or NaN: no cast, which would warn)
        return True
    with np.errstate(all="ignore"):  # (a cast below float16's range underflows quietly)
        return float(np.float16(f)) != f


# (lowest, highest, bits) of each integer dtype, and the largest finite value of each
# float dtype: looked up per scalar operation (np.iinfo / np.finfo cost a microsecond)
_INT_RANGE = {
    np.dtype(t): (int(np.iinfo(t).min), int(np.iinfo(t).max), np.iinfo(t).bits)
    for t in (np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16, np.uint32, np.uint64)
}
_FLOAT_MAX = {np.dtype(t): float(np.finfo(t).max) for t in (np.float16, np.float32, np.float64)}


def to_dtype(dtype: Any) -> np.dtype | None:
    """Normalise a dtype given as a string, NumPy type or np.dtype ('float64', np.float32)."""
    if dtype is None:
        return None
    try:
        dt = np.dtype(dtype)
    except TypeError as e:
        raise TypeError(f"dtype must be a NumPy dtype or its name, got {dtype!r}") from e
    if dt.kind not in "biufc":
        raise TypeError(f"dtype must be a numeric (bool, int or float) dtype, got {dt}")
    return dt


def _has_float64(data: Any) -> bool:
    """Whether a (nested) list holds float64 NumPy arrays, scalars or tensors, judged by
    its first entry at each level (a scan of every entry would double the time a long
    list of Python floats takes)."""
    while isinstance(data, (list, tuple)) and len(data):
        data = data[0]
    if isinstance(data, Tensor):
        data = data.data
    return isinstance(data, (np.ndarray, np.generic)) and data.dtype == np.float64


def _to_array(data: Any, dtype: np.dtype | None) -> np.ndarray:
    if isinstance(data, Tensor):
        arr = data.data
    elif isinstance(data, np.ndarray):
        arr = data
    elif isinstance(data, (np.generic)):
        arr = np.asarray(data)
    else:
        arr = np.asarray(data)
        # Python floats: PyTorch's default dtype; float64 NumPy values or tensors in the
        # list keep float64 (as PyTorch)
        if arr.dtype == np.float64 and dtype is None and not _has_float64(data):
            arr = arr.astype(_FLOAT_DEFAULT)
        elif arr.dtype == object:
            raise TypeError(f"cannot make a Tensor from {type(data).__name__}: {data!r:.80}")
    if arr.dtype.kind not in "biufc":  # (strings, bytes, objects, dates)
        raise TypeError(f"cannot make a Tensor of dtype {arr.dtype} (numbers and bools only)")
    if dtype is not None:
        return np.array(arr, dtype=dtype)
    return np.array(arr)  # a copy, as torch.tensor


def _broadcasts_to(shape: tuple, target: tuple) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target``."""
    try:
        return np.broadcast_shapes(shape, target) == tuple(target)
    except ValueError:
        return False


class Tensor:
    """An n-dimensional array that records the operations applied to it.

    Parameters
    ----------
    data : scalar, nested list, np.ndarray or Tensor
        Python floats become float32; NumPy arrays keep their dtype. The data is copied.
    requires_grad : bool
        Record operations on this tensor so that ``backward`` can reach it.
        Only floating-point tensors can require grad.
    dtype : str or NumPy dtype, optional
        Convert the data to this dtype.

    >>> t = Tensor([[1.0, 2.0]], requires_grad=True)
    >>> (t * t).sum().backward()
    >>> t.grad.tolist()
    [[2.0, 4.0]]
    """

    # (_version: set only by an in-place change, see _modified; unset reads as never)
    __slots__ = (
        "_data", "_requires_grad", "grad_fn", "_grad", "_hooks", "name", "_version", "__weakref__"
    )  # fmt: skip
    __array_priority__ = 1000  # so that ndarray + Tensor gives Tensor.__radd__

    def __init__(self, data: Any, requires_grad: bool = False, dtype: Any = None):
        if not isinstance(requires_grad, (bool, np.bool_)):
            raise TypeError(f"Tensor: requires_grad must be a bool, got {requires_grad!r}")
        self._data = _to_array(data, to_dtype(dtype))
        self.grad_fn = None
        self._grad = None
        self._hooks = None
        self.name = None
        self._requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _make(cls, data: np.ndarray, requires_grad: bool, grad_fn) -> Tensor:
        t = cls.__new__(cls)
        if type(data) is not np.ndarray:  # (a 0-d result NumPy gave as a scalar: an array,
            data = np.asarray(data)  # so that .data is one and in-place ops can write it)
        t._data = data
        t._requires_grad = requires_grad
        t.grad_fn = grad_fn
        t._grad = None
        t._hooks = None
        t.name = None
        return t

    # ------------------------------------------------------------------ attributes
    def _set_data(self, value: Any) -> None:
        """``t.data = array`` replaces the values (no graph, as PyTorch's ``.data``); a
        Tensor gives its array (PyTorch's ``p.data = q``). Anything else raises: a Tensor or
        a string stored as the data would break every later op."""
        if isinstance(value, Tensor):
            value = value._data
        elif isinstance(value, np.generic):  # (NumPy arithmetic on a 0-d array gives one)
            value = np.asarray(value)
        if self.requires_grad and isinstance(value, np.ndarray) and value.dtype.kind != "f":
            raise TypeError(
                f"Tensor.data: a tensor that requires grad takes floating-point values, got an "
                f"array of {value.dtype}"
            )
        if not isinstance(value, np.ndarray) or value.dtype.kind not in "biufc":
            got = type(value).__name__
            if isinstance(value, np.ndarray):
                got = f"an array of {value.dtype}"
            raise TypeError(f"Tensor.data must be a NumPy array of numbers or a Tensor, got {got}")
        self._data = value

    # (reads cost a C call: operator.attrgetter)
    data = property(
        operator.attrgetter("_data"),
        _set_data,
        doc="The values: the live NumPy array, not a copy. Assigning a NumPy array of "
        "numbers (or a Tensor, whose array is taken) replaces them outside the graph.",
    )

    @property
    def shape(self) -> tuple[int, ...]:
        return self._data.shape

    @property
    def ndim(self) -> int:
        return self._data.ndim

    @property
    def dtype(self) -> np.dtype:
        return self._data.dtype

    @property
    def size(self) -> int:
        return self._data.size

    @property
    def is_leaf(self) -> bool:
        return self.grad_fn is None

    @property
    def grad(self) -> Tensor | None:
        return self._grad

    @grad.setter
    def grad(self, value: Tensor | None) -> None:
        if value is not None and not isinstance(value, Tensor):
            arr = np.asarray(value)
            if arr.dtype.kind not in "iufb":
                raise TypeError(f"assigned grad must be a Tensor or numbers, got {value!r:.60}")
            value = Tensor(arr.astype(self.dtype))
        if value is not None and value.shape != self.shape:
            raise ValueError(
                f"assigned grad has shape {tuple(value.shape)} but the tensor has shape "
                f"{tuple(self.shape)}"
            )
        if value is not None and value.dtype != self.dtype:
            raise TypeError(
                f"assigned grad has dtype {value.dtype} but the tensor has dtype {self.dtype} "
                "(as in PyTorch, a gradient has its tensor's dtype)"
            )
        if value is self:  # (the next backward would add into the tensor's own values)
            raise RuntimeError("a tensor cannot be assigned as its own grad")
        self._grad = value

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Set ``requires_grad`` in place (leaves only; floating dtypes only)."""
        if not isinstance(requires_grad, (bool, np.bool_)):
            raise TypeError(f"requires_grad must be a bool, got {requires_grad!r:.60}")
        if requires_grad and self._data.dtype.kind != "f":
            hint = (
                "tinygrad_np differentiates real functions only: keep the real and imaginary "
                "parts as two float tensors" if self._data.dtype.kind == "c"
                else "convert it with .astype('float32') first"
            )  # fmt: skip
            raise TypeError(
                f"only floating-point tensors can require grad; this tensor's dtype is "
                f"{self._data.dtype} ({hint})"
            )
        if not requires_grad and self.grad_fn is not None:
            raise RuntimeError("requires_grad can only be switched off on a leaf; use .detach()")
        self._requires_grad = bool(requires_grad)
        return self

    def _set_requires_grad(self, value: bool) -> None:
        self.requires_grad_(value)

    # (reads cost a C call, as .data's; assigning checks as requires_grad_ does: an int
    # tensor cannot require grad, a non-leaf cannot stop)
    requires_grad = property(
        operator.attrgetter("_requires_grad"),
        _set_requires_grad,
        doc="Whether operations on this tensor are recorded for backward.",
    )

    def __repr__(self) -> str:
        body = np.array2string(self._data, separator=", ", precision=4, threshold=50)
        extra = ""
        if self.dtype != _FLOAT_DEFAULT:
            extra += f", dtype={self.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{self.grad_fn.name}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"Tensor({body}{extra})"

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]

    def __iter__(self):
        if self.ndim == 0:
            raise TypeError("iteration over a 0-d tensor")
        return (self[i] for i in range(self.shape[0]))

    def __bool__(self) -> bool:
        if self.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self.size} elements is ambiguous"
            )
        return bool(self._data)

    def __float__(self) -> float:
        return float(self.item())

    def __int__(self) -> int:
        return int(self.item())

    def __index__(self) -> int:
        """An integer tensor of one element as an index (``lst[t]``, ``x[:t]``), as PyTorch."""
        if self.size != 1 or self._data.dtype.kind not in "iub":
            raise TypeError(
                "only integer tensors of a single element can be converted to an index, got "
                f"dtype {self.dtype} and shape {tuple(self.shape)}"
            )
        return int(self.item())

    def __format__(self, spec: str) -> str:
        """A 0-d tensor formats as its number (``f"{loss:.4f}"``), as PyTorch; any other
        takes only the empty format."""
        if self.ndim == 0:
            return format(self.item(), spec)
        return object.__format__(self, spec)

    def __hash__(self) -> int:
        return id(self)

    # ------------------------------------------------------------------ conversion
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (shared, not copied; the graph is not consulted, so
        this works on a tensor that requires grad, unlike PyTorch's)."""
        return self._data

    def __array__(self, dtype=None, copy=None):
        """NumPy's protocol: the data itself, or a copy when ``copy`` is True or a dtype
        conversion needs one (which ``copy=False`` forbids, as NumPy's own arrays do)."""
        converts = dtype is not None and np.dtype(dtype) != self._data.dtype
        if converts and copy is False:
            raise ValueError(
                f"cannot convert a {self._data.dtype} tensor to {dtype} without a copy"
            )
        if converts:
            return self._data.astype(dtype)
        return self._data.copy() if copy else self._data

    def item(self) -> float | int | bool:
        if self.size != 1:
            raise ValueError(
                f"item() needs a tensor with one element, this one has shape {tuple(self.shape)}"
            )
        return self._data.reshape(()).item()

    def tolist(self) -> Any:
        return self._data.tolist()

    def detach(self) -> Tensor:
        """The same data (shared) cut from the graph."""
        return Tensor._make(self._data, False, None)

    def clone(self) -> Tensor:
        return _mv.Clone.apply(self)

    def astype(self, dtype: Any) -> Tensor:
        if dtype is None:
            raise TypeError("astype: dtype must be a NumPy dtype or its name, got None")
        dt = to_dtype(dtype)
        if dt == self.dtype:
            return self
        if dt.kind not in "fc":  # integers and bools have no gradient: nothing recorded
            return Tensor._make(self._data.astype(dt), False, None)
        return _ew.Cast.apply(self, dtype=dt)

    def float(self) -> Tensor:
        return self.astype(np.float32)

    def double(self) -> Tensor:
        return self.astype(np.float64)

    # ------------------------------------------------------------------ autograd
    def backward(
        self, gradient: Any = None, retain_graph: bool | None = None, create_graph: bool = False
    ) -> None:
        """Accumulate d(self)/d(leaf) into the ``.grad`` of every leaf that requires grad.

        ``gradient`` is the upstream gradient (needed unless self is a scalar).
        ``retain_graph`` keeps the saved arrays for another backward;
        ``create_graph`` records this pass so that the gradients can be
        differentiated again (implies ``retain_graph``).
        """
        if retain_graph is None:
            retain_graph = create_graph
        (g,) = autograd._default_grad_outputs([self], [gradient])
        run_backward([self], [g], retain_graph, create_graph)

    def retain_grad(self) -> None:
        """Keep this non-leaf tensor's gradient in ``.grad`` after backward."""
        if self.grad_fn is not None:
            self.grad_fn._retain = weak(self)
        elif not self.requires_grad:
            raise RuntimeError("retain_grad() on a tensor that does not require grad")

    def register_hook(self, hook) -> Any:
        """Call ``hook(grad)`` when this tensor's gradient is computed; a returned Tensor
        replaces the gradient. Returns a handle with ``remove()``."""
        if not callable(hook):
            raise TypeError(f"register_hook: hook must be callable, got {hook!r:.60}")
        if not self.requires_grad:
            raise RuntimeError("cannot register a hook on a tensor that does not require grad")
        owner = self.grad_fn if self.grad_fn is not None else self
        if owner._hooks is None:
            owner._hooks = []
        entry = _Hook(hook)  # (one entry a registration: remove() takes out its own)
        owner._hooks.append(entry)
        return _HookHandle(owner._hooks, entry)

    # ------------------------------------------------------------------ operators
    def _other(self, x: Any, wrap: bool = False) -> Tensor:
        """A Tensor for the other operand; a Python scalar takes this tensor's dtype (so does
        a NumPy scalar, as in PyTorch: ``x / np.prod(shape)`` keeps a float32 x float32).
        An int outside an integer dtype's range is an OverflowError, or with ``wrap`` (add,
        subtract, multiply) wraps round it, as PyTorch's (``u8 + (-1)`` is ``u8 - 1``)."""
        if isinstance(x, Tensor):
            return x
        if (type(x) is float or type(x) is int) and self._data.dtype.kind == "f":  # fast path
            return Tensor._make(np.asarray(x, dtype=self._data.dtype), False, None)
        if isinstance(x, np.generic):
            x = x.item()
        if isinstance(x, (list, tuple)):  # (as Tensor(x): Python floats become float32)
            return Tensor(x)
        if x is None or isinstance(x, (str, bytes)):
            raise TypeError(
                f"unsupported operand for a Tensor: {type(x).__name__} {x!r:.40} (numbers, "
                "arrays and Tensors only)"
            )
        if isinstance(x, numbers.Number):
            kind = self.dtype.kind
            if isinstance(x, complex) and kind != "c":  # (complex of the tensor's precision,
                dt = np.complex128 if self._data.dtype == np.float64 else np.complex64  # as
                return Tensor._make(np.asarray(x, dtype=dt), False, None)  # PyTorch's)
            if kind in "fc" or (kind in "iub" and isinstance(x, (bool, int))):
                if kind == "b" and not isinstance(x, bool):
                    return Tensor._make(np.asarray(x), False, None)
                if kind in "iu" and not isinstance(x, bool):
                    lo, hi, bits = _INT_RANGE[self._data.dtype]
                    if not lo <= x <= hi:
                        if not wrap or not -(2**63) <= x < 2**63:
                            raise OverflowError(
                                f"the int {x} is out of range for the tensor's dtype "
                                f"{self.dtype}"
                            )
                        x = (x - lo) % (1 << bits) + lo
                return Tensor._make(np.asarray(x, dtype=self.dtype), False, None)
            return Tensor._make(np.asarray(x, dtype=_FLOAT_DEFAULT), False, None)
        return Tensor._make(np.asarray(x), False, None)

    def _pair(self, x: Any, true_div: bool = False, wrap: bool = False) -> tuple[Tensor, Tensor]:
        """(self, other) promoted as PyTorch does: an integer or bool tensor meets a
        Python float, or is divided, in the default float dtype (float32), not float64."""
        if self._data.dtype.kind in "iub" and isinstance(x, np.generic):
            x = x.item()  # (a NumPy scalar counts as the Python scalar)
        if true_div and self._data.dtype.kind in "iub" and type(x) in (int, bool):
            # (divided in float32: an int beyond the tensor's dtype is just a number here)
            other = Tensor._make(np.asarray(x, dtype=_FLOAT_DEFAULT), False, None)
            return self.astype(_FLOAT_DEFAULT), other
        other = self._other(x, wrap)
        if self._data.dtype.kind in "iub" and (
            type(x) is float or type(x) is complex or (true_div and other.data.dtype.kind in "iub")
        ):
            promoted = self.astype(_FLOAT_DEFAULT)
            if other.data.dtype.kind in "iub" or type(x) is float:
                other = other.astype(_FLOAT_DEFAULT)
            return promoted, other
        return self, other

    def _half(self, op, o, reverse: bool = False, **pair) -> Tensor:
        """``op`` of this float16 tensor and ``o`` (``o`` first when ``reverse``). A Python or
        NumPy scalar that float16 cannot hold exactly is applied in float32, the result
        rounded once to float16, as PyTorch computes it: rounded first, ``x / 100000`` was
        x / inf = 0 and ``x * 1e-8`` x * 0."""
        if _float16_misses(o):
            # (a power, and a scalar divided by x, read x in their backward, as their
            # float32 ops do: a change to x in place then raises; see elementwise.WidenRead)
            if op is _ew.Pow or (op is _ew.Div and reverse):
                a = _ew.WidenRead.apply(self, dtype=np.dtype(np.float32), of=op.__name__.lower())
            else:
                a = self.astype(np.float32)
            b = Tensor._make(np.asarray(o, dtype=np.float32), False, None)
            return (op.apply(b, a) if reverse else op.apply(a, b)).astype(np.float16)
        a, b = self._pair(o, **pair)
        return op.apply(b, a) if reverse else op.apply(a, b)

    def __add__(self, o):
        if self._data.dtype is FLOAT16:
            return self._half(_ew.Add, o, wrap=True)
        return _ew.Add.apply(*self._pair(o, wrap=True))

    def __radd__(self, o):
        if self._data.dtype is FLOAT16:
            return self._half(_ew.Add, o, reverse=True, wrap=True)
        a, b = self._pair(o, wrap=True)
        return _ew.Add.apply(b, a)

    def __sub__(self, o):
        if self._data.dtype is FLOAT16:
            return self._half(_ew.Sub, o, wrap=True)
        return _ew.Sub.apply(*self._pair(o, wrap=True))

    def __rsub__(self, o):
        if self._data.dtype is FLOAT16:
            return self._half(_ew.Sub, o, reverse=True, wrap=True)
        a, b = self._pair(o, wrap=True)
        return _ew.Sub.apply(b, a)

    def __mul__(self, o):
        if self._data.dtype is FLOAT16:
            return self._half(_ew.Mul, o, wrap=True)
        return _ew.Mul.apply(*self._pair(o, wrap=True))

    def __rmul__(self, o):
        if self._data.dtype is FLOAT16:
            return self._half(_ew.Mul, o, reverse=True, wrap=True)
        a, b = self._pair(o, wrap=True)
        return _ew.Mul.apply(b, a)

    def __truediv__(self, o):
        if self._data.dtype is FLOAT16:
            return self._half(_ew.Div, o, true_div=True)
        return _ew.Div.apply(*self._pair(o, true_div=True))

    def __rtruediv__(self, o):
        if self._data.dtype is FLOAT16:
            return self._half(_ew.Div, o, reverse=True, true_div=True)
        a, b = self._pair(o, true_div=True)
        return _ew.Div.apply(b, a)

    def __pow__(self, o):
        if self._data.dtype is FLOAT16:
            return self._half(_ew.Pow, o)
        return _ew.Pow.apply(*self._pair(o))

    def __rpow__(self, o):
        if self._data.dtype is FLOAT16:
            return self._half(_ew.Pow, o, reverse=True)
        a, b = self._pair(o)
        return _ew.Pow.apply(b, a)

    def __matmul__(self, o):
        return _la.matmul(self, self._other(o))

    def __rmatmul__(self, o):
        return _la.matmul(self._other(o), self)

    def __neg__(self):
        return _ew.Neg.apply(self)

    def __pos__(self):
        return self

    def __abs__(self):
        return self.abs()

    def _inplace(self, o, ufunc) -> Tensor:
        if self.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                "in-place operation on a tensor that requires grad; do it under "
                "tinygrad_np.no_grad() or on .data"
            )
        if isinstance(o, Tensor) and o.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                "in-place operation with an operand that requires grad would leave its "
                "gradient out; write x = x + w (a recorded op), or do it under "
                "tinygrad_np.no_grad()"
            )
        if not self._data.flags.writeable:
            raise RuntimeError(
                "in-place operation on a tensor whose entries share memory (the result of "
                "expand, or a view of one): use the out-of-place form or a .clone()"
            )
        other = o.data if isinstance(o, Tensor) else o
        if self._data.dtype is FLOAT16 and _float16_misses(other):  # (see _half)
            other = np.float32(other)  # (NumPy computes in float32, rounds once into out)
        try:
            ufunc(self._data, other, out=self._data, casting="same_kind")
        except ValueError:
            shape = np.shape(other)
            try:
                fits = np.broadcast_shapes(shape, self.shape) == self.shape
            except ValueError:
                fits = False
            if fits:  # (another cause: NumPy's own message)
                raise
            raise ValueError(
                f"{ufunc.__name__} in place: an operand of shape {tuple(shape)} cannot be "
                f"broadcast to the tensor's shape {tuple(self.shape)}"
            ) from None
        self._modified()
        return self

    def _zero_grad(self, set_to_none: bool) -> None:
        """``zero_grad`` for this parameter: ``.grad`` to None, or to zeros that are a leaf
        (a gradient made with create_graph=True is detached first, as in PyTorch: zeroing
        it in place would chain each step's graph to the last one's)."""
        g = self.grad
        if g is None:
            return
        if set_to_none:
            self.grad = None
        elif g.grad_fn is not None or g.requires_grad or not g.data.flags.writeable:
            self.grad = Tensor._make(np.zeros_like(g.data), False, None)
        else:
            g.data[...] = 0
            g._modified()  # (a graph that read this gradient raises, as PyTorch's)

    def _modified(self) -> None:
        """Note an in-place change of the data, so that a backward that saved this tensor
        before it raises instead of computing a wrong gradient (PyTorch's version check)."""
        self._version = autograd.note_in_place(self._data)
        fn = self.grad_fn
        if fn is not None and fn.keeps_output:  # (its VJP reads this very array)
            fn._output_changed = True

    def __iadd__(self, o):
        return self._inplace(o, np.add)

    def __isub__(self, o):
        return self._inplace(o, np.subtract)

    def __imul__(self, o):
        return self._inplace(o, np.multiply)

    def __itruediv__(self, o):
        return self._inplace(o, np.true_divide)

    def _compare(self, o, ufunc, eq: bool = False) -> Tensor:
        """A comparison, elementwise. A Python or NumPy scalar is a "weak" NumPy scalar: a
        float tensor compares in its own dtype (``Tensor([0.1]) == np.float64(0.1)``, as
        PyTorch), an int tensor with a float in float64, an int beyond the tensor's dtype
        by its value; a list of numbers takes a float tensor's dtype."""
        a = self._data
        try:  # (free unless it raises)
            t = type(o)
            if t is not float and t is not int and isinstance(o, np.generic):
                o = o.item()
                t = type(o)
            if t is float:
                if not -3.4e38 < o < 3.4e38 and o == o and a.dtype.kind == "f":
                    big = _FLOAT_MAX.get(a.dtype, math.inf)  # (beyond the dtype: as an infinity,
                    if not -big <= o <= big:  # without NumPy's cast overflow warning)
                        o = math.copysign(math.inf, o)
                return Tensor._make(ufunc(a, o), False, None)
            if t is int or t is bool:
                return Tensor._make(ufunc(a, o), False, None)
            if isinstance(o, Tensor):
                return Tensor._make(ufunc(a, o._data), False, None)
            if isinstance(o, (list, tuple)):
                o = np.asarray(o)
                if a.dtype.kind == "f" and o.dtype.kind in "iubf":
                    o = o.astype(a.dtype)
            elif o is None or isinstance(o, (str, bytes)):
                if eq:  # (t == None is False, t != None True, as PyTorch)
                    return NotImplemented
                raise TypeError(f"cannot compare a Tensor with {type(o).__name__} {o!r:.40}")
            return Tensor._make(ufunc(a, o), False, None)
        except ValueError:  # (a shape mismatch named as the other ops name it)
            b = o._data if isinstance(o, Tensor) else o
            _ew._check_broadcast(ufunc.__name__, a, np.asarray(b))
            raise

    def __eq__(self, o):  # type: ignore[override]
        return self._compare(o, np.equal, True)

    def __ne__(self, o):  # type: ignore[override]
        return self._compare(o, np.not_equal, True)

    def __lt__(self, o):
        return self._compare(o, np.less)

    def __le__(self, o):
        return self._compare(o, np.less_equal)

    def __gt__(self, o):
        return self._compare(o, np.greater)

    def __ge__(self, o):
        return self._compare(o, np.greater_equal)

    def __invert__(self):
        return Tensor._make(np.invert(self._data), False, None)

    def __and__(self, o):
        return self._compare(o, np.bitwise_and)

    def __or__(self, o):
        return self._compare(o, np.bitwise_or)

    def __getitem__(self, key):
        return _mv.getitem(self, key)

    def __setitem__(self, key, value):
        if self.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                "in-place assignment to a tensor that requires grad; use tinygrad_np.where "
                "or assign under no_grad()"
            )
        if isinstance(value, Tensor) and value.requires_grad and autograd.is_grad_enabled():
            raise RuntimeError(
                "assigning a tensor that requires grad into another is not recorded; build "
                "the result with tinygrad_np.where or cat (or assign under no_grad())"
            )
        key = _mv.normalize_key(key, self.shape)
        value = value.data if isinstance(value, Tensor) else value
        if not self._data.flags.writeable:
            raise RuntimeError(
                "item assignment into a tensor whose entries share memory (the result of "
                "expand, or a view of one): write into a .clone() of it instead"
            )
        split = _mv.split_int_key(key, self.ndim)
        # (with the trailing Ellipsis, ints for every dim give a 0-d view, not a copy)
        target = self._data if split is None else self._data[split[0] + (Ellipsis,)]
        key = key if split is None else split[1]  # (the ints first, as in reading)
        try:
            target[key] = value
        except (TypeError, ValueError):
            v = np.asarray(value)
            lead = next((i for i, n in enumerate(v.shape) if n != 1), v.ndim)
            try:
                if not lead:
                    raise
                target[key] = v.reshape(v.shape[lead:])  # (leading dims of 1, as PyTorch)
            except ValueError:
                where = np.shape(target[key])
                if v.dtype.kind not in "biufc" or _broadcasts_to(v.shape[lead:], where):
                    raise  # (another cause than the shapes: NumPy's own message)
                raise ValueError(
                    f"item assignment: a value of shape {v.shape} cannot be broadcast to the "
                    f"selection's shape {where}"
                ) from None
        self._modified()

    # ------------------------------------------------------------------ math methods
    def _floating(self) -> Tensor:
        """This tensor for a float-valued function: an int or bool tensor as the default
        float dtype (float32), as PyTorch's exp/log/sqrt/sigmoid/tanh (NumPy's loops give
        float64, or float16 for bools)."""
        if self._data.dtype.kind in "fc":
            return self
        return Tensor._make(self._data.astype(_FLOAT_DEFAULT), False, None)

    def exp(self):
        return _ew.Exp.apply(self._floating())

    def log(self):
        return _ew.Log.apply(self._floating())

    def sqrt(self):
        return _ew.Sqrt.apply(self._floating())

    def abs(self):
        return _ew.Abs.apply(self)

    def sign(self):
        return Tensor._make(np.sign(self._data), False, None)

    def clip(self, min=None, max=None):  # noqa: A002 - PyTorch's names
        return _ew.clip(self, min, max)

    clamp = clip

    def relu(self):
        return _act.Relu.apply(self)

    def sigmoid(self):
        return _act.Sigmoid.apply(self._floating())

    def tanh(self):
        return _act.Tanh.apply(self._floating())

    def softmax(self, dim: int = -1):
        return _act.softmax(self, dim)

    def log_softmax(self, dim: int = -1):
        return _act.log_softmax(self, dim)

    def sum(self, dim=None, keepdim: bool = False):
        return _red.sum_(self, dim, keepdim)

    def mean(self, dim=None, keepdim: bool = False):
        return _red.mean(self, dim, keepdim)

    def var(self, dim=None, correction: int = 1, keepdim: bool = False):
        return _red.var(self, dim, correction, keepdim)

    def max(self, dim=None, keepdim: bool = False):
        return _red.max_(self, dim, keepdim)

    def min(self, dim=None, keepdim: bool = False):
        return _red.min_(self, dim, keepdim)

    def argmax(self, dim=None, keepdim: bool = False):
        return _red.argmax(self, dim, keepdim)

    def argmin(self, dim=None, keepdim: bool = False):
        return _red.argmin(self, dim, keepdim)

    def matmul(self, other):
        return _la.matmul(self, self._other(other))

    # ------------------------------------------------------------------ movement methods
    def reshape(self, *shape):
        return _mv.reshape(self, shape)

    def view(self, *shape):
        return _mv.reshape(self, shape)

    def flatten(self, start_dim: int = 0, end_dim: int = -1):
        return _mv.flatten(self, start_dim, end_dim)

    def transpose(self, dim0: int, dim1: int):
        return _mv.transpose(self, dim0, dim1)

    def permute(self, *dims):
        return _mv.permute(self, dims)

    @property
    def T(self):  # noqa: N802 - PyTorch's name
        return _mv.permute(self, tuple(range(self.ndim - 1, -1, -1)))

    def squeeze(self, dim=None):
        return _mv.squeeze(self, dim)

    def unsqueeze(self, dim: int):
        return _mv.unsqueeze(self, dim)

    def expand(self, *shape):
        return _mv.expand(self, shape)

    def pad(self, pad_width, value: float = 0):
        return _mv.pad(self, pad_width, value)


class _Hook:
    """One registration of a hook (the same function registered twice is two entries)."""

    __slots__ = ("fn",)

    def __init__(self, fn):
        self.fn = fn

    def __call__(self, g):
        return self.fn(g)


class _HookHandle:
    def __init__(self, hooks: list, hook: _Hook):
        self._hooks, self._hook = hooks, hook

    def remove(self) -> None:
        for i, h in enumerate(self._hooks):
            if h is self._hook:  # (by identity: not the first equal function)
                del self._hooks[i]
                return


autograd._Tensor = Tensor
autograd._make = Tensor._make

# ----------------------------------------------------------------------------- factories

_rng = {"gen": np.random.default_rng()}


def manual_seed(seed: int) -> None:
    """Seed initialisation, dropout, ``rand`` and ``randn``. Any int, negative ones too
    (taken modulo 2**64, as PyTorch does)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"manual_seed: seed must be an int, got {seed!r}")
    _rng["gen"] = np.random.default_rng(int(seed) % 2**64)


def generator() -> np.random.Generator:
    """The framework's random generator (seeded by ``manual_seed``)."""
    return _rng["gen"]


def _shape_args(shape: Sequence, what: str = "") -> tuple[int, ...]:
    if what and not shape:  # (as torch.zeros(): a 0-d tensor is asked for by zeros(()))
        raise TypeError(f"{what}() needs a shape: {what}(2, 3), or {what}(()) for a 0-d tensor")
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    shape = tuple(n.item() if isinstance(n, Tensor) and n.ndim == 0 else n for n in shape)
    for n in shape:
        if isinstance(n, (bool, np.bool_)) or not isinstance(n, (int, np.integer)) or n < 0:
            raise ValueError(f"shape entries must be non-negative ints, got {tuple(shape)}")
    return tuple(int(n) for n in shape)


def _factory(arr: np.ndarray, requires_grad: bool) -> Tensor:
    t = Tensor._make(arr, False, None)
    if requires_grad:
        t.requires_grad_(True)
    return t


def _dt(dtype) -> np.dtype:
    return to_dtype(dtype) if dtype is not None else np.dtype(_FLOAT_DEFAULT)


def zeros(*shape, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros of ``shape`` (ints or one tuple); float32 unless ``dtype``."""
    return _factory(np.zeros(_shape_args(shape, "zeros"), _dt(dtype)), requires_grad)


def ones(*shape, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones of ``shape`` (ints or one tuple); float32 unless ``dtype``."""
    return _factory(np.ones(_shape_args(shape, "ones"), _dt(dtype)), requires_grad)


def empty(*shape, dtype=None, requires_grad: bool = False) -> Tensor:
    """An uninitialised tensor of ``shape``; float32 unless ``dtype``."""
    return _factory(np.empty(_shape_args(shape, "empty"), _dt(dtype)), requires_grad)


def full(shape, fill_value, dtype=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ``shape`` filled with ``fill_value``; float32 unless ``dtype``, also
    for an int ``fill_value`` (where PyTorch infers int64)."""
    if isinstance(shape, (int, np.integer)) and not isinstance(shape, bool):
        shape = (shape,)
    elif not isinstance(shape, (tuple, list)):
        raise ValueError(f"full: shape must be an int or a tuple of ints, got {shape!r}")
    shape = _shape_args(tuple(shape))
    if isinstance(fill_value, Tensor) and fill_value.ndim == 0:
        fill_value = fill_value.item()
    if not isinstance(fill_value, (numbers.Number, np.generic)) or isinstance(fill_value, str):
        raise TypeError(f"full: fill_value must be a number, got {fill_value!r}")
    return _factory(np.full(shape, fill_value, _dt(dtype)), requires_grad)


def zeros_like(t: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Zeros of ``t``'s shape and dtype (or ``dtype``)."""
    tensor_input(t, "zeros_like")
    return _factory(np.zeros(t.shape, to_dtype(dtype) or t.dtype), requires_grad)


def ones_like(t: Tensor, dtype=None, requires_grad: bool = False) -> Tensor:
    """Ones of ``t``'s shape and dtype (or ``dtype``)."""
    tensor_input(t, "ones_like")
    return _factory(np.ones(t.shape, to_dtype(dtype) or t.dtype), requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad: bool = False) -> Tensor:
    """As torch.arange: integers give int64, any float argument gives float32."""
    if end is None:
        start, end = 0, start
    start, end, step = (v.item() if isinstance(v, Tensor) else v for v in (start, end, step))
    for name, v in (("start", start), ("end", end), ("step", step)):
        if isinstance(v, (bool, np.bool_)) or not isinstance(v, numbers.Real):
            raise TypeError(f"arange: {name} must be a number, got {v!r}")
        if not math.isfinite(v):
            raise ValueError(f"arange: {name} must be finite, got {v!r}")
    if step == 0:
        raise ValueError("arange: step must be nonzero")
    if (end - start) * step < 0:  # (as PyTorch; NumPy returns an empty array)
        raise ValueError(
            f"arange: end={end!r} lies on the wrong side of start={start!r} for step={step!r}"
        )
    if dtype is None:
        is_int = all(isinstance(v, (int, np.integer)) for v in (start, end, step))
        dtype = np.int64 if is_int else _FLOAT_DEFAULT
    dt = to_dtype(dtype)
    if dt.kind in "iub":  # start and step cut to ints, as PyTorch
        if int(step) == 0:
            raise ValueError(f"arange: step={step!r} is 0 as an int, and dtype {dt} needs one")
        if dt == np.int64:  # (PyTorch's int64 arange cuts the end too: (0, 3.7) is 0, 1, 2)
            n = len(range(int(start), int(end), int(step)))
        else:  # (its other integer dtypes count the steps of the given numbers: 0, 1, 2, 3)
            n = max(0, math.ceil((end - start) / step))
        values = int(start) + int(step) * np.arange(n, dtype=np.int64)
        return _factory(values.astype(dt), requires_grad)
    # the values start + i * step in float64, then rounded (NumPy's float32 arange steps by
    # the float32 difference of its first two values: stuck at 1e8, as PyTorch's is not)
    return _factory(np.arange(start, end, step, dtype=np.float64).astype(dt), requires_grad)


def eye(n: int, m: int | None = None, dtype=None, requires_grad: bool = False) -> Tensor:
    """The ``n`` x ``m`` (default ``n``) identity; float32 unless ``dtype``."""
    n, m = (v.item() if isinstance(v, Tensor) and v.ndim == 0 else v for v in (n, m))
    for name, v in (("n", n), ("m", m)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer))):
            raise TypeError(f"eye: {name} must be a non-negative int, got {v!r}")
        if v is not None and v < 0:
            raise ValueError(f"eye: {name} must be a non-negative int, got {v!r}")
    return _factory(np.eye(n, m, dtype=_dt(dtype)), requires_grad)


def _float_dt(dtype, what: str) -> np.dtype:
    dt = _dt(dtype)
    if dt.kind != "f":
        raise TypeError(f"{what}: dtype must be a floating dtype, got {dt}")
    return dt


def rand(*shape, dtype=None, requires_grad: bool = False) -> Tensor:
    """Uniform [0, 1) samples of ``shape`` from the global generator (``manual_seed``)."""
    dt = _float_dt(dtype, "rand")
    return _factory(generator().random(_shape_args(shape, "rand")).astype(dt), requires_grad)


def randn(*shape, dtype=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples of ``shape`` from the global generator (``manual_seed``)."""
    dt = _float_dt(dtype, "randn")
    values = generator().standard_normal(_shape_args(shape, "randn"))
    return _factory(values.astype(dt), requires_grad)


# ----------------------------------------------------------------------- argument checks


def tensor_input(x, what: str, name: str = "input") -> Tensor:
    """``x`` if it is a Tensor, else a TypeError that names it."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: {name} must be a Tensor, got {type(x).__name__}")
    return x


def float_input(x, what: str, name: str = "input") -> Tensor:
    """``x`` if it is a floating-point Tensor, else a TypeError that names it (an int
    input to a float-only op would give truncated ints, where PyTorch raises)."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{what}: {name} must be a Tensor, got {type(x).__name__}")
    if x.dtype.kind != "f":
        raise TypeError(
            f"{what}: {name} must be a floating-point Tensor, got dtype {x.dtype} "
            f"(convert it with .astype('float32'))"
        )
    return x


def number_arg(value, what: str, name: str) -> float:
    """A number argument as a Python float: a number, NumPy scalar or 0-d Tensor (an array
    operand would turn in-place updates of NumPy arrays into no-ops); else a TypeError."""
    if isinstance(value, Tensor) and value.ndim == 0:
        value = value.item()
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{what}: {name} must be a number, got {value!r}")
    return float(value)


def int_arg(value, what: str, name: str) -> int:
    """An int argument: a Python or NumPy int or a 0-d integer Tensor (not a bool, nor a
    float: no silent truncation of 2.5 to 2), else a TypeError that names it."""
    if isinstance(value, Tensor) and value.ndim == 0 and value.dtype.kind in "iu":
        return int(value.item())
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{what}: {name} must be an int, got {value!r}")
    return int(value)


def tensor(data, requires_grad: bool = False, dtype=None) -> Tensor:
    """``Tensor(data, requires_grad=..., dtype=...)``, as ``torch.tensor``."""
    return Tensor(data, requires_grad=requires_grad, dtype=dtype)


# The op modules import Tensor from here, so they are imported once it exists.
from tinygrad_np.ops import activation as _act  # noqa: E402
from tinygrad_np.ops import elementwise as _ew  # noqa: E402
from tinygrad_np.ops import linalg as _la  # noqa: E402
from tinygrad_np.ops import movement as _mv  # noqa: E402
from tinygrad_np.ops import reduce as _red  # noqa: E402
