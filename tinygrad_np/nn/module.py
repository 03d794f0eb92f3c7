"""Module and Parameter: parameter registration by attribute, state dicts, train/eval.

A ``Module`` keeps three ordered dicts, filled by attribute assignment:
``_parameters`` (``Parameter`` values), ``_buffers`` (non-trainable state such
as BatchNorm's running statistics, added with ``register_buffer``) and
``_modules`` (sub-modules). Names follow PyTorch's: a sub-module's parameter
is ``"<child>.<name>"``, so a ``Sequential``'s first weight is ``"0.weight"``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

import numpy as np

from tinygrad_np import autograd
from tinygrad_np.tensor import Tensor, to_dtype


def _dtype_name(name: str) -> bool:
    """Whether the string ``name`` names a NumPy dtype ("float64"), not a device ("cpu")."""
    try:
        np.dtype(name)
    except TypeError:
        return False
    return True


def check_device(device: Any, what: str) -> None:
    """Accept PyTorch's spellings of the CPU (None, "cpu", "cpu:0", an object whose str is
    one), the only device there is; anything else raises naming the argument."""
    if device is None or str(device).split(":")[0] == "cpu":
        return
    raise ValueError(f"{what}: device must be 'cpu' (tinygrad_np runs on NumPy), got {device!r}")


class Parameter(Tensor):
    """A Tensor that a Module registers as trainable; requires grad by default.

    Made from a Tensor it shares that Tensor's array, as PyTorch's shares its storage: an
    optimizer step on the Parameter is seen through the Tensor. Other data is copied.

    >>> p = Parameter(np.zeros(3))
    >>> p.requires_grad, p.dtype
    (True, dtype('float64'))
    """

    def __init__(self, data: Any = None, requires_grad: bool = True):
        if data is None:
            data = np.empty(0, dtype=np.float32)
        super().__init__(data.data if isinstance(data, Tensor) else data)
        if isinstance(data, Tensor):
            self._data = data.data  # (the same array, not the copy every Tensor makes)
        if requires_grad:
            self.requires_grad_(True)

    def __repr__(self) -> str:
        return "Parameter containing:\n" + super().__repr__()


class _IncompatibleKeys(NamedTuple):
    missing_keys: list[str]
    unexpected_keys: list[str]


def _addindent(text: str, spaces: int) -> str:
    lines = text.split("\n")
    return "\n".join(lines[:1] + [" " * spaces + line for line in lines[1:]])


class Module:
    """Base class of every layer and model: subclass it, assign layers and Parameters as
    attributes in ``__init__`` (after ``super().__init__()``) and write ``forward``.

    >>> import tinygrad_np as tg
    >>> from tinygrad_np import nn
    >>> class Net(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.fc(x).relu()
    >>> [name for name, _ in Net().named_parameters()]
    ['fc.weight', 'fc.bias']
    """

    training: bool

    #: buffers that ``load_state_dict`` keeps as they are when a state dict lacks them
    #: (BatchNorm's ``num_batches_tracked``, absent from old PyTorch checkpoints)
    _optional_buffers: tuple[str, ...] = ()

    def __init__(self) -> None:
        object.__setattr__(self, "_parameters", OrderedDict())
        object.__setattr__(self, "_buffers", OrderedDict())
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", OrderedDict())
        object.__setattr__(self, "training", True)

    # ------------------------------------------------------------------ registration
    def _check_init(self, name: str) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign '{name}' before Module.__init__() was called: call "
                f"super().__init__() first in {type(self).__name__}.__init__"
            )

    def _check_name(self, name: Any, what: str) -> None:
        """A name ``register_*``/``add_module`` can store: a non-empty str without '.' (the
        separator of the qualified names in ``state_dict``), as in PyTorch."""
        if not isinstance(name, str):
            raise TypeError(f"{what} name must be a str, got {type(name).__name__}")
        if not name or "." in name:
            raise KeyError(f"{what} name must be a non-empty string without '.', got {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        d = self.__dict__
        if isinstance(value, Parameter):
            self._check_init(name)
            self._check_name(name, "parameter")
            self._forget(name, keep="_parameters")  # (a re-assigned one keeps its place)
            d["_parameters"][name] = value
        elif "_parameters" in d and name in d["_parameters"]:  # (before a Module, as PyTorch)
            if value is not None:
                advice = (  # (a Module cannot become a Parameter)
                    "expected nn.Parameter or None" if isinstance(value, Module)
                    else "wrap it in nn.Parameter (or assign None)"
                )  # fmt: skip
                raise TypeError(
                    f"cannot assign {type(value).__name__} to parameter '{name}' of "
                    f"{type(self).__name__}: {advice}"
                )
            d["_parameters"][name] = None
        elif isinstance(value, Module):
            self._check_init(name)
            self._check_name(name, "module")
            self._forget(name, keep="_modules")
            d["_modules"][name] = value
        elif "_modules" in d and name in d["_modules"]:
            if value is not None:
                raise TypeError(
                    f"cannot assign {type(value).__name__} to sub-module '{name}' of "
                    f"{type(self).__name__}: expected a Module or None"
                )
            d["_modules"][name] = None
        elif "_buffers" in d and name in d["_buffers"]:
            d["_buffers"][name] = self._as_buffer(name, value)
        else:
            object.__setattr__(self, name, value)

    def _forget(self, name: str, keep: str | None = None) -> None:
        """Remove ``name`` from every registry but ``keep`` (where the caller assigns it
        again, in its old place: state_dict and parameter order stay as PyTorch's) and
        from the instance dict."""
        for key in ("_parameters", "_buffers", "_modules"):
            if key != keep:
                self.__dict__[key].pop(name, None)
        if keep != "_buffers":
            self.__dict__["_non_persistent"].discard(name)
        self.__dict__.pop(name, None)

    def __getattr__(self, name: str) -> Any:
        # only called when normal lookup fails
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            reg = d.get(key)
            if reg is not None and name in reg:
                return reg[name]
        raise AttributeError(f"'{type(self).__name__}' object has no attribute '{name}'")

    def __delattr__(self, name: str) -> None:
        d = self.__dict__
        for key in ("_parameters", "_buffers", "_modules"):
            if name in d.get(key, {}):
                del d[key][name]
                d["_non_persistent"].discard(name)
                return
        object.__delattr__(self, name)

    @staticmethod
    def _as_buffer(name: str, value: Any) -> Tensor | None:
        if value is None or (isinstance(value, Tensor) and not value.requires_grad):
            return value
        if isinstance(value, Tensor):
            return value.detach()
        if isinstance(value, np.ndarray):
            return Tensor._make(value, False, None)
        raise TypeError(
            f"buffer '{name}' must be a Tensor, a NumPy array or None, got {type(value).__name__}"
        )

    def register_buffer(self, name: str, tensor: Any, persistent: bool = True) -> None:
        """Add non-trainable state (saved in ``state_dict`` unless ``persistent=False``)."""
        self._check_init(name)
        self._check_name(name, "buffer")
        if hasattr(self, name) and name not in self._buffers:
            raise KeyError(f"attribute '{name}' already exists")
        buf = self._as_buffer(name, tensor)
        self._forget(name, keep="_buffers")
        self._buffers[name] = buf
        if persistent:
            self._non_persistent.discard(name)
        else:
            self._non_persistent.add(name)

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Add a Parameter (or None, a declared but absent one, like ``bias=False``)."""
        self._check_init(name)
        self._check_name(name, "parameter")
        if hasattr(self, name) and name not in self._parameters:
            raise KeyError(f"attribute '{name}' already exists")
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(
                f"register_parameter('{name}'): expected a Parameter or None, got "
                f"{type(param).__name__}"
            )
        self._forget(name, keep="_parameters")
        self._parameters[name] = param

    def add_module(self, name: str, module: Module | None) -> None:
        """Add a sub-module under ``name`` (what attribute assignment does)."""
        self._check_init(name)
        self._check_name(name, "module")
        if hasattr(self, name) and name not in self._modules:
            raise KeyError(f"attribute '{name}' already exists")
        if module is not None and not isinstance(module, Module):
            raise TypeError(f"add_module('{name}'): {type(module).__name__} is not a Module")
        self._forget(name, keep="_modules")
        self._modules[name] = module

    register_module = add_module

    # ------------------------------------------------------------------ traversal
    def named_modules(
        self, memo: set | None = None, prefix: str = "", remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """This module and every sub-module, depth first, with qualified names ('' for self)."""
        if memo is None:
            memo = set()
        if remove_duplicate:
            if id(self) in memo:
                return
            memo.add(id(self))
        yield prefix, self
        for name, child in self._modules.items():
            if child is None:
                continue
            sub = f"{prefix}.{name}" if prefix else name
            yield from child.named_modules(memo, sub, remove_duplicate)

    def modules(self) -> Iterator[Module]:
        for _, m in self.named_modules():
            yield m

    def named_children(self) -> Iterator[tuple[str, Module]]:
        seen: set[int] = set()
        for name, child in self._modules.items():
            if child is not None and id(child) not in seen:
                seen.add(id(child))
                yield name, child

    def children(self) -> Iterator[Module]:
        for _, m in self.named_children():
            yield m

    def _named_members(self, registry: str, prefix: str, recurse: bool, remove_duplicate: bool):
        seen: set[int] = set()
        mods = self.named_modules(prefix=prefix, remove_duplicate=remove_duplicate)
        for mod_prefix, mod in mods if recurse else [(prefix, self)]:
            for name, t in mod.__dict__[registry].items():
                if t is None or (remove_duplicate and id(t) in seen):
                    continue
                seen.add(id(t))
                yield (f"{mod_prefix}.{name}" if mod_prefix else name), t

    def named_parameters(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Parameter]]:
        """(qualified name, Parameter) pairs, PyTorch's names; a shared one is listed once."""
        yield from self._named_members("_parameters", prefix, recurse, remove_duplicate)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        for _, p in self.named_parameters(recurse=recurse):
            yield p

    def named_buffers(
        self, prefix: str = "", recurse: bool = True, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Tensor]]:
        yield from self._named_members("_buffers", prefix, recurse, remove_duplicate)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        for _, b in self.named_buffers(recurse=recurse):
            yield b

    def apply(self, fn) -> Module:
        """Call ``fn(m)`` on every sub-module (children first) and on self; returns self."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ------------------------------------------------------------------ state dict
    def _state_items(self) -> Iterator[tuple[str, Tensor]]:
        """(name, tensor) in PyTorch's state-dict order: each module's parameters, then its
        persistent buffers, then its children's, depth first; shared tensors repeat."""
        for prefix, mod in self.named_modules(remove_duplicate=False):
            pre = prefix + "." if prefix else ""
            for name, p in mod._parameters.items():
                if p is not None:
                    yield pre + name, p
            for name, b in mod._buffers.items():
                if b is not None and name not in mod._non_persistent:
                    yield pre + name, b

    def state_dict(self) -> OrderedDict[str, np.ndarray]:
        """An ordered dict of name -> NumPy array copy of every parameter and persistent buffer.

        >>> from tinygrad_np import nn
        >>> list(nn.Sequential(nn.Linear(2, 3), nn.BatchNorm1d(3)).state_dict())
        ['0.weight', '0.bias', '1.weight', '1.bias', '1.running_mean', '1.running_var', \
'1.num_batches_tracked']
        """
        return OrderedDict((name, np.array(t.data, copy=True)) for name, t in self._state_items())

    def load_state_dict(self, state_dict: Mapping[str, Any], strict: bool = True):
        """Copy arrays (or Tensors) from ``state_dict`` into the parameters and buffers.

        With ``strict=True`` a missing or unexpected key raises ``KeyError`` listing them
        all; a wrong shape raises ``ValueError`` naming the key and both shapes, a value
        that is not a bool, integer or float array ``TypeError``. Nothing is changed when an
        error is raised. Values are cast to each tensor's dtype. Returns
        ``(missing_keys, unexpected_keys)``.
        """
        if not isinstance(state_dict, Mapping):
            raise TypeError(f"state_dict must be a mapping, got {type(state_dict).__name__}")
        own = OrderedDict(self._state_items())
        mods = dict(self.named_modules(remove_duplicate=False))

        def optional(key: str) -> bool:
            prefix, _, name = key.rpartition(".")
            return name in getattr(mods.get(prefix), "_optional_buffers", ())

        missing = [k for k in own if k not in state_dict and not optional(k)]
        unexpected = [k for k in state_dict if k not in own]
        if strict and (missing or unexpected):
            parts = []
            if missing:
                parts.append("missing keys: " + ", ".join(repr(k) for k in missing))
            if unexpected:
                parts.append("unexpected keys: " + ", ".join(repr(k) for k in unexpected))
            raise KeyError(
                f"error loading state dict into {type(self).__name__}: " + "; ".join(parts)
            )
        arrays = {}
        for k, t in own.items():
            if k not in state_dict:
                continue
            v = state_dict[k]
            arr = np.asarray(v.data if isinstance(v, Tensor) else v)
            if arr.dtype.kind not in "biuf":  # (strings, objects, complex: not castable)
                raise TypeError(
                    f"error loading state dict into {type(self).__name__}: '{k}' has dtype "
                    f"{arr.dtype}, not a bool, integer or float array"
                )
            if arr.shape != t.shape:
                raise ValueError(
                    f"error loading state dict into {type(self).__name__}: '{k}' has shape "
                    f"{tuple(int(n) for n in arr.shape)} in the state dict but "
                    f"{tuple(int(n) for n in t.shape)} in the model"
                )
            arrays[k] = arr
        for k, arr in arrays.items():
            np.copyto(own[k].data, arr, casting="unsafe")  # in place: aliases stay valid
            own[k]._modified()  # (a graph that saved the old values raises at backward)
        return _IncompatibleKeys(missing, unexpected)

    # ------------------------------------------------------------------ modes, grads, dtype
    def train(self, mode: bool = True) -> Module:
        """Set training mode (Dropout active, BatchNorm uses batch statistics) on this module
        and, through each child's own ``train`` (so that an override is respected, as in
        PyTorch), on every sub-module."""
        if not isinstance(mode, bool):
            raise ValueError(f"train(mode): mode must be a bool, got {mode!r}")
        object.__setattr__(self, "training", mode)
        for m in self.children():
            m.train(mode)
        return self

    def eval(self) -> Module:
        """Set evaluation mode: ``train(False)``."""
        return self.train(False)

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        for p in self.parameters():
            p.requires_grad_(requires_grad)
        return self

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient (to None, or to zeros with set_to_none=False)."""
        for p in self.parameters():
            p._zero_grad(set_to_none)

    def to(self, *args: Any, **kwargs: Any) -> Module:
        """Convert floating-point parameters and buffers to a dtype in place; returns self.

        Takes PyTorch's forms: ``to(dtype)``, ``to(device)``, ``to(device, dtype)``,
        ``to(tensor)`` (its dtype) and the keywords ``device``, ``dtype`` and
        ``non_blocking``. The device must be the CPU (accepted so that PyTorch code runs
        unchanged). The Parameter objects stay the same (an optimizer built earlier still
        holds them).
        """
        unknown = set(kwargs) - {"device", "dtype", "non_blocking"}
        if unknown:
            raise TypeError(f"to: unexpected keyword argument {sorted(unknown)[0]!r}")
        if len(args) > 2:
            raise TypeError(f"to: takes a device and a dtype at most, got {len(args)} arguments")
        device, dtype = kwargs.get("device"), kwargs.get("dtype")
        for a in args:
            if isinstance(a, Tensor):
                dtype = a.dtype
            elif type(a).__name__ == "device" or (isinstance(a, str) and not _dtype_name(a)):
                device = a
            else:
                dtype = a
        check_device(device, "to")
        if dtype is None:
            return self
        dt = to_dtype(dtype)
        if dt is None or dt.kind != "f":
            raise TypeError(f"to(dtype): expected a floating-point dtype, got {dtype!r}")
        seen: set[int] = set()
        for m in self.modules():
            for t in list(m._parameters.values()) + list(m._buffers.values()):
                if t is None or id(t) in seen or t.dtype.kind != "f":
                    continue
                seen.add(id(t))
                t.data = t.data.astype(dt)
                if t.grad is not None:
                    t.grad = Tensor._make(t.grad.data.astype(dt), False, None)
        return self

    def double(self) -> Module:
        return self.to(np.float64)

    def cpu(self) -> Module:
        """Returns self: the CPU is the only device (as PyTorch's ``Module.cpu()``)."""
        return self

    def get_submodule(self, target: str) -> Module:
        """The sub-module at the dotted path ``target`` ("" is self), as PyTorch's."""
        mod = self
        if target == "":
            return mod
        for i, name in enumerate(target.split(".")):
            child = mod._modules.get(name) if isinstance(mod, Module) else None
            if child is None:
                where = ".".join(target.split(".")[:i]) or type(self).__name__
                raise AttributeError(f"get_submodule: {where} has no sub-module {name!r}")
            mod = child
        return mod

    def float(self) -> Module:
        return self.to(np.float32)

    # ------------------------------------------------------------------ calling
    def forward(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must implement forward()")

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        prev = autograd._state.scope
        autograd._state.scope = prev + (self,)
        try:
            return self.forward(*args, **kwargs)
        finally:
            autograd._state.scope = prev

    # ------------------------------------------------------------------ repr
    def extra_repr(self) -> str:
        """The text inside this module's parentheses (its constructor arguments)."""
        return ""

    def __repr__(self) -> str:
        lines = []
        extra = self.extra_repr()
        if extra:
            lines.extend(extra.split("\n"))
        for name, child in self._modules.items():
            lines.append(f"({name}): " + _addindent(repr(child), 2))
        head = type(self).__name__ + "("
        if not lines:
            return head + ")"
        if len(lines) == 1 and not self._modules:
            return head + lines[0] + ")"
        return head + "\n  " + "\n  ".join(lines) + "\n)"

    def __dir__(self):
        extra = list(self._parameters) + list(self._buffers) + list(self._modules)
        return sorted(set(super().__dir__()) | set(extra))
