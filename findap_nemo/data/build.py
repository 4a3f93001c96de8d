"""Building the blended CPT+IT dataset: read -> decontaminate -> tokenize -> downsample CPT -> pack -> write.

Output folder (written as ``<out>.tmp-*`` and renamed when complete, so an interrupted build never looks done)::

    <out>/finance_train.bin/.idx        tokens (int32); one sequence per document, one megatron "document" per pack
    <out>/finance_train_mask.bin/.idx   uint8 target mask with the same structure (1 = token is a training target)
    <out>/finance_valid...              held-out packs
    <out>/general_train...
    <out>/manifest.json                 statistics of every source, what was dropped and why, the blend
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from findap_nemo.data.recipe import DataRecipe

MANIFEST_VERSION = 1


def _pack(docs: list[tuple[np.ndarray, np.ndarray]], capacity: int) -> list[list[int]]:
    """Next-fit packing in the given (shuffled) order: documents never cross a pack boundary."""
    packs: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, (ids, _) in enumerate(docs):
        n = len(ids)
        if current and used + n > capacity:
            packs.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        packs.append(current)
    return packs


def _write(prefix: Path, docs: list[tuple[np.ndarray, np.ndarray]], packs: list[list[int]]) -> dict:
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    tok_b = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.int32)
    mask_b = IndexedDatasetBuilder(str(prefix) + "_mask.bin", dtype=np.uint8)
    tokens = targets = 0
    for pack in packs:
        for i in pack:
            ids, mask = docs[i]
            tok_b.add_item(torch.from_numpy(ids))
            mask_b.add_item(torch.from_numpy(mask))
            tokens += len(ids)
            targets += int(mask.sum())
        tok_b.end_document()
        mask_b.end_document()
    tok_b.finalize(str(prefix) + ".idx")
    mask_b.finalize(str(prefix) + "_mask.idx")
    return {"packs": len(packs), "documents": sum(len(p) for p in packs), "tokens": tokens, "target_tokens": targets}


def build(recipe: DataRecipe, *, log=print) -> Path:
    from findap_nemo.data.decontam import Decontaminator, eval_texts
    from findap_nemo.data.render import tokenize_all
    from findap_nemo.data.sources import read_source
    from findap_nemo.tokenizer import load_tokenizer

    t0 = time.time()
    out = Path(recipe.output_dir)
    if (out / "manifest.json").is_file() and not recipe.overwrite:
        raise FileExistsError(f"{out} already holds a complete dataset; set overwrite=true to rebuild it")
    tmp = out.with_name(f"{out.name}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    tok = load_tokenizer(recipe.tokenizer)
    L = recipe.seq_length + 1
    rng = random.Random(recipe.seed)

    # 1. read + decontaminate --------------------------------------------------------------------------------
    dec = None
    d = recipe.decontamination
    if d.eval_sets or d.eval_tasks:
        dec = Decontaminator(eval_texts(d.eval_sets, d.eval_tasks), n=d.ngram)
        log(f"[data] decontamination index: {len(dec.index)} {d.ngram}-grams from {len(dec.files)} eval sets")
    stats: dict[str, dict] = {}
    records = []
    for src in recipe.sources:
        skipped: Counter = Counter()
        n_read = n_contaminated = 0
        for rec in read_source(src, skip_bad=recipe.skip_bad, skipped=skipped):
            n_read += 1
            text = rec.text if rec.kind == "cpt" else "\n".join(m["content"] for m in rec.messages)
            if dec is not None and dec.contaminated(text):
                n_contaminated += 1
                continue
            records.append(rec)
        stats[src.name] = {"kind": src.kind, "domain": src.domain, "read": n_read,
                           "skipped_bad": dict(skipped), "decontaminated": n_contaminated, "dropped": {}}
        log(f"[data] {src.name}: {n_read} records ({sum(skipped.values())} skipped as bad/empty, "
            f"{n_contaminated} overlapping eval sets)")

    # 2. tokenize ----------------------------------------------------------------------------------------------
    t_tok = time.time()
    encoded = tokenize_all(recipe.tokenizer, [(r.kind, r.text if r.kind == "cpt" else r.messages) for r in records],
                           recipe.num_workers)
    tok_seconds = time.time() - t_tok
    total_tokens = sum(len(ids) for ids, _ in encoded)
    log(f"[data] tokenized {len(records)} documents, {total_tokens} tokens in {tok_seconds:.1f}s "
        f"({total_tokens / max(tok_seconds, 1e-9):.0f} tokens/s)")

    # 3. length filters: CPT split into pack-sized chunks, IT too long dropped/truncated, too short dropped -----
    cpt: list[tuple[str, list]] = []  # (source, [chunks]) per document, so downsampling counts documents
    it: list[tuple[str, tuple]] = []
    for rec, (ids, mask) in zip(records, encoded):
        s = stats[rec.source]
        if len(ids) < recipe.min_tokens or int(mask.sum()) == 0:
            s["dropped"]["too short / no target tokens"] = s["dropped"].get("too short / no target tokens", 0) + 1
            continue
        if rec.kind == "cpt":
            chunks = [(ids[i:i + L], mask[i:i + L]) for i in range(0, len(ids), L)]
            chunks = [c for c in chunks if len(c[0]) >= recipe.min_tokens]
            if len(chunks) > 1:
                s["split_into_chunks"] = s.get("split_into_chunks", 0) + 1
            cpt.append((rec.source, chunks))
        else:
            if len(ids) > L:
                if recipe.it_overlong == "drop":
                    s["dropped"][f"longer than seq_length+1={L}"] = s["dropped"].get(f"longer than seq_length+1={L}", 0) + 1
                    continue
                ids, mask = ids[:L], mask[:L]
                s["truncated"] = s.get("truncated", 0) + 1
                if int(mask.sum()) == 0:
                    s["dropped"]["no target tokens after truncation"] = s["dropped"].get(
                        "no target tokens after truncation", 0) + 1
                    continue
            it.append((rec.source, (ids, mask)))

    # 4. downsample CPT to the IT size (FinDAP: shuffle with the seed, keep as many examples as IT) -------------
    b = recipe.blend
    rng.shuffle(cpt)
    kept = cpt
    if b.downsample_cpt != "none" and it:
        if b.downsample_cpt == "examples":
            kept = cpt[: int(round(b.cpt_to_it_ratio * len(it)))]
        else:
            budget = b.cpt_to_it_ratio * sum(len(x[1][0]) for x in it)
            kept, used = [], 0
            for doc in cpt:
                if used >= budget:
                    break
                kept.append(doc)
                used += sum(len(c[0]) for c in doc[1])
    for source, _ in cpt[len(kept):]:
        stats[source]["dropped"]["downsampled (CPT cut to the IT size)"] = \
            stats[source]["dropped"].get("downsampled (CPT cut to the IT size)", 0) + 1
    downsampling = {"unit": b.downsample_cpt, "ratio": b.cpt_to_it_ratio, "it_documents": len(it),
                    "it_tokens": int(sum(len(x[1][0]) for x in it)), "cpt_documents_before": len(cpt),
                    "cpt_documents_kept": len(kept),
                    "cpt_tokens_kept": int(sum(len(c[0]) for _, chunks in kept for c in chunks))}
    log(f"[data] CPT downsampled by {b.downsample_cpt}: {len(kept)}/{len(cpt)} documents kept for {len(it)} IT "
        f"examples")

    # 5. per-domain components: CPT and IT mixed (joint training), shuffled, packed, split, written ---------------
    by_domain: dict[str, list[tuple[str, tuple]]] = defaultdict(list)
    for source, chunks in kept:
        for c in chunks:
            by_domain[stats[source]["domain"]].append((source, c))
    for source, doc in it:
        by_domain[stats[source]["domain"]].append((source, doc))
    components = []
    for domain in sorted(by_domain):
        items = by_domain[domain]
        rng.shuffle(items)
        for source, (ids, _) in items:
            s = stats[source]
            s["documents"] = s.get("documents", 0) + 1
            s["tokens"] = s.get("tokens", 0) + len(ids)
        docs = [x[1] for x in items]
        packs = _pack(docs, L)
        n_valid = int(len(packs) * b.valid_fraction)
        if b.valid_fraction > 0 and n_valid == 0 and len(packs) >= 2:
            n_valid = 1
        splits = {"train": packs[n_valid:], "valid": packs[:n_valid]}
        for split, sp in splits.items():
            if not sp:
                continue
            info = _write(tmp / f"{domain}_{split}", docs, sp)
            info.update(domain=domain, split=split, prefix=f"{domain}_{split}",
                        packing_efficiency=info["tokens"] / (len(sp) * L))
            components.append(info)
            log(f"[data] {domain}/{split}: {info['packs']} packs, {info['tokens']} tokens "
                f"({info['packing_efficiency']:.1%} of capacity)")

    # 6. blend weights -------------------------------------------------------------------------------------------
    blend = {}
    for split in ("train", "valid"):
        comps = [c for c in components if c["split"] == split]
        if not comps:
            continue
        if b.domain_weights:
            missing = [c["domain"] for c in comps if c["domain"] not in b.domain_weights]
            if missing:
                raise ValueError(f"blend.domain_weights has no weight for domain(s) {missing} present in the data")
            raw = [float(b.domain_weights[c["domain"]]) for c in comps]
        else:
            raw = [float(c["packs"]) for c in comps]
        total = sum(raw)
        blend[split] = {"prefixes": [c["prefix"] for c in comps], "weights": [w / total for w in raw]}
        for c, w in zip(comps, raw):
            c["weight"] = w / total

    manifest = {
        "version": MANIFEST_VERSION,
        "seq_length": recipe.seq_length,
        "tokenizer": os.path.abspath(recipe.tokenizer),
        "vocab_size": len(tok),
        "pad_id": tok.pad_token_id,
        "eos_id": tok.eos_token_id,
        "seed": recipe.seed,
        "sources": stats,
        "decontamination": {"ngram": d.ngram, "eval_files": sorted(dec.files) if dec else [],
                            "removed": {k: v["decontaminated"] for k, v in stats.items()}},
        "downsampling": downsampling,
        "components": components,
        "blend": blend,
        "timing": {"seconds": time.time() - t0, "tokenize_seconds": tok_seconds, "tokens": total_tokens,
                   "tokens_per_s": total_tokens / max(tok_seconds, 1e-9)},
        "recipe": asdict(recipe),
    }
    tmp_manifest = tmp / "manifest.json.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp_manifest, tmp / "manifest.json")  # last file written: its presence means complete
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    log(f"[data] wrote {out}/manifest.json in {time.time() - t0:.1f}s")
    return out / "manifest.json"
