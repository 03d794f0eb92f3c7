"""The engine: Op base class, grad mode, hooks and the iterative backward pass.

Every differentiable operation is an ``Op`` subclass with a NumPy ``forward``
and a ``vjp`` written with Tensor operations. Because the VJP is made of
recorded ops, running it with recording switched on (``create_graph=True``)
builds the graph of the backward pass, which can be differentiated again.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import operator
import os
import sys
import threading
import weakref
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.lib.array_utils import byte_bounds

from tinygrad_np import _parallel as _par

if TYPE_CHECKING:  # pragma: no cover
    from tinygrad_np.tensor import Tensor

_Tensor: Any = None  # set by tinygrad_np.tensor once the class exists (avoids an import cycle)
_make: Any = None  # Tensor._make(data, requires_grad, grad_fn), set there too

# ----------------------------------------------------------------------------- grad mode


# grad: record ops; anomaly: detect_anomaly is on; scope: the Modules being called, outermost
# first (set by nn.Module.__call__, read by viz to draw one cluster per module); vjp_of: the
# node whose VJP is running, in anomaly mode (so a NaN inside it is blamed on that node).
# Each thread has its own, as in PyTorch: a backward running in one thread (which records
# nothing unless create_graph) must not switch recording off for a forward in another.
class _ThreadState(threading.local):
    def __init__(self) -> None:
        self.grad = True
        self.anomaly = False
        self.scope: tuple = ()
        self.vjp_of: Any = None


_state = _ThreadState()
for _name in ("grad", "anomaly", "scope", "vjp_of"):  # (a pool task runs in its submitter's)
    _par.carry(
        functools.partial(getattr, _state, _name), functools.partial(setattr, _state, _name)
    )
# held while a .grad is read and replaced, so that backward calls in two threads that
# share a leaf both add to it (PyTorch's accumulation is thread-safe too)
_grad_lock = threading.Lock()


def is_grad_enabled() -> bool:
    """True when new operations are recorded for backward (in this thread: each thread
    has its own grad mode, and a new thread starts with recording on)."""
    return _state.grad


class _GradMode:
    """Context manager and decorator that sets whether ops are recorded."""

    enabled = True

    def __init__(self, func=None):
        self._prev: list[bool] = []
        self._func = None
        if func is not None:  # used as a bare decorator: @no_grad
            functools.update_wrapper(self, func)
            self._func = _decorate(type(self), func)

    def __enter__(self):
        self._prev.append(_state.grad)
        _state.grad = self.enabled
        return self

    def __exit__(self, *exc):
        _state.grad = self._prev.pop()
        return False

    def __call__(self, *args, **kwargs):
        if self._func is not None:
            return self._func(*args, **kwargs)
        (func,) = args  # used as @no_grad()
        return _decorate(type(self), func)

    def __get__(self, obj, objtype=None):
        """A bare ``@no_grad`` on a method binds as the method would."""
        if obj is None or self._func is None:
            return self
        return functools.partial(self._func, obj)


def _decorate(mode: type, func):
    """``func`` run in grad ``mode``; a generator function's body runs in the mode each
    time it resumes (as PyTorch's decorators), not only when it is created."""
    if inspect.isgeneratorfunction(func):

        @functools.wraps(func)
        def generator(*a, **k):
            gen = func(*a, **k)
            try:
                with mode():
                    response = gen.send(None)
                while True:
                    try:
                        request = yield response
                    except GeneratorExit:
                        with mode():
                            gen.close()
                        raise
                    except BaseException as e:  # noqa: BLE001 - handed to the generator
                        with mode():
                            response = gen.throw(e)
                    else:
                        with mode():
                            response = gen.send(request)
            except StopIteration as stop:
                return stop.value

        return generator

    @functools.wraps(func)
    def wrapper(*a, **k):
        with mode():
            return func(*a, **k)

    return wrapper


class no_grad(_GradMode):  # noqa: N801 - PyTorch's name
    """Do not record operations: ``with no_grad():`` or ``@no_grad`` / ``@no_grad()``."""

    enabled = False


class enable_grad(_GradMode):  # noqa: N801 - PyTorch's name
    """Record operations again inside a ``no_grad`` block."""

    enabled = True


# ----------------------------------------------------------------------------- anomaly mode


class AnomalyError(RuntimeError):
    """Raised in anomaly mode at the first op whose forward or backward is not finite."""


class detect_anomaly:  # noqa: N801 - PyTorch's name
    """Find the first NaN or inf: ``with tinygrad_np.detect_anomaly(): ...``.

    Inside the block every op remembers the line of user code that created it,
    and the first op whose forward output or backward gradient holds NaN or inf
    raises :class:`AnomalyError` naming the op and that line. It slows every op
    down; use it to hunt a bug, not to train.
    """

    def __init__(self, check_nan: bool = True):
        self.check_nan = check_nan
        self._prev: list[bool] = []

    def __enter__(self):
        self._prev.append(_state.anomaly)
        _state.anomaly = self.check_nan
        return self

    def __exit__(self, *exc):
        _state.anomaly = self._prev.pop()
        return False


_PKG_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _user_frame() -> str:
    """The innermost stack frame outside this package, as 'file:line in func: code'."""
    f = sys._getframe(1)
    while f is not None and os.path.abspath(f.f_code.co_filename).startswith(_PKG_DIR):
        f = f.f_back
    if f is None:
        return "<unknown>"
    code = f.f_code
    line = linecache.getline(code.co_filename, f.f_lineno).strip()
    return f'{code.co_filename}:{f.f_lineno} in {code.co_name}: "{line}"'


def _check_finite(arr: np.ndarray, op: Op, what: str, which: str = "output") -> None:
    if arr.dtype.kind in "fc" and not np.all(np.isfinite(arr)):
        bad = "NaN" if np.isnan(arr).any() else "inf"
        inner = ""
        node = _state.vjp_of
        if node is not None and what == "forward":
            # an op recorded inside a VJP: the fault belongs to that VJP's node
            inner = f" (inside its VJP, at the '{op.name}' step)"
            op, what, which = node, "backward", "gradient"
        where = getattr(op, "created_at", None)
        if where is None:
            where = f"<not recorded: created outside detect_anomaly>; now at {_user_frame()}"
        raise AnomalyError(
            f"{what} of op '{op.name}' produced {bad} in its {which} "
            f"(shape {tuple(arr.shape)}){inner}; the op was created at {where}"
        )


# ----------------------------------------------------------------------------- in-place changes

# In-place changes (``+=`` and item assignment on a Tensor, optimizer steps) count up a
# process-wide clock (``Op._clock``); the changed tensor keeps the time in ``_version``, and every
# recorded op the time it was created. A backward then checks the inputs of the ops that
# read their inputs (and the output of those that reuse it) only for ops created before
# the latest change: no cost while nothing changes in place.
def _complex_result(op: Op, inputs: tuple, out: np.ndarray) -> None:
    """Refuse to record an op whose result is complex: the VJPs are those of real
    functions (no complex conjugates), so its gradients would be wrong."""
    dtypes = ", ".join(str(t.dtype) for t in inputs)
    raise TypeError(
        f"{op.name}: its result is {out.dtype} (inputs {dtypes}) and an input requires grad, "
        "but tinygrad_np differentiates real functions only; keep the real and imaginary "
        "parts as two float tensors, or compute this under no_grad() or on .detach()"
    )


def note_in_place(data: np.ndarray | None = None) -> int:
    """A new time on the in-place clock (for the tensor just changed, whose array is
    ``data``). The clock is a class attribute of Op: the cheapest read in ``Op.apply``,
    which runs for every op. The time is also kept for the memory ``data`` views
    (``_written``), which other tensors may view too (x[1:], x.reshape(...), x.detach()
    share x's memory, as in PyTorch): a change through any of them counts for all."""
    Op._clock += 1
    if data is not None:
        root = _root(data)
        key = id(root)
        entry = _written.get(key)
        if entry is None or entry[0]() is not root:
            entry = _written[key] = (weakref.ref(root, functools.partial(_forget, key)), {})
        regions = entry[1]
        regions[byte_bounds(data)] = Op._clock
        if len(regions) > _MAX_REGIONS:
            _compact(regions)
    return Op._clock


# A buffer written through ever new slices (a ring buffer, running statistics) would add a
# region a write: past this many for one array, overlapping and touching regions are
# joined (at their latest time), and then neighbours pairwise until half as many are
# left. A joined region may count a write next to a tensor as a change to it, but only
# for an op made before that write (200,000 writes of random slices: 181,965 regions and
# 37 MiB before).
_MAX_REGIONS = 256


def _compact(regions: dict) -> None:
    merged: list[list[int]] = []
    for (a, b), t in sorted(regions.items()):
        if merged and a <= merged[-1][1]:
            last = merged[-1]
            last[1], last[2] = max(last[1], b), max(last[2], t)
        else:
            merged.append([a, b, t])
    while len(merged) > _MAX_REGIONS // 2:
        odd = merged[-1:] if len(merged) % 2 else []
        evens, odds = merged[: len(merged) - len(odd) : 2], merged[1::2]
        merged = [[x[0], y[1], max(x[2], y[2])] for x, y in zip(evens, odds, strict=True)] + odd
    regions.clear()
    regions.update({(a, b): t for a, b, t in merged})


# id(the array that owns some memory) -> (a weak reference to it, {(first byte, end) of
# a region changed in place through some tensor: the time of its latest change}). Two
# tensors on disjoint parts of one array (parameters set from one flat buffer) do not
# count as changing each other; PyTorch's views, which share one version counter, do.
_written: dict[int, tuple] = {}


def _root(a: np.ndarray) -> np.ndarray:
    """The array that owns the memory ``a`` views."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _forget(key: int, ref) -> None:
    entry = _written.get(key)
    if entry is not None and entry[0] is ref:
        del _written[key]


def _changed_since(t, born: int) -> bool:
    """Whether tensor ``t``'s data was changed in place after time ``born``, through t
    or through another tensor on the same memory."""
    if getattr(t, "_version", 0) > born:
        return True
    return _array_changed_since(getattr(t, "data", None), born)


def _array_changed_since(data, born: int) -> bool:
    """Whether the memory of array ``data`` was written in place (through any tensor on
    it) after time ``born``."""
    if not _written or not isinstance(data, np.ndarray):
        return False
    root = _root(data)
    entry = _written.get(id(root))
    if entry is None or entry[0]() is not root:
        return False
    lo, hi = byte_bounds(data)
    return any(t > born and a < hi and lo < b for (a, b), t in entry[1].items())


def bilinear_reads(needs: tuple, recording: bool) -> tuple:
    """``Op.inplace_reads`` of a product-like op (a, b[, bias]): a is read for b's
    gradient, b for a's, a bias never (matmul, linear, the convs)."""
    return (needs[1], needs[0]) + (False,) * (len(needs) - 2)


def _inputs_read(node: Op) -> tuple:
    """Which inputs the VJP of ``node`` reads (one bool each): those its ``inplace_reads``
    (or ``reads``) names; without either, every input of an op that saves its inputs
    (a power's base and exponent, a loss's input and target), but for the one input of an
    op whose VJP reads its own output instead (exp, tanh, ...)."""
    needs = node.needs_grad
    if not node.saves_inputs or True not in needs:
        return ()
    if node.inplace_reads is not None:
        return node.inplace_reads(needs, _state.grad)
    if node.reads is not None:
        return node.reads(needs)
    if len(needs) == 1:
        return (not node.keeps_output,)
    return (True,) * len(needs)


def _check_unchanged(node: Op) -> None:
    """Raise if a tensor the VJP of ``node`` reads was changed in place after it ran:
    an input it reads (``_inputs_read``), or the output of an op that reuses it, changed
    through that tensor (``Tensor._modified``) or through any other on its memory (a
    slice, a reshape, a detach: ``note_in_place``)."""
    born = node.__dict__.get("_born", 0)
    if node.__dict__.get("_output_changed") or (
        node.keeps_output and _array_changed_since(node.__dict__.get("out"), born)
    ):
        raise RuntimeError(
            f"the output of '{node.name}', which its backward reads, was changed in place "
            "after that op ran, so the gradient would be wrong; change a copy (.clone()) "
            "instead, or change it after backward()"
        )
    saved = [t for t, read in zip(node.inputs, _inputs_read(node), strict=False) if read]
    for t in saved:
        if _changed_since(t, born):
            raise RuntimeError(
                f"a tensor of shape {tuple(t.shape)} that the backward of '{node.name}' "
                "reads was changed in place after that op ran, so its gradient would be "
                "wrong; change a copy (.clone()) instead, or change it after backward()"
            )


# ----------------------------------------------------------------------------- Op


class Op:
    """One node of the graph: a NumPy forward and a VJP made of Tensor ops.

    Subclasses implement ``forward(*arrays, **kwargs) -> np.ndarray`` (saving on
    ``self`` whatever the VJP needs) and ``vjp(g) -> tuple`` with one entry per
    input: a Tensor of the input's shape (or broadcastable to it; the engine
    sums it back) or ``None`` where ``self.needs_grad[i]`` is false.
    """

    #: functional name shown by viz and error messages; defaults to the class name lowercased
    name: str = ""
    inputs: tuple[Tensor, ...]
    needs_grad: tuple[bool, ...]
    args: dict[str, Any]

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if not cls.__dict__.get("name"):
            cls.name = cls.__name__.lower()

    def forward(self, *arrays: np.ndarray, **kwargs: Any) -> np.ndarray:
        raise NotImplementedError

    def vjp(self, g: Tensor) -> tuple[Tensor | None, ...]:
        raise NotImplementedError

    @classmethod
    def apply(cls, *inputs: Tensor, **kwargs: Any) -> Tensor:
        """Run the forward on the inputs' arrays and, when recording, link the result."""
        op = cls()
        out = op.forward(*[t._data for t in inputs], **kwargs)
        state = _state.__dict__  # this thread's modes; one thread-local lookup per op
        if state["anomaly"]:
            op.created_at = _user_frame()
            _check_finite(out, op, "forward")
        if state["grad"]:
            needs = tuple([t._requires_grad for t in inputs])  # (the slot: no property)
            if True in needs:
                if out.dtype.kind == "c":
                    _complex_result(op, inputs, out)
                if not cls.saves_inputs:
                    if out.nbytes > _RELEASE_MIN_BYTES or (
                        inputs[0]._data.nbytes > _RELEASE_MIN_BYTES  # (a sum's input)
                    ):
                        inputs = _stand_ins(inputs)  # the VJP needs no input data
                elif cls.reads is not None and out.nbytes > _RELEASE_MIN_BYTES:
                    # (an elementwise op: no input is larger than its output)
                    inputs = _stand_ins(inputs, cls.reads(needs))
                op.inputs = inputs
                op.needs_grad = needs
                op.args = kwargs
                op.scope = state["scope"]
                if cls._clock:  # (see note_in_place)
                    op._born = cls._clock
                return _make(out, True, op)
        return _make(out, False, None)

    #: whether the VJP reads its inputs' data; ops that need only shapes (reshape, sum,
    #: relu with its saved output, ...) set False so that large intermediate inputs are
    #: not kept alive by the graph
    saves_inputs: bool = True

    #: for an op that saves its inputs, which of them its VJP reads given ``needs_grad``
    #: (None: all): the others, when they are large intermediates, are swapped for
    #: stand-ins at once (``a * 2``: the VJP reads only the 2), as PyTorch saves an
    #: operand only for the other's gradient
    reads = None

    #: for the in-place check (``_check_unchanged``) where ``reads`` does not say it: which
    #: inputs the VJP reads given ``needs_grad`` and whether the VJP is recorded (None:
    #: ``reads``, else every input)
    inplace_reads = None

    #: whether ``self.out`` is the op's output and its VJP reads it (``saved_output``): a
    #: change to the output in place then raises at backward, and a recorded VJP uses a
    #: Tensor of it made by this node (see saved_output)
    keeps_output: bool = False

    #: arguments a graph's node does not show (the op's own bookkeeping; see viz)
    viz_hidden: tuple[str, ...] = ()

    # -- bookkeeping used by the engine, hooks and viz
    _clock = 0  # the in-place clock (note_in_place)
    _released = False
    _hooks: list | None = None
    _retain: Any = None  # weakref to the output tensor when retain_grad() was called

    def saved_output(self, remake) -> Tensor:
        """The array saved as ``self.out`` for use in a VJP. Not recording: a constant.
        Recording: for an op whose ``self.out`` is its output (``keeps_output``), a Tensor
        of it made by this very node, so that the second-order graph runs through the
        node the caller's output came from (its hooks, ``retain_grad`` and
        ``grad(..., [output])`` see it, as in PyTorch); for another saved array,
        ``remake()`` computes it again from the inputs, differentiably."""
        if _state.grad:
            return _Tensor._make(self.out, True, self) if self.keeps_output else remake()
        return _Tensor._make(self.out, False, None)

    def release(self) -> None:
        """Free what the forward saved; the node stays in the graph for drawing.

        Large intermediate inputs, and large constants (a ``where``'s condition), are
        swapped for data-less stand-ins, so that an activation is freed once the backward
        has passed it (as PyTorch frees saved tensors) instead of living as long as the
        graph; leaves that require grad stay as they are.
        """
        d = self.__dict__
        if len(d) > 4:  # more than inputs, needs_grad, args, scope: something was saved
            for k in d.keys() - _KEEP_ON_RELEASE:
                del d[k]
        d["_released"] = True
        inputs = d["inputs"]
        for t in inputs:
            if (t.grad_fn is not None or not t.requires_grad) and (
                t._data.nbytes > _RELEASE_MIN_BYTES
            ):
                d["inputs"] = _stand_ins(inputs, constants=True)
                break

    def __repr__(self) -> str:
        return f"<{self.name} node>"


_RELEASE_MIN_BYTES = 1 << 16  # smaller intermediates are not worth swapping out


class _FreedArray:
    """Stands for an array a released node no longer holds: shape and dtype, no values."""

    __slots__ = ("shape", "dtype", "nbytes")

    def __init__(self, a: np.ndarray):
        self.shape, self.dtype, self.nbytes = a.shape, a.dtype, a.nbytes

    def __array__(self, *args, **kwargs):
        raise RuntimeError(
            "this intermediate tensor's data was freed by backward (pass retain_graph=True to "
            "keep it)"
        )

    def __getitem__(self, key):
        self.__array__()


class _Released:
    """What a node keeps of an intermediate input whose values its VJP does not need (or
    no longer needs, after backward): its place in the graph, shape and dtype."""

    __slots__ = (
        "_data", "shape", "dtype", "ndim", "size", "grad_fn", "requires_grad", "_requires_grad",
        "name",
    )  # fmt: skip

    def __init__(self, t: Tensor):
        self._data = _FreedArray(t._data)
        self.shape, self.dtype, self.ndim, self.size = t.shape, t.dtype, t.ndim, t.size
        self.grad_fn, self.requires_grad, self.name = t.grad_fn, t.requires_grad, t.name
        self._requires_grad = t.requires_grad

    grad = None
    data = property(operator.attrgetter("_data"))


def _stand_ins(inputs: tuple, keep: tuple | None = None, constants: bool = False) -> tuple:
    """``inputs`` with each large intermediate (non-leaf) Tensor swapped for a _Released
    (but those ``keep`` marks True); with ``constants``, large leaves that do not require
    grad too."""
    swap = [
        type(t) is not _Released
        and (t.grad_fn is not None or (constants and not t.requires_grad))
        and t._data.nbytes > _RELEASE_MIN_BYTES
        and not (keep and keep[i])
        for i, t in enumerate(inputs)
    ]
    if True not in swap:
        return inputs
    return tuple(_Released(t) if s else t for t, s in zip(inputs, swap, strict=True))


# what Op.release keeps: the graph's structure, for viz and error messages
_KEEP_ON_RELEASE = frozenset(
    {"inputs", "needs_grad", "args", "scope", "name", "created_at", "_hooks", "_retain", "_born"}
)


# ----------------------------------------------------------------------------- backward


def _sum_to(g: Tensor, shape: tuple[int, ...]) -> Tensor:
    """Sum a broadcast gradient back to ``shape`` (leading dims, then size-1 dims)."""
    if g.shape == shape:
        return g
    lead = g.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(
        i + lead for i, n in enumerate(shape) if n == 1 and g.shape[i + lead] != 1
    )
    if dims:
        g = g.sum(dim=dims, keepdim=True)
    return g.reshape(shape) if g.shape != shape else g


def _topo_order(roots: list[Op]) -> list[Op]:
    """Nodes reachable from ``roots``, each after every node that consumes it (iterative DFS)."""
    order: list[Op] = []
    seen: set[Op] = set()  # Op hashes by identity
    stack: list[tuple[Op, bool]] = [(r, False) for r in roots]
    push, pop, emit, mark = stack.append, stack.pop, order.append, seen.add
    while stack:
        node, done = pop()
        if done:
            emit(node)
            continue
        if node in seen:
            continue
        mark(node)
        push((node, True))
        for t in node.inputs:
            fn = t.grad_fn
            if fn is not None and fn not in seen:
                push((fn, False))
    order.reverse()
    return order


def _call_hooks(hooks: list | None, g: Tensor) -> Tensor:
    for hook in list(hooks or ()):  # (a copy: a hook may add or remove hooks, which then
        # take effect from the next backward on, as in PyTorch)
        r = hook(g)
        if r is not None:
            if not isinstance(r, _Tensor) or r.shape != g.shape or r.dtype != g.dtype:
                raise RuntimeError(
                    f"a gradient hook must return None or a Tensor of shape {tuple(g.shape)} "
                    f"and dtype {g.dtype} (the gradient's), got {r!r:.200}"
                )
            g = r
    return g


def _take(leaf_grads: dict, key: int, limits: tuple[int, int] | None):
    """Pop ``(leaf, gradient)`` for ``key`` from ``run_backward``'s ``leaf_grads`` and say
    whether the gradient and its array are referenced from nowhere else, the array owning
    its memory: then the leaf's ``.grad`` can be that array itself rather than a copy (for
    the 96x96 network's 1.5M parameters a copy took 0.6 ms of a step). A gradient that a
    VJP passed through (``a + b`` gives both leaves the same one), that the caller still
    holds, or that views another array is copied, so that no ``.grad`` shares memory with
    anything. With ``limits=None`` the third value is the two reference counts themselves
    (``_calibrate_sole_refs``)."""
    t, g = leaf_grads.pop(key)
    if _getrefcount is None:  # (an interpreter without reference counts: always copy)
        return t, g, (0, 0) if limits is None else False
    refs = _getrefcount(g), _getrefcount(g._data)
    if limits is None:
        return t, g, refs
    return t, g, bool(g._data.flags.owndata) and refs[0] <= limits[0] and refs[1] <= limits[1]


_getrefcount = getattr(sys, "getrefcount", None)


def _calibrate_sole_refs() -> tuple[int, int]:
    """The reference counts ``_take`` sees for a gradient nobody else holds, measured by
    the same code, so that its limits follow this interpreter's counting. Measured anew
    for each backward (2 µs), under whatever tracer or debugger runs it then: one that
    holds frames' locals adds to both counts alike."""
    return _take({0: (None, _make(np.empty(1), False, None))}, 0, None)[2]


def run_backward(
    outputs: list[Tensor],
    grad_outputs: list[Tensor],
    retain_graph: bool,
    create_graph: bool,
    inputs: list[Tensor] | None = None,
    on_leaf=None,
    leaf_hooks: bool = True,
    sole: set | None = None,
) -> dict[int, Tensor] | None:
    """Propagate ``grad_outputs`` from ``outputs`` to the leaves.

    With ``inputs=None`` leaf gradients accumulate into ``.grad``; otherwise the
    gradients of ``inputs`` are returned in a dict keyed by ``id(tensor)`` and
    nothing is accumulated. ``on_leaf(leaf, gradient)`` (with ``inputs``, without
    ``create_graph``) is called for each leaf among ``inputs`` as soon as the last node
    that feeds it has run, its hooks applied, so that a caller can use the gradients
    of the last layers while those of the first are still being computed
    (``nn.DataParallel``'s workers hand theirs on); leaves it was not called for are
    in the result only. ``leaf_hooks=False`` leaves the leaves' hooks out (a pass whose
    results become an outer op's gradients, which meet the hooks there). ``sole``: a set
    that gets the ids of the ``inputs`` whose returned gradient nothing else holds (the
    caller may then write to its array).
    """
    node_grads: dict[int, Tensor] = {}  # id(node) -> gradient of that node's output
    leaf_grads: dict[int, tuple[Tensor, Tensor]] = {}  # id(leaf) -> (leaf, gradient)
    want = None if inputs is None else {id(t) for t in inputs}
    want_nodes = None if inputs is None else {id(t.grad_fn): t for t in inputs if t.grad_fn}
    result: dict[int, Tensor] = {}

    def add(prev: Tensor, g: Tensor) -> Tensor:
        # unrecorded passes add the arrays directly: no graph node is needed
        return prev + g if create_graph else _make(prev._data + g._data, False, None)

    def add_leaf(t: Tensor, g: Tensor) -> None:
        prev = leaf_grads.get(id(t))
        leaf_grads[id(t)] = (t, g if prev is None else add(prev[1], g))

    roots = []
    for out, g in zip(outputs, grad_outputs, strict=True):
        if out.grad_fn is None:
            if out.requires_grad:
                add_leaf(out, g)
            continue
        roots.append(out.grad_fn)
        k = id(out.grad_fn)
        node_grads[k] = g if k not in node_grads else node_grads[k] + g

    order = _topo_order(roots)
    needed = None  # with inputs: the nodes on a path to one of them (the rest do not run,
    if want is not None:  # nor their hooks: as PyTorch's autograd.grad)
        needed = set()
        for node in reversed(order):  # (each node after the nodes that feed it)
            for t, need in zip(node.inputs, node.needs_grad, strict=True):
                fn = t.grad_fn
                if need and (
                    id(t) in want or (fn is not None and (id(fn) in needed or id(fn) in want_nodes))
                ):
                    needed.add(id(node))
                    break
    pending: dict[int, int] = {}  # id(leaf) -> edges from nodes still to run (on_leaf)
    if on_leaf is not None:
        for node in order:
            for t, need in zip(node.inputs, node.needs_grad, strict=True):
                if need and t.grad_fn is None and id(t) in want:
                    pending[id(t)] = pending.get(id(t), 0) + 1

    def finish_early(t: Tensor) -> None:
        left = pending[id(t)] - 1
        pending[id(t)] = left
        if left == 0 and id(t) in leaf_grads:
            t, g = leaf_grads.pop(id(t))
            if leaf_hooks:
                g = _call_hooks(t._hooks, g)
            result[id(t)] = g
            on_leaf(t, g)

    prev_mode = _state.grad
    _state.grad = create_graph
    anomaly = _state.anomaly
    clock = Op._clock
    try:
        for node in order:
            g = node_grads.pop(id(node), None)
            if g is None:
                continue
            if needed is not None and id(node) not in needed and id(node) not in want_nodes:
                continue  # (a root that leads to no input)
            if node._hooks:
                g = _call_hooks(node._hooks, g)
            if node._retain is not None:
                t = node._retain()
                if t is not None:  # (accumulates across backward calls, as a leaf's does)
                    with _grad_lock:
                        if t.grad is None and create_graph:
                            t.grad = g.clone()
                        elif t.grad is None:
                            t.grad = _make(np.array(g._data), False, None)
                        elif create_graph:
                            t.grad = t.grad + g
                        else:
                            _accumulate(t.grad, g)
            if want_nodes is not None and id(node) in want_nodes:
                result[id(want_nodes[id(node)])] = g
            if needed is not None and id(node) not in needed:
                continue  # (an input itself; nothing it feeds is wanted)
            if node._released:
                raise RuntimeError(
                    f"Trying to backward through the graph a second time (at '{node.name}'): "
                    "the first backward released the graph (and freed what its ops saved). "
                    "Pass retain_graph=True to the first backward if you need a second one."
                )
            if clock and (clock > node.__dict__.get("_born", 0)):
                _check_unchanged(node)
            if anomaly:
                _state.vjp_of = node
                grads = node.vjp(g)
                _state.vjp_of = None
                for i, gi in enumerate(grads):
                    if gi is not None:
                        _check_finite(gi._data, node, "backward", f"gradient for input {i}")
            else:
                grads = node.vjp(g)
            for t, gi, need in zip(node.inputs, grads, node.needs_grad, strict=True):
                if gi is None or not need:
                    if need and id(t) in pending:
                        finish_early(t)
                    continue
                if gi._data.shape != t._data.shape:
                    gi = _sum_to(gi, t._data.shape)
                if gi._data.dtype != t._data.dtype:
                    gi = gi.astype(t._data.dtype)
                fn = t.grad_fn
                if fn is None:
                    if want is not None and id(t) not in want:
                        continue  # (a leaf nobody asked for: no gradient, no hooks)
                    add_leaf(t, gi)
                    if id(t) in pending:
                        finish_early(t)
                else:
                    if needed is not None and id(fn) not in needed and id(fn) not in want_nodes:
                        continue
                    k = id(fn)
                    prev = node_grads.get(k)
                    node_grads[k] = gi if prev is None else add(prev, gi)
            if not retain_graph:
                node.release()
    finally:
        _state.grad = prev_mode
        _state.vjp_of = None

    grads = gi = g = None  # (stale references would count as holders in _take)
    limits = _calibrate_sole_refs() if leaf_grads and not create_graph else (0, 0)
    with no_grad() if not create_graph else enable_grad():
        for key in list(leaf_grads):
            t, g, is_sole = _take(leaf_grads, key, limits)
            if t._hooks and leaf_hooks:  # a hook may keep the gradient it is shown
                is_sole = False
                g = _call_hooks(t._hooks, g)
            if want is not None:
                if id(t) in want:
                    result[id(t)] = g
                    if sole is not None and is_sole:  # (never with create_graph)
                        sole.add(id(t))
                continue
            with _grad_lock:  # (backward calls in two threads may share a leaf)
                if t.grad is None:
                    if create_graph:  # (a copy of its own: g may be another leaf's, a
                        t.grad = g.clone()  # read-only broadcast view, or the caller's)
                    else:  # nobody else can see a sole gradient's array: no copy needed
                        t.grad = _make(g._data if is_sole else np.array(g._data), False, None)
                elif create_graph:
                    t.grad = t.grad + g
                else:
                    _accumulate(t.grad, g)
    return result if want is not None else None


def _accumulate(grad: Tensor, g: Tensor) -> None:
    """``grad += g`` for a gradient already in ``.grad``: in place, as PyTorch, so that an
    array taken from it sees the sum, and counted as an in-place change, so that a graph
    that read the old gradient (``w * x.grad``, a gradient penalty) raises at its backward
    instead of using the new values. A gradient it cannot write (read-only, recorded) gets
    a new array, counted the same way."""
    data = grad._data
    if (
        grad.grad_fn is None
        and data.flags.writeable
        and data.shape == g._data.shape
        and data.dtype == g._data.dtype
    ):
        np.add(data, g._data, out=data)
    else:
        grad._data = np.asarray(data + g._data)  # (0-d arrays add to a NumPy scalar)
    grad._modified()


def _as_list(x) -> list:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def grad(
    outputs,
    inputs,
    grad_outputs=None,
    retain_graph: bool | None = None,
    create_graph: bool = False,
    allow_unused: bool = False,
    _on_leaf=None,
    _leaf_hooks: bool = True,
    _sole: set | None = None,
) -> tuple:
    """Gradients of ``outputs`` with respect to ``inputs``, returned, not accumulated.

    As ``torch.autograd.grad``: ``grad_outputs`` defaults to ones for scalar
    outputs; ``retain_graph`` defaults to ``create_graph``. An input the outputs
    do not depend on raises unless ``allow_unused=True`` (then its entry is None).

    >>> import tinygrad_np as tg
    >>> x = tg.Tensor([1.0, 2.0], requires_grad=True)
    >>> tg.grad((x * x).sum(), x)[0].tolist()
    [2.0, 4.0]
    """
    outs = _as_list(outputs)
    ins = _as_list(inputs)
    for i, t in enumerate(ins):
        if not isinstance(t, _Tensor):
            raise TypeError(f"grad: inputs[{i}] must be a Tensor, got {type(t).__name__}")
        if not t.requires_grad:
            raise RuntimeError(f"grad: inputs[{i}] does not require grad")
    gouts = _default_grad_outputs(outs, _as_list(grad_outputs) or [None] * len(outs))
    if retain_graph is None:
        retain_graph = create_graph
    res = run_backward(
        outs, gouts, retain_graph, create_graph, ins, _on_leaf, _leaf_hooks, _sole
    )
    out = []
    for i, t in enumerate(ins):
        g = res.get(id(t))
        if g is None and not allow_unused:
            raise RuntimeError(
                f"grad: inputs[{i}] (shape {tuple(t.shape)}) was not used to compute the "
                "outputs; pass allow_unused=True to get None for it"
            )
        out.append(g)
    return tuple(out)


def _default_grad_outputs(outs: list, gouts: list) -> list:
    if len(gouts) != len(outs):
        raise ValueError(f"grad_outputs has {len(gouts)} entries but there are {len(outs)} outputs")
    result = []
    for i, (o, g) in enumerate(zip(outs, gouts, strict=True)):
        if not isinstance(o, _Tensor):
            raise TypeError(f"outputs[{i}] must be a Tensor, got {type(o).__name__}")
        if not o.requires_grad:
            raise RuntimeError(
                f"outputs[{i}] does not require grad and has no grad_fn: nothing it was "
                "computed from requires grad (or it was computed under no_grad)"
            )
        if g is None:
            if o.size != 1:
                raise RuntimeError(
                    f"grad can be implicitly created only for scalar outputs; outputs[{i}] "
                    f"has shape {tuple(o.shape)}: pass a gradient of that shape"
                )
            g = _Tensor._make(np.ones(o.shape, dtype=o.dtype), False, None)
        elif not isinstance(g, _Tensor):
            arr = np.asarray(g)
            if arr.dtype.kind not in "biuf":
                raise TypeError(f"the gradient for outputs[{i}] must be a Tensor or numbers, "
                                f"got {g!r:.60}")  # fmt: skip
            g = _Tensor(arr.astype(o.dtype))
        elif g.dtype != o.dtype:  # (as PyTorch: the gradient takes the output's dtype; a
            # float16 one would round every sum after it; complex only for a complex output)
            if g.dtype.kind not in ("biufc" if o.dtype.kind == "c" else "biuf"):
                raise TypeError(f"the gradient for outputs[{i}] ({o.dtype}) must hold "
                                f"{'numbers' if o.dtype.kind == 'c' else 'real numbers'}, "
                                f"got dtype {g.dtype}")  # fmt: skip
            g = g.astype(o.dtype)
        if g.shape != o.shape:
            raise ValueError(
                f"gradient has shape {tuple(g.shape)} but outputs[{i}] has shape {tuple(o.shape)}"
            )
        result.append(g)
    return result


def weak(t: Tensor):
    """A weak reference to a tensor (for retain_grad)."""
    return weakref.ref(t)
