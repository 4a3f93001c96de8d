"""Streaming writer and reader for megatron-core dist checkpoints in the torch_dist format.

A torch_dist checkpoint is a ``torch.distributed.checkpoint`` (DCP) folder (``.metadata`` + ``*.distcp``) whose
tensors are keyed by megatron's global parameter names with global shapes, plus megatron's ``metadata.json`` and
``common.pt``. Because DCP stores each tensor as chunks with global offsets, a reader can fetch any slice and a
checkpoint written at one TP/PP layout loads at any other (megatron computes the overlaps).

Writing uses DCP's save planner hook: the plan is made from shapes alone and each chunk is produced only when the
file writer asks for it, so one chunk (one layer's tensor) is in memory at a time. Reading plans a read of just the
requested slice (e.g. layer ``i`` of the stacked ``decoder.layers.*`` tensors) from whatever chunks were stored.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

# megatron.core.dist_checkpointing's metadata.json for the torch_dist backend (what its own save writes).
MCORE_METADATA = {"sharded_backend": "torch_dist", "sharded_backend_version": 1,
                  "common_backend": "torch", "common_backend_version": 1}


@dataclass
class ChunkedTensor:
    """One global tensor of the checkpoint and how it is cut into stored chunks (offsets, sizes)."""

    key: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    chunks: list[tuple[tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)

    @classmethod
    def per_layer(cls, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> "ChunkedTensor":
        """A ``decoder.layers.*`` tensor stacked over layers (dim 0), stored one layer per chunk."""
        chunks = [((i,) + (0,) * (len(shape) - 1), (1,) + tuple(shape[1:])) for i in range(shape[0])]
        return cls(key, tuple(shape), dtype, chunks)

    @classmethod
    def whole(cls, key: str, shape: tuple[int, ...], dtype: torch.dtype) -> "ChunkedTensor":
        return cls(key, tuple(shape), dtype, [((0,) * len(shape), tuple(shape))])


def write_dist_checkpoint(ckpt_dir: str | os.PathLike, tensors: list[ChunkedTensor],
                          produce: Callable[[ChunkedTensor, tuple[int, ...]], torch.Tensor], *,
                          objects: dict[str, object] | None = None, common: dict | None = None) -> None:
    """Write a torch_dist checkpoint into the (new, empty) folder ``ckpt_dir``, one chunk in memory at a time.

    ``produce(tensor, offsets)`` returns the chunk of ``tensor`` starting at ``offsets`` (shape = that chunk's size).
    ``objects`` are small picklable values stored as megatron ShardedObjects (e.g. layers' ``_extra_state``);
    ``common`` is megatron's common (non-sharded) state, saved as ``common.pt``.
    """
    from torch.distributed.checkpoint import FileSystemWriter
    from torch.distributed.checkpoint import save as dcp_save
    from torch.distributed.checkpoint.default_planner import DefaultSavePlanner
    from torch.distributed.checkpoint.metadata import ChunkStorageMetadata, MetadataIndex, TensorProperties
    from torch.distributed.checkpoint.planner import SavePlan, TensorWriteData, WriteItem, WriteItemType

    by_key = {t.key: t for t in tensors}
    objects = objects or {}
    items = []
    for t in tensors:
        for offsets, sizes in t.chunks:
            items.append(WriteItem(
                index=MetadataIndex(t.key, torch.Size(offsets)), type=WriteItemType.SHARD,
                tensor_data=TensorWriteData(chunk=ChunkStorageMetadata(torch.Size(offsets), torch.Size(sizes)),
                                            properties=TensorProperties(dtype=t.dtype), size=torch.Size(t.shape))))
    for key in objects:
        items.append(WriteItem(index=MetadataIndex(key), type=WriteItemType.BYTE_IO))

    class StreamingSavePlanner(DefaultSavePlanner):
        """The plan comes from shapes; data is produced per write item when the writer asks for it."""

        def __init__(self):
            super().__init__(flatten_state_dict=False, flatten_sharded_tensors=False)

        def set_up_planner(self, state_dict, storage_meta=None, is_coordinator=True):
            self.state_dict, self.is_coordinator = state_dict, is_coordinator

        def create_local_plan(self) -> SavePlan:
            self.plan = SavePlan(items)
            return self.plan

        def resolve_data(self, write_item: WriteItem):
            if write_item.type == WriteItemType.BYTE_IO:
                buf = io.BytesIO()
                torch.save(objects[write_item.index.fqn], buf)
                buf.seek(0)
                return buf
            t = by_key[write_item.index.fqn]
            chunk = write_item.tensor_data.chunk
            data = produce(t, tuple(chunk.offsets))
            if tuple(data.shape) != tuple(chunk.sizes) or data.dtype != t.dtype:
                raise ValueError(f"{t.key} at offset {tuple(chunk.offsets)}: expected shape {tuple(chunk.sizes)} "
                                 f"{t.dtype}, produced {tuple(data.shape)} {data.dtype}")
            return data

    ckpt_dir = Path(ckpt_dir)
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    writer = FileSystemWriter(str(ckpt_dir), single_file_per_rank=True, sync_files=True, thread_count=1)
    with warnings.catch_warnings():  # "assuming the intent is to save in a single process": it is
        warnings.simplefilter("ignore", UserWarning)
        dcp_save({}, storage_writer=writer, planner=StreamingSavePlanner(), no_dist=True)
    torch.save(common or {}, ckpt_dir / "common.pt")
    (ckpt_dir / "metadata.json").write_text(json.dumps(MCORE_METADATA))


def check_shard_sizes(ckpt_dir: Path, metadata) -> None:
    """Raise ValueError naming the first ``.distcp`` shard that is missing or shorter than the byte ranges its
    ``.metadata`` index assigns to it (a truncated copy), before anything is read or written."""
    need: dict[str, int] = {}
    for info in (getattr(metadata, "storage_data", None) or {}).values():
        rel = getattr(info, "relative_path", None)
        if rel is not None:
            need[rel] = max(need.get(rel, 0), int(info.offset) + int(info.length))
    for rel, end in sorted(need.items()):
        path = ckpt_dir / rel
        if not path.is_file():
            raise ValueError(f"{path}: shard missing (the checkpoint's .metadata stores tensor data in it)")
        size = path.stat().st_size
        if size < end:
            raise ValueError(f"{path}: truncated: .metadata places tensor data up to byte {end}, the file holds "
                             f"{size} bytes ({end - size} missing)")


class DistCheckpointReader:
    """Read tensors or slices of them from a torch_dist checkpoint folder, whatever layout wrote it."""

    def __init__(self, ckpt_dir: str | os.PathLike):
        from torch.distributed.checkpoint import FileSystemReader
        from torch.distributed.checkpoint.metadata import TensorStorageMetadata

        self.dir = Path(ckpt_dir)
        meta = self.dir / "metadata.json"
        if not meta.is_file():
            raise FileNotFoundError(f"{self.dir}: not a megatron dist checkpoint (no metadata.json)")
        backend = json.loads(meta.read_text()).get("sharded_backend")
        if backend != "torch_dist":
            raise ValueError(f"{meta}: sharded_backend={backend!r}; only 'torch_dist' checkpoints can be read")
        base = FileSystemReader(str(self.dir))
        try:
            self.metadata = base.read_metadata()
        except Exception as err:  # a truncated or foreign .metadata fails inside pickle with no file name
            raise ValueError(f"{self.dir / '.metadata'}: unreadable torch_dist index ({type(err).__name__}: "
                             f"{err}); the checkpoint is damaged or incompletely copied") from err
        check_shard_sizes(self.dir, self.metadata)

        class CachedReader(FileSystemReader):  # DCP re-reads .metadata on every load; once is enough
            def read_metadata(inner_self, *a, **k):
                return self.metadata

        self._reader = CachedReader(str(self.dir))
        self.tensors = {k: v for k, v in self.metadata.state_dict_metadata.items()
                        if isinstance(v, TensorStorageMetadata)}

    def shape(self, key: str) -> tuple[int, ...] | None:
        md = self.tensors.get(key)
        return tuple(md.size) if md is not None else None

    def dtype(self, key: str) -> torch.dtype:
        return self.tensors[key].properties.dtype

    def read(self, key: str, index: int | None = None) -> torch.Tensor:
        """The whole tensor, or ``tensor[index]`` (one layer of a layer-stacked tensor) without reading the rest."""
        from torch.distributed.checkpoint import load as dcp_load
        from torch.distributed.checkpoint.default_planner import DefaultLoadPlanner
        from torch.distributed.checkpoint.metadata import ChunkStorageMetadata
        from torch.distributed.checkpoint.planner import LoadPlan
        from torch.distributed.checkpoint.planner_helpers import create_read_items_for_chunk_list

        if key not in self.tensors:
            raise KeyError(f"{self.dir}: tensor {key!r} is not in the checkpoint")
        md = self.tensors[key]
        size = list(md.size)
        offsets = [0] * len(size)
        if index is not None:
            offsets[0], size[0] = index, 1
        dest = torch.empty(size, dtype=md.properties.dtype)
        chunk = ChunkStorageMetadata(torch.Size(offsets), torch.Size(size))

        class SliceLoadPlanner(DefaultLoadPlanner):
            def set_up_planner(self, state_dict, metadata=None, is_coordinator=False):
                self.state_dict, self.metadata, self.is_coordinator = state_dict, metadata, is_coordinator

            def create_local_plan(self) -> LoadPlan:
                return LoadPlan(create_read_items_for_chunk_list(key, md, [chunk]))

            def resolve_tensor(self, read_item):
                view = dest
                for dim, (off, length) in enumerate(zip(read_item.dest_offsets, read_item.lengths)):
                    view = view.narrow(dim, off, length)
                return view

            def commit_tensor(self, read_item, tensor):
                pass

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            dcp_load({key: dest}, storage_reader=self._reader, planner=SliceLoadPlanner(), no_dist=True)
        return dest[0] if index is not None else dest

    def common_state(self) -> dict:
        """megatron's common (non-sharded) state: a ``common.pt`` file (megatron-core 0.16, and the checkpoints this
        package writes), or, as megatron-core 0.19 saves it, one ``common_state`` object inside the DCP files."""
        path = self.dir / "common.pt"
        if path.is_file():
            return torch.load(path, map_location="cpu", weights_only=False)
        if not any(k.startswith("common_state/") for k in self.metadata.state_dict_metadata):
            return {}
        from megatron.core import dist_checkpointing  # knows that object's encoding

        return dist_checkpointing.load_common_state_dict(str(self.dir))
