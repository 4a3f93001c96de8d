"""Byte-based progress for the converters: a tqdm bar on a terminal, a periodic log line otherwise (batch logs)."""

from __future__ import annotations

import sys
import time


class Progress:
    def __init__(self, total_bytes: int, desc: str, enabled: bool = True, log_every_s: float = 30.0):
        self.start = self.last_log = time.perf_counter()
        self.total, self.desc, self.log_every_s = total_bytes, desc, log_every_s
        self.done = 0
        self.bar = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total_bytes, unit="B", unit_scale=True, unit_divisor=1024, desc=desc,
                            mininterval=1.0)

    def update(self, nbytes: int) -> None:
        self.done += nbytes
        if self.bar is not None:
            self.bar.update(nbytes)
            return
        now = time.perf_counter()
        if now - self.last_log >= self.log_every_s:
            self.last_log = now
            rate = self.done / 1e6 / max(now - self.start, 1e-9)
            print(f"[convert] {self.desc}: {100 * self.done / max(self.total, 1):.0f}% "
                  f"({self.done / 1e9:.2f} of {self.total / 1e9:.2f} GB, {rate:.0f} MB/s)", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
