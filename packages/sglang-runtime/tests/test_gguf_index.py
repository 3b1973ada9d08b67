"""`GGUFIndex` against `gguf.GGUFReader` on the same files: every metadata field's contents,
every tensor's name, type, shape, byte count, offset and data."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from engine_fixtures import GGUF_NAME, smollm2_folder
from gguf import GGMLQuantizationType, GGUFReader, GGUFWriter
from gguf.quants import quantize

from sglang.runtime.loading.gguf_index import GGUFIndex


def assert_same(path: str) -> None:
    reader, index = GGUFReader(path), GGUFIndex(path)
    # The reader adds the header counts as pseudo-fields ("GGUF.version", ...).
    keys = [k for k in reader.fields if not k.startswith("GGUF.")]
    assert list(index.fields) == keys
    for key in keys:
        want = reader.fields[key]
        got = index.fields[key]
        assert got.contents() == want.contents(), key
        assert len(got.data) == len(want.data), key
    assert [t.name for t in index.tensors] == [t.name for t in reader.tensors]
    for got, want in zip(index.tensors, reader.tensors, strict=True):
        assert got.tensor_type == want.tensor_type, got.name
        assert got.shape.tolist() == want.shape.tolist(), got.name
        assert (got.n_elements, got.n_bytes, got.data_offset) == (
            want.n_elements, want.n_bytes, want.data_offset), got.name
        assert got.data.dtype == want.data.dtype and got.data.shape == want.data.shape, got.name
        assert np.array_equal(got.data, want.data), got.name


def test_every_value_type_and_several_tensor_types(tmp_path: Path) -> None:
    path = str(tmp_path / "all.gguf")
    w = GGUFWriter(path, "llama")
    w.add_uint8("t.u8", 7)
    w.add_int8("t.i8", -7)
    w.add_uint16("t.u16", 700)
    w.add_int16("t.i16", -700)
    w.add_uint32("t.u32", 70000)
    w.add_int32("t.i32", -70000)
    w.add_float32("t.f32", 0.1)
    w.add_uint64("t.u64", 2**40)
    w.add_int64("t.i64", -(2**40))
    w.add_float64("t.f64", 0.1)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "héllo")
    w.add_array("t.strs", ["a", "", "ünïcode", "x" * 300])
    w.add_array("t.ints", [1, -2, 3])
    w.add_array("t.floats", [0.5, 1.5])
    w.add_array("t.empty", [])
    w.add_custom_alignment(64)
    rng = np.random.default_rng(0)
    w.add_tensor("f32", rng.standard_normal((3, 5)).astype(np.float32))
    w.add_tensor("f16", rng.standard_normal((4, 7)).astype(np.float16))
    w.add_tensor("i32", np.arange(6, dtype=np.int32))
    rows = rng.standard_normal((4, 64)).astype(np.float32)
    for qtype in (GGMLQuantizationType.Q8_0, GGMLQuantizationType.Q4_1):
        w.add_tensor(f"q.{qtype.name}", quantize(rows, qtype), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    assert_same(path)


def test_the_embedded_smollm2_file() -> None:
    assert_same(os.path.join(smollm2_folder(), GGUF_NAME))


def test_nested_arrays_are_stepped_over(tmp_path: Path) -> None:
    path = str(tmp_path / "nested.gguf")
    w = GGUFWriter(path, "llama")
    w.add_array("t.nested", [[1, 2], [3]])
    w.add_uint32("t.after", 5)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    index = GGUFIndex(path)
    assert index.fields["t.after"].contents() == 5 and len(index.fields["t.nested"].data) == 2
    with pytest.raises(ValueError, match="ARRAY"):
        index.fields["t.nested"].contents()


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"NOPE" + bytes(60))
    with pytest.raises(ValueError, match="not a GGUF"):
        GGUFIndex(bad)
