"""MNIST-style data: the IDX file format, finding or downloading the datasets, batching.

``load_idx`` reads one IDX file, ``load_mnist`` finds (or downloads) MNIST or Fashion-MNIST and
returns one split, and ``DataLoader`` cuts arrays into shuffled mini-batches of Tensors.

>>> import numpy as np
>>> loader = DataLoader(np.arange(10), batch_size=4)
>>> [b.tolist() for (b,) in loader]
[[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import math
import os
import sys
import tempfile
import urllib.error
import urllib.request
import warnings
import zlib
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np

from tinygrad_np.serialization import _umask
from tinygrad_np.tensor import Tensor

__all__ = [
    "DataLoader",
    "DatasetNotFoundError",
    "SYSTEM_DATA_DIR",
    "dataset_dirs",
    "download_mnist",
    "load_idx",
    "load_mnist",
    "save_idx",
]

# ---------------------------------------------------------------------------------------------
# IDX: a 4-byte magic number (0, 0, dtype code, number of dimensions), one big-endian uint32
# per dimension, then the values row-major and big-endian.

_IDX_DTYPES = {
    0x08: np.dtype("u1"),
    0x09: np.dtype("i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_IDX_CODES = {dt.newbyteorder("="): code for code, dt in _IDX_DTYPES.items()}


def _read_bytes(path: Path) -> bytes:
    """The file's bytes, gunzipped when it is a gzip file (by its first two bytes)."""
    raw = path.read_bytes()
    if raw[:2] != b"\x1f\x8b":
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise ValueError(f"{path}: corrupt or truncated gzip file ({e})") from None


