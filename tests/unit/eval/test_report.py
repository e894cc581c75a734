"""Evaluation reports: Wilson intervals, merging shards (latest record wins, errors retried)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvq.eval import build_report, merge_results, wilson_interval
from rvq.eval.runner import read_results


def test_wilson_interval_known_values() -> None:
    low, high = wilson_interval(45, 50)
    assert low == pytest.approx(0.7864, abs=1e-3) and high == pytest.approx(0.9565, abs=1e-3)
    assert wilson_interval(0, 10)[0] == 0.0 and wilson_interval(10, 10)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def _write(path: Path, records: list[dict], tail: str = "") -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + tail)


def _rec(task: int, trial: int, success: bool, error: str | None = None) -> dict:
    return {"suite": "libero_goal", "task": task, "trial": trial, "policy": "noop", "success": success,
            "steps": 5, "error": error}


def test_merge_shards_and_partial_lines(tmp_path: Path) -> None:
    _write(tmp_path / "results-shard0-of-2.jsonl", [_rec(0, 0, True), _rec(0, 1, False, error="boom")])
    _write(tmp_path / "results-shard1-of-2.jsonl", [_rec(0, 1, True), _rec(1, 0, False)], tail='{"suite": "lib')
    records = merge_results([tmp_path])
    assert [(r["task"], r["trial"], r["success"]) for r in records] == [(0, 0, True), (0, 1, True), (1, 0, False)]
    assert (tmp_path / "results-shard1-of-2.jsonl").read_text().endswith("}\n")  # the partial line is cut
    report = build_report([tmp_path])
    suite = report["suites"][0]
    assert suite["episodes"] == 3 and suite["successes"] == 2 and suite["errors"] == 0
    assert [t["success_rate"] for t in report["tasks"]] == [1.0, 0.0]


def test_errors_are_counted_not_scored(tmp_path: Path) -> None:
    _write(tmp_path / "results.jsonl", [_rec(0, 0, False, error="Traceback ..."), _rec(0, 1, True)])
    suite = build_report([tmp_path])["suites"][0]
    assert suite["errors"] == 1 and suite["episodes"] == 1 and suite["success_rate"] == 1.0
    assert len(read_results(tmp_path / "results.jsonl")) == 2
    with pytest.raises(FileNotFoundError):
        build_report([tmp_path / "nope"])


def test_two_policies_on_one_trial_are_two_episodes(tmp_path: Path) -> None:
    other = {**_rec(0, 0, False), "policy": "rsd"}
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write(tmp_path / "a" / "results.jsonl", [_rec(0, 0, True)])
    _write(tmp_path / "b" / "results.jsonl", [other])
    report = build_report([tmp_path / "a", tmp_path / "b"])
    assert {(s["policy"], s["episodes"], s["successes"]) for s in report["suites"]} == {("noop", 1, 1), ("rsd", 1, 0)}
