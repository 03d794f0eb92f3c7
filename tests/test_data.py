"""tinygrad_np.data: IDX files, finding and downloading MNIST-style datasets, DataLoader."""

import gc
import gzip
import hashlib
import http.server
import os
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

import tinygrad_np as tg
import tinygrad_np.data as data
from tinygrad_np import Tensor
from tinygrad_np.data import DataLoader, DatasetNotFoundError, load_idx, load_mnist, save_idx

STEMS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}


def make_split(rng, n):
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n).astype(
        np.uint8
    )


def write_dataset(folder: Path, n_train=12, n_test=5, gz=False, seed=0) -> dict:
    """Write the four standard files; return {split: (images, labels)}."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = make_split(rng, n)
        suffix = ".gz" if gz else ""
        save_idx(folder / (STEMS[split][0] + suffix), images)
        save_idx(folder / (STEMS[split][1] + suffix), labels)
        out[split] = (images, labels)
    return out


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No env vars, an empty home and an empty system folder; downloads go nowhere."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("TINYGRAD_NP_DATA", raising=False)
    monkeypatch.delenv("TINYGRAD_NP_VERIFY", raising=False)
    monkeypatch.setenv("TINYGRAD_NP_MIRROR", "http://127.0.0.1:9/")  # discard port: refused
    system = tmp_path / "system"
    system.mkdir()
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", system)
    return tmp_path


# ---------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [False, True])
@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint8).reshape(2, 3, 4),
        np.array([-3, 0, 5], dtype=np.int8),
        np.array([[-300, 2], [7, 30000]], dtype=np.int16),
        np.array([1, -(2**31), 2**31 - 1], dtype=np.int32),
        np.array([[1.5, -2.25]], dtype=np.float32),
        np.array([np.pi, -1e300], dtype=np.float64),
    ],
    ids=["uint8", "int8", "int16", "int32", "float32", "float64"],
)
def test_idx_round_trip(tmp_path, array, gz):
    path = tmp_path / ("x.idx" + (".gz" if gz else ""))
    save_idx(path, array)
    raw = path.read_bytes()
    assert (raw[:2] == b"\x1f\x8b") == gz
    back = load_idx(path)
    assert back.dtype == array.dtype and back.dtype.isnative
    assert back.shape == array.shape
    np.testing.assert_array_equal(back, array)


def test_idx_header_is_big_endian(tmp_path):
    # magic 0x00000801 (uint8, 1 dim), length 3 as a big-endian uint32, then the bytes
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    np.testing.assert_array_equal(load_idx(path), [7, 8, 9])
    path.write_bytes(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 1, 2, 0xFF, 0xFE]))
    np.testing.assert_array_equal(load_idx(path), [258, -2])


def test_idx_gzip_detected_by_content_not_name(tmp_path):
    path = tmp_path / "no-suffix"
    path.write_bytes(gzip.compress(bytes([0, 0, 8, 1, 0, 0, 0, 2, 4, 5])))
    np.testing.assert_array_equal(load_idx(path), [4, 5])


@pytest.mark.parametrize(
    "content, message",
    [
        (bytes([1, 0, 8, 1, 0, 0, 0, 1, 5]), "magic number"),
        (bytes([0, 0, 0x42, 1, 0, 0, 0, 1, 5]), "magic number"),
        (bytes([0, 0, 8]), "truncated"),
        (bytes([0, 0, 8, 2, 0, 0, 0, 2]), "truncated IDX header"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 4, 1, 2]), "truncated"),
        (bytes([0, 0, 8, 1, 0, 0, 0, 1, 1, 2]), "size mismatch"),
    ],
    ids=["magic", "dtype-code", "short-magic", "short-header", "short-body", "extra-bytes"],
)
def test_idx_errors_name_the_file(tmp_path, content, message):
    path = tmp_path / "bad-idx1-ubyte"
    path.write_bytes(content)
    with pytest.raises(ValueError, match=message) as info:
        load_idx(path)
    assert str(path) in str(info.value)


def test_idx_truncated_gzip(tmp_path):
    path = tmp_path / "cut.gz"
    save_idx(path, np.arange(1000, dtype=np.int32))
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(ValueError, match="gzip") as info:
        load_idx(path)
    assert "cut.gz" in str(info.value)


def test_save_idx_rejects_unknown_dtype(tmp_path):
    with pytest.raises(ValueError, match="dtype"):
        save_idx(tmp_path / "x", np.zeros(3, dtype=np.complex64))


# ---------------------------------------------------------------------------- search order


@pytest.mark.parametrize("gz", [False, True])
def test_load_mnist_from_root(isolated, gz):
    written = write_dataset(isolated / "d", gz=gz)
    for split in ("train", "test"):
        images, labels = load_mnist("mnist", split, root=isolated / "d")
        assert images.dtype == np.uint8 and images.shape == written[split][0].shape
        assert labels.dtype == np.int64 and labels.shape == (len(images),)
        np.testing.assert_array_equal(images, written[split][0])
        np.testing.assert_array_equal(labels, written[split][1])


def test_search_order(isolated, monkeypatch):
    """root, then root/<name>, $TINYGRAD_NP_DATA (and /<name>), the cache, the system folder."""
    name = "fashion-mnist"
    places = {
        "root": isolated / "root",
        "root_sub": isolated / "root" / name,
        "env": isolated / "env",
        "env_sub": isolated / "env" / name,
        "cache": isolated / "home" / ".cache" / "tinygrad_np" / name,
        "system": isolated / "system" / name,
    }
    sizes = {}
    for i, (key, folder) in enumerate(places.items()):
        write_dataset(folder, n_train=3 + i, seed=i)
        sizes[key] = 3 + i
    monkeypatch.setenv("TINYGRAD_NP_DATA", str(places["env"]))

    def n_found(root=places["root"]):
        return len(load_mnist(name, "train", root=root)[0])

    order = list(places)
    for i, key in enumerate(order):
        if i < 2:  # in root or its subfolder
            assert n_found() == sizes[key], key
        else:  # found past root: a warning says so
            with pytest.warns(UserWarning, match="not in .*root"):
                assert n_found() == sizes[key], key
        # remove this place so the next one is used
        for stem in STEMS["train"]:
            (places[key] / stem).unlink()

    with pytest.raises(DatasetNotFoundError):
        n_found()


def test_env_var_without_root(isolated, monkeypatch):
    write_dataset(isolated / "env" / "mnist", n_train=4)
    monkeypatch.setenv("TINYGRAD_NP_DATA", str(isolated / "env"))
    assert len(load_mnist("mnist", "train")[0]) == 4


def test_folder_with_only_one_of_two_files_is_skipped(isolated):
    root = isolated / "half"
    write_dataset(root)
    (root / STEMS["test"][1]).unlink()
    write_dataset(isolated / "system" / "mnist", n_test=2)
    with pytest.warns(UserWarning, match="test files of mnist are not in"):
        assert len(load_mnist("mnist", "test", root=root)[0]) == 2
    assert len(load_mnist("mnist", "train", root=root)[0]) == 12


def test_not_found_error_lists_every_place_and_what_to_do(isolated, monkeypatch):
    monkeypatch.setenv("TINYGRAD_NP_DATA", str(isolated / "env"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_mnist("fashion-mnist", "test", root=isolated / "r")
    msg = str(info.value)
    for place in [
        isolated / "r",
        isolated / "r" / "fashion-mnist",
        isolated / "env",
        isolated / "env" / "fashion-mnist",
        isolated / "home" / ".cache" / "tinygrad_np" / "fashion-mnist",
        isolated / "system" / "fashion-mnist",
    ]:
        assert str(place) in msg
    assert "t10k-images-idx3-ubyte" in msg
    assert "apt install dataset-fashion-mnist" in msg
    assert "TINYGRAD_NP_DATA" in msg and "--data-dir" in msg
    assert "127.0.0.1:9" in msg  # the failed download is reported too
    assert isinstance(info.value, FileNotFoundError)


def test_download_false(isolated):
    with pytest.raises(DatasetNotFoundError, match="not tried"):
        load_mnist("mnist", "train", download=False)


def test_mismatched_lengths(isolated):
    root = isolated / "d"
    write_dataset(root)
    save_idx(root / STEMS["train"][1], np.zeros(3, dtype=np.uint8))
    with pytest.raises(ValueError, match="expected 12 labels"):
        load_mnist("mnist", "train", root=root)


def test_bad_arguments():
    with pytest.raises(ValueError, match="name"):
        load_mnist("cifar")
    with pytest.raises(ValueError, match="split"):
        load_mnist("mnist", "validation")


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist").is_dir(), reason="Debian's Fashion-MNIST"
)
def test_debian_fashion_mnist(monkeypatch, tmp_path):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("TINYGRAD_NP_DATA", raising=False)
    images, labels = load_mnist("fashion-mnist", "test")
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.shape == (10000,) and labels.dtype == np.int64
    np.testing.assert_array_equal(np.bincount(labels), [1000] * 10)


# ---------------------------------------------------------------------------- downloads


class _Handler(http.server.BaseHTTPRequestHandler):
    files: dict = {}  # URL path -> bytes
    dropped: set = set()  # URL paths whose body is cut off half way
    chunks_cut: set = set()  # the same, sent chunked (http.client raises IncompleteRead)
    requests: list = []

    def do_GET(self):
        self.requests.append(self.path)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        if self.path in self.chunks_cut:  # a chunked body whose connection drops mid-chunk
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"%x\r\n" % len(body) + body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.path in self.dropped:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def server(isolated):
    """A real HTTP server on 127.0.0.1 serving small generated .gz IDX files under /good/."""
    rng = np.random.default_rng(1)
    files, digests, arrays = {}, {}, {}
    for split, n in (("train", 7), ("test", 3)):
        images, labels = make_split(rng, n)
        arrays[split] = (images, labels)
        for stem, arr in zip(STEMS[split], (images, labels), strict=True):
            tmp = isolated / f"{stem}.gz"
            save_idx(tmp, arr)
            body = tmp.read_bytes()
            tmp.unlink()
            files[f"/good/{stem}.gz"] = body
            digests[f"{stem}.gz"] = hashlib.sha256(body).hexdigest()

    class Handler(_Handler):
        pass

    Handler.files = files
    Handler.dropped = set()
    Handler.chunks_cut = set()
    Handler.requests = []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield {
            "url": f"http://127.0.0.1:{httpd.server_address[1]}",
            "handler": Handler,
            "digests": digests,
            "arrays": arrays,
            "cache": isolated / "home" / ".cache" / "tinygrad_np" / "mnist",
        }
    finally:
        httpd.shutdown()
        httpd.server_close()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_download_good_files(server):
    images, labels = load_mnist(
        "mnist", "train", mirror=server["url"] + "/good/", sha256=server["digests"]
    )
    np.testing.assert_array_equal(images, server["arrays"]["train"][0])
    np.testing.assert_array_equal(labels, server["arrays"]["train"][1])
    # all four files land in the cache, nothing else
    assert leftovers(server["cache"]) == sorted(server["digests"])
    # the next call reads the cache without asking the server
    n_requests = len(server["handler"].requests)
    images, _ = load_mnist("mnist", "test", mirror=server["url"] + "/good/")
    np.testing.assert_array_equal(images, server["arrays"]["test"][0])
    assert len(server["handler"].requests) == n_requests


def test_download_mirror_from_env(server, monkeypatch):
    monkeypatch.setenv("TINYGRAD_NP_MIRROR", server["url"] + "/good")
    images, _ = load_mnist("mnist", "test", sha256=server["digests"])
    assert images.shape == (3, 28, 28)


def test_download_corrupt_file_is_refused(server):
    handler = server["handler"]
    path = "/good/t10k-images-idx3-ubyte.gz"
    body = bytearray(handler.files[path])
    body[-5] ^= 0xFF
    handler.files[path] = bytes(body)
    with pytest.raises(DatasetNotFoundError, match="SHA-256 mismatch") as info:
        load_mnist("mnist", "test", mirror=server["url"] + "/good/", sha256=server["digests"])
    assert "t10k-images-idx3-ubyte.gz" in str(info.value)
    names = leftovers(server["cache"])
    assert "t10k-images-idx3-ubyte.gz" not in names
    assert not [n for n in names if n.endswith(".part")]


def test_download_dropped_connection_leaves_no_partial_file(server):
    handler = server["handler"]
    handler.dropped.add("/good/train-images-idx3-ubyte.gz")
    with pytest.raises(DatasetNotFoundError, match="connection closed") as info:
        load_mnist("mnist", "train", mirror=server["url"] + "/good/", sha256=server["digests"])
    assert "train-images-idx3-ubyte.gz" in str(info.value)
    assert leftovers(server["cache"]) == []
    # Without verification the structural check still catches the cut body...
    handler.dropped.clear()
    handler.dropped.add("/good/train-labels-idx1-ubyte.gz")
    with pytest.raises(DatasetNotFoundError):
        load_mnist("mnist", "train", mirror=server["url"] + "/good/", verify=False)
    names = leftovers(server["cache"])
    assert names == ["train-images-idx3-ubyte.gz"]  # the one complete file was kept
    # ...and once the server behaves, the download completes.
    handler.dropped.clear()
    images, _ = load_mnist(
        "mnist", "train", mirror=server["url"] + "/good/", sha256=server["digests"]
    )
    assert images.shape == (7, 28, 28)


def test_a_chunked_body_cut_off_falls_back_to_the_next_mirror(server, monkeypatch):
    handler = server["handler"]
    bad, good = server["url"] + "/cut/", server["url"] + "/good/"
    for path, body in list(handler.files.items()):
        handler.files[path.replace("/good/", "/cut/")] = body
        handler.chunks_cut.add(path.replace("/good/", "/cut/"))
    monkeypatch.delenv("TINYGRAD_NP_MIRROR", raising=False)
    monkeypatch.setitem(data.MIRRORS, "mnist", (bad, good))
    images, _ = load_mnist("mnist", "train", sha256=server["digests"])
    np.testing.assert_array_equal(images, server["arrays"]["train"][0])
    assert any(r.startswith("/cut/") for r in handler.requests)
    # with only the bad mirror: one clear error naming what happened, no partial file
    monkeypatch.setitem(data.MIRRORS, "mnist", (bad,))
    with pytest.raises(OSError, match="IncompleteRead"):
        data.download_mnist("mnist", server["cache"].parent / "other", sha256=server["digests"])
    assert leftovers(server["cache"].parent / "other") == []


def test_downloaded_files_are_readable_by_others_as_the_umask_says(server):
    old = os.umask(0o022)
    try:
        folder = data.download_mnist("mnist", mirror=server["url"] + "/good/",
                                     sha256=server["digests"], quiet=True)  # fmt: skip
    finally:
        os.umask(old)
    modes = {p.name: p.stat().st_mode & 0o777 for p in folder.iterdir()}
    assert modes == {name: 0o644 for name in server["digests"]}


def test_a_page_instead_of_a_file_is_a_value_error_without_verification(server):
    handler = server["handler"]
    for path in list(handler.files):
        handler.files[path.replace("/good/", "/html/")] = b"<html>moved</html>"
    with pytest.raises(ValueError, match="could not download"):
        data.download_mnist("mnist", mirror=server["url"] + "/html/", verify=False, quiet=True)


@pytest.mark.parametrize(
    "what, array, message",
    [
        ("images", np.zeros((12, 32, 32), np.uint8), r"expected uint8 images \(N, 28, 28\)"),
        ("labels", np.full(12, 1.9), "expected integer class labels, got float64"),
        ("labels", np.arange(12, dtype=np.uint8), "classes 0-9, found 0 to 11"),
        ("labels", np.full(12, -1, np.int32), "classes 0-9, found -1 to -1"),
    ],
)
def test_files_that_are_not_mnist_are_refused_naming_the_file(isolated, what, array, message):
    root = isolated / "d"
    write_dataset(root)
    stem = STEMS["train"][0 if what == "images" else 1]
    save_idx(root / stem, array)
    with pytest.raises(ValueError, match=message) as info:
        load_mnist("mnist", "train", root=root)
    assert stem in str(info.value)


def test_download_missing_file_on_mirror(server):
    with pytest.raises(DatasetNotFoundError, match="404"):
        load_mnist("mnist", "train", mirror=server["url"] + "/nothing/", verify=False)


def test_a_refused_download_closes_its_connection(server):
    # an HTTPError holds the response and its socket: left open, the socket warned
    # "unclosed <socket.socket ...>" when it was collected
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResourceWarning)
        with pytest.raises(DatasetNotFoundError, match="404"):
            load_mnist("mnist", "train", mirror=server["url"] + "/nothing/", verify=False)
        gc.collect()
    assert [str(w.message) for w in caught if w.category is ResourceWarning] == []


def test_verification_needs_a_digest(server, monkeypatch):
    # a private mirror with the official table fails verification; TINYGRAD_NP_VERIFY=0 skips it
    with pytest.raises(DatasetNotFoundError, match="SHA-256 mismatch"):
        load_mnist("mnist", "test", mirror=server["url"] + "/good/")
    monkeypatch.setenv("TINYGRAD_NP_VERIFY", "0")
    images, _ = load_mnist("mnist", "test", mirror=server["url"] + "/good/")
    assert images.shape == (3, 28, 28)


def test_official_digest_table_is_complete():
    for name in ("mnist", "fashion-mnist"):
        table = data.SHA256[name]
        assert sorted(table) == sorted(f"{s}.gz" for pair in STEMS.values() for s in pair)
        assert all(len(h) == 64 and int(h, 16) >= 0 for h in table.values())


# ---------------------------------------------------------------------------- DataLoader


def test_dataloader_batches_in_order():
    x = np.arange(20, dtype=np.float32).reshape(10, 2)
    y = np.arange(10)
    loader = DataLoader(x, y, batch_size=4)
    assert len(loader) == 3
    batches = list(loader)
    assert len(batches) == 3
    for xb, yb in batches:
        assert isinstance(xb, Tensor) and isinstance(yb, Tensor)
        assert not xb.requires_grad and xb.dtype == np.float32 and yb.dtype == y.dtype
    assert [b[1].tolist() for b in batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    np.testing.assert_array_equal(batches[2][0].numpy(), x[8:])


def test_dataloader_drop_last():
    loader = DataLoader(np.arange(10), batch_size=4, drop_last=True)
    assert len(loader) == 2
    assert [len(b) for (b,) in loader] == [4, 4]
    assert len(DataLoader(np.arange(8), batch_size=4, drop_last=True)) == 2
    assert len(DataLoader(np.arange(3), batch_size=4, drop_last=True)) == 0
    assert list(DataLoader(np.arange(3), batch_size=4, drop_last=True)) == []


def test_dataloader_shuffle_is_seeded_and_changes_per_epoch():
    x = np.arange(50)
    a = DataLoader(x, x * 10, batch_size=7, shuffle=True, seed=3)
    b = DataLoader(x, x * 10, batch_size=7, shuffle=True, seed=3)

    def epoch(loader):
        batches = list(loader)
        for xb, yb in batches:  # rows stay paired
            np.testing.assert_array_equal(yb.numpy(), xb.numpy() * 10)
        return np.concatenate([xb.numpy() for xb, _ in batches])

    a1, a2 = epoch(a), epoch(a)
    b1, b2 = epoch(b), epoch(b)
    np.testing.assert_array_equal(a1, b1)
    np.testing.assert_array_equal(a2, b2)
    assert sorted(a1.tolist()) == list(range(50)) and sorted(a2.tolist()) == list(range(50))
    assert not np.array_equal(a1, a2)  # a new order each epoch
    assert not np.array_equal(a1, x)
    c = DataLoader(x, x * 10, batch_size=7, shuffle=True, seed=4)
    assert not np.array_equal(epoch(c), a1)
    # set_epoch resumes the permutation sequence
    b.set_epoch(1)
    np.testing.assert_array_equal(epoch(b), a2)


def test_dataloader_accepts_tensors_and_checks_arguments():
    loader = DataLoader(Tensor(np.ones((4, 3))), batch_size=3)
    assert [xb.shape for (xb,) in loader] == [(3, 3), (1, 3)]
    with pytest.raises(ValueError, match="different lengths"):
        DataLoader(np.zeros(3), np.zeros(4), batch_size=2)
    with pytest.raises(ValueError, match="batch_size"):
        DataLoader(np.zeros(3), batch_size=0)
    with pytest.raises(TypeError, match="batch_size"):
        DataLoader(np.zeros(3), batch_size=2.5)
    with pytest.raises(ValueError, match="at least one"):
        DataLoader(batch_size=2)


def test_ctrl_c_during_download_leaves_no_partial_file(isolated, monkeypatch):
    class Response:
        headers = {"Content-Length": "1000"}
        calls = 0

        def read(self, n):
            Response.calls += 1
            if Response.calls > 1:
                raise KeyboardInterrupt
            return b"\x1f\x8b" + b"x" * 98

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

    monkeypatch.setattr(data.urllib.request, "urlopen", lambda url, timeout: Response())
    cache = isolated / "home" / ".cache" / "tinygrad_np" / "mnist"
    with pytest.raises(KeyboardInterrupt):
        load_mnist("mnist", "train", mirror="http://127.0.0.1:1/", verify=False)
    assert Response.calls == 2
    assert leftovers(cache) == []


def test_idx_header_whose_sizes_overflow_is_a_size_error_naming_the_file(tmp_path):
    p = tmp_path / "huge-idx"
    p.write_bytes(bytes([0, 0, 8, 4]) + (65536).to_bytes(4, "big") * 4)
    with pytest.raises(ValueError, match="huge-idx"):
        load_idx(p)


def test_a_wrong_root_warns_before_other_folders_are_used(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("TINYGRAD_NP_DATA", raising=False)
    monkeypatch.setattr(data, "SYSTEM_DATA_DIR", tmp_path / "system")
    write_dataset(tmp_path / "system" / "fashion-mnist", n_test=3)
    with pytest.warns(UserWarning, match="not in .*nonexistent"):
        images, _ = load_mnist("fashion-mnist", "test", root=tmp_path / "nonexistent",
                               download=False)  # fmt: skip
    assert len(images) == 3


def test_dataloader_takes_a_negative_seed_and_rejects_a_float():
    x = np.arange(10)
    a = [b[0].tolist() for b in DataLoader(x, batch_size=5, shuffle=True, seed=-1)]
    b = [b[0].tolist() for b in DataLoader(x, batch_size=5, shuffle=True, seed=-1)]
    assert a == b and sorted(sum(a, [])) == list(range(10))
    with pytest.raises(TypeError, match="seed"):
        DataLoader(x, batch_size=5, seed=1.5)
    tg.manual_seed(-3)
    first = tg.randn(3).tolist()
    tg.manual_seed(-3)
    assert tg.randn(3).tolist() == first


def test_dataloader_makes_lists_of_python_floats_float32_as_tensor_does():
    xb, yb = next(iter(DataLoader([[1.0, 2.0], [3.0, 4.0]], [0, 1], batch_size=2)))
    assert xb.dtype == np.float32 and yb.dtype == np.int64
    assert xb.dtype == tg.Tensor([[1.0, 2.0]]).dtype
    (xb,) = next(iter(DataLoader(np.array([[1.0, 2.0]]), batch_size=1)))
    assert xb.dtype == np.float64  # (a float64 array keeps its dtype)


def test_set_epoch_refuses_a_negative_epoch():
    loader = DataLoader(np.arange(10), batch_size=4, shuffle=True, seed=0)
    with pytest.raises(ValueError, match="set_epoch: epoch must be an int >= 0, got -1"):
        loader.set_epoch(-1)
    loader.set_epoch(2)
    first = [b.numpy().tolist() for (b,) in loader]
    loader.set_epoch(2)
    assert [b.numpy().tolist() for (b,) in loader] == first
