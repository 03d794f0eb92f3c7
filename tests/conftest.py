"""Under CI the PyTorch comparisons, the compiled kernels' tests and the Graphviz renders
must run, not skip."""

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
    from tinygrad_np import _compiled

    if importlib.util.find_spec("numba") is None and _compiled.enabled_by_environment():
        missing.append("numba (pip install -e '.[fast]'), for the compiled kernels' tests")
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


@pytest.fixture
def numpy_depthwise():
    """Depthwise convs on the NumPy routes for the test (the compiled kernels off): for
    tests of those routes, which the compiled kernels replace where numba is installed."""
    from tinygrad_np import convmath as cm

    with cm.compiled_kernels(False):
        yield
