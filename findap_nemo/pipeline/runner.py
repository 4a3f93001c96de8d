"""Run a list of stages as subprocesses, each recorded in the run directory so a rerun skips finished work.

Every stage writes ``<run_dir>/stages/<name>.json`` when (and only when) it finished: the command, its fingerprint,
start/end times and the outputs it promised. The fingerprint has three parts, and a rerun skips a stage only when all
three are unchanged and its outputs still exist unmodified:

* ``command``: the stage's command line;
* ``inputs``: every file or folder the command names that no stage produces (its YAML config by content, plus the
  paths that YAML names, e.g. data sources, prompt templates, eval sets; a tokenizer or base model folder);
* ``upstream``: for every earlier stage whose outputs the command names, that stage's run and its outputs' state,
  so re-running ``train`` (``--force-stage train``) reruns export, GenRM, DPO and eval after it.

Each stage that runs is reported with the reason (``--force``, config changed, upstream reran, ...). One meaning
of "redo" for every stage: a stage that finished before but is stale (or forced) starts over, its output folders
inside the run directory removed first, so no stage resumes into results of other inputs (a trained checkpoint at
``train_iters``, GenRM progress of another policy); a stage that never finished (killed, failed) resumes from what
it left. Stages run as
supervised subprocesses (:mod:`findap_nemo.supervise`): signals to ``findap-nemo run`` reach the running stage, and
it dies with the runner. A stage that checkpoints after a signal (exit 75) stops the pipeline with exit 75; a
failing stage stops it with a message naming the stage, its exit code, its log, and how to resume.
"""

from __future__ import annotations

import glob
import json
import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import yaml

from findap_nemo.files import write_json_atomic
from findap_nemo.fingerprint import fingerprint_files, fingerprint_json
from findap_nemo.runtime import EXIT_REQUEUE
from findap_nemo.supervise import Supervisor, exit_status


class StageFailed(RuntimeError):
    def __init__(self, message: str, code: int = 1):
        super().__init__(message)
        self.code = code


@dataclass
class Stage:
    name: str
    title: str
    command: Callable[[], list[str]]  # built lazily: later stages read earlier stages' outputs
    outputs: Callable[[], list[Path]]
    env: dict = field(default_factory=dict)
    # the stage checks and reuses its own earlier outputs (eval: per-unit fingerprints), so a stale run does not
    # start over in an empty folder
    reuses_outputs: bool = False


def _roots(stage: Stage) -> list[Path]:
    """The folders a stage writes: each output folder, or the folder of each output file. Outputs not written yet
    (a whole ablation rendered for SLURM up front) are folders when their name has no suffix."""
    return [Path(p) if Path(p).is_dir() or (not Path(p).exists() and not Path(p).suffix) else Path(p).parent
            for p in stage.outputs()]


def _mentions(arg: str, root: Path) -> bool:
    """``arg`` names ``root`` or a path below it (``x=<root>/...`` included)."""
    r = str(root)
    i = arg.find(r)
    while i >= 0:
        before = arg[i - 1] if i else "="
        after = arg[i + len(r)] if i + len(r) < len(arg) else "/"
        if before in "=:, " and after in "/,:":
            return True
        i = arg.find(r, i + 1)
    return False


def _under(path: str, root: Path) -> bool:
    a, r = Path(os.path.abspath(path)), Path(os.path.abspath(root))
    return a == r or r in a.parents


def _paths_in(arg: str) -> list[str]:
    """Existing paths named by a command argument (``key=value`` looks at the value; globs are expanded)."""
    value = arg.split("=", 1)[1] if "=" in arg and not arg.startswith("-") else arg
    if not value or value.startswith("-") or len(value) > 4096 or not ("/" in value or "." in value):
        return []
    if any(c in value for c in "*?["):
        return sorted(glob.glob(value))
    return [value] if os.path.exists(value) else []


# keys that name where a stage writes, not what it reads: a stage's own earlier outputs are never its inputs
OUTPUT_KEYS = frozenset({"output_dir", "save", "out", "output", "log_dir", "tensorboard_dir", "wandb_dir"})


def _yaml_paths(path: str) -> list[str]:
    """Paths named by the string values of a YAML config (data sources, prompt files, eval sets ...), except the
    values of output keys (``output_dir``, ``checkpoint.save``, ...)."""
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError, UnicodeDecodeError):
        return []
    out: list[str] = []

    def walk(v):
        if isinstance(v, dict):
            for k, x in v.items():
                if str(k) not in OUTPUT_KEYS:
                    walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)
        elif isinstance(v, str) and ("/" in v or v.endswith((".yaml", ".yml", ".jsonl", ".json", ".txt"))):
            out.extend(_paths_in(v))

    walk(data)
    return out


def _config_files(cmd: list[str]) -> list[str]:
    return [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "--config"] + \
        [a.split("=", 1)[1] for a in cmd if a.startswith("--config=")]


