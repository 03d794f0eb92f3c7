"""tinygrad_np: a small autograd framework on NumPy and SciPy whose gradients you can see and trust.

>>> import tinygrad_np as tg
>>> x = tg.Tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad.tolist()
[2.0, 4.0, 6.0]
"""

from tinygrad_np import check, explain
from tinygrad_np._memory import tune_malloc
from tinygrad_np._parallel import get_num_threads, set_num_threads
from tinygrad_np._parallel import take_over_blas as _take_over_blas
from tinygrad_np._quiet import quiet_ieee_warnings as _quiet_ieee_warnings
from tinygrad_np.autograd import (
    AnomalyError,
    detect_anomaly,
    enable_grad,
    grad,
    is_grad_enabled,
    no_grad,
)
from tinygrad_np.gradcheck import GradcheckError, gradcheck, gradgradcheck
from tinygrad_np.ops.elementwise import where
from tinygrad_np.ops.movement import cat, stack
from tinygrad_np.serialization import load, save
from tinygrad_np.tensor import (
    Tensor,
    arange,
    empty,
    eye,
    full,
    manual_seed,
    ones,
    ones_like,
    rand,
    randn,
    tensor,
    zeros,
    zeros_like,
)

__version__ = "0.1.0"

_quiet_ieee_warnings()  # IEEE specials without NumPy's RuntimeWarnings, as PyTorch (_quiet)
tune_malloc()  # reuse freed temporaries instead of page-faulting them in each step
_take_over_blas()  # one thread per core: BLAS single-threaded, products split by us

__all__ = [
    "AnomalyError",
    "check",
    "explain",
    "GradcheckError",
    "Tensor",
    "arange",
    "cat",
    "detect_anomaly",
    "empty",
    "enable_grad",
    "eye",
    "full",
    "get_num_threads",
    "grad",
    "is_grad_enabled",
    "gradcheck",
    "gradgradcheck",
    "load",
    "manual_seed",
    "no_grad",
    "ones",
    "ones_like",
    "rand",
    "randn",
    "save",
    "set_num_threads",
    "stack",
    "tensor",
    "where",
    "zeros",
    "zeros_like",
]

_SUBMODULES = ("check", "data", "explain", "models", "nn", "optim", "viz")


def __getattr__(name: str):
    """Import submodules on first use (``tg.nn``, ``tg.optim``, ``tg.viz``...), as torch does.

    Lazy so that ``import tinygrad_np`` needs only NumPy and SciPy.
    """
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f"tinygrad_np.{name}")
    raise AttributeError(f"module 'tinygrad_np' has no attribute {name!r}")
