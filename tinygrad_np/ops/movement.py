"""Movement ops: reshape, permute, expand, indexing, pad, cat. Each VJP moves g back."""

from __future__ import annotations

import numpy as np

from tinygrad_np.autograd import Op
from tinygrad_np.ops.reduce import normalize_dims
from tinygrad_np.tensor import Tensor, int_arg


class Reshape(Op):
    """y = x viewed with another shape.   VJP: gx = g reshaped to x's shape."""

    saves_inputs = False

    def forward(self, x, *, shape):
        try:
            return x.reshape(shape)
        except ValueError:
            raise ValueError(
                f"reshape: cannot reshape a tensor of shape {tuple(x.shape)} "
                f"({x.size} elements) into {tuple(shape)}"
            ) from None

    def vjp(self, g):
        return (g.reshape(self.inputs[0].shape),)


def _shape_arg(shape, what: str = "reshape", name: str = "shape") -> tuple[int, ...]:
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    return tuple(int_arg(n, what, name) for n in shape)


class Alias(Op):
    """y = x (a new Tensor on the same data), for a shape op that changes nothing: as
    PyTorch's views, a hook or retain_grad on it acts on it alone.   VJP: gx = g."""

    saves_inputs = False

    name = "view"

    def forward(self, x):
        return x.view()

    def vjp(self, g):
        return (g,)


def reshape(x: Tensor, shape) -> Tensor:
    shape = _shape_arg(shape)
    if any(n < -1 for n in shape) or shape.count(-1) > 1:
        raise ValueError(f"reshape: invalid shape {shape} (sizes are >= 0, with at most one -1)")
    if shape == x.shape:
        return Alias.apply(x)
    return Reshape.apply(x, shape=shape)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    if x.ndim == 0:
        normalize_dims(start_dim, 0, "flatten")  # (0 or -1 only, as for any 0-d dim)
        normalize_dims(end_dim, 0, "flatten")
        return reshape(x, (1,))
    (s,) = normalize_dims(start_dim, x.ndim, "flatten")
    (e,) = normalize_dims(end_dim, x.ndim, "flatten")
    if s > e:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    return reshape(x, x.shape[:s] + (int(np.prod(x.shape[s : e + 1])),) + x.shape[e + 1 :])


def squeeze(x: Tensor, dim=None) -> Tensor:
    if dim is None:
        return reshape(x, tuple(n for n in x.shape if n != 1))
    dims = normalize_dims(dim, x.ndim, "squeeze")
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if not (i in dims and n == 1)))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    dim = int_arg(dim, "unsqueeze", "dim")
    if not -x.ndim - 1 <= dim <= x.ndim:
        raise ValueError(f"unsqueeze: dim {dim} is out of range for {x.ndim} dims")
    dim = dim % (x.ndim + 1)
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


class Permute(Op):
    """y = x with axes reordered.   VJP: gx = g with the inverse order."""

    saves_inputs = False

    def forward(self, x, *, dims):
        return np.transpose(x, dims)

    def vjp(self, g):
        return (g.permute(tuple(np.argsort(self.args["dims"]).tolist())),)


def permute(x: Tensor, dims) -> Tensor:
    dims = _shape_arg(dims, "permute", "dims")
    n = max(x.ndim, 1)
    if any(not -n <= d < n for d in dims) or sorted(d % n for d in dims) != list(range(x.ndim)):
        raise ValueError(f"permute: dims {dims} is not a permutation of {x.ndim} axes")
    dims = tuple(d % x.ndim for d in dims)
    if dims == tuple(range(x.ndim)):
        return Alias.apply(x)
    return Permute.apply(x, dims=dims)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    if x.ndim == 0:  # dims 0 and -1 name the 0-d tensor's only "axis": nothing to swap
        normalize_dims(dim0, 0, "transpose")
        normalize_dims(dim1, 0, "transpose")
        return permute(x, ())
    (a,) = normalize_dims(dim0, x.ndim, "transpose")
    (b,) = normalize_dims(dim1, x.ndim, "transpose")
    dims = list(range(x.ndim))
    dims[a], dims[b] = dims[b], dims[a]
    return permute(x, dims)


