"""Layers: containers, linear, convolution, pooling, activations, normalisation, losses.

Constructor arguments, defaults, parameter shapes and default initialisation follow
PyTorch's, so a state dict moves between the two unchanged.
"""

from __future__ import annotations

import math
import warnings
from collections import OrderedDict
from collections.abc import Iterable, Iterator
from typing import Any

import numpy as np

from tinygrad_np import convmath as cm
from tinygrad_np.nn import functional as F
from tinygrad_np.nn import init
from tinygrad_np.nn.module import Module, Parameter, check_device
from tinygrad_np.ops.loss import _check_reduction
from tinygrad_np.tensor import Tensor, int_arg, number_arg, to_dtype


def _size(value, what: str, name: str) -> int:
    """A layer size: a non-negative int (not 3.5, True or "3"), else an error naming it."""
    n = int_arg(value, what, name)
    if n < 0:
        raise ValueError(f"{what}: {name} must be >= 0, got {n}")
    return n


def _param(shape: tuple[int, ...], dtype: Any) -> Parameter:
    return Parameter(np.empty(shape, dtype=to_dtype(dtype) or np.float32))


# ----------------------------------------------------------------------------- containers


class Sequential(Module):
    """Modules called in order, each on the previous one's output; named "0", "1", ...

    Also takes an ``OrderedDict`` of name -> module. Supports ``len``, iteration,
    indexing (a slice gives a Sequential), ``append``, ``insert``, ``extend``, ``pop``,
    ``+`` and ``+=``, as PyTorch's.

    >>> from tinygrad_np import nn
    >>> net = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
    >>> len(net), type(net[1]).__name__, [n for n, _ in net.named_parameters()][:2]
    (3, 'ReLU', ['0.weight', '0.bias'])
    """

    def __init__(self, *args: Module):
        super().__init__()
        if len(args) == 1 and isinstance(args[0], OrderedDict):
            for name, m in args[0].items():
                self.add_module(name, m)
        else:
            for i, m in enumerate(args):
                self.add_module(str(i), m)

    def _index(self, idx: int) -> str:
        n = len(self._modules)
        if not -n <= idx < n:
            raise IndexError(f"index {idx} is out of range for a Sequential of length {n}")
        return list(self._modules)[idx % n]

    def __getitem__(self, idx: int | slice) -> Module:
        if isinstance(idx, slice):
            return Sequential(OrderedDict(list(self._modules.items())[idx]))
        return self._modules[self._index(int(idx))]

    def __setitem__(self, idx: int, module: Module) -> None:
        self.add_module(self._index(int(idx)), module)

    def __delitem__(self, idx: int | slice) -> None:
        keys = list(self._modules)[idx] if isinstance(idx, slice) else [self._index(int(idx))]
        for k in keys:
            del self._modules[k]
        # renumbered "0", "1", ... as PyTorch does, so that a later append takes a new name
        _renumber(self, list(self._modules.values()))

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())

    def append(self, module: Module) -> Sequential:
        self.add_module(str(len(self)), module)
        return self

    def insert(self, index: int, module: Module) -> Sequential:
        """Put ``module`` before position ``index`` (PyTorch's bounds: -len..len)."""
        _insert(self, index, module)
        return self

    def extend(self, modules: Iterable[Module]) -> Sequential:
        for m in modules:
            self.append(m)
        return self

    def pop(self, index: int = -1) -> Module:
        m = self[index]
        del self[index]
        return m

    def __add__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise TypeError(f"Sequential + {type(other).__name__}: both must be Sequential")
        return Sequential(*self, *other)

    def __iadd__(self, other: Sequential) -> Sequential:
        if not isinstance(other, Sequential):
            raise TypeError(f"Sequential += {type(other).__name__}: both must be Sequential")
        return self.extend(list(other))

    def forward(self, input: Any) -> Any:
        for m in self._modules.values():
            input = m(input)
        return input


def _renumber(container: Module, mods: list[Module]) -> None:
    """Register ``mods`` as the children "0", "1", ... of ``container``, in order."""
    container._modules.clear()
    for i, m in enumerate(mods):
        container.add_module(str(i), m)


