"""Shared-prefix prefill and per-row seeded sampling (inference.hf_batching, the HF engine) on a real tiny HF Llama.

The prefix cache must be an optimisation only: the same logits (to float rounding) and the same greedy tokens as
plain left-padded batches. Seeded samples must not depend on which prompts share a batch.
"""

from __future__ import annotations

import pytest
import torch

from findap_nemo.inference.hf_batching import MIN_SHARED_PREFIX, left_pad, shared_prefix_batch, shared_prefix_len

INSTRUCTION = ("Classify the sentiment of the headline as positive, negative or neutral. "
               "The company reported quarterly revenue of $4.2 billion. Headline: ")
HEADLINES = ["Net income fell to $310 million as interest expense rose.",
             "The Federal Reserve held rates steady.",
             "EBITDA margin was 18.5%, up 12% year over year, beating estimates by a wide margin.",
             "Revenue up."]


@pytest.fixture(scope="module")
def model_and_tok(tiny_hf_model_dir):
    from transformers import AutoModelForCausalLM

    from findap_nemo.tokenizer import load_tokenizer

    model = AutoModelForCausalLM.from_pretrained(tiny_hf_model_dir, dtype=torch.float32).eval()
    return model, load_tokenizer(tiny_hf_model_dir)


def _prompts(tok):
    return [tok.encode(INSTRUCTION + h, add_special_tokens=False) for h in HEADLINES]


def test_shared_prefix_len_leaves_the_read_positions_out():
    a, b = list(range(40)), list(range(30)) + [99] * 5
    assert shared_prefix_len([a, b]) == 30
    assert shared_prefix_len([a, b], reserve=6) == 29  # b keeps its last 6 tokens outside the prefix
    assert shared_prefix_len([a, a]) == 39  # identical rows: one token stays to read logits from
    assert shared_prefix_len([a[:MIN_SHARED_PREFIX - 1] + [1], a[:MIN_SHARED_PREFIX - 1] + [2]]) == 0  # too short


def test_prefix_cache_gives_the_logits_of_plain_batches(model_and_tok):
    model, tok = model_and_tok
    seqs = _prompts(tok)
    ids, mask, pos = left_pad(seqs, 0, "cpu")
    batch = shared_prefix_batch(model, seqs, 0, "cpu", reserve=3)
    assert batch.prefix_len >= len(tok.encode(INSTRUCTION, add_special_tokens=False)) - 2
    with torch.inference_mode():
        plain = model(input_ids=ids, attention_mask=mask, position_ids=pos).logits[:, -3:]
        cached = model(**batch.forward_kwargs()).logits[:, -3:]
    torch.testing.assert_close(cached, plain, atol=1e-4, rtol=1e-4)
    # and each row equals its sequence run alone (no padding at all)
    for k, s in enumerate(seqs):
        with torch.inference_mode():
            alone = model(input_ids=torch.tensor([s])).logits[0, -3:]
        torch.testing.assert_close(cached[k], alone, atol=1e-4, rtol=1e-4)


def test_eval_backend_generation_and_loglik_do_not_change_with_the_prefix_cache(tiny_hf_model_dir):
    from findap_nemo.inference.hf import HFEngine

    shared = HFEngine(str(tiny_hf_model_dir), device="cpu", dtype="fp32", batch_size=4, share_prefix=True)
    other = HFEngine(str(tiny_hf_model_dir), device="cpu", dtype="fp32", batch_size=4, share_prefix=False)
    seqs = _prompts(shared.tokenizer)
    texts = lambda eng: [c[0].text for c in eng.generate(seqs, max_new_tokens=8)]  # noqa: E731
    assert texts(shared) == texts(other)
    reqs = [(s, c) for s in seqs for c in ([5], [7, 9, 11])]
    for a, b in zip(shared.loglik(reqs), other.loglik(reqs)):
        assert a.logprob == pytest.approx(b.logprob, abs=1e-4)
        assert a.num_tokens == b.num_tokens


