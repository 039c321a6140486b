"""A researcher's own arrays as a sweep input (``--input file:PATH``, docs/design.md section 6).

The file is a NumPy ``.npz`` archive (``numpy.savez``) with

* ``qk``: shared query/key vectors, (L, d) or (B, L, d), float32 or float64; or instead
  ``q`` and ``k``, separate queries and keys of that shape (docs/design.md section 2c: a
  sweep of the file runs ``qk="separate"``);
* ``v``: values, (L, dv) or (B, L, dv), same B and L, same dtype as qk;
* optionally ``layer`` and ``head`` (B,) integers naming the model layer and head of each
  sequence (``lshbench capture`` of a BERT or GPT-2 model writes them; a sweep then runs
  one cell per sequence) and ``input_ids`` (L,), the tokens the model ran on;
* optionally an LSH configuration, one 0-d array per field (:data:`CONFIG_FIELDS`):
  ``n_hashes``, ``n_buckets`` (an int, or a 1-d array of ints when factorized),
  ``chunk_len``, ``chunks_before``, ``chunks_after`` (ints) and ``causal`` (bool), the
  configuration the arrays come from (``lshbench capture`` writes the model's).

and optionally provenance strings, 0-d string arrays ``meta_<key>`` (``capture`` records the
model directory, text and layer). Other arrays are ignored. Every problem is a one-line
ConfigError naming the file and the rule, raised when the file is loaded, before anything
runs.
"""

from __future__ import annotations

import hashlib
import os
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from lshbench.core.config import ConfigError, LSHConfig, fail
from lshbench.util import fmt_bytes

__all__ = [
    "CONFIG_FIELDS",
    "FILE_PREFIX",
    "InputFile",
    "crop",
    "load_input_file",
    "save_input_file",
    "select_head",
]

#: ``--input file:PATH``
FILE_PREFIX = "file:"
#: the LSH configuration fields a file may store (names of :class:`lshbench.LSHConfig`)
CONFIG_FIELDS = ("n_hashes", "n_buckets", "chunk_len", "chunks_before", "chunks_after", "causal")
_META = "meta_"
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


@dataclass(frozen=True)
class InputFile:
    """Arrays and facts of one input file.

    qk: (B, L, d) and v: (B, L, dv), C-contiguous, float32 or float64 (both the same);
    qk holds the queries when the file has separate keys. k: (B, L, d) the separate keys,
    or None (shared QK). layer, head: int64 (B,) naming each sequence's model layer and
    head, or None. input_ids: int64 (L,) the model's tokens, or None.
    config: the stored LSH configuration as ``{field: value}`` (plain Python values: ints,
    a tuple of ints for a factorized n_buckets, a bool), only the fields present; None when
    the file stores none. sha256: hex digest of the file's bytes. name: the file's name
    (no folder), for ``input = file:<name>`` in the results. path: as given. meta: the
    file's ``meta_<key>`` strings as ``{key: text}``.
    """

    qk: np.ndarray
    v: np.ndarray
    config: dict[str, Any] | None
    sha256: str
    name: str
    path: str
    meta: dict[str, str] = field(default_factory=dict)
    k: np.ndarray | None = None
    layer: np.ndarray | None = None
    head: np.ndarray | None = None
    input_ids: np.ndarray | None = None

    @property
    def qk_mode(self) -> str:
        """``"separate"`` when the file has separate keys ``k``, else ``"shared"``."""
        return "shared" if self.k is None else "separate"

    @property
    def seqlen(self) -> int:
        """L, the positions per sequence."""
        return int(self.qk.shape[1])

    @property
    def input_label(self) -> str:
        """``file:<name>``, the ``input`` column of the file's result rows."""
        return f"{FILE_PREFIX}{self.name}"


