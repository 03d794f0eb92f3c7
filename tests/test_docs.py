"""The ```python blocks of the core docs run, and every docstring example in the package passes.

Modules are collected when the tests are, so modules added later are checked too.
"""

from __future__ import annotations

import contextlib
import doctest
import importlib
import io
import pkgutil
import re
import shutil
import warnings
from pathlib import Path

import pytest

import tinygrad_np
from tinygrad_np import _compiled

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["docs/index.md", "docs/autograd.md", "docs/adding-an-op.md", "docs/tutorial.md",
        "docs/data.md"]
_PY_BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def python_blocks(rel: str) -> list[tuple[int, str]]:
    """(line number, source) of each ```python block of a doc."""
    text = (ROOT / rel).read_text()
    return [(text[: m.start()].count("\n") + 2, m.group(1)) for m in _PY_BLOCK.finditer(text)]


@pytest.mark.parametrize("doc", DOCS)
def test_doc_python_blocks_run(doc):
    blocks = python_blocks(doc)
    assert blocks, f"{doc} has no python blocks"
    ns: dict = {"__name__": "docs_example"}
    for line, src in blocks:
        code = compile("\n" * (line - 1) + src, str(ROOT / doc), "exec")
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("error", DeprecationWarning)
            exec(code, ns)


@pytest.mark.skipif(  # (as the Graphviz tests of test_viz.py: CI installs dot and
    shutil.which("dot") is None, reason="Graphviz's dot is not installed"  # must run it)
)
def test_visualization_doc_python_blocks_run(tmp_path, monkeypatch):
    """(Its blocks write SVG files: run in a folder of their own.)"""
    monkeypatch.chdir(tmp_path)
    test_doc_python_blocks_run("docs/visualization.md")
    svgs = sorted(p.name for p in tmp_path.glob("*.svg"))
    assert svgs == ["conv_backward.svg", "lenet_forward.svg", "mlp20.svg", "x_grad.svg"]
    assert all((tmp_path / name).read_text().lstrip().startswith("<") for name in svgs)


def test_tutorial_keeps_lenet_heading():
    assert "## From MLP to LeNet" in (ROOT / "docs/tutorial.md").read_text()


def _modules() -> list[str]:
    names = ["tinygrad_np"]
    for mod in pkgutil.walk_packages(tinygrad_np.__path__, "tinygrad_np."):
        if mod.name == "tinygrad_np._compiled_kernels" and not _compiled.available():
            continue  # (imports numba, an optional dependency)
        if mod.name.rsplit(".", 1)[-1] != "__main__":
            names.append(mod.name)
    return sorted(names)


@pytest.mark.parametrize("name", _modules())
def test_docstring_examples(name):
    module = importlib.import_module(name)
    with contextlib.redirect_stdout(io.StringIO()) as out:
        result = doctest.testmod(module, optionflags=doctest.ELLIPSIS, report=True)
    assert result.failed == 0, f"{name}: {result.failed} doctest failures\n{out.getvalue()}"


def test_core_modules_have_doctests():
    finder = doctest.DocTestFinder()
    for name in ("tinygrad_np", "tinygrad_np.tensor", "tinygrad_np.gradcheck"):
        tests = finder.find(importlib.import_module(name))
        assert sum(len(t.examples) for t in tests) >= 1, f"{name} has no docstring examples"
