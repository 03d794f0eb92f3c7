"""The command line: train / eval / graph / demo on tiny generated IDX data."""

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.data as data
from tinygrad_np import cli
from tinygrad_np.data import save_idx
from tinygrad_np.nn import functional as F

HAS_CONV = hasattr(F, "conv2d") and hasattr(F, "max_pool2d")
needs_conv = pytest.mark.skipif(not HAS_CONV, reason="F.conv2d / F.max_pool2d not there yet")
HAS_DOT = shutil.which("dot") is not None


def write_tiny_dataset(folder: Path, n_train=96, n_test=40, seed=0) -> Path:
    """Learnable 28x28 images: class k is a bright horizontal bar at rows 2k..2k+3, plus noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = rng.integers(0, 10, n).astype(np.uint8)
        images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
        for i, k in enumerate(labels):
            images[i, 2 * k + 2 : 2 * k + 6, 4:24] = 250
        save_idx(folder / f"{prefix}-images-idx3-ubyte.gz", images)
        save_idx(folder / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return folder


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TINYGRAD_NP_DATA", raising=False)
    monkeypatch.setenv("TINYGRAD_NP_MIRROR", "http://127.0.0.1:9/")
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", tmp_path / "system")
    monkeypatch.chdir(tmp_path)
    return write_tiny_dataset(tmp_path / "data")


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def records(run_dir: Path, kind: str) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def train_args(tiny, out, *extra, model="mlp"):
    return ("train", "--data-dir", tiny, "--out", out, "--model", model, "--quiet", *extra)


def test_train_writes_run_folder(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(tiny, out, "--epochs", "2", "--batch-size", "16", "--seed", "3")) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["checkpoint.npz", "config.json", "curves.png", "metrics.jsonl"]
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    steps, epochs = records(out, "step"), records(out, "epoch")
    assert len(steps) == 2 * 6  # 96 images / 16 per batch, two epochs
    assert [r["global_step"] for r in steps] == list(range(1, 13))
    assert [(r["epoch"], r["step"]) for r in steps[5:7]] == [(0, 6), (1, 1)]
    assert all(np.isfinite(r["loss"]) and 0 <= r["acc"] <= 1 for r in steps)
    assert [r["epoch"] for r in epochs] == [0, 1]
    for r in epochs:
        assert set(r) >= {"train_loss", "train_acc", "test_loss", "test_acc", "images_per_s"}
        assert 0 <= r["test_acc"] <= 1 and r["images_per_s"] > 0
    # the epoch's train loss is the mean of its batch losses (all batches are full)
    assert epochs[0]["train_loss"] == pytest.approx(np.mean([r["loss"] for r in steps[:6]]))
    assert steps[-1]["loss"] < steps[0]["loss"]  # it learns

    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "mlp" and config["seed"] == 3 and config["lr"] == 1e-3
    printed = capsys.readouterr().out
    assert "epoch 2/2" in printed and "test accuracy" in printed and "checkpoint.npz" in printed

    # the checkpoint holds the model, which eval reproduces
    meta, state, opt_state = cli.load_checkpoint(out / "checkpoint.npz")
    assert meta["progress"]["epoch"] == 2 and "classifier.0.weight" in state
    assert run("eval", out / "checkpoint.npz", "--data-dir", tiny) == 0
    printed = capsys.readouterr().out
    assert f"accuracy {epochs[-1]['test_acc']:.2%}" in printed
    assert "(40 images)" in printed


def test_same_seed_same_losses_bit_for_bit(tiny, tmp_path):
    losses = []
    for name, seed in (("a", 5), ("b", 5), ("c", 6)):
        out = tmp_path / name
        assert (
            run(*train_args(tiny, out, "--epochs", "2", "--batch-size", "32", "--seed", seed)) == 0
        )
        losses.append([r["loss"] for r in records(out, "step")])
    assert losses[0] == losses[1]  # exact float equality, through JSON's round trip
    assert losses[0] != losses[2]


def test_resume_continues_exactly(tiny, tmp_path):
    common = ("--batch-size", "32", "--optimizer", "sgd")
    full = tmp_path / "full"
    assert run(*train_args(tiny, full, "--epochs", "3", *common)) == 0
    part = tmp_path / "part"
    assert run(*train_args(tiny, part, "--epochs", "1", *common)) == 0
    assert len(records(part, "epoch")) == 1
    resume = ("train", "--resume", part / "checkpoint.npz", "--epochs", "3", "--data-dir", tiny)
    assert run(*resume, "--quiet") == 0
    assert [r["loss"] for r in records(part, "step")] == [r["loss"] for r in records(full, "step")]
    assert [r["test_acc"] for r in records(part, "epoch")] == [
        r["test_acc"] for r in records(full, "epoch")
    ]
    assert {r["lr"] for r in records(full, "step")} == {0.05}


@pytest.mark.parametrize("schedule, workers", [("constant", 1), ("cosine", 1), ("constant", 2)])
def test_ctrl_c_saves_checkpoint_and_resume_matches(
    tiny, tmp_path, monkeypatch, capsys, schedule, workers
):
    import multiprocessing

    full = tmp_path / "full"
    args = ("--epochs", "2", "--batch-size", "16", "--schedule", schedule, "--workers", workers)
    assert run(*train_args(tiny, full, *args)) == 0

    # Press Ctrl-C (a real SIGINT) during the 4th optimizer step of the first epoch.
    make = cli.make_optimizer

    def interrupting(*a, **k):
        opt = make(*a, **k)
        step, calls = opt.step, []

        def step_and_interrupt():
            calls.append(1)
            if len(calls) == 4:
                os.kill(os.getpid(), signal.SIGINT)
            step()

        opt.step = step_and_interrupt
        return opt

    monkeypatch.setattr(cli, "make_optimizer", interrupting)
    part = tmp_path / "part"
    assert run(*train_args(tiny, part, *args)) == 130
    assert "interrupted: checkpoint saved" in capsys.readouterr().err
    assert not multiprocessing.active_children()  # DataParallel's workers were stopped
    meta, _, _ = cli.load_checkpoint(part / "checkpoint.npz")
    assert meta["progress"]["epoch"] == 0 and meta["progress"]["step"] == 4  # finished its batch
    assert len(records(part, "step")) == 4 and records(part, "epoch") == []

    monkeypatch.setattr(cli, "make_optimizer", make)
    assert run("train", "--resume", part / "checkpoint.npz", "--data-dir", tiny, "--quiet") == 0
    assert [r["loss"] for r in records(part, "step")] == [r["loss"] for r in records(full, "step")]
    ends = [(r["train_loss"], r["test_loss"]) for r in records(part, "epoch")]
    assert ends == [(r["train_loss"], r["test_loss"]) for r in records(full, "epoch")]
    lrs = [r["lr"] for r in records(part, "step")]
    assert lrs == [r["lr"] for r in records(full, "step")]
    if schedule == "cosine":  # from 1e-3 down towards 0 over the 12 batches
        assert lrs[0] == 1e-3 and lrs == sorted(lrs, reverse=True) and lrs[-1] < 1e-4
    else:
        assert set(lrs) == {1e-3}


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["fly"],
        ["train", "--epochs", "0"],
        ["train", "--epochs", "two"],
        ["train", "--batch-size", "-3"],
        ["train", "--lr", "0"],
        ["train", "--model", "resnet"],
        ["train", "--optimizer", "rmsprop"],
        ["train", "--dataset", "cifar10"],
        ["train", "--limit", "0"],
        ["train", "--resume", "/no/such/checkpoint.npz"],
        ["train", "--unknown-flag"],
        ["train", "--threads", "0"],
        ["train", "--workers", "0"],
        ["demo", "--workers", "two"],
        ["eval", "x.npz", "--threads", "many"],
        ["eval"],
        ["graph", "--model", "vgg"],
    ],
)
def test_usage_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "usage:" in err and "Traceback" not in err


def test_missing_dataset_is_one_line_error_exit_1(tiny, tmp_path, capsys):
    code = run("train", "--data-dir", tmp_path / "empty", "--dataset", "mnist", "--quiet")
    assert code == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    # "downloading URL" progress lines, then the error on one line
    err = [line for line in err.splitlines() if not line.startswith("downloading ")]
    assert len(err) == 1 and err[0].startswith("tinygrad-np: error: mnist not found")
    assert str(tmp_path / "empty") in err[0] and "TINYGRAD_NP_DATA" in err[0]
    assert "127.0.0.1:9" in err[0]


def test_eval_rejects_a_file_that_is_not_a_checkpoint(tiny, tmp_path, capsys):
    bogus = tmp_path / "bogus.npz"
    np.savez(bogus, x=np.zeros(3))
    assert run("eval", bogus, "--data-dir", tiny) == 1
    assert "not a tinygrad-np checkpoint" in capsys.readouterr().err
    other = tmp_path / "state.npz"
    tg.save({"w": np.zeros(2)}, other)
    assert run("eval", other) == 1
    assert "not a training checkpoint" in capsys.readouterr().err
    assert run("eval", tmp_path / "missing.npz") == 1


def test_python_dash_m_entry_point(tiny, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.run(
        [sys.executable, "-m", "tinygrad_np", "train", "--epochs", "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert proc.returncode == 2 and "usage: tinygrad-np train" in proc.stderr
    proc = subprocess.run(
        [sys.executable, "-m", "tinygrad_np", "--help"], capture_output=True, text=True, env=env
    )
    assert proc.returncode == 0
    for command in ("train", "eval", "graph", "demo"):
        assert command in proc.stdout


def test_subcommands_are_one_function_each():
    assert [f.__name__ for f in cli.COMMANDS[:4]] == [
        "add_train",
        "add_eval",
        "add_graph",
        "add_demo",
    ]

    def add_hello(subparsers):
        p = subparsers.add_parser("hello")
        p.set_defaults(func=lambda args: 7)

    cli.COMMANDS.append(add_hello)
    try:
        assert cli.main(["hello"]) == 7
    finally:
        cli.COMMANDS.remove(add_hello)


@needs_conv
def test_train_lenet_few_steps(tiny, tmp_path):
    out = tmp_path / "lenet"
    assert run(*train_args(tiny, out, "--limit", "48", "--batch-size", "16", model="lenet")) == 0
    steps = records(out, "step")
    assert len(steps) == 3
    meta, state, _ = cli.load_checkpoint(out / "checkpoint.npz")
    assert state["features.0.weight"].shape == (6, 1, 5, 5)
    assert state["features.3.weight"].shape == (16, 6, 5, 5)
    assert state["classifier.0.weight"].shape == (120, 400)


@needs_conv
@pytest.mark.skipif(not HAS_DOT, reason="Graphviz's dot is not installed")
@pytest.mark.parametrize("backward", [False, True])
def test_graph_writes_svg(tmp_path, capsys, backward):
    out = tmp_path / "lenet.svg"
    assert run("graph", "--model", "lenet", "-o", out, *(["--backward"] if backward else [])) == 0
    svg = out.read_text()
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg[:500]
    assert "conv2d" in svg and "max_pool2d" in svg
    assert str(out) in capsys.readouterr().out


@needs_conv
def test_demo_fills_one_run_folder(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(cli, "DEMO", dict(cli.DEMO, limit=32, test_limit=20))
    out = tmp_path / "demo"
    assert run("demo", "--data-dir", tiny, "--out", out, "--quiet") == 0
    printed = capsys.readouterr().out
    assert "test accuracy:" in printed and str(out) in printed
    names = {p.name for p in out.iterdir()}
    assert {"checkpoint.npz", "metrics.jsonl", "curves.png", "config.json"} <= names
    if HAS_DOT:
        assert "lenet.svg" in names
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == "lenet" and config["dataset"] == "fashion-mnist"
    assert config["epochs"] == 1


@needs_conv
def test_graph_without_dot_is_a_clean_error(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    out = tmp_path / "lenet.svg"
    assert run("graph", "--model", "lenet", "-o", out) == 1
    err = capsys.readouterr().err
    assert err.startswith("tinygrad-np: error:") and "apt install graphviz" in err
    assert len(err.strip().splitlines()) == 1
    assert (tmp_path / "lenet.dot").exists() and not out.exists()


def test_train_without_matplotlib_skips_the_plot(tiny, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    out = tmp_path / "run"
    assert run(*train_args(tiny, out, "--limit", "32", "--batch-size", "16")) == 0
    assert not (out / "curves.png").exists()
    assert (out / "checkpoint.npz").exists() and (out / "metrics.jsonl").exists()
    assert "install matplotlib" in capsys.readouterr().out


@needs_conv
def test_workers_option_trains_with_data_parallel_bit_for_bit(tiny, tmp_path):
    losses = {}
    for name, n in (("a", 2), ("b", 2), ("one", 1)):
        out = tmp_path / name
        args = train_args(tiny, out, "--epochs", "1", "--batch-size", "32", "--workers", n,
                          model="lenet")  # fmt: skip
        assert run(*args) == 0
        losses[name] = [r["loss"] for r in records(out, "step")]
        assert json.loads((out / "config.json").read_text())["workers"] == n
    assert losses["a"] == losses["b"]  # the same seed and worker count: the same bits
    np.testing.assert_allclose(losses["a"], losses["one"], rtol=1e-5)  # the same training
    # the checkpoint holds the model's own keys, not DataParallel's "module." ones
    assert run("eval", tmp_path / "a" / "checkpoint.npz", "--data-dir", tiny) == 0


@needs_conv
def test_threads_option_sets_the_thread_count_and_keeps_results(tiny, tmp_path, monkeypatch):
    from tinygrad_np import _parallel as par

    monkeypatch.setitem(par._state, "threads", par.get_num_threads())  # restored after
    losses = {}
    for n in (1, 2):
        out = tmp_path / f"run{n}"
        args = train_args(tiny, out, "--epochs", "1", "--batch-size", "32", "--threads", n,
                          model="lenet")  # fmt: skip
        assert run(*args) == 0
        assert par.get_num_threads() == n
        losses[n] = [r["loss"] for r in records(out, "step")]
    np.testing.assert_allclose(losses[1], losses[2], rtol=1e-5)
    assert json.loads((tmp_path / "run2" / "config.json").read_text())["threads"] == 2


def test_default_workers_one_per_thread_and_16_images(monkeypatch):
    from tinygrad_np import _parallel as par

    monkeypatch.setitem(par._state, "threads", 4)
    assert [cli.default_workers(b) for b in (8, 16, 32, 64, 128)] == [1, 1, 2, 4, 4]
    monkeypatch.setitem(par._state, "threads", 1)
    assert cli.default_workers(128) == 1
    monkeypatch.setitem(par._state, "threads", 4)
    monkeypatch.setattr(cli.sys, "platform", "darwin")
    assert cli.default_workers(128) == 1  # not Linux: this process only
    monkeypatch.setattr(cli.sys, "platform", "linux")
    assert cli.default_workers(128) == 4
    monkeypatch.setattr(cli.multiprocessing, "get_all_start_methods", lambda: ["spawn"])
    assert cli.default_workers(128) == 1  # no fork: this process only


def test_train_splits_batches_by_default_and_a_resume_keeps_the_count(
    tiny, tmp_path, monkeypatch, capsys
):
    from tinygrad_np import _parallel as par

    monkeypatch.setitem(par._state, "threads", par.get_num_threads())  # restored after
    out = tmp_path / "run"
    assert run(*train_args(tiny, out, "--epochs", "1", "--batch-size", "32", "--threads", 2)) == 0
    assert json.loads((out / "config.json").read_text())["workers"] == 2
    assert "split over 2 processes" in capsys.readouterr().err
    one = tmp_path / "one"
    assert run(*train_args(tiny, one, "--epochs", "1", "--batch-size", "32", "--workers", 1)) == 0
    resume = ("train", "--resume", one / "checkpoint.npz", "--epochs", "2", "--data-dir", tiny)
    assert run(*resume, "--quiet", "--threads", 2) == 0
    assert json.loads((one / "config.json").read_text())["workers"] == 1  # as it began
    assert "processes" not in capsys.readouterr().err


def test_resume_keeps_the_test_limit_and_takes_a_negative_seed(tiny, tmp_path):
    part = tmp_path / "part"
    args = ("--epochs", "1", "--batch-size", "32", "--test-limit", "10", "--seed", "-1")
    assert run(*train_args(tiny, part, *args)) == 0
    resume = ("train", "--resume", part / "checkpoint.npz", "--epochs", "2", "--data-dir", tiny)
    assert run(*resume, "--quiet") == 0
    config = json.loads((part / "config.json").read_text())
    assert config["test_limit"] == 10 and config["seed"] == -1


def test_output_into_a_closed_pipe_ends_quietly(monkeypatch, capsys):
    # `tinygrad-np explain ... | head`: head stops reading; no traceback, exit code 141
    from tinygrad_np import cli

    r, w = os.pipe()
    os.close(r)
    out = os.fdopen(w, "w", buffering=1)
    monkeypatch.setattr(sys, "stdout", out)
    try:
        code = cli.main(["explain", "conv2d", "--input", "2x3x8x8", "--weight", "4x3x3x3"])
    finally:
        monkeypatch.undo()
        try:
            out.close()
        except BrokenPipeError:
            pass
    assert code == 141
    assert "Traceback" not in capsys.readouterr().err


def _one_error_line(capsys, *expected):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("tinygrad-np: error: "), err
    for text in expected:
        assert text in last, last


@pytest.mark.parametrize(
    "damage, message",
    [
        ("truncated", "truncated IDX header"),
        ("32x32", "expected uint8 images (N, 28, 28)"),
        ("label 12", "labels must be classes 0-9"),
    ],
)
def test_a_damaged_dataset_file_is_one_error_line(tiny, tmp_path, capsys, damage, message):
    images = tiny / "train-images-idx3-ubyte.gz"
    if damage == "truncated":
        images.unlink()
        (tiny / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03\x00\x00\x00\x05")
    elif damage == "32x32":
        save_idx(images, np.zeros((96, 32, 32), np.uint8))
    else:
        save_idx(tiny / "train-labels-idx1-ubyte.gz", np.full(96, 12, np.uint8))
    assert run(*train_args(tiny, tmp_path / "run")) == 1
    _one_error_line(capsys, "fashion-mnist train split", message)


def test_outputs_that_cannot_be_written_are_one_error_line(tiny, tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    for target in (folder, "/dev/full", tmp_path / "g.txt"):
        assert run("graph", "-o", target) == 1
        _one_error_line(capsys, f"cannot write {target}")
    taken = tmp_path / "file.txt"
    taken.write_text("x")
    assert run(*train_args(tiny, taken, "--limit", "4")) == 1
    _one_error_line(capsys, "File exists")


def test_damaged_checkpoints_are_one_error_line(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(tiny, out, "--limit", "32")) == 0
    good = tg.load(out / "checkpoint.npz")
    variants = {
        "no-args": lambda c: c["meta"].pop("args"),
        "unknown-model": lambda c: c["meta"]["args"].update(model="resnet"),
        "meta-list": lambda c: c.update(meta=[1]),
        "missing-key": lambda c: c["model"].pop("classifier.0.weight"),
        "wrong-shape": lambda c: c["model"].update(
            {"classifier.0.weight": np.zeros((2, 2), np.float32)}
        ),
        "no-epochs": lambda c: c["meta"]["args"].pop("epochs"),
    }
    for name, damage in variants.items():
        c = tg.load(out / "checkpoint.npz")
        damage(c)
        path = tmp_path / f"{name}.npz"
        tg.save(c, path)
        expected = "does not fit" if name in ("missing-key", "wrong-shape") else "damaged"
        if name != "no-epochs":
            assert run("eval", path, "--data-dir", tiny, "--limit", "8") == 1, name
            _one_error_line(capsys, str(path), expected)
        if name != "meta-list":
            resume = ("train", "--resume", path, "--data-dir", tiny, "--quiet", "--out",
                      tmp_path / f"resumed-{name}")  # fmt: skip
            assert run(*resume) == 1, name
            _one_error_line(capsys, str(path))
    assert good["format"] == tg.load(out / "checkpoint.npz")["format"]


def test_check_of_a_file_with_a_syntax_error_is_one_error_line(tmp_path, capsys):
    bad = tmp_path / "my_conv.py"
    bad.write_text("def forward(x, w:\n    return x\n")
    assert run("check", f"{bad}:forward") == 1
    _one_error_line(capsys, "cannot load", "SyntaxError")


@pytest.mark.parametrize("op", ["conv2d", "conv_transpose2d"])
def test_explain_stride_zero_is_refused_not_taken_as_one(op, capsys):
    assert run("explain", op, "--input", "1x3x8x8", "--weight", "3x3x3x3", "--stride", "0") == 1
    _one_error_line(capsys, "stride must be positive")
    with pytest.raises(SystemExit):
        run("explain", op, "--input", "1x3x8x8", "--weight", "3x3x3x3", "--stride", ",")


def test_resume_after_a_metrics_line_cut_short(tiny, tmp_path):
    out = tmp_path / "run"
    assert run(*train_args(tiny, out, "--limit", "32", "--batch-size", "16")) == 0
    metrics = out / "metrics.jsonl"
    whole = metrics.read_text()
    metrics.write_text(whole + '{"type": "step", "epo')  # (killed while writing)
    resume = ("train", "--resume", out / "checkpoint.npz", "--epochs", "2", "--data-dir", tiny)
    assert run(*resume, "--quiet") == 0
    lines = metrics.read_text().splitlines()
    assert [json.loads(line) for line in lines]  # every line whole
    assert metrics.read_text().startswith(whole)
    assert len(records(out, "epoch")) == 2


def test_train_with_stderr_closed(tiny, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    argv = [sys.executable, "-m", "tinygrad_np", *map(str, train_args(tiny, tmp_path / "r"))]
    argv.remove("--quiet")  # (the progress bar and status lines go to stderr)
    p = subprocess.run(argv + ["--limit", "16"], stderr=subprocess.DEVNULL, env=env,
                       capture_output=False, stdout=subprocess.PIPE, timeout=120,
                       preexec_fn=lambda: os.close(2))  # fmt: skip
    assert p.returncode == 0
    assert (tmp_path / "r" / "checkpoint.npz").is_file()


def test_a_resume_keeps_the_runs_hyperparameters_and_extends_a_cosine_plan(tiny, tmp_path):
    # config.json and the checkpoint recorded the command line's defaults on a resume
    # (lr 0.05, momentum 0.9, no decay) while the optimizer ran on the saved ones; and a
    # cosine run resumed with more epochs kept its old T_max (the rate rose again)
    part = tmp_path / "part"
    common = ("--batch-size", "32", "--optimizer", "sgd", "--momentum", "0.5",
              "--weight-decay", "0.1", "--lr", "0.01")  # fmt: skip
    assert run(*train_args(tiny, part, "--epochs", "1", *common, "--schedule", "cosine")) == 0
    resume = ("train", "--resume", part / "checkpoint.npz", "--data-dir", tiny, "--quiet")
    assert run(*resume, "--epochs", "3") == 0
    config = json.loads((part / "config.json").read_text())
    assert (config["lr"], config["momentum"], config["weight_decay"]) == (0.01, 0.5, 0.1)
    meta, _, opt = cli.load_checkpoint(part / "checkpoint.npz")
    assert meta["args"]["momentum"] == 0.5 and opt["param_groups"][0]["momentum"] == 0.5
    lrs = [r["lr"] for r in records(part, "step")]
    resumed = lrs[3:]  # (3 batches an epoch: from step 4 on, the 9-step curve's rest)
    assert len(lrs) == 9 and all(a > b for a, b in zip(resumed, resumed[1:], strict=False))
    fresh = tmp_path / "fresh"
    assert run(*train_args(tiny, fresh, "--epochs", "3", *common, "--schedule", "cosine")) == 0
    np.testing.assert_allclose(resumed, [r["lr"] for r in records(fresh, "step")][3:],
                               rtol=1e-12)  # fmt: skip
    # given again on a resume, momentum and weight decay replace the saved ones
    const = tmp_path / "const"
    assert run(*train_args(tiny, const, "--epochs", "1", *common)) == 0
    again = ("train", "--resume", const / "checkpoint.npz", "--data-dir", tiny, "--quiet")
    assert run(*again, "--epochs", "2", "--momentum", "0.7") == 0
    _, _, opt = cli.load_checkpoint(const / "checkpoint.npz")
    assert opt["param_groups"][0]["momentum"] == 0.7
    assert opt["param_groups"][0]["weight_decay"] == 0.1


def test_explain_refuses_options_its_op_does_not_take(capsys):
    assert run("explain", "avg_pool2d", "--input", "1x1x8x8", "--kernel-size", "2",
               "--dilation", "2") == 1  # fmt: skip
    assert "avg_pool2d takes no --dilation" in capsys.readouterr().err
    assert run("explain", "conv2d", "--input", "1x1x8x8", "--weight", "2x1x3x3",
               "--ceil-mode", "--output-padding", "1") == 1  # fmt: skip
    assert "conv2d takes no --output-padding, --ceil-mode" in capsys.readouterr().err
    assert run("explain", "max_pool2d", "--input", "1x1x8x8", "--kernel-size", "2",
               "--dilation", "2", "--ceil-mode") == 0  # fmt: skip


def test_eval_of_a_run_folder_says_it_is_a_folder(tiny, tmp_path, capsys):
    out = tmp_path / "run"
    assert run(*train_args(tiny, out, "--epochs", "1", "--batch-size", "32")) == 0
    capsys.readouterr()
    assert run("eval", out, "--data-dir", tiny) == 1
    assert "is a folder, not a checkpoint file (its checkpoint.npz?)" in capsys.readouterr().err