def _insert(container: Module, index: int, module: Module) -> None:
    if not isinstance(module, Module):
        raise TypeError(f"insert: expected a Module, got {type(module).__name__}")
    n = len(container._modules)
    index = int_arg(index, type(container).__name__, "index")
    if not -n <= index <= n:
        raise IndexError(f"insert: index {index} is out of range for length {n}")
    mods = list(container._modules.values())
    mods.insert(index + n if index < 0 else index, module)  # (as list.insert)
    _renumber(container, mods)


class ModuleList(Module):
    """A list of modules registered as children "0", "1", ... (no forward of its own).

    Indexing (a slice gives a ModuleList), assignment and ``del`` by index, ``append``,
    ``extend``, ``insert``, ``pop``, ``+`` and ``+=``, as PyTorch's."""

    def __init__(self, modules: Iterable[Module] | None = None):
        super().__init__()
        for m in modules or ():
            self.append(m)

    def append(self, module: Module) -> ModuleList:
        self.add_module(str(len(self)), module)
        return self

    def extend(self, modules: Iterable[Module]) -> ModuleList:
        for m in modules:
            self.append(m)
        return self

    def insert(self, index: int, module: Module) -> None:
        _insert(self, index, module)

    def pop(self, index: int = -1) -> Module:
        m = self[index]
        del self[index]
        return m

    def __getitem__(self, idx: int | slice) -> Any:
        mods = list(self._modules.values())
        if isinstance(idx, slice):
            return ModuleList(mods[idx])
        return mods[idx]

    def __setitem__(self, idx: int, module: Module) -> None:
        mods = list(self._modules.values())
        mods[int_arg(idx, "ModuleList", "index")] = module  # (IndexError out of range)
        _renumber(self, mods)

    def __delitem__(self, idx: int | slice) -> None:
        mods = list(self._modules.values())
        del mods[idx if isinstance(idx, slice) else int_arg(idx, "ModuleList", "index")]
        _renumber(self, mods)

    def __add__(self, other: Iterable[Module]) -> ModuleList:
        return ModuleList([*self, *other])

    def __iadd__(self, other: Iterable[Module]) -> ModuleList:
        return self.extend(other)

    def __len__(self) -> int:
        return len(self._modules)

    def __iter__(self) -> Iterator[Module]:
        return iter(self._modules.values())


# ----------------------------------------------------------------------------- linear


class Identity(Module):
    """Returns its input."""

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__()

    def forward(self, input: Tensor) -> Tensor:
        return input


