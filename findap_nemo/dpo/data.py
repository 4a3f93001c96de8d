"""Preference pairs: read JSONL, chat-template prompts, tokenize chosen/rejected behind one shared prompt, collate.

A micro-batch of ``m`` pairs becomes ``2m`` sequences interleaved ``[chosen_0, rejected_0, chosen_1, ...]`` so one
forward serves both sides. Loss masks cover the response tokens only (the end-of-turn token included: the policy
must learn to stop). Over-long pairs are dropped and counted, never truncated silently.
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from findap_nemo.config import ConfigError
from findap_nemo.files import BadLine, jsonl_lines
from findap_nemo.tokenizer import end_of_turn_token, require_chat_template


@dataclass
class PairRecord:
    index: int  # 0-based line number in the source file: the key of precomputed reference log-probs
    prompt_ids: list[int]
    chosen_ids: list[int]
    rejected_ids: list[int]
    chosen_reward: float
    rejected_reward: float


@dataclass
class LoadReport:
    """What happened to every line of a preference file (printed by the stage, kept in tests)."""

    path: str
    lines: int = 0
    kept: int = 0
    dropped_too_long: int = 0
    warnings: Counter = field(default_factory=Counter)

    def summary(self) -> str:
        parts = [f"{self.path}: {self.kept}/{self.lines} pairs kept"]
        if self.dropped_too_long:
            parts.append(f"{self.dropped_too_long} dropped (prompt + response longer than the sequence length)")
        parts += [f"{n} x {w}" for w, n in sorted(self.warnings.items())]
        return "; ".join(parts)


class ChatFormatter:
    """Turns a record's prompt and responses into token ids with the tokenizer's own chat template.

    list prompt -> ``apply_chat_template(add_generation_prompt=True)``; string prompt -> used verbatim (NeMo-Aligner
    style, already templated) but checked against the template's BOS and assistant header. Responses get the
    end-of-turn token appended when missing.
    """

    def __init__(self, tokenizer):
        self.tok = tokenizer
        require_chat_template(tokenizer, "DPO data")
        self.eot = end_of_turn_token(tokenizer) or tokenizer.eos_token
        probe = [{"role": "user", "content": "x"}]
        with_gen = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
        without = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=False)
        self.generation_header = with_gen[len(without):] if with_gen.startswith(without) else ""
        self.bos = tokenizer.bos_token if tokenizer.bos_token and with_gen.startswith(tokenizer.bos_token) else None

    def prompt_text(self, prompt: Any, warnings: Counter) -> str:
        if isinstance(prompt, list):
            return self.tok.apply_chat_template(prompt, tokenize=False, add_generation_prompt=True)
        if self.bos and not prompt.startswith(self.bos):
            warnings["string prompt without the template's BOS token (added)"] += 1
            prompt = self.bos + prompt
        elif self.bos and prompt.startswith(self.bos * 2):
            warnings["string prompt with a doubled BOS token"] += 1
        if self.generation_header and not prompt.endswith(self.generation_header):
            warnings[f"string prompt not ending with the chat template's assistant header "
                     f"{self.generation_header!r} (chat-template mismatch?)"] += 1
        return prompt

    def response_text(self, response: str, templated: bool) -> str:
        if templated:  # the chat template trims message content; do the same so tokens match SFT data
            response = response.strip()
        return response if response.endswith(self.eot) else response + self.eot

    def encode(self, text: str) -> list[int]:
        return self.tok(text, add_special_tokens=False)["input_ids"]


def _field(rec: dict, names: tuple[str, ...], where: str, types: tuple[type, ...]):
    for n in names:
        if n in rec:
            v = rec[n]
            if isinstance(v, dict) and "content" in v:  # {"role": "assistant", "content": ...}
                v = v["content"]
            if not isinstance(v, types):
                raise ConfigError(f"{where}: '{n}' must be {' or '.join(t.__name__ for t in types)}, "
                                  f"got {type(v).__name__}")
            return v
    raise ConfigError(f"{where}: missing '{names[0]}' (a preference pair needs prompt, chosen_response and "
                      f"rejected_response)")


def load_pairs(path: str, tokenizer, *, seq_length: int, default_chosen_reward: float = 1.0,
               default_rejected_reward: float = 0.0, progress: bool = True) -> tuple[list[PairRecord], LoadReport]:
    """Tokenize every pair of a JSONL file; bad lines raise ConfigError naming file and line."""
    from tqdm.auto import tqdm

    fmt = ChatFormatter(tokenizer)
    report = LoadReport(path=str(path))
    records: list[PairRecord] = []
    for lineno, where, rec in tqdm(jsonl_lines(path), desc=f"tokenize {os.path.basename(path)}",
                                   disable=not progress, mininterval=2.0, unit=" pairs"):
        report.lines += 1
        if isinstance(rec, BadLine):
            raise ConfigError(rec)
        prompt = _field(rec, ("prompt",), where, (str, list))
        if isinstance(prompt, list) and not all(isinstance(m, dict) and "role" in m and "content" in m
                                                for m in prompt):
            raise ConfigError(f"{where}: a list 'prompt' must hold chat messages {{'role': ..., 'content': ...}}")
        chosen = _field(rec, ("chosen_response", "chosen"), where, (str,))
        rejected = _field(rec, ("rejected_response", "rejected"), where, (str,))
        rewards = []
        for key, default in (("chosen_reward", default_chosen_reward), ("rejected_reward", default_rejected_reward)):
            v = rec.get(key, default)
            if v is None:
                v = default
            if not isinstance(v, (int, float)) or isinstance(v, bool):
                raise ConfigError(f"{where}: '{key}' must be a number, got {v!r}")
            rewards.append(float(v))
        templated = isinstance(prompt, list)
        for resp in (chosen, rejected):
            if not (resp.strip() if templated else resp).endswith(fmt.eot):
                report.warnings[f"responses without {fmt.eot} (appended)"] += 1
        p_ids = fmt.encode(fmt.prompt_text(prompt, report.warnings))
        c_ids = fmt.encode(fmt.response_text(chosen, templated))
        r_ids = fmt.encode(fmt.response_text(rejected, templated))
        if c_ids == r_ids:
            report.warnings["pairs with identical chosen and rejected responses (no preference signal)"] += 1
        # tokens = ids[:-1] and labels = ids[1:], so a sequence of seq_length + 1 ids fits exactly.
        if len(p_ids) + max(len(c_ids), len(r_ids)) > seq_length + 1:
            report.dropped_too_long += 1
            continue
        records.append(PairRecord(lineno - 1, p_ids, c_ids, r_ids, rewards[0], rewards[1]))  # 0-based line index
    report.warnings = Counter({k: v for k, v in report.warnings.items() if v})
    report.kept = len(records)
    return records, report


def split_holdout(records: list[PairRecord], fraction: float, seed: int) -> tuple[list, list]:
    """Seeded held-out split (at least one pair held out when fraction > 0)."""
    if fraction <= 0 or not records:
        return records, []
    n_valid = max(1, int(round(len(records) * fraction)))
    if n_valid >= len(records):
        raise ConfigError(f"data.validation_fraction={fraction}: leaves no training pairs out of {len(records)}")
    order = np.random.default_rng(seed).permutation(len(records))
    valid_idx = set(order[:n_valid].tolist())
    return ([r for i, r in enumerate(records) if i not in valid_idx],
            [r for i, r in enumerate(records) if i in valid_idx])


class PairDataset(torch.utils.data.Dataset):
    """Tokenized pairs; ``reference`` (index -> (chosen, rejected) log-prob sums) attaches precomputed values."""

    def __init__(self, records: list[PairRecord], name: str = "train"):
        self.records = records
        self.name = name
        self.reference: dict[int, tuple[float, float]] | None = None

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        r = self.records[i]
        item = {"record": r}
        if self.reference is not None:
            item["ref_logps"] = self.reference[r.index]
        return item


def _round_up(n: int, multiple: int) -> int:
    return int(math.ceil(n / multiple) * multiple)


class PairCollator:
    """Builds the interleaved micro-batch: tokens/labels/loss_mask/position_ids [2m, S], gt_rewards and
    seq_lengths (unpadded) [2m], ref_logps [2m] (when precomputed) and the pair indices [m].

    S is ``seq_length`` when ``fixed_length`` (pipeline parallelism sends fixed-shape activations), else the longest
    sequence rounded up to ``pad_to_multiple_of`` (a multiple of TP, as sequence parallelism needs).
    """

    def __init__(self, pad_id: int, seq_length: int, *, fixed_length: bool, pad_to_multiple_of: int = 64,
                 tensor_parallel: int = 1):
        self.pad_id = pad_id
        self.seq_length = seq_length
        self.fixed_length = fixed_length
        self.multiple = math.lcm(pad_to_multiple_of, tensor_parallel)
        self.tp = tensor_parallel

    def __call__(self, items: list[dict]) -> dict:
        seqs, prompt_lens, rewards, refs = [], [], [], []
        for it in items:
            r: PairRecord = it["record"]
            for resp, reward in ((r.chosen_ids, r.chosen_reward), (r.rejected_ids, r.rejected_reward)):
                seqs.append(r.prompt_ids + resp)
                prompt_lens.append(len(r.prompt_ids))
                rewards.append(reward)
            if "ref_logps" in it:
                refs.extend(it["ref_logps"])
        longest = max(len(s) - 1 for s in seqs)
        if self.fixed_length:
            length = self.seq_length
        else:
            length = min(_round_up(longest, self.multiple), _round_up(self.seq_length, self.tp))
        n = len(seqs)
        tokens = torch.full((n, length), self.pad_id, dtype=torch.long)
        labels = torch.zeros((n, length), dtype=torch.long)
        mask = torch.zeros((n, length), dtype=torch.float32)
        for j, (s, p) in enumerate(zip(seqs, prompt_lens)):
            ids = torch.tensor(s, dtype=torch.long)
            t = len(s) - 1
            tokens[j, :t] = ids[:-1]
            labels[j, :t] = ids[1:]
            mask[j, p - 1:t] = 1.0  # label positions p-1.. predict the response tokens
        batch = {
            "tokens": tokens,
            "labels": labels,
            "loss_mask": mask,
            "position_ids": torch.arange(length, dtype=torch.long).expand(n, length).contiguous(),
            "gt_rewards": torch.tensor(rewards, dtype=torch.float32),
            "seq_lengths": torch.tensor([len(s) - 1 for s in seqs], dtype=torch.long),
            "pair_index": torch.tensor([it["record"].index for it in items], dtype=torch.long),
        }
        if refs:
            batch["ref_logps"] = torch.tensor(refs, dtype=torch.float64)
        return batch
