"""Shared helpers for the table-driven tests: cases with readable ids, inputs as Tensors."""

from __future__ import annotations

import numpy as np
import pytest
from op_table import ROWS, OpRow, make_inputs

import tinygrad_np as tg


def case_id(row: OpRow, shapes: tuple) -> str:
    return row.name + "-" + "_".join("x".join(map(str, s)) or "scalar" for s in shapes)


def cases(rows=None):
    """One pytest param per (row, shapes) case, with an id naming both."""
    rows = ROWS if rows is None else rows
    return [
        pytest.param(row, shapes, id=case_id(row, shapes)) for row in rows for shapes in row.shapes
    ]


def grad_mask(row: OpRow, n: int) -> list[bool]:
    return [row.grad_inputs is None or i in row.grad_inputs for i in range(n)]


def tg_inputs(row: OpRow, shapes: tuple, dtype=np.float64, seed: int = 0) -> list[tg.Tensor]:
    arrays = make_inputs(row, shapes, seed=seed, dtype=dtype)
    mask = grad_mask(row, len(arrays))
    return [tg.Tensor(a, requires_grad=m) for a, m in zip(arrays, mask, strict=True)]


def count_calls(monkeypatch, module, names) -> dict:
    """Wrap each function ``names`` of ``module`` to count its calls (for the test):
    returns the counts by name, updated as the functions run."""
    counts = {name: 0 for name in names}
    for name in names:
        real = getattr(module, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            counts[_name] += 1
            return _real(*args, **kwargs)

        monkeypatch.setattr(module, name, counted)
    return counts
