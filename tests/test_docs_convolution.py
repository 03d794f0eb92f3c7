"""Run every ```python block of docs/convolution.md (each block on its own, in order)."""

from __future__ import annotations

import contextlib
import io
import pathlib
import re

import pytest

DOC = pathlib.Path(__file__).resolve().parents[1] / "docs" / "convolution.md"
BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_doc_has_snippets():
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("i", range(len(BLOCKS)))
def test_doc_snippet_runs(i):
    with contextlib.redirect_stdout(io.StringIO()):
        exec(compile(BLOCKS[i], f"{DOC.name} block {i}", "exec"), {"__name__": "__doc__"})