class Linear(Module):
    """y = x W^T + b with W (out_features, in_features), b (out_features,).

    Initialised as PyTorch: W and b ~ U(-1/sqrt(in_features), 1/sqrt(in_features)).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__()
        check_device(device, "Linear")
        self.in_features = _size(in_features, "Linear", "in_features")
        self.out_features = _size(out_features, "Linear", "out_features")
        self.weight = _param((self.out_features, self.in_features), dtype)
        if bias:
            self.bias = _param((self.out_features,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in = self.in_features
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def forward(self, input: Tensor) -> Tensor:
        return F.linear(input, self.weight, self.bias)

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


# ----------------------------------------------------------------------------- convolution


class _ConvNd(Module):
    """Shared by Conv1d/2d/3d and ConvTranspose2d: arguments, parameters, init, repr."""

    _nd = 2
    _transposed = False

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any,
        padding: Any,
        dilation: Any,
        groups: int,
        bias: bool,
        padding_mode: str,
        output_padding: Any = 0,
        dtype: Any = None,
        device: Any = None,
    ):
        super().__init__()
        name = type(self).__name__
        check_device(device, name)
        for arg, v in (("in_channels", in_channels), ("out_channels", out_channels),
                       ("groups", groups)):  # fmt: skip
            if not isinstance(v, (int, np.integer)) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"{name}: {arg} must be a positive int, got {v!r}")
        if in_channels % groups:
            raise ValueError(
                f"{name}: in_channels ({in_channels}) must be divisible by groups ({groups})"
            )
        if out_channels % groups:
            raise ValueError(
                f"{name}: out_channels ({out_channels}) must be divisible by groups ({groups})"
            )
        if padding_mode != "zeros":
            raise NotImplementedError(
                f"{name}: padding_mode={padding_mode!r} is not supported; only 'zeros'"
            )
        n = self._nd
        self.in_channels, self.out_channels = int(in_channels), int(out_channels)
        # the functional forms' checks, here so that a bad argument fails at construction
        self.kernel_size = cm.expand_arg(kernel_size, n, "kernel_size", name)
        self.stride = cm.expand_arg(stride, n, "stride", name)
        self.dilation = cm.expand_arg(dilation, n, "dilation", name)
        for arg, v in (("kernel_size", self.kernel_size), ("stride", self.stride),
                       ("dilation", self.dilation)):  # fmt: skip
            cm.check_positive(v, arg, name)
        if isinstance(padding, str):
            if padding.lower() not in ("same", "valid"):
                raise ValueError(
                    f"{name}: padding must be 'same', 'valid' or ints, got {padding!r}"
                )
            self.padding = padding.lower()
        elif isinstance(padding, (int, np.integer)) and not isinstance(padding, bool):
            self.padding = (int(padding),) * n
        elif isinstance(padding, (list, tuple)) and len(
            padding := cm.one_for_every_dim(padding, n)  # (one int: every dim, as PyTorch)
        ) == n:
            self.padding = tuple(padding)  # one int or one (before, after) pair per dim
        else:
            raise ValueError(
                f"{name}: padding must be 'same', 'valid', an int, or {n} ints or (before, "
                f"after) pairs, got {padding!r}"
            )
        self.output_padding = cm.expand_arg(output_padding, n, "output_padding", name)
        self.groups = int(groups)
        self.padding_mode = padding_mode
        self.transposed = self._transposed
        if self._transposed:  # (in, out/groups, *k), as PyTorch
            shape = (self.in_channels, self.out_channels // groups) + self.kernel_size
        else:  # (out, in/groups, *k)
            shape = (self.out_channels, self.in_channels // groups) + self.kernel_size
        self.weight = _param(shape, dtype)
        if bias:
            self.bias = _param((self.out_channels,), dtype)
        else:
            self.register_parameter("bias", None)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # fan_in from the weight's dim 1: in/groups * prod(k) (transposed: out/groups * prod(k))
        init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = init.calculate_fan_in_and_fan_out(self.weight)
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            init.uniform_(self.bias, -bound, bound)

    def _padding_arg(self) -> Any:
        return self.padding

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}"
        s += f", stride={self.stride}"
        if self.padding != (0,) * self._nd:
            s += f", padding={self.padding}"
        if self.dilation != (1,) * self._nd:
            s += f", dilation={self.dilation}"
        if self.output_padding != (0,) * self._nd:
            s += f", output_padding={self.output_padding}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        return s


class _Conv(_ConvNd):
    """PyTorch's ConvNd constructor; ``forward`` calls ``F.conv{_nd}d``."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        dilation: Any = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ):
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, dtype=dtype, device=device,
        )  # fmt: skip

    def forward(self, input: Tensor) -> Tensor:
        conv = (F.conv1d, F.conv2d, F.conv3d)[self._nd - 1]
        return conv(
            input, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups
        )


class Conv1d(_Conv):
    """1-d cross-correlation over (N, C_in, L); weight (out, in/groups, k)."""

    _nd = 1


class Conv2d(_Conv):
    """2-d cross-correlation over (N, C_in, H, W); weight (out, in/groups, kh, kw).

    Default init as PyTorch: weight and bias ~ U(-1/sqrt(fan_in), 1/sqrt(fan_in)) with
    fan_in = in_channels / groups * kh * kw.
    """

    _nd = 2


class Conv3d(_Conv):
    """3-d cross-correlation over (N, C_in, D, H, W); weight (out, in/groups, kd, kh, kw)."""

    _nd = 3