class Expand(Op):
    """y = x broadcast to a larger shape.   VJP: gx = g summed over the broadcast dims."""

    saves_inputs = False

    def forward(self, x, *, shape):
        return np.broadcast_to(x, shape)

    def vjp(self, g):
        x = self.inputs[0]
        lead = g.ndim - x.ndim
        dims = tuple(range(lead)) + tuple(
            i + lead for i, n in enumerate(x.shape) if n == 1 and g.shape[i + lead] != 1
        )
        return (g.sum(dims, keepdim=True).reshape(x.shape),)


def expand(x: Tensor, shape) -> Tensor:
    shape = list(_shape_arg(shape, "expand", "sizes"))
    lead = len(shape) - x.ndim
    if lead < 0:
        raise ValueError(f"expand: cannot expand shape {tuple(x.shape)} to {tuple(shape)}")
    for i, n in enumerate(shape):
        if n == -1:
            if i < lead:
                raise ValueError("expand: -1 is not allowed for new leading dims")
            shape[i] = x.shape[i - lead]
    shape = tuple(shape)
    try:
        np.broadcast_shapes(x.shape, shape)
        if np.broadcast_shapes(x.shape, shape) != shape:
            raise ValueError
    except ValueError:
        raise ValueError(
            f"expand: cannot expand shape {tuple(x.shape)} to {tuple(shape)}"
        ) from None
    if shape == x.shape:
        return Alias.apply(x)
    return Expand.apply(x, shape=shape)


class Clone(Op):
    """y = a copy of x.   VJP: gx = g."""

    saves_inputs = False

    def forward(self, x):
        return x.copy()

    def vjp(self, g):
        return (g,)


# ----------------------------------------------------------------------------- indexing


def _bound(v):
    """A slice bound: a 0-d integer Tensor as its int (as PyTorch takes them)."""
    return int_arg(v, "index", "slice bounds") if isinstance(v, Tensor) else v


def _is_bool_scalar(k) -> bool:
    return isinstance(k, (bool, np.bool_)) or (
        isinstance(k, np.ndarray) and k.ndim == 0 and k.dtype == np.bool_
    )


def _dims_used(k) -> int:
    """How many of the indexed tensor's dims an entry of a key consumes."""
    if k is None or k is Ellipsis or _is_bool_scalar(k):
        return 0
    if isinstance(k, np.ndarray) and k.dtype == np.bool_:
        return k.ndim
    return 1


def normalize_key(key, shape: tuple | None = None):
    """Turn Tensors and lists inside an index into NumPy arrays (copies: a later change
    to an index tensor must not change a recorded op's gradient). Given the indexed
    tensor's ``shape``, also drop an Ellipsis that stands for no dims (NumPy would count
    it as a separator between index arrays, PyTorch does not) and check that each bool
    mask has the shape of the dims it covers."""
    if not isinstance(key, tuple):
        key = (key,)
    out = []
    for k in key:
        if isinstance(k, Tensor):
            k = np.array(k.data)
        elif isinstance(k, list):
            # (a list is one index array, as in NumPy and in PyTorch from 2.9 on, which
            # deprecates reading x[[[0, 1], [1, 0]]] as x[[0, 1], [1, 0]]: write a tuple)
            if any(isinstance(e, slice) or e is None or e is Ellipsis for e in k):
                raise IndexError(
                    f"index: a list is one index array and cannot hold slices, None or "
                    f"Ellipsis, got {k!r}; index several dims with a tuple: x[0, :]"
                )
            k = np.array(k) if k else np.zeros(0, dtype=np.intp)  # ([] selects nothing)
        elif isinstance(k, np.ndarray):
            k = k.copy()
        elif isinstance(k, slice):
            k = slice(_bound(k.start), _bound(k.stop), _bound(k.step))
        elif isinstance(k, float):
            raise IndexError(f"index: only ints, slices, None, Ellipsis and int or bool tensors "
                             f"are valid indices, got {k!r}")  # fmt: skip
        if isinstance(k, np.ndarray) and k.dtype.kind not in "iub":
            if k.size == 0:  # (an empty list inside a tuple: selects nothing)
                k = k.astype(np.intp)
            else:
                raise IndexError(f"tensors used as indices must be integer or bool, got {k.dtype}")
        out.append(k)
    if shape is not None:
        out = _checked_key(out, shape)
    return tuple(out)


