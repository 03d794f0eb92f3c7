"""One row per differentiable op: how to call it, on which shapes, and PyTorch's equivalent.

The same rows drive test_gradcheck.py (finite differences, float64, first and
second derivatives) and test_vs_torch.py (values and gradients vs PyTorch).
Every ``Op`` subclass must be covered by some row's ``ops`` (test_op_rows.py).

A row's ``fn`` takes tinygrad_np Tensors; ``torch_fn`` takes torch tensors
(same positions) and returns the reference; ``None`` when PyTorch has no
equivalent. ``domain`` picks the random inputs: "any" (standard normal),
"positive" (0.5..2), "away0" (|x| in 0.5..2, random sign; keeps kinks away).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

import tinygrad_np as tg
import tinygrad_np.nn.functional as F


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


ROWS: list[OpRow] = [
    OpRow("add", lambda a, b: a + b, [((3, 4), (3, 4)), ((2, 3, 4), (4,)), ((3, 1), (1, 5))],
          lambda a, b: a + b, ops=("Add",)),
    OpRow("mul", lambda a, b: a * b, [((3, 4), (3, 4)), ((2, 3, 4), (3, 1))],
          lambda a, b: a * b, ops=("Mul",)),
    # --- more core rows (foundation tests) go here ---
    # --- convolution and pooling rows go here ---
]