class ConvTranspose2d(_ConvNd):
    """Transposed 2-d convolution (the gradient of Conv2d w.r.t. its input);
    weight (in, out/groups, kh, kw) as PyTorch."""

    _nd = 2
    _transposed = True

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        output_padding: Any = 0,
        groups: int = 1,
        bias: bool = True,
        dilation: Any = 1,
        padding_mode: str = "zeros",
        device: Any = None,
        dtype: Any = None,
    ):
        if isinstance(padding, str):
            raise ValueError(f"ConvTranspose2d: padding must be ints, got {padding!r}")
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
            padding_mode, output_padding=output_padding, dtype=dtype, device=device,
        )  # fmt: skip

    def _output_padding(self, input: Tensor, output_size: Any) -> tuple[int, ...]:
        """The output_padding that gives ``output_size`` (the spatial sizes, or the whole
        shape), as PyTorch's: with a stride above 1 several sizes are possible, from the
        smallest up to stride - 1 more."""
        if output_size is None:
            return self.output_padding
        nd, name = self._nd, type(self).__name__
        sizes = [int_arg(v, name, "output_size") for v in output_size]
        lead = input.ndim - nd  # (2 batched, 1 unbatched)
        if len(sizes) == nd + lead:
            sizes = sizes[lead:]
        if len(sizes) != nd:
            raise ValueError(
                f"{name}: output_size must have {nd} or {nd + lead} elements (got {len(sizes)})"
            )
        pads = self.padding
        out = []
        for i, want in enumerate(sizes):
            p = pads[i] if isinstance(pads[i], (int, np.integer)) else sum(pads[i]) / 2
            least = int((input.shape[lead + i] - 1) * self.stride[i] - 2 * p
                        + self.dilation[i] * (self.kernel_size[i] - 1) + 1)  # fmt: skip
            if not least <= want <= least + self.stride[i] - 1:
                raise ValueError(
                    f"{name}: output_size {tuple(sizes)} is not reachable: dim {i} can be "
                    f"{least} to {least + self.stride[i] - 1} for input of shape "
                    f"{tuple(input.shape)}"
                )
            out.append(want - least)
        return tuple(out)

    def forward(self, input: Tensor, output_size: Any = None) -> Tensor:
        return F.conv_transpose2d(
            input,
            self.weight,
            self.bias,
            self.stride,
            self.padding,
            self._output_padding(input, output_size),
            self.groups,
            self.dilation,
        )


# ----------------------------------------------------------------------------- pooling


class MaxPool2d(Module):
    """Max over kh x kw windows of (N, C, H, W); stride defaults to kernel_size."""

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        dilation: Any = 1,
        return_indices: bool = False,
        ceil_mode: bool = False,
    ):
        super().__init__()
        if return_indices:
            raise NotImplementedError("MaxPool2d: return_indices=True is not supported")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.dilation = dilation
        self.return_indices = return_indices
        self.ceil_mode = ceil_mode

    def forward(self, input: Tensor) -> Tensor:
        return F.max_pool2d(
            input, self.kernel_size, self.stride, self.padding, self.dilation, self.ceil_mode
        )

    def extra_repr(self) -> str:
        return (
            f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}, "
            f"dilation={self.dilation}, ceil_mode={self.ceil_mode}"
        )


class AvgPool2d(Module):
    """Mean over kh x kw windows of (N, C, H, W); stride defaults to kernel_size."""

    def __init__(
        self,
        kernel_size: Any,
        stride: Any = None,
        padding: Any = 0,
        ceil_mode: bool = False,
        count_include_pad: bool = True,
        divisor_override: int | None = None,
    ):
        super().__init__()
        if divisor_override is not None:
            raise NotImplementedError("AvgPool2d: divisor_override is not supported")
        self.kernel_size = kernel_size
        self.stride = stride if stride is not None else kernel_size
        self.padding = padding
        self.ceil_mode = ceil_mode
        self.count_include_pad = count_include_pad
        self.divisor_override = divisor_override

    def forward(self, input: Tensor) -> Tensor:
        return F.avg_pool2d(
            input,
            self.kernel_size,
            self.stride,
            self.padding,
            self.ceil_mode,
            self.count_include_pad,
        )

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"