def _checked_key(key: list, shape: tuple) -> list:
    """(See ``normalize_key``.)"""
    used = sum(_dims_used(k) for k in key)
    if Ellipsis in [k for k in key if not isinstance(k, np.ndarray)] and used == len(shape):
        key = [k for k in key if isinstance(k, np.ndarray) or k is not Ellipsis]
    dim = 0
    for k in key:
        if k is Ellipsis:
            dim += max(len(shape) - used, 0)
        elif isinstance(k, np.ndarray) and k.dtype == np.bool_ and k.ndim > 0:
            covered = tuple(shape[dim : dim + k.ndim])
            if k.shape != covered:
                raise IndexError(
                    f"index: a bool mask of shape {k.shape} does not match the dims it "
                    f"covers, of shape {covered} (tensor shape {tuple(shape)})"
                )
            dim += k.ndim
        else:
            dim += _dims_used(k)
    return key


def _is_basic(key: tuple) -> bool:
    return not any(isinstance(k, np.ndarray) for k in key)


def _is_int(k) -> bool:
    return (isinstance(k, (int, np.integer)) and not isinstance(k, (bool, np.bool_))) or (
        isinstance(k, np.ndarray) and k.ndim == 0 and k.dtype.kind in "iu"
    )


def split_int_key(key: tuple, ndim: int):
    """PyTorch's placement for a key that mixes ints with index arrays: ``(ints, rest)``
    such that ``x[ints][rest]`` is PyTorch's ``x[key]``, or None for any other key.

    NumPy counts an int as one more index array, and when the arrays are separated by a
    slice or None it puts their dims first: ``x[0, :, [0, 1, 2]]`` of a (2, 4, 5) array
    is (3, 4) there, (4, 3) in PyTorch, which selects with the ints first.
    """
    arrays = [k for k in key if (isinstance(k, np.ndarray) and k.ndim > 0) or _is_bool_scalar(k)]
    if not arrays or not any(_is_int(k) for k in key):
        return None
    used = sum(_dims_used(k) for k in key)
    ints, rest = [], []
    for k in key:
        if k is Ellipsis:
            ints += [slice(None)] * max(ndim - used, 0)
            rest.append(k)
        elif _is_int(k):
            ints.append(int(k))  # (a 0-d array would make NumPy copy instead of view)
        elif k is None:
            rest.append(k)
        else:  # (a bool scalar adds a dim of 1 or 0, and consumes none)
            ints += [slice(None)] * _dims_used(k)
            rest.append(k)
    return tuple(ints), tuple(rest)


class Getitem(Op):
    """y = x[key].   VJP: gx = zeros of x's shape with g added at key (repeats accumulate)."""

    saves_inputs = False

    name = "index"

    def forward(self, x, *, key):
        axis = _lone_array_axis(key)
        if axis:  # (x[:, idx]: np.take, 6.6x as fast as NumPy's indexing on (1024, 1024))
            return np.take(x, key[axis], axis=axis)
        out = x[key]
        if type(out) is not np.ndarray:  # an int for every dim: a 0-d view, not NumPy's
            out = x[(key if isinstance(key, tuple) else (key,)) + (Ellipsis,)]  # scalar copy
        return out  # (as PyTorch's: y = x[1, 2]; y += 1 changes x)

    def vjp(self, g):
        return (IndexAdd.apply(g, shape=self.inputs[0].shape, key=self.args["key"]),)


