"""Building the blended CPT+IT dataset: read -> decontaminate -> tokenize -> downsample CPT -> pack -> write.

Output folder (written as ``<out>.partial`` and renamed when complete, so an interrupted build never looks done)::

    <out>/finance_train.bin/.idx        tokens (int32); one sequence per document, one megatron "document" per pack
    <out>/finance_train_mask.bin/.idx   uint8 target mask with the same structure (1 = token is a training target)
    <out>/finance_valid...              held-out packs
    <out>/general_train...
    <out>/manifest.json                 statistics of every source, what was dropped and why, the blend

Resuming: each source is tokenized to ``<out>.partial/_tokenized/<name>`` and marked done with a fingerprint of
everything that shapes its tokens (source mapping, file sizes/mtimes, tokenizer files, length rules,
decontamination). A rerun after an interruption reuses the sources whose fingerprint still matches and redoes
only the rest; packing and writing (cheap next to tokenizing) always run again.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import random
import shutil
import time
import warnings
from collections import Counter, defaultdict
from dataclasses import asdict
from pathlib import Path

import numpy as np

from findap_nemo.data.config import DataRecipe
from findap_nemo.fingerprint import digest, file_states, tokenizer_identity

MANIFEST_VERSION = 1


class _Encoder:
    """Tokenizes batches in worker processes (or in-process for small inputs), preserving order."""

    def __init__(self, tokenizer_dir: str, num_workers: int, loaded=None):
        from findap_nemo.data import render

        self.pool = None
        if num_workers > 1:
            import multiprocessing as mp

            self.pool = mp.get_context("spawn").Pool(num_workers, initializer=render._init_worker,
                                                     initargs=(tokenizer_dir,))
        elif loaded is not None:
            render._TOK = loaded  # in-process: reuse the tokenizer already loaded (a 128k vocabulary takes seconds)
        else:
            render._init_worker(tokenizer_dir)

    def map(self, batches):
        from findap_nemo.data.render import encode_batch

        if self.pool is None:
            return map(encode_batch, batches)
        return self.pool.imap(encode_batch, batches, chunksize=1)

    def close(self) -> None:
        if self.pool is not None:
            self.pool.close()
            self.pool.join()


def _batched(it, n: int):
    batch = []
    for x in it:
        batch.append(x)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def _count(d: dict, key: str, n: int = 1) -> None:
    d[key] = d.get(key, 0) + n


class _Tokenized:
    """One source tokenized to a temporary indexed dataset; in memory only per-sequence lengths and doc ids."""

    def __init__(self, prefix: Path):
        self.prefix = prefix
        self.lengths: list[int] = []
        self.docs: list[int] = []  # document id of each sequence (a CPT document may be split in chunks)
        self.n_docs = 0
        self._ds = None

    def save_done(self, stats: dict, fingerprint: str) -> None:
        """Mark this source complete (written last, atomically) so a rerun can reuse it."""
        np.save(str(self.prefix) + ".lengths.npy", np.asarray(self.lengths, dtype=np.int64))
        np.save(str(self.prefix) + ".docs.npy", np.asarray(self.docs, dtype=np.int64))
        done = Path(str(self.prefix) + ".done.json")
        tmp = done.with_suffix(".tmp")
        tmp.write_text(json.dumps({"fingerprint": fingerprint, "n_docs": self.n_docs, "stats": stats}))
        os.replace(tmp, done)

    @classmethod
    def load_done(cls, prefix: Path, fingerprint: str) -> tuple["_Tokenized", dict] | None:
        done = Path(str(prefix) + ".done.json")
        if not done.is_file():
            return None
        meta = json.loads(done.read_text())
        if meta.get("fingerprint") != fingerprint:
            return None
        t = cls(prefix)
        t.lengths = np.load(str(prefix) + ".lengths.npy").tolist()
        t.docs = np.load(str(prefix) + ".docs.npy").tolist()
        t.n_docs = int(meta["n_docs"])
        return t, meta["stats"]

    def open(self):
        from megatron.core.datasets.indexed_dataset import IndexedDataset

        if self._ds is None:
            self._ds = (IndexedDataset(str(self.prefix)), IndexedDataset(str(self.prefix) + "_mask"))
        return self._ds


def _fingerprint(src, recipe, dec) -> str:
    """Everything that shapes one source's tokenized output (files by size/mtime, the tokenizer by content)."""
    parts = {
        "source": asdict(src), "files": file_states(src.path), "tokenizer": recipe.tokenizer,
        "tokenizer_files": tokenizer_identity(recipe.tokenizer),
        "seq_length": recipe.seq_length, "min_tokens": recipe.min_tokens, "it_overlong": recipe.it_overlong,
        "skip_bad": recipe.skip_bad, "decontamination": asdict(recipe.decontamination),
        "eval_files": [file_states(f) for f in sorted(dec.files)] if dec else [], "version": MANIFEST_VERSION,
    }
    return digest(parts)


