"""Optimizers: SGD, Adam, AdamW. PyTorch's update rules, step for step.

Each ``step()`` updates ``p.data`` in place with NumPy (no Tensor ops, nothing
recorded). ``param_groups`` is a list of dicts holding ``params`` and the
hyper-parameters; edit them between steps (that is how schedulers work).
"""

from __future__ import annotations

import copy
import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import numpy as np

from tinygrad_np.tensor import Tensor, number_arg

# The updates run over each parameter in chunks of this many entries, so that the
# passes of a chunk (about 13 for Adam) find it in the L2 cache and the arrays go through
# memory once, not once a pass. Two 1000x1000 float32 parameters, ms: Adam 7.0 -> 3.6-3.8
# (PyTorch 2.2 on 2 threads), SGD with momentum 2.6 -> 1.3 (0.8); chunks of 8K entries
# 5.1 / 2.0, 128K 4.1-4.4 / 1.3-1.4. Splitting the chunks over 2 threads gained at most
# 15 % (Adam with chunks of 128K: 3.1 ms; SGD none) and lost with smaller chunks: the
# threads hand the GIL back and forth between short calls.
UPDATE_CHUNK = 1 << 16


def _flat(a: np.ndarray) -> np.ndarray | None:
    """A 1-d view of a C-contiguous array (None for another layout)."""
    return a.reshape(-1) if a.flags.c_contiguous else None


def _chunks(size: int | None) -> list:
    """Slices of ``range(size)`` UPDATE_CHUNK long; None: one key for the whole array."""
    if size is None:
        return [Ellipsis]
    return [slice(lo, min(size, lo + UPDATE_CHUNK)) for lo in range(0, size, UPDATE_CHUNK)]


