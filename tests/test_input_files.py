"""``file:PATH`` inputs: the .npz format, its stored configuration, cropping, and every bad
file as one ConfigError line naming the file and the rule."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest

import lshbench
from lshbench import ConfigError
from lshbench.measurement.input_files import (
    CONFIG_FIELDS,
    crop,
    load_input_file,
    save_input_file,
)
from lshbench.measurement.inputs import make_inputs


def arrays(dtype: type = np.float32, batch: int = 2, L: int = 128) -> tuple:
    qk, v = make_inputs("clustered", batch, L, 16, 8, seed=0, dtype=dtype)
    return qk, v


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_round_trip_with_batch_axis(tmp_path: Path, dtype: type) -> None:
    qk, v = arrays(dtype)
    path = tmp_path / "mine.npz"
    np.savez(path, qk=qk, v=v)  # a user's own file, no configuration
    f = load_input_file(path)
    np.testing.assert_array_equal(f.qk, qk)
    np.testing.assert_array_equal(f.v, v)
    assert f.qk.dtype == dtype and f.v.dtype == dtype
    assert f.config is None and f.meta == {}
    assert f.name == "mine.npz" and f.input_label == "file:mine.npz" and f.seqlen == 128
    assert f.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_two_dimensional_arrays_get_a_batch_axis(tmp_path: Path) -> None:
    qk, v = arrays(batch=1)
    np.savez(tmp_path / "a.npz", qk=qk[0], v=v[0], other=np.arange(3))  # other: ignored
    f = load_input_file(tmp_path / "a.npz")
    assert f.qk.shape == (1, 128, 16) and f.v.shape == (1, 128, 8)
    np.testing.assert_array_equal(f.qk, qk)


def test_fortran_order_arrays_load_contiguous(tmp_path: Path) -> None:
    qk, v = arrays(batch=1)
    np.savez(tmp_path / "f.npz", qk=np.asfortranarray(qk[0]), v=np.asfortranarray(v[0]))
    f = load_input_file(tmp_path / "f.npz")
    assert f.qk.flags.c_contiguous and f.v.flags.c_contiguous
    np.testing.assert_array_equal(f.qk[0], qk[0])


@pytest.mark.parametrize(
    "config",
    [
        lshbench.LSHConfig(n_hashes=2, n_buckets=8, chunk_len=16, causal=True, chunks_after=1),
        lshbench.LSHConfig(n_hashes=4, n_buckets=(4, 2), chunk_len=32, chunks_before=0),
    ],
)
def test_stored_configuration_round_trips(tmp_path: Path, config: lshbench.LSHConfig) -> None:
    qk, v = arrays()
    save_input_file(tmp_path / "c.npz", qk, v, config, meta={"model_dir": "somewhere"})
    f = load_input_file(tmp_path / "c.npz")
    assert set(f.config) == set(CONFIG_FIELDS)
    assert lshbench.LSHConfig(**f.config) == config
    assert isinstance(f.config["causal"], bool) and isinstance(f.config["n_hashes"], int)
    assert f.meta == {"model_dir": "somewhere"}


def test_partial_configuration_keeps_only_what_is_stored(tmp_path: Path) -> None:
    qk, v = arrays()
    np.savez(tmp_path / "p.npz", qk=qk, v=v, n_hashes=np.int32(8), causal=np.array(1))
    assert load_input_file(tmp_path / "p.npz").config == {"n_hashes": 8, "causal": True}


def test_crop_takes_the_first_positions(tmp_path: Path) -> None:
    qk, v = arrays()
    save_input_file(tmp_path / "x.npz", qk, v, {"chunk_len": 16})
    f = load_input_file(tmp_path / "x.npz")
    c = crop(f, 64)
    np.testing.assert_array_equal(c.qk, qk[:, :64])
    np.testing.assert_array_equal(c.v, v[:, :64])
    assert c.qk.flags.c_contiguous and c.seqlen == 64
    assert (c.sha256, c.name, c.config) == (f.sha256, f.name, f.config)
    assert crop(f, 128).seqlen == 128
    for bad in (129, 0, 2.0):
        with pytest.raises(ConfigError, match=rf"seqlen={bad}: .*\[1, 128\].*file:x.npz"):
            crop(f, bad)


@pytest.mark.parametrize("backend", ["numpy", "dense"])
def test_file_arrays_give_the_same_outputs_as_the_arrays(tmp_path: Path, backend: str) -> None:
    qk, v = arrays(batch=1)
    cfg = lshbench.LSHConfig(n_hashes=2, n_buckets=8, chunk_len=16)
    rot = lshbench.random_rotations(16, cfg, seed=0)
    np.savez(tmp_path / "same.npz", qk=qk[0], v=v[0])
    f = load_input_file(tmp_path / "same.npz")
    attend = lshbench.get_backend(backend).attend
    direct = attend(qk[0], v[0], cfg, rot)  # (L, dv)
    from_file = attend(f.qk, f.v, cfg, rot)  # (1, L, dv)
    np.testing.assert_array_equal(from_file[0], direct)
    np.testing.assert_array_equal(
        attend(crop(f, 64).qk, crop(f, 64).v, cfg, rot)[0], attend(qk[0, :64], v[0, :64], cfg, rot)
    )


# ------------------------------------------------------------------------------ bad files


def _write(tmp_path: Path, **arrs: np.ndarray) -> Path:
    path = tmp_path / "bad.npz"
    np.savez(path, **arrs)
    return path


QK, V = arrays(np.float64, batch=1)
QK2, V2 = QK[0], V[0]


def _nan(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[0, 3] = np.nan
    return x


def _inf(x: np.ndarray) -> np.ndarray:
    x = x.copy()
    x[-1, -1] = -np.inf
    return x


BAD = {
    "missing qk": ({"v": V2}, "has no array 'qk'"),
    "missing v": ({"qk": QK2}, "has no array 'v'"),
    "L differs": ({"qk": QK2, "v": V2[:-1]}, "must share B and L"),
    "B differs": ({"qk": np.stack([QK2, QK2]), "v": V}, "must share B and L"),
    "ndim differs": ({"qk": QK, "v": V2}, r"must be \(L, d\)"),
    "one-dimensional": ({"qk": QK2[:, 0], "v": V2[:, 0]}, r"must be \(L, d\)"),
    "empty": ({"qk": QK2[:0], "v": V2[:0]}, "all sizes >= 1"),
    "NaN": ({"qk": _nan(QK2), "v": V2}, "array qk holds NaN or Inf"),
    "Inf": ({"qk": QK2, "v": _inf(V2)}, "array v holds NaN or Inf"),
    "integer": ({"qk": QK2.astype(np.int64), "v": V2}, "qk is int64; it must be float32 or"),
    "float16": ({"qk": QK2, "v": V2.astype(np.float16)}, "v is float16; it must be"),
    "mixed floats": ({"qk": QK2.astype(np.float32), "v": V2}, "qk is float32 but v is float64"),
    "odd buckets": ({"qk": QK2, "v": V2, "n_buckets": np.array(5)}, "stored configuration"),
    "float chunk": ({"qk": QK2, "v": V2, "chunk_len": np.array(1.5)}, "stored chunk_len"),
    "string causal": ({"qk": QK2, "v": V2, "causal": np.array("yes")}, "stored causal"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_file_is_one_line_naming_file_and_rule(tmp_path: Path, case: str) -> None:
    content, rule = BAD[case]
    path = _write(tmp_path, **content)
    with pytest.raises(ConfigError, match=rule) as info:
        load_input_file(path)
    message = str(info.value)
    assert message.startswith(f"input=file:{path}: ") and "\n" not in message


def test_missing_and_not_npz_files(tmp_path: Path) -> None:
    for path, rule in (
        (tmp_path / "nope.npz", "no such file"),
        (tmp_path, "no such file"),  # a folder
        (tmp_path / "text.npz", "not an .npz archive"),
        (tmp_path / "plain.npy", "not an .npz archive"),
        (tmp_path / "cut.npz", "not an .npz archive"),
    ):
        if path.name == "text.npz":
            path.write_text("qk,v\n1,2\n")
        elif path.name == "plain.npy":
            np.save(path, QK2)
        elif path.name == "cut.npz":
            np.savez(path, qk=QK2, v=V2)
            path.write_bytes(path.read_bytes()[:200])  # truncated archive
        with pytest.raises(ConfigError, match=rule) as info:
            load_input_file(path)
        assert str(info.value).startswith(f"input=file:{path}: ")


def test_object_array_is_refused_without_unpickling(tmp_path: Path) -> None:
    path = tmp_path / "obj.npz"
    np.savez(path, qk=np.array([{"a": 1}], dtype=object), v=V2)
    with pytest.raises(ConfigError, match="object arrays"):
        load_input_file(path)


def test_save_checks_like_load(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="holds NaN"):
        save_input_file(tmp_path / "n.npz", _nan(QK2), V2)
    with pytest.raises(ConfigError, match="'heads' is not one of"):
        save_input_file(tmp_path / "n.npz", QK2, V2, {"heads": 2})
    assert not (tmp_path / "n.npz").exists()


def _npz_with_header(path: Path, shape: tuple, dtype: str, data: bytes) -> None:
    """An .npz whose qk member declares ``shape`` and ``dtype`` but holds ``data``; v valid."""
    import io
    import zipfile

    from numpy.lib import format as npy

    header = io.BytesIO()
    npy.write_array_header_1_0(header, {"descr": dtype, "fortran_order": False, "shape": shape})
    np.savez(path, v=V2)
    with zipfile.ZipFile(path, "a") as zf:
        zf.writestr("qk.npy", header.getvalue() + data)


@pytest.mark.parametrize(
    "shape", [(10**9, 10**6), (2**40,), (10**6, 10**6, 64), (2**62, 2**62), (64, 2**45)]
)
def test_a_header_declaring_more_than_memory_is_refused_before_reading(
    tmp_path: Path, shape: tuple
) -> None:
    path = tmp_path / "huge.npz"
    _npz_with_header(path, shape, "<f4", b"\0" * 64)
    with pytest.raises(ConfigError, match="more than this machine's") as info:
        load_input_file(path)
    assert str(info.value).startswith(f"input=file:{path}: array 'qk' declares shape")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("keep", [0.0, 0.01, 0.5, 0.999])
@pytest.mark.parametrize("name", ["qk", "v"])
def test_truncated_array_data_is_reported_as_truncated(
    tmp_path: Path, keep: float, name: str
) -> None:
    """An array whose data stops before the size its header declares: 'truncated', naming
    the array, never mistaken for an object array."""
    import io
    import zipfile

    path = tmp_path / "cut.npz"
    full = io.BytesIO()
    np.save(full, QK2 if name == "qk" else V2)
    raw = full.getvalue()
    header = len(raw) - (QK2 if name == "qk" else V2).nbytes
    cut = raw[: header + int(keep * (len(raw) - header))]
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr(f"{name}.npy", cut)
        other = io.BytesIO()
        np.save(other, V2 if name == "qk" else QK2)
        zf.writestr(f"{'v' if name == 'qk' else 'qk'}.npy", other.getvalue())
    with pytest.raises(ConfigError, match=f"array '{name}' is truncated") as info:
        load_input_file(path)
    assert "object" not in str(info.value)
