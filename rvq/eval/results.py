"""Evaluation results: one JSON line per episode. Reading, appending, the writer's repair of its own torn last line,
the run folder's lock, and the resume check. Used by the runner, the report and resume alike.

A record holds at least `suite`, `task`, `trial`, `policy`, `success`, `steps`, `error` (a traceback or None);
runs write `label` (the report row) and `checkpoint_identity` (what the policy was) too.

Readers never modify a file: a line that is not JSON is reported (file and line number) and skipped. Only the
run that owns a results file (holding its lock) cuts a torn last line, before appending.
"""

from __future__ import annotations

import fcntl
import json
import os
import warnings
from pathlib import Path
from typing import Any, IO

REQUIRED_KEYS = ("suite", "task", "trial", "policy", "success", "steps", "error")
CONFIG_FILE = "eval_config.json"


class CorruptResultsWarning(UserWarning):
    """A results file has a line that is not a complete JSON record (skipped, never deleted)."""


def episode_key(record: dict[str, Any]) -> tuple[str, int, int]:
    """Where an episode starts: (suite, task, trial)."""
    return record["suite"], int(record["task"]), int(record["trial"])


def row_name(record: dict[str, Any]) -> str:
    """A record's report row: its run's label, else its policy (records written before labels existed)."""
    return str(record.get("label") or record.get("policy"))


def shard_episodes(tasks: list[int], trials: int, index: int, count: int) -> list[tuple[int, int]]:
    """The (task, trial) episodes of shard `index` of `count`, in order: the flat list split round-robin."""
    episodes = [(task, trial) for task in tasks for trial in range(trials)]
    return [e for i, e in enumerate(episodes) if i % count == index]


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The complete records of a results file, in order; never writes to it. A line that is not a JSON record with
    the required keys is skipped with a `CorruptResultsWarning` naming the file and line (a torn last line of a run
    still writing, or damage)."""
    path = Path(path)
    if not path.is_file():
        return []
    records = []
    lines = path.read_bytes().split(b"\n")
    for number, raw in enumerate(lines, start=1):
        if not raw.strip():
            continue
        problem, line = None, raw.decode("utf-8", errors="replace")
        try:
            record = json.loads(raw.decode("utf-8"))
        except UnicodeDecodeError as exc:
            problem = f"not UTF-8 text ({exc.reason} at byte {exc.start})"
        except json.JSONDecodeError as exc:
            problem = f"not JSON ({exc.msg})"
        else:
            missing = [k for k in REQUIRED_KEYS if k not in record] if isinstance(record, dict) else list(REQUIRED_KEYS)
            problem = f"missing key(s) {missing}" if missing else _bad_values(record)
        if problem:
            torn = number == len(lines) and not line.endswith("}")
            what = "a torn last line (a run still writing, or one killed mid-line)" if torn else problem
            warnings.warn(f"{path}:{number}: skipped, {what}", CorruptResultsWarning, stacklevel=2)
            continue
        records.append(record)
    return records


def _bad_values(record: dict[str, Any]) -> str | None:
    """What is wrong with a record's required values (None: nothing): a count that is not a whole number >= 0
    (NaN included), an outcome that is not true / false, a name that is not a string."""
    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and value >= 0

    bad = [key for key in ("task", "trial", "steps") if not whole(record[key])]
    bad += [] if isinstance(record["success"], bool) else ["success"]
    bad += [key for key in ("suite", "policy") if not isinstance(record[key], str)]
    bad += [] if record["error"] is None or isinstance(record["error"], str) else ["error"]
    return f"bad value(s) of {bad}: {[record[key] for key in bad]}" if bad else None


def repair_torn_tail(path: Path) -> int:
    """Cut an unterminated, unparsable last line of a results file this run owns; returns the bytes cut.
    Only the writer calls this (it holds the folder's lock): a reader never modifies results."""
    if not path.is_file():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    start = data.rfind(b"\n") + 1
    try:
        json.loads(data[start:])
    except (json.JSONDecodeError, UnicodeDecodeError):
        with path.open("r+b") as handle:
            handle.truncate(start)
        return len(data) - start
    with path.open("ab") as handle:  # a complete record that only lacks its newline
        handle.write(b"\n")
    return 0


def append_record(path: Path, record: dict[str, Any]) -> None:
    """Append one record as one line, flushed to disk before returning."""
    with path.open("a") as handle:
        handle.write(json.dumps(record, default=float) + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class RunInUse(RuntimeError):
    """Another process is writing the same run (its results file, or its pipeline folder)."""


class EvalStopped(RuntimeError):
    """A run stopped by something outside rvq's code: a policy service that died or stalled, workers that cannot
    start (their traceback, from the other process, is `detail`). The finished episodes are kept."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.detail = detail

    @classmethod
    def from_traceback(cls, what: str, trace: str) -> "EvalStopped":
        """`what`, then the last line of another process's traceback (the error itself)."""
        lines = [line for line in trace.strip().splitlines() if line.strip()]
        return cls(f"{what}: {lines[-1].strip() if lines else 'no traceback'}", trace)


class RunLock:
    """An exclusive lock on a results file for the life of the run writing it (`.<name>.lock` beside it): a second
    run on the same file is refused. Shards of one job array write different files and do not block each other.
    `what` names the kind of run in the refusal; `lock_path` puts the lock elsewhere (a pipeline: in its folder)."""

    def __init__(self, results: Path, what: str = "evaluation", lock_path: Path | None = None) -> None:
        self.results, self.what = results, what
        self.path = lock_path or results.with_name(f".{results.name}.lock")
        self.handle: IO[str] | None = None

    def __enter__(self) -> "RunLock":
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise RunInUse(f"{self.results} is in use by another {self.what} ({holder}); wait for it to finish or "
                           "choose another --out-dir") from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self.handle = handle
        return self

    def __exit__(self, *exc: object) -> None:
        if self.handle is not None:
            fcntl.flock(self.handle, fcntl.LOCK_UN)
            self.handle.close()
            self.handle = None


def check_resume(folder: Path, settings: dict[str, Any]) -> None:
    """Refuse to add to a folder whose stored run settings differ from `settings` in anything that changes
    results (each key of `settings` is such a setting); a folder without results may be reused freely."""
    stored_path = folder / CONFIG_FILE
    if not any(folder.glob("results*.jsonl")):
        return
    if not stored_path.is_file():  # results of unknown settings: adding to them could mix two runs
        raise ValueError(f"{folder} holds results but not {CONFIG_FILE}, the settings they were made with; "
                         f"resuming could mix them: choose another --out-dir")
    try:
        stored = json.loads(stored_path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{stored_path}: unreadable ({exc}); move the folder aside or choose another --out-dir") \
            from exc
    stored = stored.get("result_settings") if isinstance(stored, dict) else None
    if not isinstance(stored, dict):
        raise ValueError(f"{stored_path} does not record the settings its results were made with (written by an "
                         f"older rvq); choose another --out-dir")
    absent = object()  # a key one side lacks (a setting recorded only when set) differs from every value
    changed = {k: (stored.get(k, absent), settings.get(k, absent)) for k in set(stored) | set(settings)
               if stored.get(k, absent) != settings.get(k, absent)}
    if changed:
        def shown(value: Any) -> str:
            return "absent" if value is absent else repr(value)

        detail = "; ".join(f"{k}: {shown(old)} there, {shown(new)} now" for k, (old, new) in sorted(changed.items()))
        raise ValueError(f"{folder} holds results made with other settings ({detail}); resuming would mix them. "
                         f"Choose another --out, or rerun with the folder's settings")
