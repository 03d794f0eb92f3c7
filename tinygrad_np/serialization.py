"""save / load: state dicts and checkpoints as ``.npz`` files, without pickle.

The file is an ordinary NumPy ``.npz`` archive. Every array is one entry,
named by its path in the saved object (``"model/0.weight"``), so
``np.load(path)`` shows it. One more entry, ``__tinygrad_np__``, holds a JSON
description of the structure (dicts, lists, tuples, numbers, strings, None,
and which entry each array is), so nested checkpoints such as
``{"model": model.state_dict(), "optim": opt.state_dict(), "epoch": 3}`` come
back as they went in. Loading never unpickles (``allow_pickle=False``).
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from tinygrad_np.tensor import Tensor

_META = "__tinygrad_np__"
_FORMAT = "tinygrad_np.save"
_VERSION = 1


class _Writer:
    """Turn an object into a JSON tree plus a dict of named arrays."""

    def __init__(self) -> None:
        self.arrays: dict[str, np.ndarray] = {}

    _NAME_CHARS = 1000  # of a key's path, in its member's name (4 bytes a char at most)

    def _name(self, path: list[str]) -> str:
        # A zip member's name ends at a NUL byte, and NumPy's NpzFile finds "x.npy" as the
        # member of "x" (whose file is x.npy): such names get an escape or a suffix, so
        # that np.load shows every entry under a name of its own. (The JSON tree says
        # which entry each array is; the name is only for people reading the archive.)
        base = ("/".join(path) or "value").replace("\x00", "\\x00")
        base = base[: self._NAME_CHARS]  # (a zip member's name holds at most 65535 bytes)
        name, i = base, 1
        while name in self.arrays or name == _META or name.endswith(".npy"):
            name, i = f"{base}#{i}", i + 1
        return name

    def _array(self, arr: np.ndarray, path: list[str]) -> str:
        if arr.dtype.hasobject:
            raise TypeError(f"save: '{'/'.join(path)}' is an object array, which needs pickle")
        name = self._name(path)
        self.arrays[name] = arr
        return name

    def encode(self, obj: Any, path: list[str]) -> dict[str, Any]:
        if isinstance(obj, Tensor):
            key = self._array(np.asarray(obj.data), path)
            return {"t": "tensor", "key": key, "requires_grad": bool(obj.requires_grad)}
        if isinstance(obj, np.ndarray):
            return {"t": "array", "key": self._array(obj, path)}
        if isinstance(obj, np.generic):
            return {"t": "scalar", "key": self._array(np.asarray(obj), path)}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return {"t": "value", "v": obj}
        if isinstance(obj, dict):
            items = []
            for k, v in obj.items():
                if not isinstance(k, (str, int)) or isinstance(k, bool):
                    raise TypeError(
                        f"save: dict keys must be str or int, got {k!r} at '{'/'.join(path)}'"
                    )
                items.append([k, self.encode(v, path + [str(k)])])
            return {"t": "dict", "items": items}
        if isinstance(obj, (list, tuple)):
            kind = "list" if isinstance(obj, list) else "tuple"
            return {
                "t": kind,
                "items": [self.encode(v, path + [str(i)]) for i, v in enumerate(obj)],
            }
        raise TypeError(
            f"save: cannot store {type(obj).__name__} at '{'/'.join(path) or '<root>'}'; "
            "supported: dicts, lists, tuples, NumPy arrays, Tensors, numbers, strings, None"
        )


def save(obj: Any, path: str | os.PathLike) -> None:
    """Save a state dict (or a nested dict/list of them, arrays, Tensors, numbers, strings)
    to ``path`` as a ``.npz`` archive, without pickle. The file is written exactly at
    ``path`` (no suffix added), atomically: an interrupted save leaves no partial file.

    >>> import tempfile, os, numpy as np, tinygrad_np as tg
    >>> p = os.path.join(tempfile.mkdtemp(), "ckpt.npz")
    >>> tg.save({"model": {"w": np.ones(2)}, "epoch": 3}, p)
    >>> tg.load(p)["epoch"]
    3
    """
    writer = _Writer()
    tree = writer.encode(obj, [])
    meta = json.dumps({"format": _FORMAT, "version": _VERSION, "tree": tree})
    arrays = dict(writer.arrays)
    arrays[_META] = np.frombuffer(meta.encode("utf-8"), dtype=np.uint8)
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise FileNotFoundError(f"save: the folder of {path} does not exist")
    if path.is_dir():
        raise IsADirectoryError(f"save: {path} is a folder")
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=folder)
    try:
        # (mkstemp makes the file 0600; the saved file gets the usual mode, the umask's)
        os.chmod(tmp, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    """The process's umask (read from /proc where it can be, else set and put back)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class _LoadError(ValueError):
    """A file that ``load`` cannot read, with the reason already in the message."""


