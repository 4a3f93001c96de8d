"""Run a list of stages as subprocesses, each recorded in the run directory so a rerun skips finished work.

Every stage writes ``<run_dir>/stages/<name>.json`` when (and only when) it finished: the command, its fingerprint,
start/end times and the outputs it promised. A rerun skips a stage whose record exists, whose outputs still exist and
whose command is unchanged; anything else (and ``--force``) runs it again. A failing stage stops the pipeline with a
message naming the stage, its exit code, its log, and how to resume.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable


class StageFailed(RuntimeError):
    pass


@dataclass
class Stage:
    name: str
    title: str
    command: Callable[[], list[str]]  # built lazily: later stages read earlier stages' outputs
    outputs: Callable[[], list[Path]]
    env: dict = field(default_factory=dict)


def _fingerprint(cmd: list[str]) -> str:
    return hashlib.sha256("\0".join(cmd).encode()).hexdigest()[:16]


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


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

    def is_done(self, stage: Stage, cmd: list[str]) -> bool:
        path = self.record_path(stage.name)
        if self.force or stage.name in self.force_stages or not path.is_file():
            return False
        rec = json.loads(path.read_text())
        return rec.get("fingerprint") == _fingerprint(cmd) and all(Path(p).exists() for p in rec.get("outputs", []))

    def run(self, stages: list[Stage]) -> dict[str, dict]:
        total = len(stages)
        for i, stage in enumerate(stages, 1):
            cmd = stage.command()
            head = f"[{i}/{total}] {stage.title}"
            if self.is_done(stage, cmd):
                rec = json.loads(self.record_path(stage.name).read_text())
                rec["skipped"] = True
                self.records[stage.name] = rec
                print(f"{head}: done earlier ({rec['seconds']:.1f}s), skipped", flush=True)
                continue
            print(f"{head}: running ... (log: {self.log_path(stage.name)})", flush=True)
            self.record_path(stage.name).unlink(missing_ok=True)
            t0 = time.time()
            code = self._execute(cmd, stage)
            seconds = time.time() - t0
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
            rec = {"stage": stage.name, "title": stage.title, "command": cmd, "fingerprint": _fingerprint(cmd),
                   "started": t0, "seconds": seconds, "outputs": [str(p) for p in stage.outputs()],
                   "skipped": False}
            _write_json(self.record_path(stage.name), rec)
            self.records[stage.name] = rec
            print(f"{head}: done in {seconds:.1f}s", flush=True)
        return self.records

    def _execute(self, cmd: list[str], stage: Stage) -> int:
        """Run with output teed to the stage log; progress lines stay visible on the console."""
        self.log_path(stage.name).parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, PYTHONUNBUFFERED="1", **stage.env)
        env.setdefault("OMP_NUM_THREADS", "1")
        env.setdefault("TOKENIZERS_PARALLELISM", "false")
        with open(self.log_path(stage.name), "w", encoding="utf-8") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True,
                                    bufsize=1, errors="replace")
            assert proc.stdout is not None
            for line in proc.stdout:
                log.write(line)
                if _is_progress(line):
                    sys.stdout.write("      " + line.strip().split("\r")[-1][:160] + "\n")
                    sys.stdout.flush()
            return proc.wait()


def _is_progress(line: str) -> bool:
    """Lines worth echoing: a stage's own summaries (its progress bars live in the log)."""
    s = line.strip()
    return bool(s) and (s.startswith("[") and "]" in s[:40]) and "rank" not in s[:8] and "Warning" not in s