# An index array into the first dim (an embedding's rows, x[idx]) with this many entries
# or more is scattered back as one sparse matrix product, (rows x indices) one-hot times
# g's rows: np.add.at took 390 ms for 1e6 indices into (1000, 64), this 103 (PyTorch
# 110). Each row adds its entries in index order, as np.add.at: the same bits.
SPARSE_MIN_INDICES = 4096
SPARSE_MIN_ROW = 4  # entries a row (1e6 indices into (1000,): add.at 3.1 ms, this 14)


def _row_index(key) -> np.ndarray | None:
    """The integer index array of a key that indexes the first dim only, else None."""
    if isinstance(key, tuple) and len(key) == 1:
        key = key[0]
    if isinstance(key, np.ndarray) and key.dtype.kind in "iu":
        return key
    return None


def _from_zero(idx: np.ndarray, n: int) -> np.ndarray:
    """An index array into a dim of ``n`` counted from 0 (negatives from the end), as
    intp (a uint8 index plus n could overflow its dtype)."""
    idx = idx.astype(np.intp, copy=False)
    return np.where(idx < 0, idx + n, idx)


def _add_rows(g: np.ndarray, rows: np.ndarray, shape) -> np.ndarray:
    """zeros(shape) with g[i] added at row rows[i] (g: rows.shape + shape[1:])."""
    import scipy.sparse

    n = shape[0]
    flat = _from_zero(rows.reshape(-1), n)
    onehot = scipy.sparse.csr_matrix(
        (np.ones(flat.size, dtype=g.dtype), (flat, np.arange(flat.size))), shape=(n, flat.size)
    )
    out = onehot @ g.reshape(flat.size, -1)
    return np.asarray(out, dtype=g.dtype).reshape(shape)


_WHOLE = slice(None)
# below this many entries of g np.add.at is as quick as checking the key for repeats
UNIQUE_CHECK_MIN = 1 << 14


def _lone_array_axis(key) -> int | None:
    """The dim of a key's only index array where every other entry is a whole-dim slice
    (``x[:, idx]``: 1), else None."""
    if not isinstance(key, tuple):
        return None
    axis = None
    for i, k in enumerate(key):
        if isinstance(k, np.ndarray) and k.ndim > 0 and k.dtype.kind in "iu" and axis is None:
            axis = i
        elif not (isinstance(k, slice) and k == _WHOLE):
            return None
    return axis


def _scatter_unique(g: np.ndarray, shape: tuple, idx: np.ndarray, axis: int) -> np.ndarray:
    """zeros(shape) with g put at ``idx`` (no index twice) along ``axis``, as a take of g
    and a zero slot by the inverse index: an assignment at the positions took 3.5 ms for g
    of (1024, 512) into (1024, 1024) on the last dim, this 0.7."""
    n = shape[axis]
    flat = _from_zero(idx.reshape(-1), n)
    inv = np.full(n, flat.size, dtype=np.intp)  # (unpicked: the zero slot)
    inv[flat] = np.arange(flat.size)
    lead, tail = shape[:axis], shape[axis + 1 :]
    gz = np.zeros(lead + (flat.size + 1,) + tail, dtype=g.dtype)
    gz[(slice(None),) * axis + (slice(0, flat.size),)] = g.reshape(lead + (flat.size,) + tail)
    return np.take(gz, inv, axis=axis)


def _no_repeats(key: tuple, shape: tuple, g_size: int) -> bool:
    """Whether no two entries of g land on one position of ``zeros(shape)[key]``: then
    assigning g there is what np.add.at does (0 + g), 5-20x as fast (g of (1024, 512)
    into x[:, idx]: add.at 6.9 ms). Bool masks never repeat a position; index arrays are
    checked where they are few against g (a sort of the positions they pick)."""
    arrays = [k for k in key if isinstance(k, np.ndarray) and k.ndim > 0]
    kinds = {a.dtype.kind for a in arrays}
    if kinds <= {"b"}:  # (masks, or 0-d arrays only)
        return True
    if "b" in kinds or max(a.size for a in arrays) * 8 > g_size:
        return False
    used = sum(_dims_used(k) for k in key)
    dim, sizes, picks = 0, [], []
    for k in key:
        if k is Ellipsis:
            dim += max(len(shape) - used, 0)
        elif isinstance(k, np.ndarray) and k.ndim > 0:
            sizes.append(shape[dim])
            picks.append(_from_zero(k, shape[dim]))
            dim += 1
        else:
            dim += _dims_used(k)
    flat = np.ravel_multi_index(tuple(np.broadcast_arrays(*picks)), sizes)
    return np.unique(flat).size == flat.size