# ----------------------------------------------------------------------------- shape, activations


class Flatten(Module):
    """Flatten dims start_dim..end_dim into one (by default all but the batch dim)."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1):
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, input: Tensor) -> Tensor:
        return input.flatten(self.start_dim, self.end_dim)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class ReLU(Module):
    """max(x, 0). ``inplace`` is accepted for compatibility; the result is a new tensor."""

    def __init__(self, inplace: bool = False):
        super().__init__()
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.relu(input)

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class LeakyReLU(Module):
    """x if x > 0 else negative_slope * x."""

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False):
        super().__init__()
        self.negative_slope = negative_slope
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.leaky_relu(input, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class Sigmoid(Module):
    """1 / (1 + e^-x)."""

    def forward(self, input: Tensor) -> Tensor:
        return F.sigmoid(input)


class Tanh(Module):
    """Hyperbolic tangent."""

    def forward(self, input: Tensor) -> Tensor:
        return F.tanh(input)


class GELU(Module):
    """x * Phi(x) (``approximate="tanh"`` for the tanh approximation)."""

    def __init__(self, approximate: str = "none"):
        super().__init__()
        self.approximate = approximate

    def forward(self, input: Tensor) -> Tensor:
        return F.gelu(input, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """Softmax over ``dim``. With ``dim=None``, PyTorch's legacy choice: dim 0 for 0-, 1- and
    3-dim inputs, else dim 1."""

    def __init__(self, dim: int | None = None):
        super().__init__()
        self.dim = dim

    def forward(self, input: Tensor) -> Tensor:
        return F.softmax(input, self.dim, _stacklevel=5)  # (the warning names the user's call)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Dropout(Module):
    """Zero elements with probability p and scale the rest by 1/(1-p), in training mode only."""

    def __init__(self, p: float = 0.5, inplace: bool = False):
        super().__init__()
        number_arg(p, "Dropout", "p")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p  # (as given: PyTorch's repr shows p=0 for 0)
        self.inplace = inplace

    def forward(self, input: Tensor) -> Tensor:
        return F.dropout(input, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


# ----------------------------------------------------------------------------- normalisation


class _BatchNorm(Module):
    """Shared by BatchNorm1d/2d: weight (ones), bias (zeros; absent with ``affine=False`` or
    ``bias=False``), running_mean (zeros), running_var (ones), num_batches_tracked (int64 0-d).

    ``momentum=None`` gives the cumulative average of all batches seen so far."""

    _optional_buffers = ("num_batches_tracked",)  # (kept where a state dict lacks it, as
    # PyTorch does for checkpoints saved before it had one)

    _dims: tuple[int, ...] = ()

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        device: Any = None,
        dtype: Any = None,
        *,
        bias: bool = True,
    ):
        super().__init__()
        check_device(device, type(self).__name__)
        self.num_features = _size(num_features, type(self).__name__, "num_features")
        number_arg(eps, type(self).__name__, "eps")
        if eps < 0:
            raise ValueError(f"{type(self).__name__}: eps must be >= 0, got {eps}")
        if momentum is not None:
            number_arg(momentum, type(self).__name__, "momentum")
        self.eps, self.momentum = eps, momentum  # (as given, for the repr, as PyTorch)
        self.affine = affine
        self.track_running_stats = track_running_stats
        dt = to_dtype(dtype) or np.dtype(np.float32)
        if affine:
            self.weight = Parameter(np.ones(self.num_features, dtype=dt))
            if bias:
                self.bias = Parameter(np.zeros(self.num_features, dtype=dt))
            else:
                self.register_parameter("bias", None)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(self.num_features, dtype=dt)))
            self.register_buffer("running_var", Tensor(np.ones(self.num_features, dtype=dt)))
            self.register_buffer("num_batches_tracked", Tensor(np.array(0, dtype=np.int64)))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            for t, value in ((self.running_mean, 0), (self.running_var, 1),
                             (self.num_batches_tracked, 0)):  # fmt: skip
                t.data[...] = value
                t._modified()

    def reset_parameters(self) -> None:
        """The running statistics reset, weight ones and bias zeros, as at construction."""
        self.reset_running_stats()
        if self.weight is not None:
            init.ones_(self.weight)
        if self.bias is not None:
            init.zeros_(self.bias)

    def forward(self, input: Tensor) -> Tensor:
        if input.ndim not in self._dims:
            raise ValueError(
                f"{type(self).__name__}: expected a {' or '.join(map(str, self._dims))}-dim "
                f"input, got shape {tuple(input.shape)}"
            )
        if input.shape[1] != self.num_features:
            raise ValueError(
                f"{type(self).__name__}: expected {self.num_features} channels (dim 1), got "
                f"input of shape {tuple(input.shape)}"
            )
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.data += 1
            if self.momentum is None:  # cumulative moving average
                factor = 1.0 / float(self.num_batches_tracked.data)
        use_batch = self.training or self.running_mean is None
        track = not self.training or self.track_running_stats
        return F.batch_norm(
            input,
            self.running_mean if track else None,
            self.running_var if track else None,
            self.weight,
            self.bias,
            use_batch,
            factor,
            self.eps,
        )

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, bias={self.bias is not None}, "
            f"track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of (N, C) or (N, C, L) over N (and L)."""

    _dims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of (N, C, H, W) over N, H and W."""

    _dims = (4,)


# ----------------------------------------------------------------------------- losses


def _legacy_reduction(size_average: Any, reduce: Any, reduction: str, what: str) -> str:
    """PyTorch's deprecated ``size_average`` / ``reduce`` keywords, where given, decide the
    reduction as there (with its warning): reduce=False gives "none", else
    size_average=False "sum", else "mean". They must be bools: a string or a number there
    is the reduction or ignore_index in the wrong place (``MSELoss("sum")``), which PyTorch
    would read as size_average=True, a mean."""
    if size_average is None and reduce is None:
        return reduction
    for name, v in (("size_average", size_average), ("reduce", reduce)):
        if v is not None and not isinstance(v, (bool, np.bool_)):
            raise TypeError(
                f"{what}: {name} (PyTorch's deprecated argument, before reduction in its "
                f"order) must be a bool or None, got {v!r}; pass reduction=... or "
                "ignore_index=... by keyword"
            )
    warnings.warn(
        f"{what}: size_average and reduce are deprecated (as in PyTorch); use reduction=",
        UserWarning,
        stacklevel=3,
    )
    if reduce is not None and not reduce:
        return "none"
    return "sum" if size_average is not None and not size_average else "mean"


class CrossEntropyLoss(Module):
    """Softmax cross-entropy between logits (N, C, ...) and integer class targets.

    PyTorch's arguments, in its order (``size_average`` and ``reduce`` are its deprecated
    spellings of ``reduction``); class ``weight`` is not supported."""

    def __init__(
        self,
        weight: Any = None,
        size_average: Any = None,
        ignore_index: int = -100,
        reduce: Any = None,
        reduction: str = "mean",
        label_smoothing: float = 0.0,
    ):
        super().__init__()
        if weight is not None:
            raise NotImplementedError("CrossEntropyLoss: class weights are not supported")
        _check_reduction(reduction, "CrossEntropyLoss")
        self.ignore_index = ignore_index
        self.reduction = _legacy_reduction(size_average, reduce, reduction, "CrossEntropyLoss")
        self.label_smoothing = label_smoothing

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.cross_entropy(
            input,
            target,
            reduction=self.reduction,
            label_smoothing=self.label_smoothing,
            ignore_index=self.ignore_index,
        )


class MSELoss(Module):
    """Mean (or sum) of squared differences; PyTorch's arguments, in its order."""

    def __init__(self, size_average: Any = None, reduce: Any = None, reduction: str = "mean"):
        super().__init__()
        _check_reduction(reduction, "MSELoss")
        self.reduction = _legacy_reduction(size_average, reduce, reduction, "MSELoss")

    def forward(self, input: Tensor, target: Any) -> Tensor:
        return F.mse_loss(input, target, reduction=self.reduction)