def _not_ours(path: Any, why: str) -> ValueError:
    return _LoadError(f"{path} is not a file written by tinygrad_np.save: {why}")


def load(path: str | os.PathLike) -> Any:
    """Load what ``save`` wrote: state dicts come back as dicts of NumPy arrays, Tensors
    as Tensors, numbers, strings, lists and tuples as themselves. A file that was not
    written by ``save`` raises ``ValueError``; nothing is unpickled."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    if not zipfile.is_zipfile(path):
        raise _not_ours(path, "it is not an .npz (zip) archive")
    try:
        with zipfile.ZipFile(path) as zf:
            meta = _read_meta(zf, path)
            arrays = {k: _read_array(zf, k) for k in _keys(meta["tree"])}
    except (_LoadError, MemoryError):  # (with the sizes checked: a real shortage)
        raise
    except Exception as e:  # (EOFError, NotImplementedError, tokenize errors, ... from a
        # damaged archive or .npy header: all mean the same thing to the caller)
        raise _not_ours(path, f"{type(e).__name__}: {e}") from e
    try:
        return _decode(meta["tree"], arrays)
    except (KeyError, TypeError) as e:
        raise _not_ours(path, f"its structure is damaged ({type(e).__name__}: {e})") from e


def _read_meta(zf: zipfile.ZipFile, path: Path) -> dict[str, Any]:
    if _META + ".npy" not in zf.namelist():
        raise _not_ours(path, f"the archive has no '{_META}' entry")
    raw = _read_array(zf, _META)
    if raw.dtype != np.uint8 or raw.ndim != 1:
        raise _not_ours(path, f"its '{_META}' entry is not a byte array")
    meta = json.loads(raw.tobytes().decode("utf-8"))
    if not isinstance(meta, dict) or meta.get("format") != _FORMAT:
        raise _not_ours(path, "its metadata entry has the wrong format")
    if meta.get("version") != _VERSION:
        raise _LoadError(
            f"{path} was written by a newer tinygrad_np.save (format version "
            f"{meta.get('version')}); this version reads {_VERSION}"
        )
    return meta


def _keys(node: Any) -> list[str]:
    """The entries the tree refers to."""
    if not isinstance(node, dict):
        raise TypeError(f"a node of the tree is a {type(node).__name__}")
    if "key" in node:
        return [node["key"]]
    items = node.get("items", ())
    if node.get("t") == "dict":
        items = [value for _, value in items]
    return [k for item in items for k in _keys(item)]


def _read_array(zf: zipfile.ZipFile, key: str) -> np.ndarray:
    """Entry ``key`` of the archive, found by its exact member name (``key + ".npy"``, as
    np.savez wrote it; NpzFile's lookup would also take "x.npy" for "x"). Its header's
    size is checked against the member's before anything is allocated, so a damaged
    header cannot ask for more memory than the file holds."""
    member = zf.getinfo(key + ".npy")
    with zf.open(member) as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        need = math.prod(shape) * dtype.itemsize
        if need > member.file_size - f.tell():
            raise ValueError(
                f"entry '{key}' claims {need} bytes of data, its member holds "
                f"{member.file_size - f.tell()}"
            )
    with zf.open(member) as f:
        return np.lib.format.read_array(f, allow_pickle=False)


def _decode(node: dict[str, Any], arrays: dict[str, np.ndarray]) -> Any:
    t = node["t"]
    if t == "value":
        return node["v"]
    if t == "array":
        return arrays[node["key"]]
    if t == "scalar":
        return arrays[node["key"]][()]
    if t == "tensor":
        return Tensor(arrays[node["key"]], requires_grad=node["requires_grad"])
    if t == "dict":
        return {k: _decode(v, arrays) for k, v in node["items"]}
    if t == "list":
        return [_decode(v, arrays) for v in node["items"]]
    if t == "tuple":
        return tuple(_decode(v, arrays) for v in node["items"])
    raise KeyError(f"unknown node type {t!r}")