class IndexAdd(Op):
    """y = zeros(shape) with g added at key.   VJP: gg = gy[key]."""

    saves_inputs = False

    name = "index_add"

    def forward(self, g, *, shape, key):
        rows = _row_index(key)
        if (
            rows is not None
            and rows.size >= SPARSE_MIN_INDICES
            and g.dtype in (np.float32, np.float64)  # (scipy.sparse has no float16)
            and g.size >= SPARSE_MIN_ROW * rows.size  # (np.add.at is quicker on scalar rows)
        ):
            return _add_rows(g, rows, shape)
        basic = _is_basic(key)
        unique = not basic and g.size >= UNIQUE_CHECK_MIN and _no_repeats(key, shape, g.size)
        axis = _lone_array_axis(key) if unique else None
        if axis:
            return _scatter_unique(g, shape, key[axis], axis)
        out = np.zeros(shape, dtype=g.dtype)
        if basic or unique:
            out[key] = g
        else:
            np.add.at(out, key, g)
        return out

    def vjp(self, gy):
        return (Getitem.apply(gy, key=self.args["key"]),)


def getitem(x: Tensor, key) -> Tensor:
    key = normalize_key(key, x.shape)
    split = split_int_key(key, x.ndim)
    try:  # (NumPy's message names the problem)
        if split is not None:  # the ints first, as PyTorch
            return Getitem.apply(Getitem.apply(x, key=split[0]), key=split[1])
        return Getitem.apply(x, key=key)
    except IndexError as e:
        message = str(e)
        try:  # NumPy's message for the whole key (np.take's and a split key's name other
            x.data[key]  # axes), found again only on this failure
        except IndexError as whole:
            message = str(whole)
        raise IndexError(
            f"index {key!r} is invalid for a tensor of shape {x.shape}: {message}"
        ) from None


# ----------------------------------------------------------------------------- pad, cat


class Pad(Op):
    """y = x with constant padding (NumPy's pad_width).   VJP: gx = g sliced back to x."""

    saves_inputs = False

    def forward(self, x, *, pad_width, value):
        return np.pad(x, pad_width, mode="constant", constant_values=value)

    def vjp(self, g):
        key = tuple(slice(b, g.shape[i] - a) for i, (b, a) in enumerate(self.args["pad_width"]))
        return (Getitem.apply(g, key=key),)


def pad(x: Tensor, pad_width, value: float = 0) -> Tensor:
    """NumPy-style constant padding: one ``(before, after)`` pair per dimension.

    Negative amounts crop (as in PyTorch's F.pad).
    """
    value = 0.0 if value is None else value  # (as PyTorch's F.pad)
    arr = np.asarray(pad_width)
    if arr.dtype.kind not in "iu" and not (arr.dtype == object and arr.size == 0):
        raise TypeError(f"pad: pad_width must be ints, got {pad_width!r}")
    try:
        pw = np.broadcast_to(arr.astype(np.int64), (x.ndim, 2))
    except ValueError:
        raise ValueError(
            f"pad: pad_width {pad_width!r} does not give one (before, after) pair for each of "
            f"the tensor's {x.ndim} dims"
        ) from None
    pw = [(int(b), int(a)) for b, a in pw.tolist()]
    for i, (b, a) in enumerate(pw):
        if x.shape[i] - max(-b, 0) - max(-a, 0) < 0:  # (the crop comes first, as PyTorch)
            raise ValueError(
                f"pad: pad_width ({b}, {a}) for dim {i} crops more than its {x.shape[i]} entries"
            )
    if any(b < 0 or a < 0 for b, a in pw):
        crop = tuple(slice(max(-b, 0), x.shape[i] - max(-a, 0)) for i, (b, a) in enumerate(pw))
        x = x[crop]
        pw = [(max(b, 0), max(a, 0)) for b, a in pw]
    if all(b == 0 and a == 0 for b, a in pw):
        return Alias.apply(x)
    return Pad.apply(x, pad_width=tuple(pw), value=value)


