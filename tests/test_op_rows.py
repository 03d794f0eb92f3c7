"""Every Op subclass in the package has a row in op_table.py, and each row's ops really run.

Op classes are found by importing every module of tinygrad_np and walking
``Op.__subclasses__()`` recursively, so ops added later (conv, pooling, ...)
are picked up without editing this file.
"""

from __future__ import annotations

import importlib
import pkgutil

import numpy as np
import pytest
from _rows import cases, tg_inputs
from op_table import ROWS

import tinygrad_np
from tinygrad_np import _compiled
from tinygrad_np.autograd import Op


def _import_all() -> None:
    for mod in pkgutil.walk_packages(tinygrad_np.__path__, "tinygrad_np."):
        if mod.name.rsplit(".", 1)[-1] == "__main__":  # importing it would run the CLI
            continue
        if mod.name == "tinygrad_np._compiled_kernels" and not _compiled.available():
            continue  # (imports numba, an optional dependency; it defines no Op)
        importlib.import_module(mod.name)


def _package_ops() -> dict[str, type]:
    _import_all()
    found: dict[str, type] = {}
    stack = list(Op.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls.__module__.startswith("tinygrad_np."):  # not ops defined inside tests
            found[cls.__name__] = cls
    return found


def test_every_op_has_a_row():
    ops = _package_ops()
    covered = {name for row in ROWS for name in row.ops}
    missing = sorted(set(ops) - covered)
    assert not missing, f"Op subclasses without a row in tests/op_table.py: {missing}"
    # the core ops are certainly among them
    assert {"Add", "Matmul", "Getitem", "IndexAdd", "CrossEntropy", "Dropout", "Erf"} <= set(ops)


def test_row_ops_name_real_classes():
    ops = _package_ops()
    unknown = sorted({n for row in ROWS for n in row.ops} - set(ops))
    assert not unknown, f"rows name ops that do not exist: {unknown}"


def test_row_names_unique():
    names = [row.name for row in ROWS]
    assert len(names) == len(set(names))


def _recorded_ops(outputs) -> set[str]:
    """Class names of every node reachable from ``outputs``."""
    seen, names = set(), set()
    stack = [o.grad_fn for o in outputs if o.grad_fn is not None]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        names.add(type(node).__name__)
        stack.extend(t.grad_fn for t in node.inputs if t.grad_fn is not None)
    return names


@pytest.mark.parametrize(("row", "shapes"), [c for c in cases() if c.values[0].ops])
def test_row_exercises_its_ops(row, shapes):
    """The ops a row claims appear in its forward graph or in its recorded backward graph."""
    xs = tg_inputs(row, shapes)
    out = row.fn(*xs, **row.kwargs)
    wrt = [x for x in xs if x.requires_grad]
    # an upstream gradient that requires grad, so every op of the backward pass is recorded
    u = tinygrad_np.Tensor(np.ones(out.shape), dtype=out.dtype, requires_grad=True)
    # (rows without second derivatives: only the forward graph is searched)
    grads = tinygrad_np.grad(out, wrt, u, create_graph=row.gradgrad, allow_unused=True)
    names = _recorded_ops([out]) | _recorded_ops([g for g in grads if g is not None])
    missing = set(row.ops) - names
    assert not missing, f"row {row.name} names {sorted(missing)} but they never ran"
