"""The benchmark scripts run, print their tables, and time the same work in both
frameworks (tiny sizes here: the timings themselves are never asserted)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(script: str, *args: str) -> str:
    pytest.importorskip("torch")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        capture_output=True, text=True, timeout=300, env=env, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _ratio_of(ours: float, theirs: float, ratio: float) -> bool:
    """Whether the printed ratio is ours / theirs: the times are printed rounded to two
    decimals and the ratio comes from the unrounded ones, so allow for that rounding."""
    rounding = ratio * (0.005 / ours + 0.005 / theirs) + 0.005
    return ratio == pytest.approx(ours / theirs, abs=rounding)


def _row(out: str, name: str) -> list[float]:
    line = next(line for line in out.splitlines() if line.startswith(name))
    return [float(v) for v in re.findall(r"\d+(?:\.\d+)?", line[len(name) :])]


def test_conv_benchmark_prints_both_timings_and_their_ratio():
    out = _run("conv.py", "--only", "conv3d", "max_pool2d 2x2", "--repeat", "1", "--threads", "1")
    conv = _row(out, "conv3d 3x3x3 8->16 @16^3 (b8)")
    pool = _row(out, "max_pool2d 2x2 s2 64ch @56x56 (b32)")
    for ours, theirs, ratio, *_ in (conv, pool):
        assert ours > 0 and theirs > 0
        assert _ratio_of(ours, theirs, ratio)
    assert len(conv) == 5  # + GFLOP/s and % of NumPy's GEMM rate for a conv layer
    assert "3x3 32->64" not in out  # --only picked two cases


def test_train_epoch_benchmark_trains_the_same_model_in_both():
    out = _run("train_epoch.py", "--limit", "512", "--repeats", "1", "--workers", "2")
    assert "DataParallel over 2 processes" in out
    losses = re.findall(r"epoch 1: .* last loss (\d+\.\d+)", out)
    assert len(losses) == 2
    # the same weights, batches and optimizer: the last losses agree to float32 rounding
    assert float(losses[0]) == pytest.approx(float(losses[1]), abs=2e-3)
    ratio = float(re.search(r"ratio tinygrad_np / PyTorch: (\d+\.\d+)", out).group(1))
    assert ratio > 0


def test_overhead_benchmark_prints_both_rows():
    out = _run("overhead.py", "--ops", "5", "--repeats", "2")
    ours, theirs = _row(out, "tinygrad_np"), _row(out, "pytorch")
    ratio = _row(out, "ratio")[:2]  # (then the goal)
    assert len(ours) == len(theirs) == 2
    for a, b, r in zip(ours, theirs, ratio, strict=True):
        assert _ratio_of(a, b, r)


def test_layers_benchmark_prints_both_timings_and_their_ratio():
    out = _run("layers.py", "--batch", "2", "--repeat", "1", "--threads", "1",
               "--only", "batch_norm", "residual")  # fmt: skip
    for name in ("batch_norm2d train, 64ch @32x32", "residual block 64ch @32x32 + Adam"):
        ours, theirs, ratio = _row(out, name)[-3:]
        assert ours > 0 and theirs > 0
        assert _ratio_of(ours, theirs, ratio)
    assert "Adam step" not in out  # --only picked two cases
