"""save / load: state dicts and nested checkpoints round-trip through .npz without pickle."""

from __future__ import annotations

import os
import zipfile

import numpy as np
import pytest

import tinygrad_np as tg
from tinygrad_np import nn, optim


def _model():
    return nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.ReLU(), nn.Linear(4, 2))


def test_state_dict_roundtrip_into_fresh_model(tmp_path):
    tg.manual_seed(0)
    m = _model()
    m(tg.randn(5, 3))  # non-trivial running stats
    path = tmp_path / "model.npz"
    tg.save(m.state_dict(), path)
    sd = tg.load(path)
    assert list(sd) == list(m.state_dict())  # order kept
    for k, v in m.state_dict().items():
        assert sd[k].dtype == v.dtype and sd[k].shape == v.shape
        np.testing.assert_array_equal(sd[k], v)
    assert sd["1.num_batches_tracked"].dtype == np.int64 and sd["1.num_batches_tracked"] == 1
    tg.manual_seed(1)
    fresh = _model()
    fresh.load_state_dict(sd)
    x = tg.randn(2, 3)
    m.eval()
    fresh.eval()
    np.testing.assert_array_equal(m(x).data, fresh(x).data)


def test_checkpoint_with_optimizer_state_and_scalars(tmp_path):
    tg.manual_seed(0)
    m = _model()
    opt = optim.Adam(m.parameters(), lr=0.01)
    for _ in range(2):
        opt.zero_grad()
        m(tg.randn(4, 3)).sum().backward()
        opt.step()
    ckpt = {
        "model": m.state_dict(),
        "optim": opt.state_dict(),
        "epoch": 3,
        "loss": 0.25,
        "name": "lenet",
        "done": False,
        "best": None,
        "history": [1.5, 0.7],
        "shape": (2, 3),
        "np_scalar": np.float32(1.5),
        "t": tg.Tensor([1.0, 2.0], requires_grad=True),
    }
    path = tmp_path / "ckpt.pt"  # any suffix: written exactly there
    tg.save(ckpt, path)
    assert path.exists() and not (tmp_path / "ckpt.pt.npz").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["ckpt.pt"]  # no temporary file left
    back = tg.load(path)
    assert back["epoch"] == 3 and isinstance(back["epoch"], int)
    assert back["loss"] == 0.25 and back["name"] == "lenet" and back["done"] is False
    assert back["best"] is None and back["history"] == [1.5, 0.7] and back["shape"] == (2, 3)
    assert back["np_scalar"] == np.float32(1.5) and back["np_scalar"].dtype == np.float32
    assert isinstance(back["t"], tg.Tensor) and back["t"].requires_grad
    osd = back["optim"]
    assert set(osd["state"]) == {0, 1, 2, 3, 4, 5}  # int keys survive
    assert osd["state"][0]["step"] == 2
    assert osd["param_groups"][0]["betas"] == (0.9, 0.999)
    opt2 = optim.Adam(m.parameters(), lr=0.5)
    opt2.load_state_dict(osd)
    assert opt2.param_groups[0]["lr"] == 0.01
    np.testing.assert_array_equal(opt2.state[m[0].weight]["exp_avg"],
                                  opt.state[m[0].weight]["exp_avg"])  # fmt: skip


def test_file_is_a_plain_npz_readable_without_pickle(tmp_path):
    path = tmp_path / "m.npz"
    tg.save({"model": {"0.weight": np.ones((2, 2))}}, path)
    with np.load(path, allow_pickle=False) as z:
        assert "model/0.weight" in z.files
        np.testing.assert_array_equal(z["model/0.weight"], 1)


def test_loading_foreign_files_gives_clear_error(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(ValueError, match="not a file written by tinygrad_np.save"):
        tg.load(text)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.ones(3))
    with pytest.raises(ValueError, match="not a file written by tinygrad_np.save"):
        tg.load(other)
    npy = tmp_path / "x.npy"
    np.save(npy, np.ones(3))
    with pytest.raises(ValueError, match="not a file written"):
        tg.load(npy)
    broken = tmp_path / "broken.npz"
    with zipfile.ZipFile(broken, "w") as z:
        z.writestr("__tinygrad_np__.npy", b"garbage")
    with pytest.raises(ValueError, match="not a file written"):
        tg.load(broken)
    with pytest.raises(FileNotFoundError):
        tg.load(tmp_path / "missing.npz")


