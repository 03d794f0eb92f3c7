"""One row per differentiable op: how to call it, on which shapes, and PyTorch's equivalent.

The same rows drive test_gradcheck.py (finite differences, float64, first and
second derivatives) and test_vs_torch.py (values and gradients vs PyTorch).
Every ``Op`` subclass must be covered by some row's ``ops`` (test_op_rows.py).

A row's ``fn`` takes tinygrad_np Tensors; ``torch_fn`` takes torch tensors
(same positions) and returns the reference; ``None`` when PyTorch has no
equivalent. Both get ``**kwargs``. ``eps`` is the finite-difference step.
``domain`` picks the random inputs: "any" (standard normal),
"positive" (0.5..2), "away0" (|x| in 0.5..2, random sign; keeps kinks away).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import tinygrad_np as tg
import tinygrad_np.nn.functional as F
from tinygrad_np.ops import elementwise as _ew
from tinygrad_np.ops.movement import IndexAdd

try:  # torch_fn bodies only run in test_vs_torch.py, which skips without PyTorch
    import torch
except ImportError:  # pragma: no cover
    torch = None


@dataclass
class OpRow:
    name: str
    fn: Callable
    shapes: list[tuple]  # one tuple of input shapes per case
    torch_fn: Callable | None = None
    ops: tuple[str, ...] = ()  # Op subclass names this row exercises
    domain: str = "any"
    atol: float = 1e-5
    rtol: float = 1e-3
    gradgrad: bool = True
    grad_inputs: tuple[int, ...] | None = None  # which inputs require grad (default all)
    kwargs: dict = field(default_factory=dict)
    eps: float = 1e-6


def make_inputs(row: OpRow, shapes: tuple, seed: int = 0, dtype=np.float64) -> list[np.ndarray]:
    """Random inputs for one case, drawn from the row's domain."""
    rng = np.random.default_rng(seed)
    out = []
    for s in shapes:
        if row.domain == "positive":
            a = rng.uniform(0.5, 2.0, s)
        elif row.domain == "away0":
            a = rng.uniform(0.5, 2.0, s) * rng.choice([-1.0, 1.0], s)
        else:
            a = rng.standard_normal(s)
        out.append(np.asarray(a, dtype=dtype))
    return out


def _targets(shape: tuple, ignore: bool = False) -> np.ndarray:
    """Fixed class indices for logits of ``shape`` (N, C, *d) or (C,); -100 marks ignored."""
    C = shape[1] if len(shape) > 1 else shape[0]
    tshape = (shape[0],) + tuple(shape[2:]) if len(shape) > 1 else ()
    t = np.random.default_rng(7).integers(0, C, tshape).astype(np.int64)
    if ignore:
        t.reshape(-1)[0] = -100
    return t


def _torch_targets(shape, ignore: bool = False):
    return torch.from_numpy(_targets(tuple(shape), ignore))


def _seeded_dropout(a, p: float):
    tg.manual_seed(1234)
    return F.dropout(a, p)


_MASK_3x4 = np.random.default_rng(3).random((3, 4)) > 0.5
_ROWMASK_3 = np.array([True, False, True])
_IDX_T = tg.Tensor(np.array([[2, 0], [2, 1]], dtype=np.int64))
_IDX_ADD = np.array([0, 3, 0, 1, 3])
_BN_MEAN = np.array([0.1, -0.2, 0.3])
_BN_VAR = np.array([0.5, 1.5, 2.0])
_BCE_T = tg.Tensor(np.array([[0.0, 1.0, 0.3], [1.0, 0.5, 0.0]]), dtype="float64")


def _max_pool_grad(x, g):
    """d max_pool2d(x, 2, 1) / dx applied to g, as a recorded function of g (x is fixed)."""
    xr = tg.Tensor(x.data, requires_grad=True)
    return tg.grad(F.max_pool2d(xr, 2, 1), xr, g, create_graph=True)[0]


def _max_pool_grad_torch(x, g):
    xr = x.detach().requires_grad_()
    return torch.autograd.grad(torch.nn.functional.max_pool2d(xr, 2, 1), xr, g,
                               create_graph=True)[0]


def _flip_kernel(w, groups: int):
    from tinygrad_np.ops.conv import flip_kernel

    return flip_kernel(w, groups)


