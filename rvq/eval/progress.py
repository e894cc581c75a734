"""One progress display for an evaluation run: episodes finished, successes and errors so far, steps of the
episodes in flight, and an ETA.

On a terminal it is one tqdm bar. When stderr is not a terminal (a log file, a job array, CI) it writes plain
lines instead (one per finished episode, plus a line of in-flight steps at most every `heartbeat_s`), so logs hold
no carriage returns or escape codes. tqdm's own non-terminal mode would still redraw with carriage returns.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class EvalProgress:
    def __init__(self, total: int, desc: str, enabled: bool = True, stream: TextIO | None = None,
                 heartbeat_s: float = 30.0) -> None:
        self.total, self.desc, self.enabled = total, desc, enabled
        self.stream = stream if stream is not None else sys.stderr
        self.heartbeat_s = heartbeat_s
        self.finished = self.successes = self.errors = 0
        self.in_flight: dict[Any, int] = {}  # worker → steps of its current episode
        self.start = time.monotonic()
        self._last_line = self.start
        self._bar = None
        if enabled and self.stream.isatty():
            from tqdm.auto import tqdm

            self._bar = tqdm(total=total, desc=desc, file=self.stream)

    def __enter__(self) -> "EvalProgress":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _postfix(self) -> dict[str, Any]:
        steps = " ".join(str(s) for s in self.in_flight.values())
        return {"success": f"{self.successes}/{self.finished}", "errors": self.errors, "steps": steps or "-"}

    def eta_s(self) -> float | None:
        if not self.finished:
            return None
        elapsed = time.monotonic() - self.start
        return elapsed / self.finished * (self.total - self.finished)

    def step(self, worker: Any, steps: int) -> None:
        """Worker `worker`'s episode has run `steps` env steps."""
        self.in_flight[worker] = steps
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix(self._postfix(), refresh=False)
            self._bar.refresh()
        elif time.monotonic() - self._last_line >= self.heartbeat_s:
            self._line("in flight, steps: " + self._postfix()["steps"])

    def episode_done(self, record: dict[str, Any], worker: Any = None) -> None:
        self.in_flight.pop(worker, None)
        self.finished += 1
        self.successes += bool(record.get("success"))
        self.errors += record.get("error") is not None
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.set_postfix(self._postfix(), refresh=False)
            self._bar.update(1)
        else:
            eta = self.eta_s()
            self._line(f"{self.finished}/{self.total} episodes, {self.successes} successes, {self.errors} errors"
                       + (f", ETA {eta / 60:.1f} min" if eta is not None else ""))

    def _line(self, text: str) -> None:
        self._last_line = time.monotonic()
        print(f"[{self.desc}] {text}", file=self.stream, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
