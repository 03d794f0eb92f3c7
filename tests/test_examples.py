"""Every script in examples/ runs in its short mode (--steps N, synthetic data) and says so."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

# name -> (arguments for a smoke run, text the output must contain)
SMOKE = {
    "autograd_basics.py": (["--steps", "5"], "z = sum(relu(mul(x, 2)))"),
    "hessian_vector_product.py": (["--steps", "1"], "double backward matches finite"),
    "check_your_conv_backward.py": (["--steps", "2"], "planted bug caught by gradcheck"),
    "train_lenet.py": (["--steps", "3", "--synthetic"], "test accuracy:"),
    "data_parallel.py": (
        ["--steps", "5", "--synthetic", "--workers", "2"],
        "DataParallel, 2 processes",
    ),
    "strided_96x96.py": (
        ["--steps", "2", "--synthetic", "--batch-size", "4", "--test-images", "8"],
        "test accuracy on 8 images",
    ),
}


def test_every_example_has_a_smoke_run():
    on_disk = {p.name for p in EXAMPLES.glob("*.py")}
    # examples written by other engineers may register their own smoke runs elsewhere
    assert set(SMOKE) <= on_disk


@pytest.mark.parametrize("name", sorted(SMOKE))
def test_example_runs(name, tmp_path):
    args, expected = SMOKE[name]
    env = dict(os.environ, PYTHONPATH=str(ROOT), MPLBACKEND="Agg", HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert expected in proc.stdout