class Optimizer:
    """Base class: parameter groups, per-parameter state, zero_grad and state dicts.

    ``params`` is an iterable of leaf Tensors, or of dicts each holding ``params`` and any
    hyper-parameters that differ from the defaults for that group. A parameter whose
    ``.grad`` is None at ``step()`` (frozen, or unused) is left as it is, as in PyTorch.
    """

    def __init__(self, params: Any, defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        # keyed by the Tensor (hash = id); a parameter not yet stepped reads as {} (PyTorch's)
        self.state: defaultdict[Tensor, dict[str, Any]] = defaultdict(dict)
        self.param_groups: list[dict[str, Any]] = []
        if isinstance(params, Tensor):
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Tensors or dicts, got a "
                "Tensor (wrap it in a list)"
            )
        try:
            groups = list(params)
        except TypeError:
            raise TypeError(
                f"{type(self).__name__}: params must be an iterable of Tensors or dicts, got "
                f"{type(params).__name__}"
            ) from None
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for g in groups:
            self.add_param_group(g)

    def add_param_group(self, param_group: dict[str, Any]) -> None:
        """Add a group of parameters (a dict with ``params`` and optional hyper-parameters)."""
        if not isinstance(param_group, dict) or "params" not in param_group:
            raise TypeError(f"a param group must be a dict with 'params', got {param_group!r:.80}")
        group = dict(param_group)
        ps = group["params"]
        ps = [ps] if isinstance(ps, Tensor) else list(ps)
        named = [isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in ps]
        if any(named):  # (name, parameter) pairs, as model.named_parameters() gives
            if not all(named):
                raise TypeError(
                    f"{type(self).__name__}: params must be all Tensors or all (name, Tensor) "
                    "pairs, not a mix"
                )
            group["param_names"] = [name for name, _ in ps]
            ps = [p for _, p in ps]
        if self.param_groups and (
            ("param_names" in group) != ("param_names" in self.param_groups[0])
        ):
            raise ValueError(
                f"{type(self).__name__}: every param group must name its parameters or none "
                "(as PyTorch)"
            )
        for i, p in enumerate(ps):
            if not isinstance(p, Tensor):
                raise TypeError(
                    f"{type(self).__name__}: params[{i}] must be a Tensor, got {type(p).__name__}"
                )
            if not p.is_leaf:
                raise ValueError(f"{type(self).__name__}: can't optimize a non-leaf Tensor")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        if len({id(p) for p in ps}) != len(ps) or any(id(p) in seen for p in ps):
            raise ValueError(f"{type(self).__name__}: a parameter appears more than once")
        group["params"] = ps
        for k, v in self.defaults.items():
            group.setdefault(k, v)
        self._check_group(group)
        self.param_groups.append(group)

    # the hyper-parameters that are numbers: taken as Python floats, so that a 0-d Tensor
    # (which PyTorch accepts for lr) cannot turn the in-place updates below into no-ops
    _NUMBERS = ("lr", "momentum", "dampening", "weight_decay", "eps", "initial_lr")

    def _check_group(self, group: dict[str, Any]) -> None:
        """Validate one group's hyper-parameters (subclasses add theirs); numbers become
        Python floats. Also run at each ``step()``: the groups may have been edited."""
        name = type(self).__name__
        for key in self._NUMBERS:
            if key in group:
                group[key] = number_arg(group[key], name, key)
        if "betas" in group:
            betas = group["betas"]
            if not isinstance(betas, (tuple, list)) or len(betas) != 2:
                raise TypeError(f"{name}: betas must be a pair of floats, got {betas!r}")
            group["betas"] = tuple(number_arg(b, name, "betas") for b in betas)
        if group["lr"] < 0:
            raise ValueError(f"{name}: invalid learning rate {group['lr']}")
        if group.get("weight_decay", 0.0) < 0:
            raise ValueError(f"{name}: invalid weight_decay {group['weight_decay']}")

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient to None (or to zeros with set_to_none=False)."""
        for g in self.param_groups:
            for p in g["params"]:
                p._zero_grad(set_to_none)

    def step(self, closure: Any = None) -> Any:
        """One update of every parameter with a gradient. ``closure``, if given, is called
        first with gradients recorded (it zeroes the gradients, computes the loss and calls
        its ``backward``, as in PyTorch); its loss is returned (None without one)."""
        loss = None
        if closure is not None:
            from tinygrad_np.autograd import enable_grad

            with enable_grad():
                loss = closure()
        self._step()
        return loss

    def _step(self) -> None:
        raise NotImplementedError

    def _grads(self, group: dict[str, Any]):
        """(param, gradient array) for the parameters of ``group`` that have a gradient.
        A parameter's state arrays follow its dtype first: after ``Module.double()`` or
        ``.float()`` the moments are converted too (else a float64 parameter would be
        updated from float32 moments)."""
        for p in group["params"]:
            if p.grad is not None:
                st = self.state.get(p)
                if st:
                    for k, v in st.items():
                        if isinstance(v, np.ndarray) and v.dtype != p.dtype and v.shape == p.shape:
                            st[k] = v.astype(p.dtype)
                g = p.grad.data
                yield p, (-g if group.get("maximize", False) else g)

    # ------------------------------------------------------------------ state dicts
    def state_dict(self) -> dict[str, Any]:
        """``{"state": {index: {name: array or number}}, "param_groups": [...]}`` as PyTorch,
        parameters replaced by their index over all groups. Arrays are copies."""
        index: dict[int, int] = {}
        groups = []
        for g in self.param_groups:
            ids = []
            for p in g["params"]:
                index.setdefault(id(p), len(index))
                ids.append(index[id(p)])
            packed = {k: v for k, v in g.items() if k != "params"}
            packed["params"] = ids
            groups.append(copy.deepcopy(packed))
        state = {}
        for g in self.param_groups:
            for p in g["params"]:
                if p in self.state:
                    state[index[id(p)]] = {
                        k: np.array(v, copy=True) if isinstance(v, np.ndarray) else v
                        for k, v in self.state[p].items()
                    }
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyper-parameters and state saved by ``state_dict`` (copied, not aliased)."""
        saved = state_dict["param_groups"]
        if len(saved) != len(self.param_groups):
            raise ValueError(
                f"loaded state dict has {len(saved)} parameter groups, the optimizer has "
                f"{len(self.param_groups)}"
            )
        lens = [len(g["params"]) for g in self.param_groups]
        saved_lens = [len(g["params"]) for g in saved]
        if lens != saved_lens:
            raise ValueError(
                f"loaded state dict has groups of sizes {saved_lens}, the optimizer has {lens}"
            )
        by_index = {}
        for g, sg in zip(self.param_groups, saved, strict=True):
            for p, i in zip(g["params"], sg["params"], strict=True):
                by_index[int(i)] = p
        new_state: dict[Tensor, dict[str, Any]] = {}
        for i, s in state_dict["state"].items():
            p = by_index.get(int(i))
            if p is None:
                continue
            entry = {}
            for k, v in s.items():
                # arrays shaped as the parameter (a 0-d one's momentum too) stay arrays,
                # updated in place by step(); other 0-d arrays are saved counts ("step")
                array = isinstance(v, np.ndarray)
                if array and (v.ndim > 0 or (v.dtype.kind in "fc" and p.ndim == 0)):
                    if v.shape != p.shape:
                        raise ValueError(
                            f"optimizer state '{k}' of parameter {i} has shape "
                            f"{tuple(v.shape)}, the parameter has {tuple(p.shape)}"
                        )
                    entry[k] = np.array(v, dtype=p.dtype, copy=True)
                elif array:
                    entry[k] = v.item()
                else:
                    entry[k] = copy.deepcopy(v)
            new_state[p] = entry
        for g, sg in zip(self.param_groups, saved, strict=True):
            for k, v in sg.items():
                if k != "params":
                    g[k] = copy.deepcopy(v.item() if isinstance(v, np.ndarray) else v)
        self.state = defaultdict(dict, new_state)

    def __repr__(self) -> str:
        lines = [type(self).__name__ + " ("]
        for i, g in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            for k in sorted(g):
                if k != "params":
                    lines.append(f"    {k}: {g[k]}")
        return "\n".join(lines) + "\n)"


