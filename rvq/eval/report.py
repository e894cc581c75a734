"""Merge result files (shards) into per-task and per-suite success rates with Wilson 95% intervals,
RSD acceptance and latency; JSON and a markdown table. Errored episodes count as failures (and are shown apart).
With a baseline row, every other row of its suite is also paired with it episode by episode (the exact McNemar test
on the discordant episodes), since a study's claims compare rows run on the same initial states."""

from __future__ import annotations

import json
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy.stats import binomtest
from tyro.conf import Positional

from rvq.eval.results import CONFIG_FILE, episode_key, read_results, row_name, shard_episodes

SHARD_FILE = re.compile(r"results(?:-shard(\d+)-of-(\d+))?\.jsonl")


@dataclass
class EvalReportConfig:
    """`rvq eval-report`: merge eval result files (shards) into success rates with 95% CIs. It only reads them; the
    report lists the files it merged (`files`)."""

    results: Positional[list[str]]  # results*.jsonl files or eval output folders
    out_dir: str = "runs/eval-report"  # output folder
    # a row name (label, else policy): pair every other row of its suite with it, episode by episode (gained, lost,
    # exact McNemar p over the episodes both hold)
    paired_against: str | None = None


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (scipy's; 95% by default); no trials: (0, 1)."""
    if trials == 0:
        return (0.0, 1.0)
    ci = binomtest(successes, trials).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def mcnemar_exact(gained: int, lost: int) -> float:
    """Two-sided exact McNemar p of paired outcomes: the binomial test (p = 1/2) on the discordant pairs, `gained`
    (the row succeeded, the baseline failed) against `lost`; no discordant pair: 1."""
    n = gained + lost
    return 1.0 if n == 0 else float(binomtest(gained, n, 0.5).pvalue)


def suite_label(record: dict[str, Any]) -> str:
    """The suite a record's row is reported under: the mock env's runs say so (they are not LIBERO results)."""
    return f"{record['suite']} (mock env)" if record.get("env") == "mock" else record["suite"]


def planned_episodes(paths: list[str | Path]) -> dict[tuple[str, str], set[tuple[int, int]]]:
    """(row, suite label) → the (task, trial) episodes the runs behind `paths` set out to run, from the
    `eval_config.json` beside their results: every shard's for a folder, a shard file's own for a file. Runs without
    that file (or a results file not named as rvq names them) plan nothing known."""
    planned: dict[tuple[str, str], set[tuple[int, int]]] = defaultdict(set)
    for path in map(Path, paths):
        folder = path if path.is_dir() else path.parent
        shard = None if path.is_dir() else SHARD_FILE.fullmatch(path.name)
        config_path = folder / CONFIG_FILE
        if not config_path.is_file() or (not path.is_dir() and shard is None):
            continue
        try:
            config = json.loads(config_path.read_text())
            row, tasks, trials = config["result_settings"]["row"], config["tasks"], config["trials"]
            label = suite_label({"suite": config["suite"], "env": config.get("env")})
        except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{config_path}: not an evaluation's settings ({type(exc).__name__}: {exc})") from exc
        if not (isinstance(trials, int) and isinstance(tasks, list) and all(isinstance(t, int) for t in tasks)):
            raise ValueError(f"{config_path}: tasks must be a list of task ids and trials a whole number, got "
                             f"{tasks!r}, {trials!r}")
        one_shard = shard is not None and shard.group(1) is not None  # a shard's file: its round-robin share
        index, count = (int(shard.group(1)), int(shard.group(2))) if one_shard else (0, 1)
        planned[(row, label)].update(shard_episodes(tasks, trials, index, count))
    return planned


def paired_rows(records: list[dict[str, Any]], baseline: str) -> list[dict[str, Any]]:
    """Every row of each suite that holds `baseline` paired with it over the episodes (task, trial) both hold: an
    errored episode is a failure; `same_trajectory` counts episodes with the same outcome in the same steps. Refuses a baseline no record names, and a row that shares no episode with it."""
    outcome: dict[tuple[str, str], dict[tuple[int, int], bool]] = defaultdict(dict)
    steps: dict[tuple[str, str], dict[tuple[int, int], int | None]] = defaultdict(dict)
    for r in records:
        _, task, trial = episode_key(r)
        outcome[(row_name(r), suite_label(r))][(task, trial)] = bool(r["success"]) and r.get("error") is None
        steps[(row_name(r), suite_label(r))][(task, trial)] = r["steps"] if r.get("error") is None else None
    suites = sorted(suite for row, suite in outcome if row == baseline)
    if not suites:
        raise ValueError(f"paired_against {baseline!r}: no such row; rows are {sorted({row for row, _ in outcome})}")
    out = []
    for suite in suites:
        base = outcome[(baseline, suite)]
        for (row, row_suite), episodes in sorted(outcome.items()):
            if row_suite != suite or row == baseline:
                continue
            common = sorted(episodes.keys() & base.keys())
            if not common:
                raise ValueError(f"row {row!r} shares no episode (task, trial) with {baseline!r} on {suite}")
            gained = sum(episodes[k] and not base[k] for k in common)
            lost = sum(base[k] and not episodes[k] for k in common)
            # the same outcome in the same number of steps: (almost surely) the same trajectory
            same = sum(episodes[k] == base[k] and steps[(row, suite)][k] == steps[(baseline, suite)][k] is not None
                       for k in common)
            out.append({"policy": row, "baseline": baseline, "suite": suite, "episodes": len(common),
                        "successes": sum(episodes[k] for k in common),
                        "baseline_successes": sum(base[k] for k in common), "gained": gained, "lost": lost,
                        "mcnemar_p": mcnemar_exact(gained, lost), "same_trajectory": same,
                        "unpaired": len(episodes) - len(common),
                        "baseline_unpaired": len(base) - len(common)})
    return out


def result_files(paths: list[str | Path]) -> list[Path]:
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            files.extend(sorted(p.glob("results*.jsonl")))
        elif p.is_file():
            files.append(p)
        else:
            raise FileNotFoundError(f"no results file or folder: {p}")
    if not files:
        raise ValueError(f"no results*.jsonl files in {[str(p) for p in paths]}")
    return files


def merge_results(paths: list[str | Path]) -> list[dict[str, Any]]:
    """One record per episode across files: (row, policy identity, suite, task, trial). A finished record beats an
    error (errors are retried on rerun). Rows (labels, else policies) and policy identities are kept apart: two
    policies' runs of one trial are two episodes. Two finished records of one episode that disagree are refused,
    naming both files; identical ones (the same file given twice) count once. Reads only."""
    latest: dict[tuple[Any, ...], tuple[dict[str, Any], Path]] = {}
    for path in result_files(paths):
        for record in read_results(path):
            key = (row_name(record), str(record.get("checkpoint_identity")), *episode_key(record))
            if key not in latest or latest[key][0].get("error") is not None:
                latest[key] = (record, path)
                continue
            kept, kept_path = latest[key]
            if record.get("error") is None and _outcome(record) != _outcome(kept):
                raise ValueError(
                    f"conflicting results for {key[0]} {key[2]} task {key[3]} trial {key[4]}: {kept_path} says "
                    f"{_outcome(kept)}, {path} says {_outcome(record)}; remove the stale one")
    return [latest[k][0] for k in sorted(latest)]


def _outcome(record: dict[str, Any]) -> tuple[bool, int]:
    return bool(record["success"]), int(record["steps"])


def _summary(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Success over all episodes: an episode that ended in error is a failure (as OFT counts it), also reported
    apart as `errors`."""
    finished = [r for r in records if r.get("error") is None]
    successes = sum(bool(r["success"]) for r in finished)
    low, high = wilson_interval(successes, len(records))
    out: dict[str, Any] = {
        "episodes": len(records), "successes": successes, "errors": len(records) - len(finished),
        "success_rate": successes / len(records) if records else None, "ci95": [low, high],
        "mean_steps": sum(r["steps"] for r in finished) / len(finished) if finished else None,
    }
    chunks = [r["policy_stats"]["rsd"] for r in finished if r.get("policy_stats", {}).get("rsd", {}).get("chunks")]
    if chunks:
        total = sum(c["chunks"] for c in chunks)
        weighted = lambda key: sum(c[key] * c["chunks"] for c in chunks) / total  # noqa: E731
        out["acceptance_rate"] = weighted("acceptance_rate")
        out["mean_main_passes"] = weighted("mean_main_passes")
        if all("layer_acceptance" in c for c in chunks):
            out["mean_accepted_layers"] = weighted("mean_accepted_layers")
            out["layer_acceptance"] = [sum(c["layer_acceptance"][j] * c["chunks"] for c in chunks) / total
                                       for j in range(len(chunks[0]["layer_acceptance"]))]
    passes = [r["policy_stats"] for r in finished if r.get("policy_stats", {}).get("mean_main_passes")]
    if passes:  # every token policy's decode (older records: RSD's alone, above)
        out["mean_main_passes"] = (sum(p["mean_main_passes"] * p["chunks"] for p in passes)
                                   / max(1, sum(p["chunks"] for p in passes)))
    exits = [r["policy_stats"]["exit"] for r in finished if r.get("policy_stats", {}).get("exit", {}).get("chunks")]
    if exits:
        out["mean_depth"] = sum(e["mean_depth"] * e["chunks"] for e in exits) / sum(e["chunks"] for e in exits)
        bounds = [e["max_bound"] for e in exits if e.get("max_bound") is not None]
        out["max_exit_bound"] = max(bounds) if bounds else None
    latency = [r["policy_stats"]["mean_step_ms"] for r in finished if r.get("policy_stats", {}).get("mean_step_ms")]
    if latency:
        out["mean_chunk_ms"] = sum(latency) / len(latency)
    return out


def build_report(paths: list[str | Path], paired_against: str | None = None) -> dict[str, Any]:
    """The report of the merged records of `paths`; `paired_against`: a row to pair the others with
    (`paired_rows`)."""
    records = merge_results(paths)
    if not records:
        raise ValueError(f"no episode records in {[str(p) for p in result_files(paths)]}: nothing to report")
    by_task: dict[tuple[str, str, int], list[dict[str, Any]]] = defaultdict(list)
    by_suite: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    identities: dict[str, set[str]] = defaultdict(set)
    for r in records:
        identities[row_name(r)].add(str(r.get("checkpoint_identity")))
    mixed = {row: sorted(ids) for row, ids in identities.items() if len(ids) > 1}
    if mixed:
        raise ValueError(f"report row(s) {sorted(mixed)} hold episodes of different policies (identities {mixed}); "
                         f"evaluate each with its own --label")
    for r in records:
        by_task[(row_name(r), suite_label(r), int(r["task"]))].append(r)
        by_suite[(row_name(r), suite_label(r))].append(r)
    planned = planned_episodes(paths)

    def plan(row: str, suite: str, task: int | None = None) -> dict[str, Any]:
        if (row, suite) not in planned:
            return {"planned": None}
        return {"planned": sum(task is None or t == task for t, _ in planned[(row, suite)])}

    return {
        "files": [str(p) for p in result_files(paths)],
        **({"paired": paired_rows(records, paired_against)} if paired_against is not None else {}),
        "tasks": [{"policy": p, "suite": s, "task": t,
                   "instruction": next((r["instruction"] for r in rs if r.get("instruction")), None), **_summary(rs),
                   **plan(p, s, t)} for (p, s, t), rs in sorted(by_task.items())],
        "suites": [{"policy": p, "suite": s, **_summary(rs), **plan(p, s)} for (p, s), rs in sorted(by_suite.items())],
    }


def incomplete_rows(report: dict[str, Any]) -> list[str]:
    """One line per row of `report` that holds fewer episodes than its run planned."""
    return [f"{r['policy']} on {r['suite']}: {r['episodes']} of {r['planned']} planned episodes (the run is not "
            f"finished: rerun its command to complete it)" for r in report["suites"]
            if r.get("planned") is not None and r["episodes"] < r["planned"]]


def render_markdown(report: dict[str, Any]) -> str:
    def rate(row):
        if row["success_rate"] is None:
            return "–"
        return f"{row['success_rate']:.1%} [{row['ci95'][0]:.1%}, {row['ci95'][1]:.1%}]"

    def count(row):
        planned = row.get("planned")
        return f"{row['episodes']} of {planned} planned" if planned is not None and row["episodes"] < planned \
            else str(row["episodes"])

    def extra(row):
        passes = f"{row['mean_main_passes']:.2f}" if "mean_main_passes" in row else "–"
        acc = f"{row['acceptance_rate']:.2f}" if "acceptance_rate" in row else "–"
        bound = f"{row['max_exit_bound']:.2g}" if row.get("max_exit_bound") is not None else "–"
        ms = f"{row['mean_chunk_ms']:.1f}" if "mean_chunk_ms" in row else "–"
        return f"{passes} | {acc} | {bound} | {ms}"

    columns = "main passes per chunk | RSD acceptance | early-exit bound (max) | ms per chunk |"
    lines = [f"| policy | suite | episodes | success (95% CI) | errors | {columns}", "|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['policy']} | {r['suite']} | {count(r)} | {rate(r)} | {r['errors']} | {extra(r)} |"
              for r in report["suites"]]
    lines += ["", f"| policy | suite | task | instruction | episodes | success (95% CI) | errors | {columns}",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    lines += [f"| {r['policy']} | {r['suite']} | {r['task']} | {r.get('instruction') or '–'} | {count(r)} | "
              f"{rate(r)} | {r['errors']} | {extra(r)} |" for r in report["tasks"]]
    if report.get("paired"):
        lines += ["", "| policy | against | suite | paired episodes | successes | against's | gained | lost | "
                      "McNemar p (exact) | same outcome and steps |", "|---|---|---|---|---|---|---|---|---|---|"]
        lines += [f"| {r['policy']} | {r['baseline']} | {r['suite']} | {r['episodes']} | {r['successes']} | "
                  f"{r['baseline_successes']} | {r['gained']} | {r['lost']} | {r['mcnemar_p']:.3g} | "
                  f"{r['same_trajectory']} |" for r in report["paired"]]
    return "\n".join(lines) + "\n"


def write_report(paths: list[str | Path], out_dir: str | Path, paired_against: str | None = None) -> dict[str, Any]:
    report = build_report(paths, paired_against)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "eval_report.json").write_text(json.dumps(report, indent=2))
    (out / "eval_report.md").write_text(render_markdown(report))
    return report
