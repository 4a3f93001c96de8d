"""The pipeline runner (skip finished stages, resume at a failure) and the report writer, on small real commands."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from findap_nemo.pipeline.report import Report, md_table, plot_curves
from findap_nemo.pipeline.runner import Runner, Stage, StageFailed


def _touch_stage(name: str, out: Path, marker: Path, fail: bool = False) -> Stage:
    code = (f"import sys, pathlib; pathlib.Path({str(marker)!r}).open('a').write('{name}\\n'); "
            + ("sys.exit(3)" if fail else f"pathlib.Path({str(out)!r}).write_text('ok'); print('[{name}] done')"))
    return Stage(name, f"stage {name}", lambda: [sys.executable, "-c", code], lambda: [out])


def test_reruns_skip_finished_stages_and_resume_at_the_failure(tmp_path, capsys):
    marker = tmp_path / "ran.txt"
    a = _touch_stage("a", tmp_path / "a.out", marker)
    b_bad = _touch_stage("b", tmp_path / "b.out", marker, fail=True)
    with pytest.raises(StageFailed) as exc:
        Runner(tmp_path / "run", resume_hint="`findap-nemo run x.yaml`").run([a, b_bad])
    msg = str(exc.value)
    assert "stage 'b'" in msg and "exit code 3" in msg and "b.log" in msg and "resumes at 'b'" in msg
    assert marker.read_text().split() == ["a", "b"]

    b = _touch_stage("b", tmp_path / "b.out", marker)
    records = Runner(tmp_path / "run").run([a, b])
    assert marker.read_text().split() == ["a", "b", "b"]  # a was skipped
    assert records["a"]["skipped"] and not records["b"]["skipped"]
    assert "done earlier" in capsys.readouterr().out

    (tmp_path / "a.out").unlink()  # a finished stage whose output vanished runs again
    Runner(tmp_path / "run").run([a, b])
    assert marker.read_text().split() == ["a", "b", "b", "a"]

    Runner(tmp_path / "run", force_stages={"b"}).run([a, b])
    assert marker.read_text().split()[-1] == "b"
    Runner(tmp_path / "run", force=True).run([a, b])
    assert marker.read_text().split()[-2:] == ["a", "b"]


def test_stage_that_promises_output_but_writes_none_fails(tmp_path):
    st = Stage("x", "x", lambda: [sys.executable, "-c", "pass"], lambda: [tmp_path / "missing"])
    with pytest.raises(StageFailed, match="did not produce"):
        Runner(tmp_path / "run").run([st])
    assert not (tmp_path / "run" / "stages" / "x.json").exists()


def test_report_markdown_and_self_contained_html(tmp_path):
    png = plot_curves({"loss": [(1, 3.0), (2, 2.5), (3, 2.0)]}, "loss", "value", tmp_path / "loss.png")
    assert png and png.stat().st_size > 1000
    rep = Report("Demo", tmp_path / "report")
    rep.heading("Table")
    rep.text(md_table([{"task": "fomc", "accuracy": 0.5}, {"task": "fpb", "accuracy": 0.25}]))
    rep.image(png)
    md, html = rep.write()
    text = md.read_text()
    assert "| task | accuracy |" in text and "| fomc | 0.5 |" in text and "loss.png" in text
    page = html.read_text()
    assert "<table>" in page and "<td>fomc</td>" in page and "data:image/png;base64," in page
    assert "src=\"loss.png\"" not in page  # nothing external
