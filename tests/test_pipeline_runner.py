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


def _copy_stage(name: str, config: Path, src: Path | None, out: Path, marker: Path) -> Stage:
    """A stage that reads a YAML config (and an upstream file) and writes ``out``: like every real stage."""
    code = ("import sys, pathlib; a = dict(x.split('=', 1) for x in sys.argv[1:] if '=' in x); "
            f"pathlib.Path({str(marker)!r}).open('a').write('{name}\\n'); "
            "pathlib.Path(a['out']).parent.mkdir(parents=True, exist_ok=True); "
            "pathlib.Path(a['out']).write_text(pathlib.Path(sys.argv[sys.argv.index('--config') + 1]).read_text() "
            "+ (pathlib.Path(a['src']).read_text() if 'src' in a else ''))")
    args = ["--config", str(config), f"out={out}"] + ([f"src={src}"] if src else [])
    return Stage(name, f"stage {name}", lambda: [sys.executable, "-c", code, *args], lambda: [out])


def _chain(tmp_path: Path, marker: Path) -> list[Stage]:
    cfg = {n: tmp_path / f"{n}.yaml" for n in "abc"}
    for n, p in cfg.items():
        if not p.exists():
            p.write_text(f"name: {n}\n")
    run = tmp_path / "run"
    a = _copy_stage("a", cfg["a"], None, run / "a" / "out.txt", marker)
    b = _copy_stage("b", cfg["b"], run / "a" / "out.txt", run / "b" / "out.txt", marker)
    c = _copy_stage("c", cfg["c"], run / "b" / "out.txt", run / "c" / "out.txt", marker)
    return [a, b, c]


def _ran(marker: Path, before: int) -> list[str]:
    return marker.read_text().split()[before:]


def test_stale_stages_rerun_with_the_reason(tmp_path, capsys):
    """An edited stage YAML reruns that stage and the ones that read its outputs (not the ones before it); re-running
    an upstream stage reruns everything after it; each rerun says why, in the console and in the record."""
    marker = tmp_path / "ran.txt"
    marker.write_text("")
    Runner(tmp_path / "run").run(_chain(tmp_path, marker))
    assert _ran(marker, 0) == ["a", "b", "c"]

    n = len(marker.read_text().split())
    Runner(tmp_path / "run").run(_chain(tmp_path, marker))
    assert _ran(marker, n) == []  # nothing changed: all skipped

    (tmp_path / "b.yaml").write_text("name: b\nmax_new_tokens: 64\n")  # edit b's config, same path
    n = len(marker.read_text().split())
    capsys.readouterr()
    records = Runner(tmp_path / "run").run(_chain(tmp_path, marker))
    out = capsys.readouterr().out
    assert _ran(marker, n) == ["b", "c"]
    assert f"input changed: {tmp_path / 'b.yaml'}" in out and "upstream stage reran or changed: b" in out
    assert records["a"]["skipped"] and records["c"]["reason"] == "upstream stage reran or changed: b"
    assert "max_new_tokens" in (tmp_path / "run" / "c" / "out.txt").read_text()  # c saw b's new output

    n = len(marker.read_text().split())
    Runner(tmp_path / "run", force_stages={"a"}).run(_chain(tmp_path, marker))
    assert _ran(marker, n) == ["a", "b", "c"]

    (tmp_path / "run" / "c" / "out.txt").write_text("edited by hand")
    n = len(marker.read_text().split())
    Runner(tmp_path / "run").run(_chain(tmp_path, marker))
    assert _ran(marker, n) == ["c"]


def test_a_file_named_by_the_stage_yaml_is_an_input(tmp_path):
    """Data sources, prompt templates, eval sets: files a stage's YAML names are part of its fingerprint."""
    marker = tmp_path / "ran.txt"
    src = tmp_path / "sources" / "finance.jsonl"
    src.parent.mkdir()
    src.write_text('{"text": "a"}\n')
    (tmp_path / "a.yaml").write_text(f"sources:\n  - path: {src}\n")
    Runner(tmp_path / "run").run(_chain(tmp_path, marker)[:1])
    src.write_text('{"text": "b"}\n')
    records = Runner(tmp_path / "run").run(_chain(tmp_path, marker)[:1])
    assert marker.read_text().split() == ["a", "a"]
    assert records["a"]["reason"] == f"input changed: {src}"
