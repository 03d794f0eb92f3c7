"""Under CI the PyTorch comparisons and the Graphviz renders must run, not skip."""

from __future__ import annotations

import importlib.util
import os
import shutil

import pytest


def pytest_configure(config):
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    missing = []
    if importlib.util.find_spec("torch") is None:
        missing.append("torch (pip install -e '.[reference]')")
    if shutil.which("dot") is None:
        missing.append("Graphviz's dot (apt-get install graphviz)")
    if missing:
        raise pytest.UsageError(
            "CI must run the PyTorch comparisons and the Graphviz tests; missing: "
            + ", ".join(missing)
        )


@pytest.fixture
def threads():
    """``threads(n)`` sets tinygrad_np's thread count for the test; restored after it."""
    from tinygrad_np import _parallel as par

    before = par.get_num_threads()
    yield par.set_num_threads
    par.set_num_threads(before)
