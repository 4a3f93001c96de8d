"""`findap-nemo genrm` end to end on tiny random models: counts, DPO-readable pairs, resume, SCP wiring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from findap_nemo.config import ConfigError, load_config
from findap_nemo.genrm.config import GenRMConfig
from helpers import REPO
from findap_nemo.inference.base import Completion
from findap_nemo.inference.hf import HFEngine
from findap_nemo.genrm.run import GenRMRun

DEMO = REPO / "configs/genrm/demo.yaml"


def _overrides(model, out, **extra):
    base = {"policy.model": model, "genrm.model": model, "output_dir": out, "limit": 3, "chunk_prompts": 2,
            "sampling.num_samples": 2, "sampling.max_new_tokens": 8, "scp.max_new_tokens": 8,
            "backend.batch_size": 8}
    base.update(extra)
    return [f"{k}={v}" for k, v in base.items()]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines() if x.strip()]


def test_cli_end_to_end_counts_unparsable_judgements(tiny_hf_model_dir, tmp_path, capsys):
    from findap_nemo.cli import main

    out = tmp_path / "run"
    # a random judge puts ~1% of its mass on Yes/No: with a 0.5 floor every judgement is unparsable
    rc = main(["genrm", "--config", str(DEMO), *_overrides(tiny_hf_model_dir, out, **{"fap.min_yes_no_mass": 0.5})])
    assert rc == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["prompts"] == 3 and summary["samples"] == 6 and summary["prompts_this_run"] == 3
    assert summary["judged"] == 0
    assert summary["unparsable_judgements"] + summary["empty_samples"] == 6
    assert summary["pairs"] == 0 and summary["pairs_per_method"] == {"fap": 0, "scp": 0}
    assert summary["pair_counts"]["fap_too_few_judged"] == 3
    # scp.apply_to=all in the demo: gibberish critiques are counted, not fatal
    assert summary["scp_attempted"] == 6 - summary["empty_samples"]
    assert summary["scp_unparsable"] + summary["scp_corrected"] + summary["scp_outcomes"].get("no_error", 0) \
        == summary["scp_attempted"]
    assert summary["throughput"]["generated_tokens"] > 0 and summary["throughput"]["prompts_per_s"] > 0
    assert (out / "pairs.jsonl").read_text() == "" and not list(out.glob("*.tmp*"))
    assert len(_lines(out / "progress.jsonl")) == 3
    assert json.loads(capsys.readouterr().out)["pairs"] == 0


def test_fap_pairs_are_read_by_the_dpo_stage_and_resume_skips_done_work(tiny_hf_model_dir, tmp_path):
    from findap_nemo.dpo.data import load_pairs
    from findap_nemo.tokenizer import load_tokenizer

    out = tmp_path / "run"
    calls = []

    def factory(spec):
        calls.append(spec.model)
        return HFEngine(spec.model, device="cpu", dtype="fp32", batch_size=8, max_length=spec.max_length)

    cfg = load_config(GenRMConfig, DEMO, _overrides(tiny_hf_model_dir, out, limit=2, **{"scp.enabled": "false"}))
    first = GenRMRun(cfg, factory).run()
    assert calls == [str(tiny_hf_model_dir)]  # judge == policy: loaded once
    assert first["prompts_this_run"] == 2 and first["judged"] + first["empty_samples"] == 4
    progress = (out / "progress.jsonl").read_bytes()

    # two more prompts: only those are sampled and judged; earlier records stay byte for byte
    cfg = load_config(GenRMConfig, DEMO, _overrides(tiny_hf_model_dir, out, limit=4, **{"scp.enabled": "false"}))
    second = GenRMRun(cfg, factory).run()
    assert second["prompts_this_run"] == 2 and second["prompts_done"] == 4 and second["samples"] == 8
    assert (out / "progress.jsonl").read_bytes().startswith(progress)
    recs = _lines(out / "progress.jsonl")
    assert [r["prompt_id"] for r in recs] == ["ratio-current", "ratio-quick", "fv-annual", "pv-single"]

    # pairs come from all four prompts and the DPO stage reads them
    pairs = _lines(out / "pairs.jsonl")
    assert second["pairs"] == len(pairs) == second["pairs_per_method"]["fap"]
    assert second["pairs"] + second["fap_ties_dropped"] + sum(
        v for k, v in second["pair_counts"].items() if k != "fap_ties_dropped") == 4
    for p in pairs:
        rec = next(r for r in recs if r["prompt_id"] == p["meta"]["prompt_id"])
        scores = [s["fap"] for s in rec["samples"]]
        assert p["chosen_reward"] == max(s for s in scores if s is not None) > p["rejected_reward"]
        assert p["prompt"] == rec["prompt"] and p["prompt"][-1]["role"] == "user"
        assert p["meta"]["method"] == "fap" and p["meta"]["genrm_model"] == str(tiny_hf_model_dir)
    assert pairs  # margin 0 in the demo: random judges still score two samples differently
    loaded, report = load_pairs(str(out / "pairs.jsonl"), load_tokenizer(tiny_hf_model_dir), seq_length=1024,
                                progress=False)
    assert len(loaded) == len(pairs) and report.dropped_too_long == 0

    # everything done: no model is loaded at all
    calls.clear()
    third = GenRMRun(cfg, factory).run()
    assert calls == [] and third["prompts_this_run"] == 0 and third["pairs"] == second["pairs"]

    # a run killed mid-write leaves a torn line: it is dropped and that prompt redone
    torn = (out / "progress.jsonl").read_bytes()
    last = torn.rstrip(b"\n").rsplit(b"\n", 1)[1]
    (out / "progress.jsonl").write_bytes(torn[:len(torn) - len(last) - 1] + last[:40])
    fourth = GenRMRun(cfg, factory).run()
    assert fourth["torn_progress_lines_dropped"] == 1 and fourth["prompts_this_run"] == 1
    assert len(_lines(out / "progress.jsonl")) == 4

    # different sampling settings must not mix into the same progress file
    cfg_changed = load_config(GenRMConfig, DEMO, _overrides(tiny_hf_model_dir, out, limit=4,
                                                            **{"scp.enabled": "false", "sampling.temperature": 0.5}))
    with pytest.raises(ConfigError, match="different settings.*sampling"):
        GenRMRun(cfg_changed, factory).run()
    # ... unless asked to start over; pair rules (margin) alone may change on resume
    cfg_margin = load_config(GenRMConfig, DEMO, _overrides(tiny_hf_model_dir, out, limit=4,
                                                           **{"scp.enabled": "false", "fap.margin": 1.0}))
    assert GenRMRun(cfg_margin, factory).run()["pairs"] == 0
    restart = load_config(GenRMConfig, DEMO, _overrides(tiny_hf_model_dir, out, limit=1, force="true",
                                                        **{"scp.enabled": "false", "sampling.temperature": 0.5}))
    assert GenRMRun(restart, factory).run()["prompts_this_run"] == 1
    assert len(_lines(out / "progress.jsonl")) == 1


class ScriptedJudge(HFEngine):
    """A real tiny model whose critiques are replaced by hand-written ones (a random model writes none)."""

    SCRIPT = ["First incorrect step: 1\nCorrected step: Current ratio = 450,000 / 300,000 = 1.5.",
              "no idea what you mean",
              "First incorrect step: none",
              "First incorrect step: 9\nCorrected step: x"]

    def generate(self, prompts, *, n=1, **kw):
        return [[Completion(self.SCRIPT[i % len(self.SCRIPT)], 5, True)] for i in range(len(prompts))]


def test_scp_pairs_continue_the_corrected_step_with_the_policy(tiny_hf_model_dir, tmp_path):
    from findap_nemo.model.hf_tiny import save_random_model

    judge_dir = save_random_model(tmp_path / "judge", tiny_hf_model_dir, seed=1)
    out = tmp_path / "run"
    engines = {}

    def factory(spec):
        cls = ScriptedJudge if Path(spec.model) == judge_dir else HFEngine
        engines[spec.model] = cls(spec.model, device="cpu", dtype="fp32", batch_size=8, max_length=spec.max_length)
        return engines[spec.model]

    ov = _overrides(tiny_hf_model_dir, out, limit=2, **{"genrm.model": judge_dir, "scp.apply_to": "all"})
    cfg = load_config(GenRMConfig, DEMO, ov)
    summary = GenRMRun(cfg, factory).run()
    assert isinstance(engines[str(judge_dir)], ScriptedJudge) and len(engines) == 2
    recs = _lines(out / "progress.jsonl")
    entries = [e for r in recs for e in r["scp"]]
    assert len(entries) == summary["scp_attempted"] == 4 - summary["empty_samples"]
    statuses = [e["status"] for e in entries]
    assert statuses == ["ok", "no_step_index", "no_error", "step_out_of_range"][:len(entries)]
    assert summary["scp_corrected"] == 1 and summary["scp_outcomes"]["ok"] == 1
    pairs = [p for p in _lines(out / "pairs.jsonl") if p["meta"]["method"] == "scp"]
    assert summary["pairs_per_method"]["scp"] == 1 and len(pairs) == 1
    pair, ok = pairs[0], entries[0]
    rec = next(r for r in recs if ok in r["scp"])
    original = rec["samples"][ok["sample"]]["text"]
    # random samples have no step markers: the whole solution is step 1 and is replaced from the start
    assert pair["rejected_response"] == original
    assert pair["chosen_response"] == ok["chosen"]
    assert ok["chosen"].startswith("Step 1: Current ratio = 450,000 / 300,000 = 1.5.\n")
    assert "continuation_finished" in ok
    # the corrected solution was judged too: the pair's rewards are the two FAP scores
    assert 0 < ok["chosen_fap"] < 1
    assert (pair["chosen_reward"], pair["rejected_reward"]) == (ok["chosen_fap"], rec["samples"][ok["sample"]]["fap"])
    assert pair["meta"] | {"method": "scp", "erroneous_step": 1, "genrm_model": str(judge_dir)} == pair["meta"]


def test_config_errors_name_every_key(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(GenRMConfig, DEMO, [f"policy.model={tmp_path}", "sampling.num_samples=1", "sampling.top_p=0",
                                        "scp.apply_to=some", "backend.kind=tpu", "prompts_file=/nope.jsonl",
                                        "genrm.url=node01:8000"])
    text = str(err.value)
    for key in ("policy.model", "genrm.model", "sampling.num_samples", "sampling.top_p", "scp.apply_to",
                "backend.kind", "prompts_file"):
        assert key in text
    # the same rule as FinEval's servers.<model>.url
    assert "genrm.url='node01:8000': an http(s):// address of an OpenAI-compatible server" in text
    bad_tpl = tmp_path / "fap.txt"
    bad_tpl.write_text("no placeholders")
    with pytest.raises(ConfigError, match=r"fap.template=.*lacks the placeholder"):
        load_config(GenRMConfig, DEMO, [f"fap.template={bad_tpl}"])


def test_load_progress_torn_tail_and_damaged_middle(tmp_path):
    from findap_nemo.genrm.run import load_progress

    path = tmp_path / "progress.jsonl"
    good = json.dumps({"prompt_id": "a", "samples": []}) + "\n" + json.dumps({"prompt_id": "b", "samples": []}) + "\n"
    path.write_text(good + '{"prompt_id": "c", "sam')
    done, torn = load_progress(path)
    assert sorted(done) == ["a", "b"] and torn == 1 and path.read_text() == good
    assert load_progress(path) == (done, 0)
    path.write_text('{"no_id": 1}\n' + good)
    with pytest.raises(ConfigError, match=r"progress.jsonl:1: not a progress record"):
        load_progress(path)


def test_truncated_samples_can_be_left_out(tiny_hf_model_dir, tmp_path):
    out = tmp_path / "run"
    cfg = load_config(GenRMConfig, DEMO, _overrides(tiny_hf_model_dir, out, limit=1, **{
        "sampling.keep_truncated": "false", "sampling.max_new_tokens": 3}))
    summary = GenRMRun(cfg).run()
    samples = _lines(out / "progress.jsonl")[0]["samples"]
    assert summary["truncated_samples_skipped"] == summary["truncated_samples"] == sum(not s["finished"]
                                                                                       for s in samples) > 0
    assert all(s["fap"] is None for s in samples if s["fap_status"] == "truncated")
    assert summary["judged"] + summary["truncated_samples_skipped"] + summary["empty_samples"] == 2
    assert summary["scp_attempted"] == summary["judged"]  # demo: scp.apply_to=all, truncated ones excluded


@pytest.mark.slow
def test_killed_and_resumed_run_writes_the_same_pairs(tiny_hf_model_dir, tmp_path):
    """kill -9 after the first chunk, resume with other chunk boundaries: pairs.jsonl is byte-identical to an
    uninterrupted run's (each prompt's samples depend only on the seed, its id and the sample index)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    from helpers import cli, env

    common = ["--config", str(DEMO)] + _overrides(tiny_hf_model_dir, "X", limit=8, **{"sampling.max_new_tokens": 12})
    full, split = tmp_path / "full", tmp_path / "split"
    args = lambda out, chunk: [a.replace("output_dir=X", f"output_dir={out}") for a in common] + \
        [f"chunk_prompts={chunk}"]  # noqa: E731
    cli("genrm", *args(full, 4))
    proc = subprocess.Popen([sys.executable, "-m", "findap_nemo.cli", "genrm", *args(split, 3)], cwd=REPO, env=env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    progress = split / "progress.jsonl"
    deadline = time.time() + 300
    while time.time() < deadline and not (progress.exists() and progress.read_text().count("\n") >= 3):
        assert proc.poll() is None, "finished before it could be killed"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    done = progress.read_text().count("\n")
    assert 3 <= done < 8 and not (split / "pairs.jsonl").exists()
    cli("genrm", *args(split, 4))  # resumes: prompts 4.. in chunks of 4 (the uninterrupted run: 1-4, 5-8)
    a, b = (full / "pairs.jsonl").read_bytes(), (split / "pairs.jsonl").read_bytes()
    assert a and a == b
    samples = lambda d: {r["prompt_id"]: [s["text"] for s in r["samples"]] for r in _lines(d / "progress.jsonl")}  # noqa: E731
    assert samples(full) == samples(split)


class PrefixedJudge(HFEngine):
    """Records the critique requests and answers only what follows the prefilled "First incorrect step:"."""

    seen: list = []

    def generate(self, prompts, *, n=1, **kw):
        PrefixedJudge.seen.extend(prompts)
        return [[Completion(" 1\nCorrected step: Current ratio = 450,000 / 300,000 = 1.5.", 5, True)]
                for _ in prompts]


def test_scp_reply_prefix_and_critique_cap(tiny_hf_model_dir, tmp_path):
    """scp.response_prefix is prefilled after the assistant header and parsed with the reply; with
    scp.max_critiques_per_prompt=1 only each prompt's worst-judged sample is critiqued."""
    from findap_nemo.model.hf_tiny import save_random_model

    judge_dir = save_random_model(tmp_path / "judge", tiny_hf_model_dir, seed=1)
    out = tmp_path / "run"
    PrefixedJudge.seen = []

    def factory(spec):
        cls = PrefixedJudge if Path(spec.model) == judge_dir else HFEngine
        return cls(spec.model, device="cpu", dtype="fp32", batch_size=8, max_length=spec.max_length)

    ov = _overrides(tiny_hf_model_dir, out, limit=2, **{"genrm.model": judge_dir, "scp.apply_to": "all",
                                                         "sampling.num_samples": 3,
                                                         "scp.max_critiques_per_prompt": 1,
                                                         "scp.response_prefix": '"First incorrect step:"'})
    summary = GenRMRun(load_config(GenRMConfig, DEMO, ov), factory).run()
    recs = _lines(out / "progress.jsonl")
    tok = HFEngine(str(judge_dir), device="cpu", dtype="fp32").tokenizer
    prefix = tok.encode("First incorrect step:", add_special_tokens=False)
    critiqued = [r for r in recs if any(s["fap_status"] == "ok" for s in r["samples"])]
    assert len(PrefixedJudge.seen) == summary["scp_attempted"] == len(critiqued)  # one per prompt, not three
    assert all(p[-len(prefix):] == prefix for p in PrefixedJudge.seen)
    for rec in critiqued:
        [entry] = rec["scp"]
        judged = [(s["fap"], i) for i, s in enumerate(rec["samples"]) if s["fap_status"] == "ok"]
        assert entry["sample"] == min(judged)[1]  # the worst-judged sample
        assert entry["status"] == "ok" and entry["critique"].startswith("First incorrect step: 1\n")
    assert summary["scp_corrected"] == len(critiqued)
