"""`findap-nemo eval` end to end: registry, bad input counted, outputs, comparison table and chart, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from findap_nemo.config import ConfigError
from findap_nemo.eval import run_eval
from findap_nemo.eval.registry import iter_eval_texts, load_registry, select_tasks

REPO = Path(__file__).resolve().parents[1]


def _write_task(folder: Path, spec: dict, rows: list[str]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{spec['name']}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")
    spec = dict(spec, source={"path": f"{spec['name']}.jsonl"})  # relative to the task YAML
    (folder / f"{spec['name']}.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")


def test_shipped_registry_covers_every_category_and_type():
    reg = load_registry()
    assert 8 <= len(reg) <= 16
    assert {t.category for t in reg.values()} >= {"unseen_similar", "novel_concepts", "novel_finance", "reasoning",
                                                   "instruction_following"}
    from findap_nemo.eval.registry import TASK_TYPES

    assert {t.type for t in reg.values()} == set(TASK_TYPES)
    assert {t.mc_method for t in reg.values() if t.type == "multiple_choice"} == {"generate", "loglik"}
    from findap_nemo.eval.registry import load_examples
    from findap_nemo.eval.scoring import prepare

    for t in reg.values():  # every shipped example is valid input (no invalid gold or missing field)
        rows, shots = load_examples(t)
        assert 50 <= len(rows) <= 300, t.name
        errors = [p.error for i, r in enumerate(rows) if (p := prepare(t, r, i, shots)).error]
        assert errors == [], (t.name, errors)
    assert [t.name for t in select_tasks(reg, ["unseen_similar"])] == ["edtsum_headlines", "fin_ner", "fomc", "fpb_sentiment",
                                                                        "headline"]


def test_registry_errors_name_file_and_key(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: x\ncategory: finance\ntype: classification\nlabels: [a]\nsource: {path: x.jsonl}\n"
                   "promt: typo\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown task keys \['promt'\]"):
        load_registry([bad])
    bad.write_text("name: x\ncategory: finance\ntype: classification\nlabels: [a]\nsource: {pth: x.jsonl}\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*unknown source \(path or dataset\) keys \['pth'\]"):
        load_registry([bad])
    bad.write_text("name: x\ncategory: finance\ntype: classification\nlabels: [a]\nsource: x.jsonl\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*source \(path or dataset\) must be a mapping, got 'x.jsonl'"):
        load_registry([bad])
    bad.write_text("name: x\ncategory: finance\ntype: classification\nlabels: [a]\nsource: {path: x.jsonl}\n")
    with pytest.raises(ConfigError) as err:
        load_registry([bad])
    text = str(err.value)
    assert "category" in text and "'finance'" in text and "labels" in text  # every problem at once
    with pytest.raises(ConfigError, match="no such task or category"):
        select_tasks(load_registry(), ["fpb", "all"])


def test_iter_eval_texts_for_decontamination(tmp_path):
    texts = list(iter_eval_texts("fomc"))
    assert any("the Committee judges that further increases" in t for t in texts)
    assert "hawkish" in texts
    cfa = list(iter_eval_texts(["cfa_easy"]))
    assert any(t.startswith("A bond's price is most sensitive") for t in cfa)  # text and query
    assert "longest maturity and lowest coupon" in cfa  # choices
    by_path = list(iter_eval_texts(REPO / "samples/fineval/nq_open.jsonl"))
    assert "who is the author of the wealth of nations" in by_path and "Adam Smith" in by_path
    assert len(list(iter_eval_texts("reasoning"))) > len(cfa)  # a category: both CFA tasks


BAD_ROWS = [
    '{"id": "ok-1", "text": "Profit rose sharply.", "answer": "positive"}',
    '{"id": "ok-2", "text": "Losses widened.", "answer": "Negative"}',
    '{"id": "trunc", "text": "Sales',                                       # not JSON
    '{"id": "nofield", "answer": "neutral"}',                              # missing "text"
    '{"id": "badlabel", "text": "Shares fell.", "answer": "bearish"}',     # unknown label
    '["a list, not an object"]',
]


def test_run_eval_counts_bad_input_and_compares_models(tiny_hf_model_dir, tmp_path):
    reg = tmp_path / "tasks"
    _write_task(reg, {"name": "senti", "category": "unseen_similar", "type": "classification",
                      "labels": ["positive", "negative", "neutral"], "prompt": "Sentiment? {{ text }}",
                      "max_new_tokens": 4}, BAD_ROWS)
    _write_task(reg, {"name": "mc", "category": "reasoning", "type": "multiple_choice", "mc_method": "loglik",
                      "prompt": "{{ question }}\n{{ choices_block }}"},
                ['{"question": "q1", "choices": ["x", "y"], "answer": "B"}',
                 '{"question": "q2", "choices": "x or y", "answer": "A"}',      # options not a list
                 '{"question": "q3", "choices": ["x", "y"], "answer": "[[A]]"}'])
    out = tmp_path / "out"
    cfg = {"models": {"base": str(tiny_hf_model_dir), "dpo": str(tiny_hf_model_dir)}, "registry": [str(reg)],
           "output_dir": str(out), "backend": {"kind": "hf", "device": "cpu"}, "generation": {"batch_size": 4}}
    res = run_eval(cfg)

    senti = res["models"]["base"]["tasks"]["senti"]
    assert senti["n"] == len(BAD_ROWS)  # nothing dropped from the denominator
    assert senti["counts"]["invalid_input"] == 4
    assert sum(senti["counts"].values()) == len(BAD_ROWS)
    assert senti["metrics"]["accuracy"] <= 2 / len(BAD_ROWS)
    records = [json.loads(l) for l in (out / "predictions/base/senti.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records][:2] == ["ok-1", "ok-2"] and len(records) == len(BAD_ROWS)
    errors = {r["line"]: r["error"] for r in records if r["status"] == "invalid_input"}
    assert ":3: not valid JSON" in errors[3]
    assert "'text'" in errors[4] and "bearish" in errors[5] and "JSON object" in errors[6]
    assert records[1]["gold"] == "negative"  # case-insensitive gold

    mc = res["models"]["dpo"]["tasks"]["mc"]
    assert mc["n"] == 3 and mc["counts"]["invalid_input"] == 1 and mc["requests"] == 4
    # identical checkpoints under two names: identical (deterministic) scores
    assert res["models"]["base"]["tasks"] == {k: {**v, **{x: res["models"]["base"]["tasks"][k][x] for x in
                                                          ("seconds", "examples_per_s", "tokens_per_s",
                                                           "predictions")}}
                                              for k, v in res["models"]["dpo"]["tasks"].items()}

    on_disk = json.loads((out / "results.json").read_text())
    assert on_disk["models"]["base"]["categories"] == res["models"]["base"]["categories"]
    assert set(on_disk["models"]["base"]["categories"]) == {"unseen_similar", "reasoning"}
    md = (out / "results.md").read_text()
    assert "## base" in md and "| senti |" in md
    comp = json.loads((out / "comparison.json").read_text())
    assert comp["models"] == ["base", "dpo"]
    overall = [r for r in comp["rows"] if r["kind"] == "overall"][0]
    assert overall["delta_vs_base"]["dpo"] == pytest.approx(0.0)
    assert overall["delta_ci95_vs_base"]["dpo"] == {"ci95": [0.0, 0.0], "excludes_zero": False}  # paired
    senti_row = next(r for r in comp["rows"] if r["name"] == "senti")
    assert senti_row["n"] == len(BAD_ROWS) and senti_row["chance"] == pytest.approx(1 / 3)
    lo, hi = senti_row["ci95"]["base"]
    assert lo <= res["models"]["base"]["tasks"]["senti"]["score"] <= hi
    assert "| dpo - base |" in (out / "comparison.md").read_text()
    png = (out / "comparison.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    assert not list(out.rglob("*.tmp*"))  # no partial files left


def test_planted_model_end_to_end_and_resume(tiny_hf_model_dir, tmp_path):
    """run_eval's loglik path picks the planted letter: accuracy = share of golds equal to it."""
    from findap_nemo.tokenizer import load_tokenizer
    from test_eval_planted import ctx_last_token, plant

    tok = load_tokenizer(tiny_hf_model_dir)
    planted = plant(tiny_hf_model_dir, tmp_path / "planted", {ctx_last_token(tok): "C"}, tok)
    reg = tmp_path / "tasks"
    golds = ["C", "A", "C", "B", "C"]
    _write_task(reg, {"name": "mc", "category": "reasoning", "type": "multiple_choice", "mc_method": "loglik",
                      "prompt": "{{ text }}\n{{ choices_block }}"},
                [json.dumps({"text": f"question {i}", "choices": ["p", "q", "r"], "answer": g})
                 for i, g in enumerate(golds)])
    cfg = {"models": {"planted": str(planted)}, "registry": [str(reg)], "output_dir": str(tmp_path / "o"),
           "backend": {"kind": "hf", "device": "cpu"}}  # force=false (the default): identical runs are reused
    res = run_eval(cfg)
    assert res["models"]["planted"]["tasks"]["mc"]["score"] == pytest.approx(3 / 5)
    preds = [json.loads(l)["pred"] for l in (tmp_path / "o/predictions/planted/mc.jsonl").read_text().splitlines()]
    assert preds == ["C"] * 5
    assert not (tmp_path / "o/comparison.md").exists()  # one model: no comparison
    # resume: an identical run reuses the predictions without loading the model
    import findap_nemo.inference as inference

    def boom(*a, **k):
        raise AssertionError("the model should not be loaded again")

    orig, inference.make_engine = inference.make_engine, boom
    try:
        again = run_eval(cfg)
    finally:
        inference.make_engine = orig
    assert again["models"]["planted"]["tasks"]["mc"]["score"] == pytest.approx(3 / 5)


