"""Evaluation reports: Wilson intervals, merging shards (latest record wins, errors retried)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvq.eval import build_report, merge_results, wilson_interval
from rvq.eval.results import CorruptResultsWarning, read_results


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
    before = (tmp_path / "results-shard1-of-2.jsonl").read_bytes()
    with pytest.warns(CorruptResultsWarning, match=r"results-shard1-of-2.jsonl:3: skipped, a torn last line"):
        records = merge_results([tmp_path])
    assert [(r["task"], r["trial"], r["success"]) for r in records] == [(0, 0, True), (0, 1, True), (1, 0, False)]
    assert (tmp_path / "results-shard1-of-2.jsonl").read_bytes() == before  # a reader never modifies its input
    with pytest.warns(CorruptResultsWarning):
        report = build_report([tmp_path])
    suite = report["suites"][0]
    assert suite["episodes"] == 3 and suite["successes"] == 2 and suite["errors"] == 0
    assert [t["success_rate"] for t in report["tasks"]] == [1.0, 0.0]


def test_errors_count_as_failures_and_are_shown_apart(tmp_path: Path) -> None:
    _write(tmp_path / "results.jsonl", [_rec(0, 0, False, error="Traceback ..."), _rec(0, 1, True)])
    suite = build_report([tmp_path])["suites"][0]
    assert suite["errors"] == 1 and suite["episodes"] == 2 and suite["success_rate"] == 0.5
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


def test_a_corrupt_middle_line_is_named_and_skipped_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text(json.dumps(_rec(0, 0, True)) + "\n{garbage\n" + json.dumps(_rec(0, 1, False)) + "\n")
    before = path.read_bytes()
    with pytest.warns(CorruptResultsWarning, match=r"results.jsonl:2: skipped, not JSON"):
        records = read_results(path)
    assert [r["trial"] for r in records] == [0, 1] and path.read_bytes() == before


def test_a_line_that_is_not_utf8_is_named_and_skipped(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_bytes(json.dumps(_rec(0, 0, True)).encode() + b"\n\xff\xfe garbage\n" + json.dumps(_rec(0, 1, False)).encode()
                     + b"\n")
    with pytest.warns(CorruptResultsWarning, match=r"results.jsonl:2: skipped, not UTF-8 text \(invalid start byte"):
        records = read_results(path)
    assert [r["trial"] for r in records] == [0, 1]


def test_conflicting_records_of_one_episode_are_refused(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write(tmp_path / "a" / "results.jsonl", [_rec(0, 0, True)])
    _write(tmp_path / "b" / "results.jsonl", [_rec(0, 0, False)])
    with pytest.raises(ValueError, match=r"conflicting results for noop libero_goal task 0 trial 0: .*a/results.jsonl"
                                         r".*b/results.jsonl"):
        build_report([tmp_path / "a", tmp_path / "b"])
    _write(tmp_path / "b" / "results.jsonl", [_rec(0, 0, True)])  # the same outcome twice is one episode
    assert build_report([tmp_path / "a", tmp_path / "b"])["suites"][0]["episodes"] == 1


def test_labels_and_identities_keep_runs_apart(tmp_path: Path) -> None:
    naive = {**_rec(0, 0, False), "label": "noop-naive", "checkpoint_identity": "n"}
    robust = {**_rec(0, 0, True), "label": "noop-robust", "checkpoint_identity": "r"}
    _write(tmp_path / "results.jsonl", [naive, robust])
    rows = {s["policy"]: s["successes"] for s in build_report([tmp_path])["suites"]}
    assert rows == {"noop-naive": 0, "noop-robust": 1}
    _write(tmp_path / "results.jsonl", [naive, {**robust, "label": "noop-naive", "trial": 1}])
    with pytest.raises(ValueError, match=r"\['noop-naive'\] hold episodes of different policies"):
        build_report([tmp_path])


def test_rows_are_paired_with_a_baseline_episode_by_episode(tmp_path: Path) -> None:
    from rvq.eval.report import render_markdown

    base = [_rec(0, t, t < 6) for t in range(10)]  # 6 of 10
    other = [{**_rec(0, t, t in (0, 1, 2, 6, 7, 8, 9)), "policy": "main", "label": "exit"} for t in range(10)]
    other[9]["error"], other[9]["success"] = "Traceback ...", False  # an error is a failure
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    _write(tmp_path / "a" / "results.jsonl", base)
    _write(tmp_path / "b" / "results.jsonl", other + [{**_rec(1, 0, True), "policy": "main", "label": "exit"}])
    report = build_report([tmp_path / "a", tmp_path / "b"], paired_against="noop")
    (paired,) = report["paired"]
    # trials 6, 7, 8 gained; 3, 4, 5 lost; task 1's episode has no partner
    assert (paired["policy"], paired["episodes"], paired["gained"], paired["lost"]) == ("exit", 10, 3, 3)
    assert (paired["successes"], paired["baseline_successes"], paired["unpaired"]) == (6, 6, 1)
    assert paired["mcnemar_p"] == pytest.approx(1.0) and paired["same_trajectory"] == 3  # trials 0-2 (9: an error)
    assert "| exit | noop | libero_goal | 10 | 6 | 6 | 3 | 3 | 1 | 3 |" in render_markdown(report)
    with pytest.raises(ValueError, match="paired_against 'nobody': no such row; rows are \\['exit', 'noop'\\]"):
        build_report([tmp_path / "a", tmp_path / "b"], paired_against="nobody")
    assert "paired" not in build_report([tmp_path / "a"])


def test_records_with_values_of_the_wrong_kind_are_skipped_naming_the_line_and_empty_runs_refused(
        tmp_path: Path) -> None:
    bad = [{**_rec(0, 1, True), "steps": float("nan")}, {**_rec(0, 2, True), "success": "yes"},
           {**_rec(0, 3, True), "trial": -1}]
    _write(tmp_path / "results.jsonl", [_rec(0, 0, True), *bad])
    with pytest.warns(CorruptResultsWarning) as caught:
        records = read_results(tmp_path / "results.jsonl")
    assert [r["trial"] for r in records] == [0]
    assert [str(w.message).split(": skipped")[0].rsplit(":", 1)[1] for w in caught] == ["2", "3", "4"]
    assert "bad value(s) of ['steps']: [nan]" in str(caught[0].message)
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "results.jsonl").write_text("")
    with pytest.raises(ValueError, match="no episode records in .*empty/results.jsonl.*nothing to report"):
        build_report([tmp_path / "empty"])


def test_a_run_with_fewer_episodes_than_planned_says_so_and_mock_rows_say_mock(tmp_path: Path) -> None:
    from rvq.eval import EvalConfig, run_eval
    from rvq.eval.report import incomplete_rows, render_markdown

    cfg = EvalConfig(suite="libero_spatial", tasks=[0, 1], trials=2, policy="noop", env="mock", max_steps=4,
                     out_dir=str(tmp_path / "run"), render=False, workers=1, device="cpu", shard=(0, 2))
    path = run_eval(cfg, progress=False)  # shard 0 of 2: episodes 0 and 2 of (0,0) (0,1) (1,0) (1,1)
    complete = build_report([path])
    assert [(r["suite"], r["episodes"], r["planned"]) for r in complete["suites"]] == [
        ("libero_spatial (mock env)", 2, 2)] and not incomplete_rows(complete)
    folder = build_report([tmp_path / "run"])  # the folder: every shard's episodes, and shard 1 never ran
    assert incomplete_rows(folder) == ["noop on libero_spatial (mock env): 2 of 4 planned episodes (the run is not "
                                       "finished: rerun its command to complete it)"]
    assert "| 2 of 4 planned |" in render_markdown(folder)
    assert [(r["task"], r["episodes"], r["planned"]) for r in folder["tasks"]] == [(0, 1, 2), (1, 1, 2)]
    lines = path.read_text().splitlines()
    path.write_text(lines[0] + "\n")
    assert incomplete_rows(build_report([path])) == [
        "noop on libero_spatial (mock env): 1 of 2 planned episodes (the run is not finished: rerun its command to "
        "complete it)"]


@pytest.mark.parametrize(("gained", "lost", "p"), [
    (0, 0, 1.0), (0, 3, 0.25), (3, 0, 0.25), (1, 2, 1.0), (2, 10, 79 / 4096 * 2), (0, 10, 2 / 1024),
])
def test_exact_mcnemar_is_the_two_sided_binomial_test_on_discordant_pairs(gained: int, lost: int, p: float) -> None:
    from rvq.eval.report import mcnemar_exact

    assert mcnemar_exact(gained, lost) == pytest.approx(p)