def _children_cpu_seconds() -> float:
    """User + system CPU time of every finished child process tree (a stage and the ranks it waited for): the
    cost of a stage independent of how loaded the machine was, which wall time is not."""
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def reads_from(cmd: list[str], earlier: list[Stage]) -> list[Stage]:
    """The earlier stages whose output folders ``cmd`` names (its upstream)."""
    return [up for up in earlier if any(_mentions(a, r) for a in cmd[1:] for r in _roots(up))]


def stage_inputs(stage: Stage, cmd: list[str], earlier: list[Stage]) -> dict[str, str]:
    """Content fingerprints of every file or folder ``cmd`` reads that no stage produces: its YAML configs, the
    paths those name, and the paths in its arguments (not the interpreter)."""
    produced = [r for up in earlier for r in _roots(up)] + _roots(stage)
    named = [p for a in cmd[1:] for p in _paths_in(a)]
    for cfg in _config_files(cmd):
        named += _yaml_paths(cfg)
    return {p: fingerprint_files([p]) for p in dict.fromkeys(named)
            if p != sys.executable and not any(_under(p, r) for r in produced)}


class Runner:
    def __init__(self, run_dir: Path, *, force: bool = False, force_stages: set[str] | None = None,
                 resume_hint: str = ""):
        self.run_dir = Path(run_dir)
        self.force = force
        self.force_stages = force_stages or set()
        self.resume_hint = resume_hint
        self.records: dict[str, dict] = {}

    def record_path(self, name: str) -> Path:
        return self.run_dir / "stages" / f"{name}.json"

    def log_path(self, name: str) -> Path:
        return self.run_dir / "logs" / f"{name}.log"

    def fingerprint(self, stage: Stage, cmd: list[str], earlier: list[Stage]) -> dict:
        """The three parts of a stage's fingerprint (see the module docstring)."""
        upstream = {}
        for up in reads_from(cmd, earlier):
            rec = self._record(up.name) or {}
            upstream[up.name] = fingerprint_json([rec.get("fingerprint"), rec.get("started"),
                                                  fingerprint_files(up.outputs())])
        return {"command": fingerprint_json(cmd), "inputs": stage_inputs(stage, cmd, earlier), "upstream": upstream}

    def _record(self, name: str) -> dict | None:
        path = self.record_path(name)
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except (OSError, json.JSONDecodeError):
            return None

    def why_run(self, stage: Stage, cmd: list[str], parts: dict) -> str | None:
        """None when the stage's record is fresh; else the reason it runs."""
        if self.force:
            return "--force"
        if stage.name in self.force_stages:
            return f"--force-stage {stage.name}"
        rec = self._record(stage.name)
        if rec is None:
            return "not run before" if not self.record_path(stage.name).exists() else "its record is unreadable"
        old = rec.get("parts")
        if not isinstance(old, dict):
            return "recorded by an older version (no input fingerprints)"
        if old.get("command") != parts["command"]:
            return "its command changed"
        changed = [p for p in sorted(set(old.get("inputs", {})) | set(parts["inputs"]))
                   if old.get("inputs", {}).get(p) != parts["inputs"].get(p)]
        if changed:
            return "input changed: " + ", ".join(changed[:4]) + (" ..." if len(changed) > 4 else "")
        ups = [u for u in sorted(set(old.get("upstream", {})) | set(parts["upstream"]))
               if old.get("upstream", {}).get(u) != parts["upstream"].get(u)]
        if ups:
            return "upstream stage reran or changed: " + ", ".join(ups)
        missing = [p for p in rec.get("outputs", []) if not Path(p).exists()]
        if missing:
            return f"output missing: {missing[0]}"
        if rec.get("outputs_fingerprint") != fingerprint_files(rec.get("outputs", [])):
            return "its outputs were modified after it finished"
        return None

    def _start_over(self, stage: Stage) -> None:
        """Remove a stale stage's output folders (only those inside the run directory) before it runs again."""
        run = self.run_dir.resolve()
        for root in dict.fromkeys(_roots(stage)):
            root = Path(root).resolve()
            if root != run and _under(str(root), run) and root.exists():
                shutil.rmtree(root) if root.is_dir() else root.unlink()
                print(f"      starting over: removed {root}", flush=True)

    def is_done(self, stage: Stage, cmd: list[str], earlier: list[Stage] = ()) -> bool:
        return self.why_run(stage, cmd, self.fingerprint(stage, cmd, list(earlier))) is None

    def run(self, stages: list[Stage]) -> dict[str, dict]:
        total = len(stages)
        for i, stage in enumerate(stages, 1):
            cmd = stage.command()
            head = f"[{i}/{total}] {stage.title}"
            parts = self.fingerprint(stage, cmd, stages[:i - 1])
            why = self.why_run(stage, cmd, parts)
            if why is None:
                rec = self._record(stage.name)
                rec["skipped"] = True
                self.records[stage.name] = rec
                print(f"{head}: done earlier ({rec['seconds']:.1f}s), inputs unchanged, skipped", flush=True)
                continue
            print(f"{head}: running ({why}) ... (log: {self.log_path(stage.name)})", flush=True)
            if why not in RESUMING and not stage.reuses_outputs:
                self._start_over(stage)
            self.record_path(stage.name).unlink(missing_ok=True)
            t0, cpu0 = time.time(), _children_cpu_seconds()
            code, signals = self._execute(cmd, stage)
            seconds = time.time() - t0
            cpu_seconds = _children_cpu_seconds() - cpu0
            if code == EXIT_REQUEUE or (signals and code != 0):
                raise StageFailed(
                    f"stage '{stage.name}' stopped after a signal (exit {code}); its checkpoints are kept. Rerun "
                    f"{self.resume_hint or 'the same command'} to resume at '{stage.name}'.",
                    code=EXIT_REQUEUE if code == EXIT_REQUEUE else code)
            if code != 0:
                tail = "".join(self.log_path(stage.name).read_text(errors="replace").splitlines(True)[-25:])
                raise StageFailed(
                    f"stage '{stage.name}' ({stage.title}) failed with exit code {code} after {seconds:.1f}s.\n"
                    f"command: {' '.join(cmd)}\nlog: {self.log_path(stage.name)}\n--- last lines ---\n{tail}\n"
                    f"Fix the cause and rerun {self.resume_hint or 'the same command'}: finished stages are skipped "
                    f"and the pipeline resumes at '{stage.name}'.")
            missing = [str(p) for p in stage.outputs() if not Path(p).exists()]
            if missing:
                raise StageFailed(f"stage '{stage.name}' exited 0 but did not produce {missing}; see "
                                  f"{self.log_path(stage.name)}")
            outputs = [str(p) for p in stage.outputs()]
            rec = {"stage": stage.name, "title": stage.title, "command": cmd, "fingerprint": fingerprint_json(parts),
                   "parts": parts, "started": t0, "seconds": seconds, "cpu_seconds": round(cpu_seconds, 1),
                   "outputs": outputs,
                   "outputs_fingerprint": fingerprint_files(outputs), "skipped": False, "reason": why}
            write_json_atomic(self.record_path(stage.name), rec)
            self.records[stage.name] = rec
            print(f"{head}: done in {seconds:.1f}s ({cpu_seconds:.0f} CPU-s)", flush=True)
            if signals:
                raise StageFailed(f"stage '{stage.name}' finished, then the pipeline stopped after a signal; rerun "
                                  f"{self.resume_hint or 'the same command'} to continue after it.", code=EXIT_REQUEUE)
        return self.records

    def _execute(self, cmd: list[str], stage: Stage) -> tuple[int, list[int]]:
        """Run supervised, with output teed to the stage log; progress lines stay visible on the console.
        Returns the exit status and the signals forwarded to the stage."""
        self.log_path(stage.name).parent.mkdir(parents=True, exist_ok=True)
        # No OMP_NUM_THREADS here: single-process stages use every core; multi-rank launchers share them out.
        env = dict(os.environ, PYTHONUNBUFFERED="1", **stage.env)
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        # line-buffered: `tail -f` on a stage log follows the stage as it runs
        with open(self.log_path(stage.name), "w", encoding="utf-8", buffering=1) as log, \
                Supervisor("findap-nemo run") as sup:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            proc = sup.start(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True, bufsize=1,
                             errors="replace")
            assert proc.stdout is not None
            last_bar = float("-inf")  # the first bar at once, then one every BAR_ECHO_SECONDS
            for line in proc.stdout:  # text mode: tqdm's "\r" redraws arrive as lines of their own
                log.write(line)
                text = line.strip()
                if _is_summary(text):
                    sys.stdout.write("      " + text[:160] + "\n")
                    sys.stdout.flush()
                elif (bar := _bar(text)) and time.monotonic() - last_bar >= BAR_ECHO_SECONDS:
                    last_bar = time.monotonic()
                    sys.stdout.write(f"      [{stage.name}] {bar[:150]}\n")
                    sys.stdout.flush()
            return exit_status(proc.wait()), list(sup.signals)


RESUMING = ("not run before", "its record is unreadable")  # no finished run on record: resume what is there
BAR_ECHO_SECONDS = 30  # a stage's progress bar is echoed to the console at most this often (the log has all)


def _is_summary(s: str) -> bool:
    """Lines worth echoing: a stage's own summaries."""
    return bool(s) and (s.startswith("[") and "]" in s[:40]) and "rank" not in s[:8] and "Warning" not in s


_BAR = re.compile(r"\S[^\r\n]*?\d+%\|[^|]*\|\s*\d+/\d+\s*\[[^\]]*\]")


def _bar(s: str) -> str:
    """The tqdm progress bar in a line (``desc:  50%|#####     | 6/12 [02:02<01:57, ...]``), without the warnings
    that other writers glue to it, or an empty string."""
    m = _BAR.search(s)
    return m.group(0) if m else ""
