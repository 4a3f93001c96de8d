"""Streaming access to (sharded) safetensors checkpoints: one tensor in memory at a time.

Reading goes through the ``safetensors`` library, opening the shard only for the tensors asked for (the memory map
is released right after, so resident memory does not grow with the model). Writing produces the standard layout,
``model-00001-of-0000N.safetensors`` + ``model.safetensors.index.json``: since every tensor's name, shape and dtype
is known up front, each shard's header is written first and tensors are then appended one by one as they are
produced, so a shard never has to be assembled in memory.
"""

from __future__ import annotations

import json
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

import torch

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"

_DTYPE_TO_ST = {torch.float32: "F32", torch.bfloat16: "BF16", torch.float16: "F16", torch.float64: "F64",
                torch.int64: "I64", torch.int32: "I32", torch.int8: "I8", torch.uint8: "U8", torch.bool: "BOOL"}


def check_safetensors_file(path: str | os.PathLike) -> None:
    """Raise ValueError naming ``path`` and what is wrong when its header is unreadable or the file is shorter
    (or longer) than the tensors its header declares. Reads the header only, so it is cheap on any size."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            raise ValueError(f"{path}: not a safetensors file: {size} bytes, too short for the 8-byte header size")
        n = struct.unpack("<Q", head)[0]
        if n > size - 8:
            raise ValueError(f"{path}: truncated or not safetensors: the header declares {n} bytes of JSON, "
                             f"the file holds {size} bytes in all")
        raw = f.read(n)
    try:
        header = json.loads(raw)
        ends = [int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"]
    except (ValueError, TypeError, KeyError, IndexError) as err:
        raise ValueError(f"{path}: corrupt safetensors header ({type(err).__name__}: {err})") from err
    data = size - 8 - n
    need = max(ends, default=0)
    if data < need:
        raise ValueError(f"{path}: truncated: its header declares {need} bytes of tensor data, the file holds "
                         f"{data} ({size} bytes on disk, {need - data} missing)")
    if data > need:
        raise ValueError(f"{path}: {data - need} bytes after the last tensor its header declares "
                         "(damaged or not written by safetensors)")


class SafetensorsReader:
    """Tensor names -> shard files of an HF model folder; ``get(name)`` loads one tensor.

    Opening checks every shard's length against its header (:func:`check_safetensors_file`), so a truncated
    download fails here with the file's name instead of mid-conversion with a raw library error."""

    def __init__(self, folder: str | os.PathLike):
        from safetensors import safe_open

        self.folder = Path(folder)
        index = self.folder / INDEX_NAME
        single = self.folder / SINGLE_NAME
        if index.is_file():
            try:
                weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
            except (json.JSONDecodeError, KeyError) as err:
                raise ValueError(f"{index}: not a safetensors index (expected a 'weight_map' object): {err}") from err
            self.files = {name: self.folder / f for name, f in weight_map.items()}
            missing = sorted({str(p) for p in self.files.values() if not p.is_file()})
            if missing:
                raise FileNotFoundError(f"{index} names shard files that do not exist: {missing}")
        elif single.is_file():
            check_safetensors_file(single)
            with safe_open(str(single), framework="pt") as f:
                self.files = {name: single for name in f.keys()}
        else:
            bins = sorted(p.name for p in self.folder.glob("*.bin"))
            hint = " (PyTorch .bin weights found: re-save the model with safe_serialization=True)" if bins else ""
            raise FileNotFoundError(f"{self.folder}: no {SINGLE_NAME} or {INDEX_NAME}{hint}")
        self._meta: dict[str, tuple[tuple[int, ...], str]] = {}
        for path in sorted(set(self.files.values())):
            check_safetensors_file(path)  # every shard whole before any output is written
            with safe_open(str(path), framework="pt") as f:
                for name in f.keys():
                    sl = f.get_slice(name)
                    self._meta[name] = (tuple(sl.get_shape()), sl.get_dtype())

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def names(self) -> list[str]:
        return list(self.files)

    def shape(self, name: str) -> tuple[int, ...]:
        return self._meta[name][0]

    def dtype_name(self, name: str) -> str:
        return self._meta[name][1]

    def get(self, name: str) -> torch.Tensor:
        from safetensors import safe_open

        if name not in self.files:
            raise KeyError(f"{self.folder}: tensor {name!r} not found in the checkpoint")
        with safe_open(str(self.files[name]), framework="pt") as f:
            return f.get_tensor(name)


@dataclass(frozen=True)
class TensorSpec:
    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype

    @property
    def nbytes(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n * torch.empty((), dtype=self.dtype).element_size()


def plan_shards(specs: list[TensorSpec], max_shard_bytes: int) -> list[list[TensorSpec]]:
    """Group tensors, in order, into shards of at most ``max_shard_bytes`` (a larger tensor gets its own)."""
    shards: list[list[TensorSpec]] = [[]]
    size = 0
    for s in specs:
        if shards[-1] and size + s.nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(s)
        size += s.nbytes
    return [s for s in shards if s]


def _header(shard: list[TensorSpec], metadata: dict[str, str]) -> bytes:
    entries: dict = {"__metadata__": metadata}
    offset = 0
    for s in shard:
        entries[s.name] = {"dtype": _DTYPE_TO_ST[s.dtype], "shape": list(s.shape),
                           "data_offsets": [offset, offset + s.nbytes]}
        offset += s.nbytes
    raw = json.dumps(entries, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned
    return struct.pack("<Q", len(raw)) + raw


def write_sharded(folder: str | os.PathLike, specs: list[TensorSpec], produce: Callable[[TensorSpec], torch.Tensor],
                  *, max_shard_bytes: int = 5 * 1024**3, progress: Callable[[TensorSpec], None] | None = None
                  ) -> list[Path]:
    """Write ``specs`` (tensors produced on demand, in order) as safetensors shards + index into ``folder``.

    ``produce(spec)`` must return a tensor of exactly that shape and dtype; anything else is an error naming the
    tensor and both shapes.
    """
    folder = Path(folder)
    shards = plan_shards(specs, max_shard_bytes)
    n = len(shards)
    names = [SINGLE_NAME] if n == 1 else [f"model-{i + 1:05d}-of-{n:05d}.safetensors" for i in range(n)]
    weight_map: dict[str, str] = {}
    total = 0
    written = []
    for fname, shard in zip(names, shards):
        path = folder / fname
        with open(path, "wb") as f:
            f.write(_header(shard, {"format": "pt"}))
            for s in shard:
                t = produce(s)
                if tuple(t.shape) != s.shape or t.dtype != s.dtype:
                    raise ValueError(f"{s.name}: expected {s.shape} {s.dtype}, produced {tuple(t.shape)} {t.dtype}")
                if t.numel():  # the tensor's own bytes, no copy
                    f.write(t.contiguous().reshape(-1).view(torch.uint8).numpy().data)
                weight_map[s.name] = fname
                total += s.nbytes
                if progress is not None:
                    progress(s)
            f.flush()
            os.fsync(f.fileno())  # durable before the folder is renamed into place
        written.append(path)
    if n > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (folder / INDEX_NAME).write_text(json.dumps(index, indent=2) + "\n", encoding="utf-8")
    return written


def iter_specs(names_shapes: Iterable[tuple[str, tuple[int, ...]]], dtype: torch.dtype) -> list[TensorSpec]:
    return [TensorSpec(n, tuple(s), dtype) for n, s in names_shapes]