def load_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (the format of MNIST), plain or gzipped.

    Parameters
    ----------
    path:
        The file; gzip compression is recognised by content, whatever the name.

    Returns
    -------
    np.ndarray
        An array with the header's shape and dtype (``uint8`` for MNIST), in native byte order.

    Raises
    ------
    ValueError
        Naming the file, for a wrong magic number, an unknown dtype code, or a file whose size
        does not match its header (truncated or with trailing bytes).

    >>> import tempfile, numpy as np
    >>> p = Path(tempfile.mkdtemp()) / "x-idx2-ubyte"
    >>> save_idx(p, np.arange(6, dtype=np.uint8).reshape(2, 3))
    >>> load_idx(p)
    array([[0, 1, 2],
           [3, 4, 5]], dtype=uint8)
    """
    path = Path(path)
    buf = _read_bytes(path)
    if len(buf) < 4:
        raise ValueError(f"{path}: truncated IDX file ({len(buf)} bytes, no complete header)")
    zero0, zero1, code, ndim = buf[:4]
    if zero0 != 0 or zero1 != 0 or code not in _IDX_DTYPES:
        raise ValueError(
            f"{path}: not an IDX file (magic number 0x{buf[:4].hex()}; expected 0x0000 "
            f"followed by a dtype code in {sorted(hex(c) for c in _IDX_DTYPES)})"
        )
    header = 4 + 4 * ndim
    if len(buf) < header:
        raise ValueError(f"{path}: truncated IDX header ({len(buf)} of {header} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(buf, dtype=">u4", count=ndim, offset=4))
    dtype = _IDX_DTYPES[code]
    expected = header + math.prod(int(n) for n in shape) * dtype.itemsize  # (no int64 wrap)
    if len(buf) != expected:
        what = "truncated" if len(buf) < expected else "size mismatch"
        raise ValueError(
            f"{path}: {what}: the header says shape {shape} of {dtype.newbyteorder('=')} "
            f"({expected} bytes with the header), the file has {len(buf)} bytes"
        )
    data = np.frombuffer(buf, dtype=dtype, offset=header).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def save_idx(path: str | os.PathLike, array: np.ndarray) -> None:
    """Write ``array`` as an IDX file, gzipped when ``path`` ends in ``.gz``.

    The dtype must be one IDX knows: uint8, int8, int16, int32, float32 or float64.
    """
    array = np.asarray(array)
    native = array.dtype.newbyteorder("=")
    if native not in _IDX_CODES:
        raise ValueError(f"save_idx: IDX cannot store dtype {array.dtype}")
    code = _IDX_CODES[native]
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, dtype=">u4").tobytes()
    body = header + np.ascontiguousarray(array, dtype=_IDX_DTYPES[code]).tobytes()
    if str(path).endswith(".gz"):
        body = gzip.compress(body, mtime=0)
    Path(path).write_bytes(body)


# ---------------------------------------------------------------------------------------------
# Where the datasets live.

_SPLIT_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}

# Published mirrors, tried in order. MNIST's home page (yann.lecun.com) often refuses
# downloads, so PyTorch's and TensorFlow's copies come first.
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",),
}

# SHA-256 of the published .gz files. These are the digests that many independent projects
# pin (torchvision, TensorFlow Datasets, Chainer, ...); they match the MD5 sums that the
# datasets' authors publish. They could not be recomputed here without network access;
# all eight were compared, digit for digit, with the table of a public dataset-loading
# module (torchvision's prototype datasets) found through a code search, and agree.
# Debian's dataset-fashion-mnist recompresses the files (its .gz digests differ), so local
# folders are never checked against this table, only downloads are.
SHA256 = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"
        ),
        "train-labels-idx1-ubyte.gz": (
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"
        ),
        "train-labels-idx1-ubyte.gz": (
            "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"
        ),
    },
}

SYSTEM_DATA_DIR = Path("/usr/share/datasets")


class DatasetNotFoundError(FileNotFoundError):
    """No folder held the dataset and it could not be downloaded.

    Attributes: ``name``, ``split``, ``searched`` (the folders, in order), ``reason`` (why
    the download failed) and ``hint`` (how to get the data, one line).
    """

    def __init__(self, message: str, name: str, split: str, searched: list, reason: str, hint):
        super().__init__(message)
        self.name, self.split, self.searched = name, split, searched
        self.reason, self.hint = reason, hint


def _check_name(name: str, split: str | None = None) -> None:
    if name not in SHA256:
        raise ValueError(f"name must be one of {sorted(SHA256)}, got {name!r}")
    if split is not None and split not in _SPLIT_FILES:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")


def cache_dir(name: str) -> Path:
    """Where downloads go: ``~/.cache/tinygrad_np/<name>``."""
    return Path.home() / ".cache" / "tinygrad_np" / name


def dataset_dirs(name: str, root: str | os.PathLike | None = None) -> list[Path]:
    """The folders ``load_mnist`` searches, in order (existing or not)."""
    dirs: list[Path] = []
    if root is not None:
        dirs += [Path(root).expanduser(), Path(root).expanduser() / name]
    env = os.environ.get("TINYGRAD_NP_DATA")
    if env:
        dirs += [Path(env).expanduser(), Path(env).expanduser() / name]
    dirs += [cache_dir(name), SYSTEM_DATA_DIR / name]
    return dirs


def _find_file(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / stem, folder / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def _find_split(folder: Path, split: str) -> tuple[Path, Path] | None:
    images, labels = (_find_file(folder, stem) for stem in _SPLIT_FILES[split])
    if images is None or labels is None:
        return None
    return images, labels


# ---------------------------------------------------------------------------------------------
# Downloading: stream into a temporary file next to the target, hash while writing, check the
# digest and the IDX structure, then os.replace. Any failure deletes the temporary file, so a
# dropped connection or Ctrl-C never leaves a partial file under the final name.


def _download_file(url: str, dest: Path, sha256: str | None, timeout: float) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        received = 0
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as resp:
            length = resp.headers.get("Content-Length")
            while chunk := resp.read(1 << 16):
                digest.update(chunk)
                out.write(chunk)
                received += len(chunk)
        # http.client's read(n) returns b"" on a dropped connection rather than raising.
        if length is not None and received != int(length):
            raise OSError(f"connection closed after {received} of {length} bytes of {url}")
        if sha256 is not None and digest.hexdigest() != sha256:
            raise ValueError(
                f"SHA-256 mismatch for {url}: expected {sha256}, got {digest.hexdigest()}"
            )
        load_idx(tmp)  # structure check: magic number and size
        os.chmod(tmp, 0o666 & ~_umask())  # (mkstemp's 0600 would keep others out)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _verify_default() -> bool:
    return os.environ.get("TINYGRAD_NP_VERIFY", "1").strip().lower() not in ("0", "no", "false")


def download_mnist(
    name: str = "mnist",
    dest: str | os.PathLike | None = None,
    *,
    mirror: str | None = None,
    verify: bool | None = None,
    sha256: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    quiet: bool = False,
) -> Path:
    """Download the four files of ``name`` into ``dest`` (default: the cache folder).

    Parameters
    ----------
    mirror:
        Base URL to fetch ``<mirror>/<file>.gz`` from; default ``$TINYGRAD_NP_MIRROR``, then
        the dataset's published mirrors in turn.
    verify:
        Check each file's SHA-256 (default: on, unless ``$TINYGRAD_NP_VERIFY=0``). A file whose
        digest is unknown is refused while verification is on.
    sha256:
        Digests by file name (``"train-images-idx3-ubyte.gz"``) replacing the built-in table,
        for a private mirror.

    Files already present are kept. Each file is written atomically. Raises ``OSError`` (for
    the network) or ``ValueError`` (for a digest or format mismatch) naming every URL tried.
    """
    _check_name(name)
    dest = cache_dir(name) if dest is None else Path(dest)
    if mirror is None:
        mirror = os.environ.get("TINYGRAD_NP_MIRROR") or None
    mirrors = (mirror,) if mirror else MIRRORS[name]
    table = SHA256[name] if sha256 is None else dict(sha256)
    verify = _verify_default() if verify is None else verify
    for stem in (*_SPLIT_FILES["train"], *_SPLIT_FILES["test"]):
        if _find_file(dest, stem) is not None:
            continue
        fname = f"{stem}.gz"
        expected = table.get(fname) if verify else None
        if verify and expected is None:
            raise ValueError(
                f"no SHA-256 known for {fname}; pass sha256=... or set TINYGRAD_NP_VERIFY=0"
            )
        failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + fname
            if not quiet:
                print(f"downloading {url}", file=sys.stderr)
            try:
                _download_file(url, dest / fname, expected, timeout)
                break
            except (OSError, ValueError, http.client.HTTPException) as e:
                # (HTTPException: a dropped chunked response, a garbled status line)
                if isinstance(e, urllib.error.HTTPError):
                    e.close()  # (it holds the response and its socket until collected)
                failures.append((url, e))
        else:
            # ValueError where some mirror served a file with the wrong digest or format
            error = ValueError if any(isinstance(e, ValueError) for _, e in failures) else OSError
            lines = [f"{url}: {str(e) or type(e).__name__}" for url, e in failures]
            raise error("could not download " + fname + ":\n  " + "\n  ".join(lines))
    return dest


# ---------------------------------------------------------------------------------------------


def load_mnist(
    name: str = "mnist",
    split: str = "train",
    root: str | os.PathLike | None = None,
    *,
    download: bool = True,
    mirror: str | None = None,
    verify: bool | None = None,
    sha256: Mapping[str, str] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """One split of MNIST or Fashion-MNIST.

    Looks, in order, in ``root`` (and ``root/<name>``), ``$TINYGRAD_NP_DATA`` (and its
    ``<name>`` subfolder), ``~/.cache/tinygrad_np/<name>`` and ``/usr/share/datasets/<name>``
    (where Debian's ``dataset-fashion-mnist`` installs Fashion-MNIST) for the split's two
    standard files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``,
    ``t10k-images-idx3-ubyte``, ``t10k-labels-idx1-ubyte``, each optionally ``.gz``). Otherwise,
    with ``download=True``, fetches the four files into the cache (see ``download_mnist`` for
    ``mirror``, ``verify`` and ``sha256``).

    Returns
    -------
    (images, labels)
        ``uint8`` (N, 28, 28) and ``int64`` (N,).

    Raises
    ------
    DatasetNotFoundError
        (a ``FileNotFoundError``) listing every place it looked, why the download failed, and
        how to get the data.
    ValueError
        For a corrupt file, or images and labels of different lengths.
    """
    _check_name(name, split)
    searched = dataset_dirs(name, root)
    for i, folder in enumerate(searched):
        found = _find_split(folder, split)
        if found is not None:
            if root is not None and i >= 2:  # (a mistyped or half-filled --data-dir)
                warnings.warn(
                    f"load_mnist: the {split} files of {name} are not in {searched[0]} (nor "
                    f"its {name} subfolder); using {folder} instead",
                    stacklevel=2,
                )
            return _load_pair(*found)
    download_error = "downloading was not tried (download=False)"
    if download:
        try:
            folder = download_mnist(name, mirror=mirror, verify=verify, sha256=sha256)
            found = _find_split(folder, split)
            assert found is not None
            return _load_pair(*found)
        except (OSError, ValueError) as e:
            download_error = f"downloading failed: {e}"
    stems = " and ".join(_SPLIT_FILES[split])
    searched = list(dict.fromkeys(searched))
    looked = "\n".join(f"  {d}" for d in searched)
    ways = []
    if name == "fashion-mnist":
        ways.append(
            "sudo apt install dataset-fashion-mnist (Debian/Ubuntu; it installs the files "
            "under /usr/share/datasets/fashion-mnist)"
        )
    ways += [
        "put the four files in a folder and pass --data-dir DIR (root=DIR) "
        "or set TINYGRAD_NP_DATA=DIR",
        f"connect to the internet (the files go to {cache_dir(name)}) "
        "or set TINYGRAD_NP_MIRROR to a mirror's base URL",
    ]
    message = (
        f"{name} ({split} split) not found: looked for {stems} (optionally .gz) in\n"
        f"{looked}\nand {download_error}.\nTo get the data, do one of:\n"
        + "\n".join(f"  - {w}" for w in ways)
    )
    raise DatasetNotFoundError(message, name, split, searched, download_error, "; or ".join(ways))


def _load_pair(images_path: Path, labels_path: Path) -> tuple[np.ndarray, np.ndarray]:
    images = load_idx(images_path)
    labels = load_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or images.dtype != np.uint8:
        raise ValueError(
            f"{images_path}: expected uint8 images (N, 28, 28), got {images.dtype} "
            f"{images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images):
        raise ValueError(
            f"{labels_path}: expected {len(images)} labels for {images_path.name}, "
            f"got shape {labels.shape}"
        )
    if labels.dtype.kind not in "iu":
        raise ValueError(f"{labels_path}: expected integer class labels, got {labels.dtype}")
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise ValueError(
            f"{labels_path}: labels must be classes 0-9, found {labels.min()} to {labels.max()}"
        )
    return images, labels.astype(np.int64)


# ---------------------------------------------------------------------------------------------


def _loader_array(a) -> np.ndarray:
    """A DataLoader input as an array: Tensors and arrays as they are, lists as Tensor(list)
    makes them (Python floats float32; the checks that follow name what else is wrong)."""
    if isinstance(a, Tensor):
        return a.data
    if isinstance(a, (list, tuple)):
        try:
            return Tensor(a).data
        except (TypeError, ValueError):
            pass
    return np.asarray(a)


class DataLoader:
    """Mini-batches of Tensors (no grad) cut from arrays that share their first dimension.

    Parameters
    ----------
    *arrays:
        NumPy arrays (or Tensors) with the same length N.
    batch_size:
        Rows per batch.
    shuffle:
        A new permutation every epoch; epoch ``e`` uses ``default_rng((seed, e))``, so a run
        with the same ``seed`` sees the same batches, and ``set_epoch`` resumes mid-run.
    drop_last:
        Leave out the last batch when it is smaller than ``batch_size``.

    ``len(loader)`` is the number of batches per epoch.

    >>> import numpy as np
    >>> x, y = np.arange(10.0).reshape(5, 2), np.arange(5)
    >>> [len(yb) for xb, yb in DataLoader(x, y, batch_size=2, drop_last=True)]
    [2, 2]
    """

    def __init__(
        self,
        *arrays,
        batch_size: int,
        shuffle: bool = False,
        drop_last: bool = False,
        seed: int | None = None,
    ):
        if not arrays:
            raise ValueError("DataLoader needs at least one array")
        self.arrays = [_loader_array(a) for a in arrays]
        for i, a in enumerate(self.arrays):
            if a.ndim == 0 or a.dtype.kind not in "biuf":
                raise TypeError(
                    f"DataLoader: arrays[{i}] must be an array or Tensor of numbers with a "
                    f"batch axis, got {type(arrays[i]).__name__} {a.dtype} of shape {a.shape}"
                )
        lengths = [len(a) for a in self.arrays]
        if len(set(lengths)) != 1:
            raise ValueError(f"DataLoader: arrays have different lengths {lengths}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"batch_size must be an int, got {batch_size!r}")
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.batch_size = int(batch_size)
        self.shuffle = shuffle
        self.drop_last = drop_last
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer))):
            raise TypeError(f"DataLoader: seed must be an int or None, got {seed!r}")
        # (any int: taken modulo 2**64, so that a negative seed works as in manual_seed)
        if seed is None:
            self.seed = int(np.random.SeedSequence().entropy % 2**63)
        else:
            self.seed = int(seed) % 2**64
        self.epoch = 0

    def __len__(self) -> int:
        n = len(self.arrays[0])
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration use epoch ``epoch``'s permutation."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)) or epoch < 0:
            raise ValueError(f"DataLoader.set_epoch: epoch must be an int >= 0, got {epoch!r}")
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[tuple[Tensor, ...]]:
        n = len(self.arrays[0])
        if self.shuffle:
            order = np.random.default_rng((self.seed, self.epoch)).permutation(n)
        else:
            order = np.arange(n)
        self.epoch += 1
        for b in range(len(self)):
            idx = order[b * self.batch_size : (b + 1) * self.batch_size]
            yield tuple(Tensor(a[idx]) for a in self.arrays)