def _bad(path: str | os.PathLike, rule: str) -> ConfigError:
    """The one-line error for a bad input file."""
    try:
        fail("input", f"{FILE_PREFIX}{os.fspath(path)}", rule)
    except ConfigError as exc:
        return exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _read_arrays(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Every array of the archive (no pickles), or ConfigError."""
    if not Path(path).is_file():
        raise _bad(path, "no such file")
    not_npz = "not an .npz archive (write it with numpy.savez)"
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile):
        raise _bad(path, not_npz) from None
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise _bad(path, not_npz)
    with archive:
        if archive.zip is not None:  # None only once the archive is closed
            _check_declared_sizes(path, archive.zip)
        try:
            return {key: archive[key] for key in archive.files}
        except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
            reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise _bad(path, f"{not_npz}: damaged ({reason})") from None


def _declared_header(member: Any) -> tuple[tuple[int, ...], np.dtype, int] | None:
    """(shape, dtype, header bytes) an ``.npy`` member declares, read from its header only;
    None for a header this check does not parse (format 3.0: numpy reads it itself)."""
    from numpy.lib import format as npy

    version = npy.read_magic(member)
    if version == (1, 0):
        shape, _, dtype = npy.read_array_header_1_0(member)
    elif version == (2, 0):
        shape, _, dtype = npy.read_array_header_2_0(member)
    else:
        return None
    return tuple(int(n) for n in shape), np.dtype(dtype), member.tell()


def _check_declared_sizes(path: str | os.PathLike, archive: zipfile.ZipFile) -> None:
    """Before any array is read: ConfigError when the arrays' headers declare more bytes
    than this machine's physical memory (reading would fail or swap), when a header is
    unreadable, or when a member holds fewer bytes than its header declares (truncated)."""
    from lshbench.measurement.machine import physical_memory

    total = 0
    budget = physical_memory()
    for info in archive.infolist():
        if not info.filename.endswith(".npy"):
            continue
        name = info.filename[: -len(".npy")]
        try:
            with archive.open(info) as member:
                declared = _declared_header(member)
        except (OSError, ValueError, EOFError, zipfile.BadZipFile, SyntaxError):
            raise _bad(path, f"array {name!r} has a damaged .npy header") from None
        if declared is None:
            continue
        shape, dtype, header = declared
        if dtype.hasobject:
            raise _bad(path, f"holds object arrays ({name!r}); qk and v must be float32 or float64")
        size = int(np.prod(shape, dtype=object)) * dtype.itemsize  # exact, no overflow
        total += size
        if total > budget:
            raise _bad(
                path,
                f"array {name!r} declares shape {shape} of {dtype} ({fmt_bytes(size)}): the "
                f"arrays need more than this machine's {fmt_bytes(budget)} of memory",
            )
        if info.file_size < header + size:
            raise _bad(
                path,
                f"array {name!r} is truncated: its header declares shape {shape} of {dtype} "
                f"({size} bytes), the archive holds {max(0, info.file_size - header)}",
            )


def _check_arrays(path: str | os.PathLike, qk: np.ndarray, v: np.ndarray) -> None:
    """ConfigError unless qk and v are finite float arrays of matching (B, L) shapes."""
    for name, x in (("qk", qk), ("v", v)):
        if x.dtype not in _FLOATS:
            raise _bad(path, f"array {name} is {x.dtype}; it must be float32 or float64")
    if qk.dtype != v.dtype:
        raise _bad(path, f"qk is {qk.dtype} but v is {v.dtype}; they must be the same float")
    if qk.ndim not in (2, 3) or v.ndim != qk.ndim:
        raise _bad(path, f"qk {qk.shape} and v {v.shape} must be (L, d) and (L, dv) or (B, L, ...)")
    if qk.shape[:-1] != v.shape[:-1] or 0 in qk.shape or 0 in v.shape:
        raise _bad(path, f"qk {qk.shape} and v {v.shape} must share B and L, all sizes >= 1")
    for name, x in (("qk", qk), ("v", v)):
        if not np.isfinite(x).all():
            raise _bad(path, f"array {name} holds NaN or Inf")


def _stored_config(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> dict | None:
    """The stored configuration fields as plain values, checked by LSHConfig; None if none."""
    found = [key for key in CONFIG_FIELDS if key in arrays]
    if not found:
        return None
    config: dict[str, Any] = {}
    for key in found:
        x = arrays[key]
        if key == "causal" and x.ndim == 0 and x.dtype.kind in "biu" and int(x) in (0, 1):
            config[key] = bool(x)
        elif key == "n_buckets" and x.ndim == 1 and x.dtype.kind in "iu":
            config[key] = tuple(int(f) for f in x)
        elif key != "causal" and x.ndim == 0 and x.dtype.kind in "iu":
            config[key] = int(x)
        else:
            rule = "a bool" if key == "causal" else "an integer (n_buckets: or 1-d integers)"
            raise _bad(path, f"stored {key} {x!r} must be {rule}")
    try:
        LSHConfig(**config)
    except ConfigError as exc:
        raise _bad(path, f"stored configuration: {exc}") from None
    return config


def load_input_file(path: str | os.PathLike) -> InputFile:
    """Load and check an input file (format: the module docstring).

    Returns an :class:`InputFile` with a batch axis on qk and v. Raises ConfigError, one line
    naming the file and the rule, for: a missing file, a file that is not an .npz, a missing
    qk or v, shapes that do not match, NaN or Inf, a non-float dtype, qk and v of different
    float dtypes, a stored configuration that is not a valid LSHConfig.
    """
    arrays = _read_arrays(path)
    if "qk" in arrays and ("q" in arrays or "k" in arrays):
        raise _bad(path, "has qk and q/k; store either shared qk or separate q and k")
    separate = "q" in arrays or "k" in arrays
    names = ("q", "k", "v") if separate else ("qk", "v")
    for name in names:
        if name not in arrays:
            raise _bad(
                path, f"has no array {name!r} (needs qk (L, d) or (B, L, d), or q and k, and v)"
            )
    qk, v = arrays["q" if separate else "qk"], arrays["v"]
    _check_arrays(path, qk, v)
    k = None
    if separate:
        k = arrays["k"]
        _check_arrays(path, k, v)
        if k.shape != qk.shape:
            raise _bad(path, f"k {k.shape} must have the shape of q {qk.shape}")
        if qk.ndim == 2:
            k = k[None]  # (L, d) -> (1, L, d)
    if qk.ndim == 2:
        qk, v = qk[None], v[None]  # (L, d) -> (1, L, d)
    layer, head = _row_names(path, arrays, qk.shape[0])
    ids = arrays.get("input_ids")
    if ids is not None and (ids.ndim != 1 or ids.dtype.kind not in "iu"):
        raise _bad(path, f"input_ids {ids.shape} {ids.dtype} must be 1-d integers")
    return InputFile(
        qk=np.ascontiguousarray(qk),
        v=np.ascontiguousarray(v),
        k=None if k is None else np.ascontiguousarray(k),
        layer=layer,
        head=head,
        input_ids=None if ids is None else ids.astype(np.int64),
        config=_stored_config(path, arrays),
        sha256=_sha256(Path(path)),
        name=Path(path).name,
        path=os.fspath(path),
        meta={
            key[len(_META) :]: str(x)
            for key, x in arrays.items()
            if key.startswith(_META) and x.ndim == 0 and x.dtype.kind == "U"
        },
    )


def _row_names(
    path: str | os.PathLike, arrays: dict[str, np.ndarray], batch: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The file's ``layer`` and ``head`` arrays (int64 (B,)), both or neither, or
    ConfigError."""
    if ("layer" in arrays) != ("head" in arrays):
        raise _bad(path, "has only one of layer and head; store both (B,) or neither")
    if "layer" not in arrays:
        return None, None
    out = []
    for name in ("layer", "head"):
        x = arrays[name]
        if x.shape != (batch,) or x.dtype.kind not in "iu":
            raise _bad(path, f"{name} {x.shape} {x.dtype} must be ({batch},) integers")
        out.append(x.astype(np.int64))
    if len(set(zip(out[0].tolist(), out[1].tolist(), strict=True))) != batch:
        raise _bad(path, "repeats a (layer, head) pair; each sequence must name its own")
    return out[0], out[1]


def select_head(inputs: InputFile, layer: int, head: int) -> InputFile:
    """The one sequence of ``inputs`` that is model layer ``layer``, head ``head``:
    qk, k and v (1, L, ...). ConfigError when the file has no such sequence."""
    if inputs.layer is None or inputs.head is None:
        fail("input", inputs.input_label, "names no layers and heads (no layer/head arrays)")
    found = np.flatnonzero((inputs.layer == layer) & (inputs.head == head))
    if found.size != 1:
        fail("head", f"layer {layer} head {head}", f"not in {inputs.input_label}")
    row = slice(int(found[0]), int(found[0]) + 1)
    k = None if inputs.k is None else np.ascontiguousarray(inputs.k[row])
    return replace(
        inputs,
        qk=np.ascontiguousarray(inputs.qk[row]),  # (1, L, d)
        v=np.ascontiguousarray(inputs.v[row]),  # (1, L, dv)
        k=k,
        layer=inputs.layer[row],
        head=inputs.head[row],
    )


def crop(inputs: InputFile, seqlen: int) -> InputFile:
    """The first ``seqlen`` positions of every sequence: qk (B, seqlen, d), v (B, seqlen, dv).

    Same sha256, name and configuration. ConfigError when seqlen is not an integer in
    ``[1, L]``, L being the file's length.
    """
    ok = isinstance(seqlen, (int, np.integer)) and not isinstance(seqlen, bool)
    if not ok or not 1 <= seqlen <= inputs.seqlen:
        fail(
            "seqlen",
            seqlen,
            f"must be an integer in [1, {inputs.seqlen}], the length of {inputs.input_label}",
        )
    qk = np.ascontiguousarray(inputs.qk[:, :seqlen])  # (B, seqlen, d)
    v = np.ascontiguousarray(inputs.v[:, :seqlen])  # (B, seqlen, dv)
    k = None if inputs.k is None else np.ascontiguousarray(inputs.k[:, :seqlen])
    ids = None if inputs.input_ids is None else inputs.input_ids[:seqlen]
    return replace(inputs, qk=qk, v=v, k=k, input_ids=ids)


def save_input_file(
    path: str | os.PathLike,
    qk: np.ndarray,
    v: np.ndarray,
    config: dict[str, Any] | LSHConfig | None = None,
    meta: dict[str, str] | None = None,
    *,
    k: np.ndarray | None = None,
    layer: np.ndarray | None = None,
    head: np.ndarray | None = None,
    input_ids: np.ndarray | None = None,
) -> None:
    """Write qk, v and optionally an LSH configuration in the format above.

    qk: (L, d) or (B, L, d); v: matching (L, dv) or (B, L, dv); config: an LSHConfig or a
    dict of some of :data:`CONFIG_FIELDS`; meta: provenance strings. k: separate keys shaped
    like qk (then written as ``q`` and ``k``); layer, head: (B,) integers; input_ids: (L,)
    integers. The arrays are checked as on loading (ConfigError naming the path); written
    uncompressed with ``numpy.savez``.
    """
    qk, v = np.asarray(qk), np.asarray(v)
    _check_arrays(path, qk, v)
    arrays: dict[str, np.ndarray] = {"qk": qk}
    if k is not None:
        k = np.asarray(k)
        _check_arrays(path, k, v)
        arrays = {"q": qk, "k": k}
    for name, x in (("layer", layer), ("head", head), ("input_ids", input_ids)):
        if x is not None:
            arrays[name] = np.asarray(x, dtype=np.int64)
    if isinstance(config, LSHConfig):
        config = {key: getattr(config, key) for key in CONFIG_FIELDS}
    fields: dict[str, Any] = {}  # name -> array (Any: savez also takes keyword options)
    for key, value in (config or {}).items():
        if key not in CONFIG_FIELDS:
            raise _bad(path, f"configuration field {key!r} is not one of {CONFIG_FIELDS}")
        fields[key] = np.asarray(value, dtype=bool if key == "causal" else np.int64)
    for key, text in (meta or {}).items():
        fields[f"{_META}{key}"] = np.asarray(str(text))
    from lshbench.results.files import atomic_write

    payload: dict[str, Any] = {"v": v, **arrays, **fields}

    def write(tmp: str) -> None:
        with open(tmp, "wb") as fh:  # a file object: savez adds no ".npz" to the name
            np.savez(fh, **payload)

    atomic_write(Path(path), write)  # a temporary file renamed: never a truncated .npz
