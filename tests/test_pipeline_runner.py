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


def test_stage_log_is_written_as_the_stage_runs_and_progress_reaches_the_console(tmp_path, capsys):
    """The stage log is line-buffered (a `tail -f` follows a running stage) and a stage's tqdm bar is echoed to the
    console, throttled, so a long stage is never silent."""
    log = tmp_path / "run" / "logs" / "slow.log"
    out = tmp_path / "slow.out"
    code = ("import sys, time, pathlib\n"
            "from tqdm import tqdm\n"
            "print('first line', flush=True)\n"
            f"deadline = time.time() + 60\n"
            f"while 'first line' not in pathlib.Path({str(log)!r}).read_text() and time.time() < deadline:\n"
            "    time.sleep(0.05)\n"
            f"seen = 'first line' in pathlib.Path({str(log)!r}).read_text()\n"
            "for _ in tqdm(range(3), desc='work', file=sys.stdout, mininterval=0):\n"
            "    pass\n"
            f"pathlib.Path({str(out)!r}).write_text(str(seen))\n")
    Runner(tmp_path / "run").run([Stage("slow", "slow stage", lambda: [sys.executable, "-c", code], lambda: [out])])
    assert out.read_text() == "True"  # the stage read its own first line back from the log while running
    assert "[slow] work:" in capsys.readouterr().out


def test_a_stale_stage_starts_over_and_an_unfinished_one_resumes(tmp_path, capsys):
    """One meaning of redo: a stage that finished but is stale starts from an empty output folder (no resuming into
    a checkpoint or GenRM progress of other inputs); a stage that never finished keeps what it left."""
    marker = tmp_path / "ran.txt"
    marker.write_text("")
    Runner(tmp_path / "run").run(_chain(tmp_path, marker))
    leftover = tmp_path / "run" / "b" / "progress.jsonl"  # e.g. GenRM progress, a checkpoint of b's inputs
    leftover.write_text("old\n")
    (tmp_path / "a.yaml").write_text("name: a\nlr: 2\n")  # a changes: b and c are stale
    capsys.readouterr()
    Runner(tmp_path / "run").run(_chain(tmp_path, marker))
    assert not leftover.exists() and f"starting over: removed {tmp_path / 'run' / 'b'}" in capsys.readouterr().out
    assert (tmp_path / "run" / "b" / "out.txt").is_file()

    # b killed before it finished (no record): the rerun resumes into what it left
    (tmp_path / "run" / "stages" / "b.json").unlink()
    leftover.write_text("partial\n")
    Runner(tmp_path / "run").run(_chain(tmp_path, marker))
    assert leftover.read_text() == "partial\n"
    assert outside_untouched(tmp_path)


def outside_untouched(tmp_path: Path) -> bool:
    """Nothing outside the run directory is ever removed (the stage configs live beside it)."""
    return all((tmp_path / f"{n}.yaml").is_file() for n in "abc")


def test_an_output_folder_named_by_the_stage_yaml_is_not_an_input(tmp_path):
    """`output_dir: runs/genrm` in a stage YAML names where a standalone run writes: its contents changing (another
    run writing there) must not make the pipeline's stage stale."""
    marker = tmp_path / "ran.txt"
    elsewhere = tmp_path / "runs" / "genrm"
    elsewhere.mkdir(parents=True)
    (elsewhere / "pairs.jsonl").write_text("a\n")
    (tmp_path / "a.yaml").write_text(f"output_dir: {elsewhere}\ncheckpoint:\n  save: {elsewhere}\n")
    Runner(tmp_path / "run").run(_chain(tmp_path, marker)[:1])
    (elsewhere / "pairs.jsonl").write_text("b\n")
    records = Runner(tmp_path / "run").run(_chain(tmp_path, marker)[:1])
    assert records["a"]["skipped"] and marker.read_text().split() == ["a"]