def _tokenize_source(src, recipe, dec, encoder, work: Path, stats: dict, log) -> _Tokenized:
    """Stream read -> decontaminate -> tokenize -> length rules -> temporary .bin/.idx for one source."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder
    from tqdm.auto import tqdm

    from findap_nemo.data.sources import read_source

    L = recipe.seq_length + 1
    skipped: Counter = Counter()
    st = {"kind": src.kind, "domain": src.domain, "read": 0, "skipped_bad": {}, "decontaminated": 0,
          "dropped": {}}
    out = _Tokenized(work / src.name)
    tok_b = IndexedDatasetBuilder(str(out.prefix) + ".bin", dtype=np.int32)
    mask_b = IndexedDatasetBuilder(str(out.prefix) + "_mask.bin", dtype=np.uint8)

    def records():
        for rec in read_source(src, skip_bad=recipe.skip_bad, skipped=skipped):
            st["read"] += 1
            text = rec.text if rec.kind == "cpt" else "\n".join(m["content"] for m in rec.messages)
            if dec is not None and dec.contaminated(text):
                st["decontaminated"] += 1
                continue
            yield (rec.kind, rec.text if rec.kind == "cpt" else rec.messages)

    bar = tqdm(desc=f"tokenize {src.name}", unit="doc", dynamic_ncols=True, mininterval=1.0)
    tokens = 0
    for encoded in encoder.map(_batched(records(), 256)):
        bar.update(len(encoded))
        for ids, mask in encoded:
            tokens += len(ids)
            if len(ids) < recipe.min_tokens or (src.kind == "it" and not mask.any()):  # CPT: all targets
                _count(st["dropped"], "too short / no target tokens")
                continue
            if src.kind == "cpt":
                chunks = [(ids[i:i + L], mask[i:i + L]) for i in range(0, len(ids), L)]
                chunks = [c for c in chunks if len(c[0]) >= recipe.min_tokens]
                if len(chunks) > 1:
                    _count(st, "split_into_chunks")
            else:
                if len(ids) > L:
                    if recipe.it_overlong == "drop":
                        _count(st["dropped"], f"longer than seq_length+1={L}")
                        continue
                    ids, mask = ids[:L], mask[:L]
                    _count(st, "truncated")
                    if int(mask.sum()) == 0:
                        _count(st["dropped"], "no target tokens after truncation")
                        continue
                chunks = [(ids, mask)]
            for cids, cmask in chunks:
                tok_b.add_item(torch.from_numpy(cids))
                mask_b.add_item(torch.from_numpy(cmask))
                out.lengths.append(len(cids))
                out.docs.append(out.n_docs)
            out.n_docs += 1
    bar.close()
    tok_b.end_document()
    mask_b.end_document()
    tok_b.finalize(str(out.prefix) + ".idx")
    mask_b.finalize(str(out.prefix) + "_mask.idx")
    st["skipped_bad"] = dict(skipped)
    st["raw_tokens"] = tokens
    stats[src.name] = st
    log(f"[data] {src.name}: {st['read']} records, {out.n_docs} documents kept "
        f"({sum(skipped.values())} skipped as bad/empty, {st['decontaminated']} overlapping eval sets)")
    return out


def _check_not_empty(recipe, sources: dict, stats: dict, log) -> None:
    """Warn about sources that gave no documents; refuse a blend in which a whole kind (cpt or it) is empty."""
    from findap_nemo.data.sources import DataError

    for src in recipe.sources:
        st = stats[src.name]
        if sources[src.name].n_docs == 0:
            why = "no records (empty file?)" if st["read"] == 0 else \
                f"{st['read']} records read, none kept (skipped: {st['skipped_bad'] or 'none'}, dropped: " \
                f"{st['dropped'] or 'none'}, decontaminated: {st['decontaminated']})"
            log(f"[data] WARNING: source '{src.name}' ({src.path or src.hf_dataset}) gave no documents: {why}")
    for kind in ("cpt", "it"):
        names = [src.name for src in recipe.sources if src.kind == kind]
        if names and all(sources[n].n_docs == 0 for n in names):
            raise DataError(f"every {kind.upper()} source is empty ({', '.join(names)}): the blend would have no "
                            f"{kind.upper()} data; fix the sources or remove them from the recipe")


def _pack(lengths: list[int], capacity: int) -> list[list[int]]:
    """Next-fit packing in the given (shuffled) order: documents never cross a pack boundary."""
    packs: list[list[int]] = []
    current: list[int] = []
    used = 0
    for i, n in enumerate(lengths):
        if current and used + n > capacity:
            packs.append(current)
            current, used = [], 0
        current.append(i)
        used += n
    if current:
        packs.append(current)
    return packs


def _write(prefix: Path, items: list[tuple[_Tokenized, int]], packs: list[list[int]]) -> dict:
    """Copy the packed sequences from the temporary per-source datasets into one component (streaming)."""
    import torch
    from megatron.core.datasets.indexed_dataset import IndexedDatasetBuilder

    tok_b = IndexedDatasetBuilder(str(prefix) + ".bin", dtype=np.int32)
    mask_b = IndexedDatasetBuilder(str(prefix) + "_mask.bin", dtype=np.uint8)
    tokens = targets = 0
    with warnings.catch_warnings():  # read-only memory-mapped views: the builder copies them, nothing writes them
        warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
        for pack in packs:
            for i in pack:
                src, seq = items[i]
                tds, mds = src.open()
                ids, mask = tds[seq], mds[seq]
                tok_b.add_item(torch.from_numpy(ids))
                mask_b.add_item(torch.from_numpy(mask))
                tokens += len(ids)
                targets += int(np.count_nonzero(mask))
            tok_b.end_document()
            mask_b.end_document()
    tok_b.finalize(str(prefix) + ".idx")
    mask_b.finalize(str(prefix) + "_mask.idx")
    return {"packs": len(packs), "documents": sum(len(p) for p in packs), "tokens": tokens, "target_tokens": targets}


def build(recipe: DataRecipe, *, log=print) -> Path:
    """Build the dataset of ``recipe``; returns the manifest path. One build per output folder at a time."""
    t0 = time.time()
    out = Path(recipe.output_dir)
    if (out / "manifest.json").is_file() and not recipe.force:
        raise FileExistsError(f"{out} already holds a complete dataset; set force=true to rebuild it")
    tmp = out.with_name(f"{out.name}.partial")
    try:
        return _build_in(recipe, out, tmp, t0, log)
    except OSError as err:
        from findap_nemo.storage import describe

        failure = describe(err, tmp, "the dataset")
        if failure is None:
            raise
        raise failure from err  # the folder stays <out>.partial: never taken for a finished dataset


def _build_in(recipe: DataRecipe, out: Path, tmp: Path, t0: float, log) -> Path:
    work = tmp / "_tokenized"
    work.mkdir(parents=True, exist_ok=True)
    lock = open(tmp / ".lock", "w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise FileExistsError(f"another build is writing {tmp}; wait for it or pick another output_dir") from None
    try:
        return _build_locked(recipe, out, tmp, work, t0, log)
    finally:
        lock.close()


def _build_locked(recipe: DataRecipe, out: Path, tmp: Path, work: Path, t0: float, log) -> Path:
    from findap_nemo.data.decontam import Decontaminator, eval_texts
    from findap_nemo.tokenizer import end_of_text_id, load_tokenizer, pad_token_id, require_chat_template

    for p in tmp.iterdir():  # outputs of an interrupted build are redone; its finished sources are kept
        if p.name not in ("_tokenized", ".lock"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
    tok = load_tokenizer(recipe.tokenizer)
    if any(src.kind == "it" for src in recipe.sources):
        require_chat_template(tok, f"tokenizer={recipe.tokenizer} (instruction sources need it)")
    L = recipe.seq_length + 1
    rng = random.Random(recipe.seed)

    # 1. read, decontaminate and tokenize every source to disk --------------------------------------------------
    dec = None
    d = recipe.decontamination
    if d.eval_sets or d.eval_tasks:
        dec = Decontaminator(eval_texts(d.eval_sets, d.eval_tasks), n=d.ngram)
        log(f"[data] decontamination index: {len(dec.index)} {d.ngram}-grams from {len(dec.files)} eval sets")
    stats: dict[str, dict] = {}
    sources: dict[str, _Tokenized] = {}
    todo = []
    for src in recipe.sources:
        fp = _fingerprint(src, recipe, dec)
        reused = _Tokenized.load_done(work / src.name, fp)
        if reused is None:
            todo.append((src, fp))
            continue
        sources[src.name], stats[src.name] = reused
        log(f"[data] {src.name}: reusing the tokenized output of an interrupted build ({reused[0].n_docs} documents)")
    from megatron.core.datasets import indexed_dataset  # noqa: F401 - imported before the clock starts

    t_tok = time.time()
    if todo:
        encoder = _Encoder(recipe.tokenizer, recipe.num_workers, loaded=tok)
        try:
            for src, fp in todo:
                sources[src.name] = _tokenize_source(src, recipe, dec, encoder, work, stats, log)
                sources[src.name].save_done(stats[src.name], fp)
        finally:
            encoder.close()
    sources = {src.name: sources[src.name] for src in recipe.sources}
    _check_not_empty(recipe, sources, stats, log)
    tok_seconds = time.time() - t_tok
    fresh = {src.name for src, _ in todo}
    total_tokens = sum(st["raw_tokens"] for name, st in stats.items() if name in fresh)
    log(f"[data] tokenized {total_tokens} tokens in {tok_seconds:.1f}s "
        f"({total_tokens / max(tok_seconds, 1e-9):.0f} tokens/s)")

    # 2. downsample CPT to the IT size (FinDAP: shuffle with the seed, keep as many examples as IT) -------------
    b = recipe.blend
    it_seqs = [(name, i) for name, t in sources.items() if stats[name]["kind"] == "it" for i in range(len(t.lengths))]
    cpt_docs: list[tuple[str, int]] = [(name, doc) for name, t in sources.items() if stats[name]["kind"] == "cpt"
                                       for doc in range(t.n_docs)]
    rng.shuffle(cpt_docs)
    doc_tokens: dict[str, np.ndarray] = {}
    for name, t in sources.items():
        if stats[name]["kind"] == "cpt":
            doc_tokens[name] = np.bincount(np.asarray(t.docs, dtype=np.int64),
                                           weights=np.asarray(t.lengths, dtype=np.float64), minlength=t.n_docs)
    it_tokens = sum(sources[n].lengths[i] for n, i in it_seqs)
    kept = cpt_docs
    if b.downsample_cpt != "none" and it_seqs:
        if b.downsample_cpt == "examples":
            kept = cpt_docs[: int(round(b.cpt_to_it_ratio * len(it_seqs)))]
        else:
            budget, used, n = b.cpt_to_it_ratio * it_tokens, 0.0, 0
            while n < len(cpt_docs) and used < budget:
                used += doc_tokens[cpt_docs[n][0]][cpt_docs[n][1]]
                n += 1
            kept = cpt_docs[:n]
    for name, _ in cpt_docs[len(kept):]:
        _count(stats[name]["dropped"], "downsampled (CPT cut to the IT size)")
    kept_set: dict[str, set] = defaultdict(set)
    for name, doc in kept:
        kept_set[name].add(doc)
    downsampling = {"unit": b.downsample_cpt, "ratio": b.cpt_to_it_ratio, "it_documents": len(it_seqs),
                    "it_tokens": int(it_tokens), "cpt_documents_before": len(cpt_docs),
                    "cpt_documents_kept": len(kept),
                    "cpt_tokens_kept": int(sum(doc_tokens[n][d] for n, d in kept))}
    log(f"[data] CPT downsampled by {b.downsample_cpt}: {len(kept)}/{len(cpt_docs)} documents kept for "
        f"{len(it_seqs)} IT examples")

    # 3. per-domain components: CPT and IT mixed (joint training), shuffled, packed, split, written --------------
    by_domain: dict[str, list[tuple[_Tokenized, int]]] = defaultdict(list)
    for name, t in sources.items():
        st = stats[name]
        if st["kind"] not in b.kinds:
            _count(st["dropped"], f"not in blend.kinds {list(b.kinds)}", len(kept_set[name]) if st["kind"] == "cpt"
                   else len(t.lengths))
            continue
        for seq, (doc, n) in enumerate(zip(t.docs, t.lengths)):
            if st["kind"] == "cpt" and doc not in kept_set[name]:
                continue
            by_domain[st["domain"]].append((t, seq))
            _count(st, "documents")
            _count(st, "tokens", n)
    components = []
    for domain in sorted(by_domain):
        items = by_domain[domain]
        rng.shuffle(items)
        packs = _pack([t.lengths[seq] for t, seq in items], L)
        n_valid = int(len(packs) * b.valid_fraction)
        if b.valid_fraction > 0 and n_valid == 0 and len(packs) >= 2:
            n_valid = 1
        for split, sp in (("valid", packs[:n_valid]), ("train", packs[n_valid:])):
            if not sp:
                continue
            info = _write(tmp / f"{domain}_{split}", items, sp)
            info.update(domain=domain, split=split, prefix=f"{domain}_{split}",
                        packing_efficiency=info["tokens"] / (len(sp) * L))
            components.append(info)
            log(f"[data] {domain}/{split}: {info['packs']} packs, {info['tokens']} tokens "
                f"({info['packing_efficiency']:.1%} of capacity)")
    for t in sources.values():
        t._ds = None
    pipeline_seconds = time.time() - t_tok  # tokenize + downsample + pack + write (what a baseline also does)

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
        "pad_id": pad_token_id(tok),
        "eos_id": tok.eos_token_id,
        "end_of_text_id": end_of_text_id(tok),
        "chat_template_sha256": hashlib.sha256((tok.chat_template or "").encode()).hexdigest()[:16],
        "seed": recipe.seed,
        "sources": stats,
        "decontamination": {"ngram": d.ngram, "eval_files": sorted(dec.files) if dec else [],
                            "removed": {k: v["decontaminated"] for k, v in stats.items()}},
        "downsampling": downsampling,
        "components": components,
        "blend": blend,
        "timing": {"seconds": time.time() - t0, "tokenize_seconds": tok_seconds, "tokens": total_tokens,
                   "tokens_per_s": total_tokens / max(tok_seconds, 1e-9), "pipeline_seconds": pipeline_seconds,
                   "pipeline_tokens_per_s": total_tokens / max(pipeline_seconds, 1e-9),
                   "reused_sources": sorted(set(sources) - fresh)},
        "recipe": asdict(recipe),
    }
    tmp_manifest = tmp / "manifest.json.tmp"
    tmp_manifest.write_text(json.dumps(manifest, indent=2))
    os.replace(tmp_manifest, tmp / "manifest.json")  # last file written: its presence means complete
    shutil.rmtree(work, ignore_errors=True)
    (tmp / ".lock").unlink(missing_ok=True)  # our handle stays locked until build() closes it
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    log(f"[data] wrote {out}/manifest.json in {time.time() - t0:.1f}s")
    return out / "manifest.json"