def test_seeded_samples_do_not_depend_on_batch_mates(tiny_hf_model_dir):
    from findap_nemo.inference.hf import HFEngine

    eng = HFEngine(str(tiny_hf_model_dir), device="cpu", dtype="fp32", batch_size=16)
    seqs = _prompts(eng.tokenizer)
    kw = dict(n=3, temperature=1.0, top_p=0.95, max_new_tokens=10)
    together = eng.generate(seqs, seeds=[11, 22, 33, 44], **kw)
    alone = eng.generate(seqs[2:3], seeds=[33], **kw)
    reordered = eng.generate([seqs[2], seqs[0]], seeds=[33, 11], **kw)
    texts = lambda comps: [c.text for c in comps]  # noqa: E731
    assert texts(together[2]) == texts(alone[0]) == texts(reordered[0])
    assert texts(together[0]) == texts(reordered[1])
    assert len(set(texts(together[2]))) > 1  # the n samples of a prompt differ
    assert texts(eng.generate(seqs[:1], seeds=[12], **kw)[0]) != texts(together[0])  # the seed matters
    # rows leaving the batch as they stop (the default) draw what generate() with the sampler as a logits
    # processor draws; stopping early is what makes rows leave, so stop on a token the samples use
    stop = eng.tokenizer.encode(together[1][0].text, add_special_tokens=False)[1]
    eng.stop_ids = [*eng.stop_ids, stop]
    plain = HFEngine(str(tiny_hf_model_dir), device="cpu", dtype="fp32", batch_size=16, drop_finished=False)
    plain.stop_ids = eng.stop_ids
    dropped, kept = eng.generate(seqs, seeds=[11, 22, 33, 44], **kw), plain.generate(seqs, seeds=[11, 22, 33, 44], **kw)
    assert [texts(c) for c in dropped] == [texts(c) for c in kept]
    assert [[c.finished for c in p] for p in dropped] == [[c.finished for c in p] for p in kept]
    assert any(c.finished for p in dropped for c in p) and not all(c.finished for p in dropped for c in p)


@pytest.mark.parametrize("vocab", [5, 4096])  # one sort of a small vocabulary; top-k candidates of a large one
def test_row_seeded_sampler_draws_from_the_tempered_top_p_distribution(vocab):
    from findap_nemo.inference.hf import RowSeededSampler

    logits = torch.full((1, vocab), -40.0)
    logits[0, :5] = torch.tensor([2.0, 1.0, 0.5, -1.0, -3.0])
    temperature, top_p, draws = 0.7, 0.9, 4000
    probs = torch.softmax(logits[0, :5] / temperature, -1)
    order = probs.argsort(descending=True)
    mass_before = probs[order].cumsum(0) - probs[order]
    kept = order[mass_before < top_p]
    expected = torch.zeros_like(probs)
    expected[kept] = probs[kept] / probs[kept].sum()
    counts = torch.zeros(5)
    sampler = RowSeededSampler(list(range(draws)), temperature, top_p)
    out = sampler(None, logits.expand(draws, -1).clone())
    assert bool((torch.isfinite(out).sum(-1) == 1).all())  # exactly one token left per row
    counts += torch.bincount(out.argmax(-1), minlength=vocab)[:5].float()
    assert int(out.argmax(-1).max()) < 5
    freq = counts / draws
    assert float(freq[expected == 0].sum()) == 0.0  # nothing outside the nucleus
    torch.testing.assert_close(freq, expected, atol=0.03, rtol=0)  # ~4 standard errors at 4000 draws


