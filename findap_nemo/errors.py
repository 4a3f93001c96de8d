"""The input error a user can fix, below every package so that any module can raise it (the CLI turns it into
exit code 2 with its message): a config key, a file's line, a flag. :mod:`findap_nemo.config` re-exports it."""

from __future__ import annotations

from typing import Iterable


class ConfigError(ValueError):
    """A config or input problem a user can fix: names the key (or file and line), the value and what to do."""

    def __init__(self, problems: Iterable[str] | str):
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(f"  - {p}" for p in self.problems))