class SGD(Optimizer):
    """Stochastic gradient descent with momentum, dampening, Nesterov and weight decay.

    Per step, as PyTorch: g = grad + wd * p; with momentum, b = g on the first step and
    b = momentum * b + (1 - dampening) * g afterwards, then g = g + momentum * b (Nesterov)
    or g = b; finally p = p - lr * g.
    """

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        momentum: float = 0.0,
        dampening: float = 0.0,
        weight_decay: float = 0.0,
        nesterov: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            momentum=momentum,
            dampening=dampening,
            weight_decay=weight_decay,
            nesterov=nesterov,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        if group["momentum"] < 0:
            raise ValueError(f"SGD: invalid momentum {group['momentum']}")
        if group["nesterov"] and (group["momentum"] <= 0 or group["dampening"] != 0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")

    def _step(self) -> None:
        for group in self.param_groups:
            self._check_group(group)
            lr, mom, damp = group["lr"], group["momentum"], group["dampening"]
            wd, nesterov = group["weight_decay"], group["nesterov"]
            for p, g in self._grads(group):
                buf = None
                if mom != 0:
                    st = self.state.setdefault(p, {})
                    buf = st.get("momentum_buffer")
                    if buf is None:
                        g = g + wd * p.data if wd != 0 else g
                        buf = st["momentum_buffer"] = np.array(g, dtype=p.dtype, copy=True)
                        p.data -= lr * (g + mom * buf if nesterov else buf)
                        p._modified()
                        continue
                arrays = [p.data, g, buf]
                flat = [None if a is None else _flat(a) for a in arrays]
                if g.shape != p.shape or any(
                    f is None and a is not None for f, a in zip(flat, arrays, strict=True)
                ):
                    flat = arrays  # (another layout: whole, at once)
                for chunk in _chunks(p.data.size if flat is not arrays else None):
                    parts = [None if f is None else f[chunk] for f in flat]
                    self._sgd_arrays(*parts, lr, mom, damp, wd, nesterov)
                p._modified()

    @staticmethod
    def _sgd_arrays(p, g, buf, lr, mom, damp, wd, nesterov) -> None:
        """One SGD step on arrays (a chunk of a parameter): ``p`` and ``buf`` in place."""
        if wd != 0:
            g = g + wd * p
        if buf is not None:
            buf *= mom
            buf += (1 - damp) * g if damp else g  # (no pass for a factor of 1)
            g = g + mom * buf if nesterov else buf
        p -= lr * g


class Adam(Optimizer):
    """Adam (Kingma & Ba) with PyTorch's bias correction; L2 ``weight_decay`` added to the
    gradient. Per step t: m = b1 m + (1-b1) g; v = b2 v + (1-b2) g^2;
    p = p - lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)."""

    _decoupled = False

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            amsgrad=amsgrad,
            maximize=maximize,
        )
        super().__init__(params, defaults)

    def _check_group(self, group: dict[str, Any]) -> None:
        super()._check_group(group)
        name = type(self).__name__
        b1, b2 = group["betas"]
        if not (0.0 <= b1 < 1.0 and 0.0 <= b2 < 1.0):
            raise ValueError(f"{name}: betas must be in [0, 1), got {group['betas']}")
        if group["eps"] < 0:
            raise ValueError(f"{name}: invalid eps {group['eps']}")

    def _step(self) -> None:
        for group in self.param_groups:
            self._check_group(group)
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            b1, b2 = group["betas"]
            for p, g in self._grads(group):
                st = self.state.setdefault(p, {})
                if not st:
                    st["step"] = 0
                    st["exp_avg"] = np.zeros_like(p.data)
                    st["exp_avg_sq"] = np.zeros_like(p.data)
                if group["amsgrad"] and "max_exp_avg_sq" not in st:  # (also turned on later)
                    st["max_exp_avg_sq"] = np.zeros_like(p.data)
                st["step"] += 1
                t = st["step"]
                coef = dict(lr=lr, wd=wd, b1=b1, b2=b2, eps=eps, decoupled=self._decoupled,
                            step_size=lr / (1 - b1**t), bias2=math.sqrt(1 - b2**t))  # fmt: skip
                vmax = st["max_exp_avg_sq"] if group["amsgrad"] else None  # (may be turned off)
                arrays = [p.data, g, st["exp_avg"], st["exp_avg_sq"], vmax]
                flat = [None if a is None else _flat(a) for a in arrays]
                if g.shape != p.shape or any(
                    f is None and a is not None for f, a in zip(flat, arrays, strict=True)
                ):
                    flat = arrays  # (another layout: whole, at once)
                for chunk in _chunks(p.data.size if flat is not arrays else None):
                    self._adam_arrays(*[None if f is None else f[chunk] for f in flat], **coef)
                p._modified()

    @staticmethod
    def _adam_arrays(p, g, m, v, vmax, *, lr, wd, b1, b2, eps, decoupled, step_size, bias2):
        """One Adam step on arrays (a chunk of a parameter): ``p``, ``m``, ``v`` and
        ``vmax`` (amsgrad's running maximum, or None) in place."""
        if wd != 0:
            if decoupled:
                p *= 1 - lr * wd  # AdamW: decay the weights, not the gradient
            else:
                g = g + wd * p
        m *= b1
        m += (1 - b1) * g
        v *= b2
        v += ((1 - b2) * g) * g  # (as PyTorch: g * g overflows float32 for |g| > 1.8e19)
        if vmax is not None:
            np.maximum(vmax, v, out=vmax)
            v = vmax
        denom = np.sqrt(v) / bias2
        denom += eps
        p -= step_size * (m / denom)


class AdamW(Adam):
    """Adam with decoupled weight decay (Loshchilov & Hutter): p = p * (1 - lr * wd) before
    the Adam update, which then ignores wd. Default ``weight_decay=1e-2`` as PyTorch."""

    _decoupled = True

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        amsgrad: bool = False,
        *,
        maximize: bool = False,
    ):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, maximize=maximize)