def _torch_flip_kernel(w, groups: int):
    o, cg = w.shape[:2]
    k = tuple(w.shape[2:])
    wt = w.reshape((groups, o // groups, cg) + k).transpose(1, 2)
    return wt.reshape((groups * cg, o // groups) + k).flip(tuple(range(2, 2 + len(k))))


class _Held(tg.nn.Module):
    """tanh(x w^T + b) with the row's own w and b as its parameters (so that the gradients
    DataParallel returns for its parameters are the gradients of the row's inputs)."""

    def __init__(self, w, b):
        super().__init__()
        object.__setattr__(self, "held", [w, b])

    def parameters(self, recurse: bool = True):
        return iter(self.held)

    def forward(self, x):
        return F.linear(x, *self.held).tanh()


def _data_parallel(x, w, b):
    dp = tg.nn.DataParallel(_Held(w, b), workers=2)  # 3 rows here, 2 in a worker process
    return dp(x)


ROWS: list[OpRow] = [
    OpRow("add", lambda a, b: a + b, [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5))],
          lambda a, b: a + b, ops=("Add",)),
    OpRow("mul", lambda a, b: a * b, [((3, 4), (3, 4)), ((2, 3, 4), (3, 1))],
          lambda a, b: a * b, ops=("Mul",)),
    # --- more core rows (foundation tests) go here ---
    # arithmetic, with broadcasting and the reflected forms with Python scalars
    OpRow("add_scalar", lambda a: 2.5 + a, [((3, 4),)], lambda a: 2.5 + a, ops=("Add",)),
    OpRow("sub", lambda a, b: a - b, [((3, 4), (3, 4)), ((2, 3), (3,)), ((3, 1), (1, 4))],
          lambda a, b: a - b, ops=("Sub",)),
    OpRow("rsub_scalar", lambda a: 1.0 - a, [((3, 4),)], lambda a: 1.0 - a, ops=("Sub",)),
    OpRow("mul_bcast", lambda a, b: a * b, [((2, 1, 3), (4, 1)), ((), (2, 3))],
          lambda a, b: a * b, ops=("Mul",)),
    OpRow("mul_self", lambda a: a * a, [((3, 4),)], lambda a: a * a, ops=("Mul",)),
    OpRow("div", lambda a, b: a / b, [((3, 4), (3, 4)), ((2, 3), (3,)), ((3, 1), (1, 2))],
          lambda a, b: a / b, ops=("Div",), domain="positive"),
    OpRow("rdiv_scalar", lambda a: 1.5 / a, [((3, 4),)], lambda a: 1.5 / a, ops=("Div",),
          domain="positive"),
    OpRow("pow_tensor", lambda a, b: a**b, [((3, 4), (3, 4)), ((2, 3), (3,)), ((2, 1), (1, 3))],
          lambda a, b: a**b, ops=("Pow",), domain="positive"),
    OpRow("pow_int", lambda a: a**3, [((3, 4),)], lambda a: a**3, ops=("Pow",)),
    OpRow("pow_half", lambda a: a**0.5, [((3, 4),)], lambda a: a**0.5, ops=("Pow",),
          domain="positive"),
    OpRow("rpow_scalar", lambda a: 2.0**a, [((3, 4),)], lambda a: 2.0**a, ops=("Pow",)),
    OpRow("neg", lambda a: -a, [((3, 4),)], lambda a: -a, ops=("Neg",)),
    # unary math
    OpRow("exp", lambda a: a.exp(), [((3, 4),), ((),)], lambda a: a.exp(), ops=("Exp",)),
    OpRow("log", lambda a: a.log(), [((3, 4),)], lambda a: a.log(), ops=("Log",),
          domain="positive"),
    OpRow("sqrt", lambda a: a.sqrt(), [((3, 4),)], lambda a: a.sqrt(), ops=("Sqrt",),
          domain="positive"),
    OpRow("abs", lambda a: a.abs(), [((3, 4),)], lambda a: a.abs(), ops=("Abs",),
          domain="away0"),
    OpRow("abs_dunder", lambda a: abs(a), [((5,),)], lambda a: abs(a), ops=("Abs",),
          domain="away0"),
    OpRow("clip", lambda a: a.clip(-0.5, 0.7), [((4, 5),)], lambda a: a.clamp(-0.5, 0.7),
          ops=("Clip",)),
    OpRow("clip_min", lambda a: a.clip(min=0.1), [((4, 5),)], lambda a: a.clamp(min=0.1),
          ops=("Clip",)),
    OpRow("clip_max", lambda a: a.clamp(max=0.2), [((4, 5),)], lambda a: a.clamp(max=0.2),
          ops=("Clip",)),
    # the float32 round trip quantises, so finite differences need a larger step
    OpRow("astype", lambda a: a.astype("float32") * 2.0, [((3, 4),)],
          lambda a: a.to(torch.float32) * 2.0, ops=("Cast",), eps=1e-3, atol=1e-3),
    OpRow("double", lambda a: a.float().double(), [((3, 4),)],
          lambda a: a.float().double(), ops=("Cast",), eps=1e-3, atol=1e-3),
    # the casts of a float16 op computed in float32 (they add in-place checks to a Cast)
    OpRow("widen_read", lambda a: _ew.WidenRead.apply(a, dtype=np.dtype("float32"), of="row")
          * 2.0, [((3, 4),)], lambda a: a.to(torch.float32) * 2.0, ops=("WidenRead",),
          eps=1e-3, atol=1e-3),
    OpRow("narrow_kept", lambda a: _ew.NarrowKept.apply(a, dtype=np.dtype("float32"), of="row")
          * 2.0, [((3, 4),)], lambda a: a.to(torch.float32) * 2.0, ops=("NarrowKept",),
          eps=1e-3, atol=1e-3),
    OpRow("where", lambda a, b: tg.where(a > 0, a, b),
          [((3, 4), (3, 4)), ((2, 3), (3,)), ((3, 1), (1, 4))],
          lambda a, b: torch.where(a > 0, a, b), ops=("Where",), domain="away0"),
    OpRow("where_scalar", lambda a: tg.where(a < 0, 0.5, a), [((3, 4),)],
          lambda a: torch.where(a < 0, 0.5, a), ops=("Where",), domain="away0"),
    OpRow("where_array_cond", lambda a: tg.where(_MASK_3x4, a * 2.0, a), [((3, 4),)],
          lambda a: torch.where(torch.from_numpy(_MASK_3x4), a * 2.0, a), ops=("Where",)),
    # activations
    OpRow("relu", lambda a: a.relu(), [((3, 4),), ((2, 3, 2),)], lambda a: a.relu(),
          ops=("Relu", "Tie"), domain="away0"),
    OpRow("F.relu", lambda a: F.relu(a), [((3, 4),)], lambda a: a.relu(), ops=("Relu",),
          domain="away0"),
    OpRow("leaky_relu", lambda a: F.leaky_relu(a, 0.2), [((3, 4),)],
          lambda a: torch.nn.functional.leaky_relu(a, 0.2), ops=("LeakyRelu",), domain="away0"),
    OpRow("leaky_relu_default", lambda a: F.leaky_relu(a), [((6,),)],
          lambda a: torch.nn.functional.leaky_relu(a), ops=("LeakyRelu",), domain="away0"),
    OpRow("sigmoid", lambda a: a.sigmoid(), [((3, 4),)], lambda a: a.sigmoid(),
          ops=("Sigmoid",)),
    OpRow("F.sigmoid", lambda a: F.sigmoid(a * 3.0), [((5,),)], lambda a: (a * 3.0).sigmoid(),
          ops=("Sigmoid", "Mul")),
    OpRow("tanh", lambda a: a.tanh(), [((3, 4),)], lambda a: a.tanh(), ops=("Tanh",)),
    OpRow("F.tanh", lambda a: F.tanh(a), [((5,),)], lambda a: a.tanh(), ops=("Tanh",)),
    # the exact GELU's second derivative goes through Erf
    OpRow("gelu", lambda a: F.gelu(a), [((3, 4),)], lambda a: torch.nn.functional.gelu(a),
          ops=("Gelu", "Erf")),
    OpRow("gelu_tanh", lambda a: F.gelu(a, approximate="tanh"), [((3, 4),)],
          lambda a: torch.nn.functional.gelu(a, approximate="tanh"), ops=("Gelu",)),
    OpRow("softmax", lambda a: a.softmax(-1), [((3, 4),), ((5,),), ((2, 3, 2),)],
          lambda a: a.softmax(-1), ops=("Softmax",)),
    OpRow("softmax_dim0", lambda a: F.softmax(a, 0), [((3, 4),), ((2, 3, 2),)],
          lambda a: a.softmax(0), ops=("Softmax",)),
    OpRow("softmax_dim1", lambda a: a.softmax(1), [((2, 3, 2),)], lambda a: a.softmax(1),
          ops=("Softmax",)),
    OpRow("log_softmax", lambda a: a.log_softmax(-1), [((3, 4),), ((5,),)],
          lambda a: a.log_softmax(-1), ops=("LogSoftmax", "_ExpOfLogSoftmax")),
    OpRow("log_softmax_dim", lambda a: F.log_softmax(a, 1), [((2, 3, 2),), ((3, 4),)],
          lambda a: a.log_softmax(1), ops=("LogSoftmax", "_ExpOfLogSoftmax")),
    OpRow("log_softmax_dim0", lambda a: a.log_softmax(0), [((3, 4),)],
          lambda a: a.log_softmax(0), ops=("LogSoftmax", "_ExpOfLogSoftmax")),
    # reductions
    OpRow("sum", lambda a: a.sum(), [((3, 4),), ((),)], lambda a: a.sum(), ops=("Sum",)),
    OpRow("sum_dim", lambda a: a.sum(1), [((3, 4),), ((2, 3, 2),)], lambda a: a.sum(1),
          ops=("Sum",)),
    OpRow("sum_neg_dim_keepdim", lambda a: a.sum(-1, keepdim=True), [((2, 3, 2),)],
          lambda a: a.sum(-1, keepdim=True), ops=("Sum",)),
    OpRow("sum_tuple", lambda a: a.sum((0, 2)), [((2, 3, 2),)], lambda a: a.sum((0, 2)),
          ops=("Sum",)),
    OpRow("mean", lambda a: a.mean(), [((3, 4),)], lambda a: a.mean(), ops=("Sum", "Mul")),
    OpRow("mean_dim_keepdim", lambda a: a.mean(0, keepdim=True), [((3, 4),), ((2, 3, 2),)],
          lambda a: a.mean(0, keepdim=True), ops=("Sum",)),
    OpRow("mean_tuple", lambda a: a.mean((1, 2)), [((2, 3, 2),)], lambda a: a.mean((1, 2)),
          ops=("Sum",)),
    OpRow("var", lambda a: a.var(), [((3, 4),)], lambda a: a.var(), ops=("Sum", "Sub")),
    OpRow("var_dim", lambda a: a.var(1), [((3, 4),), ((2, 3, 2),)], lambda a: a.var(1),
          ops=("Sum",)),
    OpRow("var_correction0_keepdim", lambda a: a.var((0, 1), correction=0, keepdim=True),
          [((2, 3, 2),)], lambda a: a.var((0, 1), correction=0, keepdim=True), ops=("Sum",)),
    OpRow("var_correction2", lambda a: a.var(0, correction=2), [((4, 3),)],
          lambda a: a.var(0, correction=2), ops=("Sum",)),
    OpRow("max", lambda a: a.max(), [((3, 4),)], lambda a: a.max(), ops=("MaxMin",)),
    OpRow("max_dim", lambda a: a.max(1).values, [((3, 4),), ((2, 3, 2),)],
          lambda a: a.max(1).values, ops=("MaxMin",)),
    OpRow("max_dim_keepdim", lambda a: a.max(0, keepdim=True)[0], [((3, 4),)],
          lambda a: a.max(0, keepdim=True)[0], ops=("MaxMin",)),
    OpRow("min", lambda a: a.min(), [((3, 4),)], lambda a: a.min(), ops=("MaxMin",)),
    OpRow("min_dim", lambda a: a.min(-1).values, [((3, 4),), ((2, 3, 2),)],
          lambda a: a.min(-1).values, ops=("MaxMin",)),
    OpRow("min_dim_keepdim", lambda a: a.min(1, keepdim=True).values, [((2, 3, 2),)],
          lambda a: a.min(1, keepdim=True).values, ops=("MaxMin",)),
    # movement
    OpRow("reshape", lambda a: a.reshape(4, 3), [((3, 4),)], lambda a: a.reshape(4, 3),
          ops=("Reshape",)),
    OpRow("reshape_tuple_neg1", lambda a: a.reshape((2, -1)), [((3, 4),), ((2, 3, 2),)],
          lambda a: a.reshape((2, -1)), ops=("Reshape",)),
    OpRow("view", lambda a: a.view(-1), [((3, 4),)], lambda a: a.view(-1), ops=("Reshape",)),
    OpRow("flatten", lambda a: a.flatten(), [((2, 3, 2),)], lambda a: a.flatten(),
          ops=("Reshape",)),
    OpRow("flatten_dims", lambda a: a.flatten(1, 2), [((2, 3, 2, 2),)],
          lambda a: a.flatten(1, 2), ops=("Reshape",)),
    OpRow("transpose", lambda a: a.transpose(0, 2), [((2, 3, 4),)],
          lambda a: a.transpose(0, 2), ops=("Permute",)),
    OpRow("transpose_neg", lambda a: a.transpose(-1, -2), [((3, 4),)],
          lambda a: a.transpose(-1, -2), ops=("Permute",)),
    OpRow("permute", lambda a: a.permute(2, 0, 1), [((2, 3, 4),)],
          lambda a: a.permute(2, 0, 1), ops=("Permute",)),
    OpRow("permute_tuple", lambda a: a.permute((1, 0, 2)), [((2, 3, 4),)],
          lambda a: a.permute((1, 0, 2)), ops=("Permute",)),
    OpRow("T", lambda a: a.T, [((3, 4),), ((2, 3, 4),)],
          lambda a: a.permute(*reversed(range(a.ndim))), ops=("Permute",)),
    OpRow("squeeze", lambda a: a.squeeze(), [((3, 1, 4, 1),)], lambda a: a.squeeze(),
          ops=("Reshape",)),
    OpRow("squeeze_dim", lambda a: a.squeeze(1), [((3, 1, 4),)], lambda a: a.squeeze(1),
          ops=("Reshape",)),
    OpRow("unsqueeze", lambda a: a.unsqueeze(0), [((3, 4),)], lambda a: a.unsqueeze(0),
          ops=("Reshape",)),
    OpRow("unsqueeze_neg", lambda a: a.unsqueeze(-1), [((3, 4),)], lambda a: a.unsqueeze(-1),
          ops=("Reshape",)),
    OpRow("expand", lambda a: a.expand(2, 3, 4), [((3, 1),), ((1, 1),)],
          lambda a: a.expand(2, 3, 4), ops=("Expand",)),
    OpRow("expand_neg1", lambda a: a.expand((2, -1, 4)), [((3, 1),)],
          lambda a: a.expand((2, -1, 4)), ops=("Expand",)),
    OpRow("clone", lambda a: a.clone() * 2.0, [((3, 4),)], lambda a: a.clone() * 2.0,
          ops=("Clone",)),
    # a shape op that changes nothing still makes a new tensor (a hook on it is its own)
    OpRow("reshape_same", lambda a: a.reshape(3, 4) * 2.0, [((3, 4),)],
          lambda a: a.reshape(3, 4) * 2.0, ops=("Alias",)),
    # indexing: the gradient scatters back (IndexAdd), repeated indices accumulate
    OpRow("index_int", lambda a: a[1], [((3, 4),)], lambda a: a[1], ops=("Getitem", "IndexAdd")),
    OpRow("index_neg_int_slice", lambda a: a[-1, 1:3], [((3, 4),)], lambda a: a[-1, 1:3],
          ops=("Getitem",)),
    OpRow("index_slice_step", lambda a: a[::2, 1::2], [((5, 4),)], lambda a: a[::2, 1::2],
          ops=("Getitem",)),
    OpRow("index_neg_step", lambda a: a[::-1, ::-2], [((3, 5),)],
          lambda a: a.flip(0).flip(1)[:, ::2], ops=("Getitem",)),
    OpRow("index_none_ellipsis", lambda a: a[None, ..., 1], [((2, 3, 4),)],
          lambda a: a[None, ..., 1], ops=("Getitem",)),
    OpRow("index_list_repeats", lambda a: a[[0, 2, 0, 0]], [((3, 4),)],
          lambda a: a[[0, 2, 0, 0]], ops=("Getitem", "IndexAdd")),
    OpRow("index_list_dim1", lambda a: a[:, [3, 1, 3]], [((3, 4),)],
          lambda a: a[:, [3, 1, 3]], ops=("Getitem",)),
    OpRow("index_two_arrays", lambda a: a[[0, 1, 1], [2, 0, 2]], [((3, 4),)],
          lambda a: a[[0, 1, 1], [2, 0, 2]], ops=("Getitem",)),
    OpRow("index_int_tensor", lambda a: a[_IDX_T], [((3, 4),)],
          lambda a: a[torch.from_numpy(_IDX_T.numpy())], ops=("Getitem",)),
    OpRow("index_bool_mask", lambda a: a[a > 0], [((3, 4),)], lambda a: a[a > 0],
          ops=("Getitem",), domain="away0"),
    OpRow("index_bool_array", lambda a: a[_ROWMASK_3], [((3, 4),)],
          lambda a: a[torch.from_numpy(_ROWMASK_3)], ops=("Getitem",)),
    OpRow("index_add", lambda g: IndexAdd.apply(g, shape=(4, 3), key=(_IDX_ADD,)), [((5, 3),)],
          lambda g: torch.zeros(4, 3, dtype=g.dtype).index_put(
              (torch.from_numpy(_IDX_ADD),), g, accumulate=True),
          ops=("IndexAdd", "Getitem")),
    # padding: Tensor.pad is NumPy-style, F.pad is PyTorch's last-dim-first order
    OpRow("pad", lambda a: a.pad(((1, 2), (0, 1))), [((2, 3),)],
          lambda a: torch.nn.functional.pad(a, (0, 1, 1, 2)), ops=("Pad",)),
    OpRow("pad_value", lambda a: a.pad(((1, 0), (2, 1)), value=0.5), [((2, 3),)],
          lambda a: torch.nn.functional.pad(a, (2, 1, 1, 0), value=0.5), ops=("Pad",)),
    OpRow("F.pad", lambda a: F.pad(a, (1, 2)), [((2, 3),), ((2, 2, 3),)],
          lambda a: torch.nn.functional.pad(a, (1, 2)), ops=("Pad",)),
    OpRow("F.pad_negative", lambda a: F.pad(a, (1, -1, -1, 2)), [((3, 4),)],
          lambda a: torch.nn.functional.pad(a, (1, -1, -1, 2)), ops=("Pad", "Getitem")),
    OpRow("F.pad_crop_only", lambda a: F.pad(a, (-1, 0)), [((3, 4),)],
          lambda a: torch.nn.functional.pad(a, (-1, 0)), ops=("Getitem",)),
    # joining
    OpRow("cat", lambda a, b: tg.cat([a, b], 1), [((2, 3), (2, 2)), ((2, 1, 2), (2, 3, 2))],
          lambda a, b: torch.cat([a, b], 1), ops=("Cat",)),
    OpRow("cat_dim0_three", lambda a, b: tg.cat([a, b, a], 0), [((2, 3), (1, 3))],
          lambda a, b: torch.cat([a, b, a], 0), ops=("Cat",)),
    OpRow("stack", lambda a, b: tg.stack([a, b], 1), [((2, 3), (2, 3))],
          lambda a, b: torch.stack([a, b], 1), ops=("Stack",)),
    OpRow("stack_neg", lambda a, b: tg.stack([a, b], -1), [((3,), (3,))],
          lambda a, b: torch.stack([a, b], -1), ops=("Stack",)),
    # matrix products
    OpRow("matmul", lambda a, b: a @ b,
          [((4,), (4,)), ((3,), (3, 4)), ((2, 3), (3,)), ((2, 3), (3, 4)),
           ((2, 2, 3), (3, 2)), ((2, 1, 2, 3), (3, 3, 2))],
          lambda a, b: a @ b, ops=("Matmul",)),
    OpRow("matmul_method", lambda a, b: a.matmul(b), [((2, 3), (3, 2))],
          lambda a, b: a.matmul(b), ops=("Matmul",)),
    # (2, 3) through 4 outputs: fewer rows than outputs, computed as (w @ x^T)^T;
    # (5, 3) through 4: as x @ w^T
    OpRow("linear", lambda x, w, b: F.linear(x, w, b), [((2, 3), (4, 3), (4,)),
                                                           ((5, 3), (4, 3), (4,)),
                                                           ((2, 2, 3), (2, 3), (2,)),
                                                           ((2, 1, 2, 3), (4, 3), (4,))],
          lambda x, w, b: torch.nn.functional.linear(x, w, b), ops=("Linear",)),
    OpRow("linear_nobias", lambda x, w: F.linear(x, w), [((2, 3), (4, 3)), ((3,), (2, 3))],
          lambda x, w: torch.nn.functional.linear(x, w), ops=("Linear",)),
    # losses (targets are fixed class indices; see _targets)
    # the batch split over processes: values and gradients of input and parameters
    # (gradgrad: refused, tested in test_data_parallel.py)
    OpRow("data_parallel", _data_parallel, [((5, 3), (2, 3), (2,))],
          lambda x, w, b: torch.tanh(torch.nn.functional.linear(x, w, b)),
          ops=("_Gather",), gradgrad=False),
    OpRow("cross_entropy", lambda x: F.cross_entropy(x, _targets(x.shape)),
          [((4, 3),), ((2, 3, 2),), ((3,),)],
          lambda x: torch.nn.functional.cross_entropy(x, _torch_targets(x.shape)),
          ops=("CrossEntropy",)),
    OpRow("cross_entropy_sum", lambda x: F.cross_entropy(x, _targets(x.shape), reduction="sum"),
          [((4, 3),)],
          lambda x: torch.nn.functional.cross_entropy(x, _torch_targets(x.shape), reduction="sum"),
          ops=("CrossEntropy",)),
    OpRow("cross_entropy_none",
          lambda x: F.cross_entropy(x, _targets(x.shape), reduction="none"),
          [((4, 3),), ((2, 3, 2),)],
          lambda x: torch.nn.functional.cross_entropy(x, _torch_targets(x.shape),
                                                      reduction="none"),
          ops=("CrossEntropy",)),
    OpRow("cross_entropy_smooth_ignore",
          lambda x: F.cross_entropy(x, _targets(x.shape, ignore=True), label_smoothing=0.1),
          [((5, 3),), ((2, 3, 2),)],
          lambda x: torch.nn.functional.cross_entropy(
              x, _torch_targets(x.shape, ignore=True), label_smoothing=0.1),
          ops=("CrossEntropy",)),
    OpRow("cross_entropy_tensor_target",
          lambda x: F.cross_entropy(x, tg.Tensor(_targets(x.shape)), reduction="sum",
                                    label_smoothing=0.2),
          [((4, 3),)],
          lambda x: torch.nn.functional.cross_entropy(x, _torch_targets(x.shape),
                                                      reduction="sum", label_smoothing=0.2),
          ops=("CrossEntropy",)),
    OpRow("nll_loss", lambda x: F.nll_loss(x, _targets(x.shape)), [((4, 3),), ((2, 3, 2),)],
          lambda x: torch.nn.functional.nll_loss(x, _torch_targets(x.shape)),
          ops=("NllLoss",)),
    OpRow("nll_loss_sum", lambda x: F.nll_loss(x.log_softmax(1), _targets(x.shape), "sum"),
          [((4, 3),)],
          lambda x: torch.nn.functional.nll_loss(x.log_softmax(1), _torch_targets(x.shape),
                                                 reduction="sum"),
          ops=("NllLoss", "LogSoftmax")),
    OpRow("nll_loss_none", lambda x: F.nll_loss(x, _targets(x.shape), reduction="none"),
          [((4, 3),)],
          lambda x: torch.nn.functional.nll_loss(x, _torch_targets(x.shape), reduction="none"),
          ops=("NllLoss",)),
    OpRow("mse_loss", lambda a, b: F.mse_loss(a, b), [((3, 4), (3, 4))],
          lambda a, b: torch.nn.functional.mse_loss(a, b), ops=("MseLoss",)),
    OpRow("mse_loss_sum_none", lambda a, b: F.mse_loss(a, b, "sum") + F.mse_loss(a, b, "none"),
          [((5,), (5,))],
          lambda a, b: (torch.nn.functional.mse_loss(a, b, reduction="sum")
                        + torch.nn.functional.mse_loss(a, b, reduction="none")),
          ops=("MseLoss", "Sub", "Mul")),
    # batch norm: batch statistics (training) and running statistics (evaluation)
    OpRow("batch_norm_train",
          lambda x, w, b: F.batch_norm(x, None, None, w, b, training=True),
          [((4, 3, 2, 2), (3,), (3,)), ((5, 2), (2,), (2,))],
          lambda x, w, b: torch.nn.functional.batch_norm(x, None, None, w, b, training=True),
          ops=("BatchNormTrain",)),
    OpRow("batch_norm_train_plain", lambda x: F.batch_norm(x, None, None, training=True),
          [((3, 2, 3),), ((4, 3),)],
          lambda x: torch.nn.functional.batch_norm(x, None, None, training=True),
          ops=("BatchNormTrain",)),
    OpRow("batch_norm_train_weight_only",  # (one of weight and bias: composed ops)
          lambda x, w: F.batch_norm(x, None, None, w, None, training=True),
          [((4, 3, 2), (3,))],
          lambda x, w: torch.nn.functional.batch_norm(x, None, None, w, None, training=True),
          ops=("Sub", "Div", "Sqrt", "Mul", "Sum")),
    OpRow("batch_norm_eval",
          lambda x, w, b: F.batch_norm(x, _BN_MEAN.astype(x.dtype), _BN_VAR.astype(x.dtype), w, b,
                                       training=False),  # fmt: skip
          [((4, 3, 2, 2), (3,), (3,))],
          lambda x, w, b: torch.nn.functional.batch_norm(
              x, torch.tensor(_BN_MEAN, dtype=x.dtype), torch.tensor(_BN_VAR, dtype=x.dtype),
              w, b, training=False),
          ops=("BatchNormEval",)),
    OpRow("batch_norm_eval_plain",
          lambda x: F.batch_norm(x, _BN_MEAN.astype(x.dtype), _BN_VAR.astype(x.dtype)),
          [((4, 3, 2, 2),), ((5, 3),)],
          lambda x: torch.nn.functional.batch_norm(
              x, torch.tensor(_BN_MEAN, dtype=x.dtype), torch.tensor(_BN_VAR, dtype=x.dtype)),
          ops=("BatchNormEval",)),
    OpRow("bce_with_logits", lambda x, t: F.binary_cross_entropy_with_logits(x, t),
          [((3, 4), (3, 4))],
          lambda x, t: torch.nn.functional.binary_cross_entropy_with_logits(x, t),
          ops=("BceWithLogits",)),
    OpRow("bce_with_logits_none",
          lambda x, t: F.binary_cross_entropy_with_logits(x, t.sigmoid(), reduction="none"),
          [((2, 3), (2, 3))],
          lambda x, t: torch.nn.functional.binary_cross_entropy_with_logits(
              x, t.sigmoid(), reduction="none"),
          ops=("BceWithLogits",)),
    OpRow("bce_with_logits_sum", lambda x: F.binary_cross_entropy_with_logits(
        x, _BCE_T.astype(x.dtype), reduction="sum"), [((2, 3),)],
          lambda x: torch.nn.functional.binary_cross_entropy_with_logits(
              x, torch.from_numpy(_BCE_T.numpy()).to(x.dtype), reduction="sum"),
          ops=("BceWithLogits",)),
    # dropout draws a fresh mask per call: reseed inside fn so that every evaluation by
    # finite differences sees the same mask (PyTorch's generator differs: no torch_fn)
    OpRow("dropout", lambda a: _seeded_dropout(a, 0.3), [((4, 5),)], None, ops=("Dropout",)),
    # --- convolution and pooling rows go here ---
    # the flipped kernel of the transposed correlation (channels swapped per group)
    OpRow("flip_kernel", lambda w: _flip_kernel(w, groups=2),
          [((4, 3, 2, 3),), ((6, 1, 3),), ((2, 3, 2),)],
          lambda w: _torch_flip_kernel(w, 2), ops=("FlipKernel",)),
    OpRow("conv1d", lambda x, w, b: F.conv1d(x, w, b, stride=2, padding=1, groups=2),
          [((2, 4, 7), (6, 2, 3), (6,))],
          lambda x, w, b: torch.nn.functional.conv1d(x, w, b, stride=2, padding=1, groups=2),
          ops=("Conv", "ConvWeightGrad", "Dilate")),
    OpRow("conv2d", lambda x, w, b: F.conv2d(x, w, b, stride=(2, 1), padding=(1, 0),
                                             dilation=(1, 2)),
          [((2, 3, 6, 5), (4, 3, 3, 2), (4,))],
          lambda x, w, b: torch.nn.functional.conv2d(x, w, b, stride=(2, 1), padding=(1, 0),
                                                     dilation=(1, 2)),
          ops=("Conv", "ConvWeightGrad", "Dilate")),
    OpRow("conv2d_same_stride2", lambda x, w: F.conv2d(x, w, stride=2, padding="same"),
          [((1, 2, 7, 6), (3, 2, 3, 2))],
          # TensorFlow's SAME: output (4, 3); pads (1, 1) rows and (0, 1) cols, extra after
          lambda x, w: torch.nn.functional.conv2d(
              torch.nn.functional.pad(x, (0, 1, 1, 1)), w, stride=2),
          ops=("Conv",)),
    OpRow("conv2d_asymmetric", lambda x, w: F.conv2d(x, w, padding=((2, 0), (0, 3))),
          [((1, 2, 4, 4), (2, 2, 3, 3))],
          lambda x, w: torch.nn.functional.conv2d(torch.nn.functional.pad(x, (0, 3, 2, 0)), w),
          ops=("Conv",)),
    OpRow("conv2d_depthwise", lambda x, w: F.conv2d(x, w, stride=2, padding=1, groups=3),
          [((2, 3, 5, 5), (6, 1, 3, 3)), ((3, 5, 4), (6, 1, 2, 2))],
          lambda x, w: torch.nn.functional.conv2d(x, w, stride=2, padding=1, groups=3),
          ops=("Conv",)),
    OpRow("conv3d", lambda x, w, b: F.conv3d(x, w, b, stride=(1, 2, 1), padding=1),
          [((1, 2, 3, 4, 3), (3, 2, 2, 2, 2), (3,))],
          lambda x, w, b: torch.nn.functional.conv3d(x, w, b, stride=(1, 2, 1), padding=1),
          ops=("Conv",)),
    OpRow("conv_transpose1d",
          lambda x, w, b: F.conv_transpose1d(x, w, b, stride=3, padding=1, output_padding=2,
                                             groups=2, dilation=2),
          [((2, 4, 3), (4, 2, 3), (4,))],
          lambda x, w, b: torch.nn.functional.conv_transpose1d(
              x, w, b, stride=3, padding=1, output_padding=2, groups=2, dilation=2),
          ops=("ConvTranspose",)),
    OpRow("conv_transpose2d",
          lambda x, w: F.conv_transpose2d(x, w, stride=(2, 1), padding=(0, 1),
                                          output_padding=(1, 0)),
          [((1, 3, 3, 3), (3, 2, 2, 3))],
          lambda x, w: torch.nn.functional.conv_transpose2d(
              x, w, stride=(2, 1), padding=(0, 1), output_padding=(1, 0)),
          ops=("ConvTranspose",)),
    OpRow("conv_transpose3d", lambda x, w: F.conv_transpose3d(x, w, stride=2, dilation=(1, 2, 1)),
          [((1, 2, 2, 2, 2), (2, 1, 2, 2, 1))],
          lambda x, w: torch.nn.functional.conv_transpose3d(x, w, stride=2, dilation=(1, 2, 1)),
          ops=("ConvTranspose",)),
    OpRow("max_pool1d", lambda x: F.max_pool1d(x, 3, 2, padding=1, ceil_mode=True),
          [((2, 3, 8),)],
          lambda x: torch.nn.functional.max_pool1d(x, 3, 2, padding=1, ceil_mode=True),
          ops=("MaxPool", "MaxPoolScatter")),
    OpRow("max_pool2d", lambda x: F.max_pool2d(x, (3, 2), (2, 1), padding=1, dilation=(1, 2)),
          [((2, 2, 6, 5),), ((2, 5, 6),)],
          lambda x: torch.nn.functional.max_pool2d(x, (3, 2), (2, 1), padding=1,
                                                   dilation=(1, 2)),
          ops=("MaxPool", "MaxPoolScatter")),
    OpRow("max_pool3d", lambda x: F.max_pool3d(x, 2, ceil_mode=True), [((1, 2, 3, 4, 5),)],
          lambda x: torch.nn.functional.max_pool3d(x, 2, ceil_mode=True),
          ops=("MaxPool", "MaxPoolScatter")),
    # the max-pool gradient as a function of (x, g): its own VJP gathers at the argmax
    OpRow("max_pool2d_backward",
          lambda x, g: _max_pool_grad(x, g),
          [((1, 2, 4, 5), (1, 2, 3, 4))],
          lambda x, g: _max_pool_grad_torch(x, g),
          ops=("MaxPoolScatter", "MaxPoolGather"), grad_inputs=(1,)),
    OpRow("avg_pool1d", lambda x: F.avg_pool1d(x, 3, 2, padding=1, count_include_pad=False),
          [((2, 3, 7),)],
          lambda x: torch.nn.functional.avg_pool1d(x, 3, 2, padding=1, count_include_pad=False),
          ops=("AvgPool", "AvgPoolTranspose")),
    OpRow("avg_pool2d", lambda x: F.avg_pool2d(x, (3, 2), (2, 2), padding=1, ceil_mode=True),
          [((2, 2, 6, 5),), ((2, 6, 7),)],
          lambda x: torch.nn.functional.avg_pool2d(x, (3, 2), (2, 2), padding=1,
                                                   ceil_mode=True),
          ops=("AvgPool", "AvgPoolTranspose")),
    OpRow("avg_pool3d",
          lambda x: F.avg_pool3d(x, 2, padding=1, ceil_mode=True, count_include_pad=False),
          [((1, 2, 3, 4, 3),)],
          lambda x: torch.nn.functional.avg_pool3d(x, 2, padding=1, ceil_mode=True,
                                                   count_include_pad=False),
          ops=("AvgPool", "AvgPoolTranspose")),
]