def test_pickled_object_arrays_are_refused(tmp_path):
    with pytest.raises(TypeError, match="object array"):
        tg.save({"x": np.array([{"a": 1}], dtype=object)}, tmp_path / "o.npz")
    with pytest.raises(TypeError, match="cannot store"):
        tg.save({"f": lambda: 1}, tmp_path / "f.npz")
    assert not any(tmp_path.iterdir())  # nothing written on failure


def test_saved_file_mode_follows_the_umask_and_errors_name_the_path(tmp_path):
    import stat

    old = os.umask(0o022)
    try:
        p = tmp_path / "ckpt.npz"
        tg.save({"a": np.ones(2)}, p)
        assert stat.S_IMODE(p.stat().st_mode) == 0o644
    finally:
        os.umask(old)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        tg.save({"a": 1}, tmp_path / "nowhere" / "x.npz")
    with pytest.raises(IsADirectoryError, match=str(tmp_path.name)):
        tg.save({"a": 1}, tmp_path)
    assert sorted(q.name for q in tmp_path.iterdir()) == ["ckpt.npz"]  # no temp files left


def test_keys_numpy_would_confuse_come_back_as_saved(tmp_path):
    # "x.npy" is also how NumPy's NpzFile names the member of "x", and a zip member's
    # name ends at a NUL byte: each key must still come back with its own array
    obj = {"x": np.ones(2), "x.npy": np.zeros(2), "a\x00b": np.full(2, 3.0), "a": np.arange(2)}
    path = tmp_path / "k.npz"
    tg.save(obj, path)
    back = tg.load(path)
    assert list(back) == list(obj)
    for k, v in obj.items():
        np.testing.assert_array_equal(back[k], v)
    with np.load(path) as npz:  # every entry readable under a name of its own
        assert len(set(npz.files)) == 5


def test_every_flipped_byte_raises_value_error_or_loads_the_same(tmp_path):
    obj = {"w": np.arange(12.0).reshape(3, 4), "k": {"x": np.arange(5)}, "t": (1, "s")}
    good = tmp_path / "good.npz"
    tg.save(obj, good)
    raw = good.read_bytes()
    bad = tmp_path / "bad.npz"
    outcomes = set()
    for pos in range(len(raw)):
        flipped = bytearray(raw)
        flipped[pos] ^= 0xFF
        bad.write_bytes(bytes(flipped))
        try:
            out = tg.load(bad)
        except ValueError:
            outcomes.add("error")
            continue
        outcomes.add("same")  # (a field zip ignores, e.g. a time stamp)
        np.testing.assert_array_equal(out["w"], obj["w"])
        np.testing.assert_array_equal(out["k"]["x"], obj["k"]["x"])
        assert out["t"] == obj["t"]
    assert "error" in outcomes


def test_a_header_that_claims_more_data_than_the_file_holds(tmp_path):
    import io
    import json

    meta = {"format": "tinygrad_np.save", "version": 1, "tree": {"t": "array", "key": "w"}}
    header = "{'descr': '<f8', 'fortran_order': False, 'shape': (100000000000,), }"
    header += " " * (63 - len(header) % 64) + "\n"
    buf = io.BytesIO()
    np.savez(buf, __tinygrad_np__=np.frombuffer(json.dumps(meta).encode(), np.uint8))
    with zipfile.ZipFile(buf, "a") as z:  # 800 GB claimed, 16 bytes there
        npy = b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header.encode()
        z.writestr("w.npy", npy + b"\0" * 16)
    path = tmp_path / "bomb.npz"
    path.write_bytes(buf.getvalue())
    with pytest.raises(ValueError, match="claims 800000000000 bytes"):
        tg.load(path)


def test_keys_longer_than_a_zip_name_round_trip(tmp_path):
    # a zip member's name holds 65535 bytes: the archive's names are cut, the keys kept
    state = {"k" * 70000: np.ones(2), "k" * 70001: np.zeros(1), "é" * 20000: np.arange(3)}
    tg.save(state, tmp_path / "long.npz")
    back = tg.load(tmp_path / "long.npz")
    assert list(back) == list(state)
    for k in state:
        np.testing.assert_array_equal(back[k], state[k])
