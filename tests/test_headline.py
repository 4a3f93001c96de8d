"""The report's headline claims no more than the intervals show."""

from findap_nemo.pipeline.headline import headline_markdown, verdict


def _row(name, base, new, ci, excludes):
    return {"name": name, "kind": "category", "n": 200, "scores": {"base": base, "cpt_it": new},
            "ci95": {"base": [base - 0.05, base + 0.05], "cpt_it": [new - 0.05, new + 0.05]},
            "delta_vs_base": {"cpt_it": new - base},
            "delta_ci95_vs_base": {"cpt_it": {"ci95": ci, "excludes_zero": excludes}}}


def test_verdicts_follow_the_paired_interval():
    assert verdict(0.10, {"ci95": [0.04, 0.16], "excludes_zero": True}) == "improved"
    assert verdict(-0.08, {"ci95": [-0.12, -0.02], "excludes_zero": True}) == "declined"
    assert verdict(0.03, {"ci95": [-0.01, 0.07], "excludes_zero": False}) == "no detectable change"
    assert verdict(None, None) == "not measured"


def test_headline_table_and_sentences():
    table = {"models": ["base", "cpt_it"], "baseline": "base", "rows": [
        _row("unseen_similar", 0.40, 0.62, [0.15, 0.29], True),
        _row("novel_concepts", 0.55, 0.53, [-0.06, 0.02], False),
        _row("instruction_following", 0.50, 0.41, [-0.15, -0.03], True),
        {"name": "fpb_sentiment", "kind": "task", "scores": {"base": 0.4, "cpt_it": 0.6}},
    ]}
    md = headline_markdown(table)
    assert "| finance, similar tasks | 200 | 40.0 [35.0, 45.0] | 62.0 [57.0, 67.0] | +22.0 [+15.0, +29.0]* |" in md
    assert "fpb_sentiment" not in md  # categories only
    assert "Improved beyond noise: finance, similar tasks (+22.0 points" in md
    assert "Declined beyond noise: instruction following (-9.0 points" in md
    assert "No change the intervals can detect (held, or too small to tell): general knowledge" in md