def test_cli_demo_config_and_config_errors(tiny_hf_model_dir, tmp_path, capsys):
    from findap_nemo.cli import main

    out = tmp_path / "cli"
    rc = main(["eval", "--config", str(REPO / "configs/eval/demo.yaml"), f"models.base={tiny_hf_model_dir}",
               f"models.dpo={tiny_hf_model_dir}", f"output_dir={out}", "tasks=[fomc,cfa_easy,fin_ner,tatqa_numeric]",
               "limit=3", "generation.max_new_tokens=6"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "FinEval comparison" in printed and "| fomc |" in printed
    assert (out / "comparison.png").is_file() and (out / "predictions/dpo/tatqa_numeric.jsonl").is_file()
    res = json.loads((out / "results.json").read_text())
    assert all(r["n"] == 3 for r in res["models"]["base"]["tasks"].values())
    # tasks split over two jobs merge into one table per model
    out2 = tmp_path / "cli2"
    assert main(["eval", "--config", str(REPO / "configs/eval/demo.yaml"), f"models.base={tiny_hf_model_dir}",
                 f"output_dir={out2}", "tasks=mmlu_finance", "limit=3"]) == 0  # a bare name is a list of one
    rc = main(["eval", "--compare", str(out / "results.json"), str(out2 / "results.json"), "--output-dir",
               str(tmp_path / "cmp")])
    assert rc == 0 and (tmp_path / "cmp/comparison.png").is_file()
    merged = json.loads((tmp_path / "cmp/results.json").read_text())
    assert list(merged["models"]) == ["base", "dpo"]
    assert set(merged["models"]["base"]["tasks"]) == {"fomc", "cfa_easy", "fin_ner", "tatqa_numeric", "mmlu_finance"}
    assert "novel_concepts" in merged["models"]["base"]["categories"]
    assert "novel_concepts" not in merged["models"]["dpo"]["categories"]
    capsys.readouterr()

    assert main(["eval", "--list-tasks", "registry=configs/eval/fineval_hub"]) == 0
    listing = capsys.readouterr().out
    assert "fineval_cfa_easy" in listing and "Salesforce/FinEval:CFA-Easy:test" in listing
    assert main(["eval", "--list-tasks"]) == 0
    assert "tatqa_numeric            novel_finance" in capsys.readouterr().out

    rc = main(["eval", "--config", str(REPO / "configs/eval/demo.yaml"), "models.x=/no/such/dir",
               "backend.kind=tpu", "tasks=[nope]"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "models.x='/no/such/dir'" in err and "backend.kind='tpu'" in err


def test_few_shot_hub_style_source_and_plain_prompts(tiny_hf_model_dir, tmp_path):
    """source.dataset goes through datasets.load_dataset (the generic json builder here, a hub name on a cluster);
    few-shot demonstrations become user/assistant turns and leave the eval set; chat_template=false works."""
    from findap_nemo.eval.prompts import encode_messages
    from findap_nemo.eval.registry import load_examples, task_from_dict
    from findap_nemo.eval.scoring import prepare
    from findap_nemo.tokenizer import load_tokenizer

    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps({"question": f"capital {i}?", "answer": f"city{i}", "choices": ["x", "y"],
                                        "idx": i % 2}) + "\n" for i in range(5)))
    spec = {"name": "qa", "category": "novel_concepts", "type": "exact_match", "few_shot": 2,
            "source": {"dataset": "json", "data_files": str(data), "split": "train"},
            "prompt": "Q: {{ question }}", "answer_template": "A: {{ answer }}", "max_new_tokens": 3}
    task = task_from_dict(spec, "test")
    rows, shots = load_examples(task)
    assert [r["question"] for r in shots] == ["capital 0?", "capital 1?"] and len(rows) == 3
    msgs = prepare(task, rows[0], 0, shots).messages
    assert [m["role"] for m in msgs] == ["user", "assistant", "user", "assistant", "user"]
    assert msgs[1]["content"] == "A: city0" and msgs[-1]["content"] == "Q: capital 2?"
    tok = load_tokenizer(tiny_hf_model_dir)
    chat = tok.decode(encode_messages(tok, msgs, chat_template=True))
    plain = tok.decode(encode_messages(tok, msgs, chat_template=False))
    assert "<|start_header_id|>assistant<|end_header_id|>" in chat and chat.count("<|eot_id|>") == 5
    assert "<|start_header_id|>" not in plain and "A: city1" in plain
    # an MMLU-style integer answer names an option by index
    mc = task_from_dict({"name": "m", "category": "reasoning", "type": "multiple_choice", "answer_field": "idx",
                         "source": {"path": str(data)}, "prompt": "{{ question }}"}, "test")
    assert prepare(mc, rows[0], 0, []).gold == "A" and prepare(mc, rows[1], 1, []).gold == "B"

    reg = tmp_path / "reg"
    reg.mkdir()
    (reg / "qa.yaml").write_text(yaml.safe_dump(spec))
    res = run_eval({"models": {"m": str(tiny_hf_model_dir)}, "registry": [str(reg)], "output_dir": str(tmp_path / "o"),
                    "backend": {"kind": "hf", "device": "cpu"}, "generation": {"chat_template": False},
                    "save_prompts": True})
    assert res["models"]["m"]["tasks"]["qa"]["n"] == 3
    rec = json.loads((tmp_path / "o/predictions/m/qa.jsonl").read_text().splitlines()[0])
    assert rec["prompt"].startswith("<|begin_of_text|>Q: capital 0?") and rec["prompt"].endswith("Q: capital 2?\n\n")
    assert rec["prompt_tokens"] > 5


def test_hub_registry_parses():
    reg = load_registry([REPO / "configs/eval/fineval_hub"])
    assert reg["fineval_cfa_easy"].bracket_only and reg["fineval_fpb"].source.subset == "FPB"


def test_worker_processes_score_exactly_as_one_process(tiny_hf_model_dir, tmp_path):
    """workers=2 spreads (model, task) units over two spawned processes: the same predictions and scores, one
    process's share of the CPU threads each; a bad worker setting is refused up front."""
    from findap_nemo.config import ConfigError

    base = {"models": {"a": str(tiny_hf_model_dir), "b": str(tiny_hf_model_dir)},
            "tasks": ["fomc", "cfa_easy", "fin_ner"], "limit": 4, "chart": False,
            "generation": {"max_new_tokens": 5, "batch_size": 4}, "backend": {"kind": "hf", "device": "cpu"}}
    one = run_eval({**base, "output_dir": str(tmp_path / "one")})
    two = run_eval({**base, "output_dir": str(tmp_path / "two"), "workers": 2})
    for model in ("a", "b"):
        for task in ("fomc", "cfa_easy", "fin_ner"):
            assert two["models"][model]["tasks"][task]["score"] == one["models"][model]["tasks"][task]["score"]
            rows = [(tmp_path / d / f"predictions/{model}/{task}.jsonl").read_text().splitlines()
                    for d in ("one", "two")]
            assert [json.loads(r).get("output", json.loads(r).get("option_scores")) for r in rows[0]] == \
                [json.loads(r).get("output", json.loads(r).get("option_scores")) for r in rows[1]]
    with pytest.raises(ConfigError, match="workers"):
        run_eval({**base, "output_dir": str(tmp_path / "bad"), "workers": 0})
    with pytest.raises(ConfigError, match="vLLM batches"):
        run_eval({**base, "output_dir": str(tmp_path / "bad"), "workers": 2, "backend": {"kind": "vllm"}})


def test_costly_units_are_scheduled_first():
    """Workers take (model, task) units longest first: decoding budgets count, loglik tasks cost their prompts."""
    from findap_nemo.eval.registry import load_examples
    from findap_nemo.eval.config import EvalConfig
    from findap_nemo.eval.run import _unit_cost

    cfg = EvalConfig(tasks=["headline", "fin_ner", "arc_easy"])
    tasks = {t.name: t for t in select_tasks(load_registry([REPO / "configs/eval/tasks"]), cfg.tasks)}
    rows = {name: load_examples(t)[0][:50] for name, t in tasks.items()}
    cost = {name: _unit_cost(t, rows[name], cfg) for name, t in tasks.items()}
    text = {name: sum(len(json.dumps(r, ensure_ascii=False)) for r in rows[name]) / 4 for name in tasks}
    assert cost["arc_easy"] == text["arc_easy"]  # loglik: no decoding
    assert cost["fin_ner"] == text["fin_ner"] + 50 * tasks["fin_ner"].max_new_tokens
    assert cost["fin_ner"] > cost["headline"]
    longer = EvalConfig(tasks=["headline"])
    longer.generation.max_new_tokens = 500
    assert _unit_cost(tasks["headline"], rows["headline"], longer) == text["headline"] + 50 * 500