def _check_sequence(tensors, what: str) -> None:
    """cat and stack take a list or tuple of tensors (a Tensor would be split into rows)."""
    if not isinstance(tensors, (list, tuple)):
        raise TypeError(
            f"{what}: tensors must be a list or tuple of Tensors, got {type(tensors).__name__}"
        )


class Cat(Op):
    """y = concatenation along dim.   VJP: each input gets its slice of g."""

    saves_inputs = False

    def forward(self, *xs, dim):
        return np.concatenate(xs, axis=dim)

    def vjp(self, g):
        dim = self.args["dim"]
        out, start = [], 0
        for t, need in zip(self.inputs, self.needs_grad, strict=True):
            stop = start + t.shape[dim]
            if need:
                key = (slice(None),) * dim + (slice(start, stop),)
                out.append(Getitem.apply(g, key=key))
            else:
                out.append(None)
            start = stop
        return tuple(out)


def cat(tensors, dim: int = 0) -> Tensor:
    """Concatenate tensors along an existing ``dim``."""
    _check_sequence(tensors, "cat")
    ts = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not ts:
        raise ValueError("cat: expected a non-empty list of tensors")
    for i, t in enumerate(ts):
        if t.ndim == 0:
            raise ValueError(
                f"cat: tensors[{i}] is 0-d and has no dim to join along; use stack for scalars"
            )
    (d,) = normalize_dims(dim, ts[0].ndim, "cat")
    ref = ts[0].shape
    for i, t in enumerate(ts):
        if t.ndim != len(ref) or any(
            a != b for j, (a, b) in enumerate(zip(t.shape, ref, strict=True)) if j != d
        ):
            raise ValueError(
                f"cat: tensors[{i}] has shape {tuple(t.shape)} but tensors[0] has shape "
                f"{tuple(ref)}; all dims but dim={dim} must match"
            )
    return Cat.apply(*ts, dim=d)


class Stack(Op):
    """y = the inputs joined along a new dim.   VJP: input i gets g[..., i, ...] (a view).

    One node for the whole list: an unsqueeze node per input and a cat cost 3x PyTorch's
    time for 1000 small tensors."""

    saves_inputs = False

    def forward(self, *xs, dim):
        return np.stack(xs, axis=dim)

    def vjp(self, g):
        lead = (slice(None),) * self.args["dim"]
        return tuple(
            Getitem.apply(g, key=lead + (i,)) if need else None
            for i, need in enumerate(self.needs_grad)
        )


def stack(tensors, dim: int = 0) -> Tensor:
    """Stack tensors of equal shape along a new ``dim``."""
    _check_sequence(tensors, "stack")
    ts = [t if isinstance(t, Tensor) else Tensor(t) for t in tensors]
    if not ts:
        raise ValueError("stack: expected a non-empty list of tensors")
    for i, t in enumerate(ts):
        if t.shape != ts[0].shape:
            raise ValueError(
                f"stack: tensors[{i}] has shape {tuple(t.shape)} but tensors[0] has shape "
                f"{tuple(ts[0].shape)}"
            )
    dim = int_arg(dim, "stack", "dim")
    if not -ts[0].ndim - 1 <= dim <= ts[0].ndim:
        raise ValueError(f"stack: dim {dim} is out of range")
    return Stack.apply(*ts, dim=dim % (ts[0].ndim + 1))
