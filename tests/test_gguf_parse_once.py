"""The GGUF conversion parses the file once: transformers' repeated GGUFReader/name-table builds are memoised only
inside the conversion, and gguf's own functions are back in place afterwards (also when the conversion fails)."""

from __future__ import annotations

import pytest

gguf = pytest.importorskip("gguf")


def _tiny_gguf(path):
    import numpy as np

    w = gguf.GGUFWriter(str(path), "llama")
    w.add_block_count(1)
    w.add_tensor("token_embd.weight", np.zeros((4, 2), dtype=np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


def test_one_parse_inside_the_conversion_only(tmp_path):
    from findap_nemo.convert.gguf_to_hf import _one_gguf_parse

    path = _tiny_gguf(tmp_path / "t.gguf")
    reader, name_map = gguf.GGUFReader, gguf.get_tensor_name_map
    with _one_gguf_parse():
        first = gguf.GGUFReader(str(path))
        assert gguf.GGUFReader(path) is first  # same file, however named: parsed once
        assert first.fields["general.architecture"] is not None
        arch = gguf.MODEL_ARCH.LLAMA
        assert gguf.get_tensor_name_map(arch, 1) is gguf.get_tensor_name_map(arch, 1)
    assert gguf.GGUFReader is reader and gguf.get_tensor_name_map is name_map
    assert gguf.GGUFReader(str(path)) is not gguf.GGUFReader(str(path))
    with pytest.raises(RuntimeError), _one_gguf_parse():
        raise RuntimeError("conversion failed")
    assert gguf.GGUFReader is reader and gguf.get_tensor_name_map is name_map
