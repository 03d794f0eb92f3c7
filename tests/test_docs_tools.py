"""The python blocks of docs/check.md, docs/explain.md and docs/debugging.md run, and the text
block after each one is exactly what it prints. ``python tests/test_docs_tools.py`` rewrites
those text blocks from a fresh run."""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ["docs/check.md", "docs/explain.md", "docs/debugging.md"]
_BLOCK = re.compile(r"^```(\w+)\n(.*?)^```\n", re.S | re.M)


def run_doc(rel: str) -> list[tuple[re.Match, str | None]]:
    """Run the doc's python blocks in one namespace, from the repository root (so that
    tracebacks name 'docs/...md' at the block's real line); pair each text block with the
    output of the python block just before it."""
    text = (ROOT / rel).read_text()
    blocks = list(_BLOCK.finditer(text))
    ns: dict = {"__name__": "__doc__"}
    pairs = []
    out = None
    old = os.getcwd()
    os.chdir(ROOT)
    try:
        for m in blocks:
            lang, body = m.group(1), m.group(2)
            if lang == "python":
                line = text.count("\n", 0, m.start(2))
                code = compile("\n" * line + body, rel, "exec")
                buf = io.StringIO()
                with contextlib.redirect_stdout(buf), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    exec(code, ns)
                out = buf.getvalue()
            elif lang == "text":
                pairs.append((m, out))
                out = None
    finally:
        os.chdir(old)
    return pairs


@pytest.mark.parametrize("rel", DOCS)
def test_doc_blocks_run_and_show_their_real_output(rel):
    for m, out in run_doc(rel):
        if out is None:
            continue  # a text block that is not program output
        assert m.group(2) == out, f"{rel}: the block at offset {m.start()} is stale; run " \
            "python tests/test_docs_tools.py"  # fmt: skip


def _rewrite(rel: str) -> None:
    path = ROOT / rel
    text = path.read_text()
    pieces, last = [], 0
    for m, out in run_doc(rel):
        if out is None:
            continue
        pieces += [text[last : m.start(2)], out]
        last = m.end(2)
    path.write_text("".join(pieces) + text[last:])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "tests"))
    for rel in sys.argv[1:] or DOCS:
        if (ROOT / rel).exists():
            _rewrite(rel)
            print("rewrote", rel)