def test_row_seeded_sampler_rows_do_not_depend_on_the_batch():
    """A row's token depends on its logits and its own stream only: drawn in a batch of narrow (top-k) and wide
    (full-sort) nuclei, or alone, it is the same token, and it lies in its row's nucleus."""
    from findap_nemo.inference.hf import RowSeededSampler

    gen = torch.Generator().manual_seed(0)
    vocab, top_p = 4096, 0.9
    peaked, flat = torch.randn(vocab, generator=gen) * 6, torch.randn(vocab, generator=gen) * 0.05
    logits = torch.stack([peaked, flat, peaked * 0.5, flat * 2] * 3)
    n = logits.shape[0]
    together = RowSeededSampler(list(range(100, 100 + n)), 1.0, top_p).draw(logits, range(n))
    alone = [int(RowSeededSampler(list(range(100, 100 + n)), 1.0, top_p).draw(logits[k:k + 1], [k])[0])
             for k in range(n)]
    assert together.tolist() == alone
    for k in range(n):
        p = torch.softmax(logits[k], -1)
        sorted_p, order = p.sort(descending=True)
        nucleus = set(order[(sorted_p.cumsum(0) - sorted_p) < top_p].tolist())
        assert alone[k] in nucleus
    assert len(set(together[1::4].tolist())) > 1  # wide rows really sample (different streams, different tokens)


@pytest.mark.parametrize("share", [True, False])
def test_decode_with_rows_leaving_matches_greedy_generate(model_and_tok, share):
    """Rows that stop leave the batch (and the KV cache); every row still gets generate()'s greedy tokens. Stop
    tokens are picked from generate's own outputs so that rows stop at different steps."""
    from findap_nemo.inference.hf_batching import decode, plain_greedy

    model, tok = model_and_tok
    assert plain_greedy(model)
    seqs = _prompts(tok) + [tok.encode("Revenue up", add_special_tokens=False)]
    batch = lambda: shared_prefix_batch(model, seqs, 0, "cpu", share=share)  # noqa: E731 - a fresh cache each
    with torch.inference_mode():
        free = model.generate(**batch().generate_kwargs(), max_new_tokens=12, do_sample=False, pad_token_id=0,
                              eos_token_id=None)[:, -12:].tolist()
    stops = sorted({free[0][2], free[2][6], free[3][0]})  # row 3 stops at once, rows 0 and 2 on the way
    with torch.inference_mode():
        ref = model.generate(**batch().generate_kwargs(), max_new_tokens=12, do_sample=False, pad_token_id=0,
                             eos_token_id=stops)[:, -12:].tolist()
    expected = [r[:next((k + 1 for k, t in enumerate(r) if t in stops), len(r))] for r in ref]  # stop kept
    got = decode(model, batch(), 12, stops)
    assert got == expected
    assert len({len(g) for g in got}) >= 3 and min(len(g) for g in got) < 12  # rows really stopped apart
    assert decode(model, batch(), 1, stops) == [e[:1] for e in expected]
    # each prompt prefilled once, decoded twice: its copies are the rows a batch with it twice would give
    assert decode(model, batch(), 12, stops, repeat=2) == [g for g in expected for _ in range(2)]


def test_repeated_rows_draw_from_their_own_streams(model_and_tok):
    """decode(repeat=n) with per-row streams samples what decoding each prompt n times over gives."""
    from findap_nemo.inference.hf import RowSeededSampler
    from findap_nemo.inference.hf_batching import decode

    model, tok = model_and_tok
    seqs = _prompts(tok)
    seeds = list(range(100, 100 + 3 * len(seqs)))
    sampler = lambda: RowSeededSampler(seeds, 1.0, 0.9)  # noqa: E731 - fresh streams each time
    once = decode(model, shared_prefix_batch(model, seqs, 0, "cpu"), 8, [], pick=sampler().draw, repeat=3)
    rows = [s for s in seqs for _ in range(3)]
    thrice = decode(model, shared_prefix_batch(model, rows, 0, "cpu"), 8, [], pick=sampler().draw)
    assert once == thrice and len(once) == 12
    assert len({tuple(r) for r in once[:3]}) > 1  # a prompt's copies sample apart


def test_processor_settings_keep_generate(tiny_hf_model_dir):
    """A generation_config with a logits processor (here a repetition penalty) is decoded by generate()."""
    from findap_nemo.inference.hf import HFEngine

    be = HFEngine(str(tiny_hf_model_dir), device="cpu", dtype="fp32", batch_size=4)
    assert be.drop_finished
    be.model.generation_config.repetition_penalty = 1.3
    from findap_nemo.inference.hf_batching import plain_greedy

    assert not plain_greedy(be.model)
