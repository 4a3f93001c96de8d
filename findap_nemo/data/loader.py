"""Training-time view of a built dataset: megatron's BlendedMegatronDatasetBuilder over packed documents."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from megatron.core.datasets.blended_megatron_dataset_builder import BlendedMegatronDatasetBuilder
from megatron.core.datasets.blended_megatron_dataset_config import BlendedMegatronDatasetConfig
from megatron.core.datasets.indexed_dataset import IndexedDataset
from megatron.core.datasets.megatron_dataset import MegatronDataset


@dataclass
class PackedDatasetConfig(BlendedMegatronDatasetConfig):
    pad_id: int = 0
    reset_position_ids: bool = True


class _TokensAndMask:
    """The two indexed datasets of one component (tokens and target mask share their structure)."""

    def __init__(self, prefix: str):
        self.tokens = IndexedDataset(prefix)
        self.mask = IndexedDataset(prefix + "_mask")
        if len(self.tokens.document_indices) != len(self.mask.document_indices):
            raise ValueError(f"{prefix}: token and mask datasets have different structures")

    def num_packs(self) -> int:
        return len(self.tokens.document_indices) - 1

    def pack(self, i: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        lo, hi = self.tokens.document_indices[i], self.tokens.document_indices[i + 1]
        return [self.tokens[j] for j in range(lo, hi)], [self.mask[j] for j in range(lo, hi)]


class PackedDataset(MegatronDataset):
    """Samples = packs, repeated over shuffled epochs (seeded) until ``num_samples``; items per the train contract:
    tokens, labels, loss_mask, position_ids, segment_ids (each of length seq_length)."""

    def __init__(self, dataset, dataset_path, indices, num_samples, index_split, config):
        super().__init__(dataset, dataset_path, indices, num_samples, index_split, config)
        n = len(indices)
        self.num_samples = num_samples if num_samples is not None else n
        epochs = max(1, -(-self.num_samples // max(n, 1)))
        rng = np.random.RandomState(config.random_seed + 1000 * index_split.value)
        order = np.concatenate([indices[rng.permutation(n)] for _ in range(epochs)]) if n else np.array([], int)
        self.order = order[: self.num_samples]

    @staticmethod
    def numel_low_level_dataset(low_level_dataset: _TokensAndMask) -> int:
        return low_level_dataset.num_packs()

    @staticmethod
    def build_low_level_dataset(dataset_path: str, config) -> _TokensAndMask:
        return _TokensAndMask(dataset_path)

    def __len__(self) -> int:
        return len(self.order)

    def __getitem__(self, idx: int) -> dict:
        s = self.config.sequence_length
        toks, masks = self.dataset.pack(int(self.order[idx]))
        tokens = np.full(s + 1, self.config.pad_id, dtype=np.int64)
        target = np.zeros(s + 1, dtype=np.float32)
        segment = np.zeros(s + 1, dtype=np.int64)
        position = np.zeros(s + 1, dtype=np.int64)
        at = 0
        for k, (t, m) in enumerate(zip(toks, masks), 1):
            n = min(len(t), s + 1 - at)
            tokens[at:at + n] = t[:n]
            target[at:at + n] = m[:n]
            segment[at:at + n] = k
            position[at:at + n] = np.arange(n) if self.config.reset_position_ids else np.arange(at, at + n)
            at += n
            if at >= s + 1:
                break
        # label i = token i+1; it trains only if it is a target and belongs to the same document as token i.
        same_doc = (segment[1:] == segment[:-1]) & (segment[:-1] > 0)
        loss_mask = target[1:] * same_doc
        return {
            "tokens": torch.from_numpy(tokens[:-1].copy()),
            "labels": torch.from_numpy(tokens[1:].copy()),
            "loss_mask": torch.from_numpy(loss_mask.astype(np.float32)),
            "position_ids": torch.from_numpy(position[:-1].copy()),
            "segment_ids": torch.from_numpy(segment[:-1].copy()),
        }


def build_datasets(manifest_path: str, *, seq_length: int, num_samples: dict[str, int], seed: int,
                   reset_position_ids: bool = True) -> dict[str, torch.utils.data.Dataset]:
    """Blended train/valid datasets from a data-stage manifest, identical on every rank for a seed."""
    manifest_path = Path(manifest_path)
    m = json.loads(manifest_path.read_text())
    root = manifest_path.parent
    if seq_length > m["seq_length"]:
        raise ValueError(f"schedule.seq_length={seq_length} exceeds the packs of {manifest_path} "
                         f"(built for seq_length={m['seq_length']}); rebuild the data or lower schedule.seq_length")

    def split_blend(split: str):
        b = m["blend"].get(split)
        if not b:
            return None
        return ([str(root / p) for p in b["prefixes"]], list(b["weights"]))

    per_split = [split_blend("train"), split_blend("valid"), None]
    config = PackedDatasetConfig(random_seed=seed, sequence_length=seq_length, blend_per_split=per_split,
                                 pad_id=int(m.get("pad_id") or 0), reset_position_ids=reset_position_ids,
                                 mid_level_dataset_surplus=0.05)
    sizes = [num_samples.get("train", 0), num_samples.get("valid", 0) if per_split[1] else None, None]
    train, valid, _ = BlendedMegatronDatasetBuilder(PackedDataset, sizes, lambda: True, config).build()
    built = {"train": train, "valid": valid}
    return {k: built[k] for k in num_samples if built.get(k) is not None}
