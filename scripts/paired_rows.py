"""Rows of one policy decoded several ways, paired episode by episode against the first (docs/history/RESULTS.md,
"Decoding"): success with its Wilson 95% interval, per task, episodes gained and lost against the first row with the
exact McNemar p (two-sided binomial test on the discordant pairs), identical trajectories (outcome and step count),
main passes per chunk and the early-exit bound from the records.

    PYTHONPATH=. python scripts/paired_rows.py runs/decoding/0/results.jsonl runs/decoding/0.1/results.jsonl ...

The rows must hold the same episodes (task, trial); a difference is refused.
"""

from __future__ import annotations

import argparse

from rvq.eval.report import mcnemar_exact, wilson_interval
from rvq.eval.results import read_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("results", nargs="+")
    args = parser.parse_args()
    rows = [{(r["task"], r["trial"]): r for r in read_results(path)} for path in args.results]
    print("| row | success (95% CI) | per task | vs first: gained / lost (McNemar p) | same trajectory | "
          "main passes per chunk | early-exit bound mean / max |")
    print("|---|---|---|---|---|---|---|")
    for path, row in zip(args.results, rows):
        if row.keys() != rows[0].keys():
            raise SystemExit(f"{path}: other episodes than {args.results[0]}")
        wins = sum(bool(r["success"]) and r.get("error") is None for r in row.values())
        low, high = wilson_interval(wins, len(row))
        tasks = sorted({task for task, _ in row})
        per_task = ", ".join(str(sum(bool(r["success"]) for (t, _), r in row.items() if t == task)) for task in tasks)
        first = rows[0]
        gained = sum(bool(row[k]["success"]) and not first[k]["success"] for k in row)
        lost = sum(bool(first[k]["success"]) and not row[k]["success"] for k in row)
        same = sum(row[k]["success"] == first[k]["success"] and row[k]["steps"] == first[k]["steps"] for k in row)
        stats = [r["policy_stats"] for r in row.values() if r.get("error") is None and r.get("policy_stats")]
        chunks = sum(s["chunks"] for s in stats)
        passes = sum(s.get("mean_main_passes", 0.0) * s["chunks"] for s in stats) / max(1, chunks)
        exits = [s["exit"] for s in stats if s.get("exit", {}).get("mean_bound") is not None]
        bound = "–"
        if exits:
            mean = sum(e["mean_bound"] * e["chunks"] for e in exits) / sum(e["chunks"] for e in exits)
            bound = f"{mean:.2g} / {max(e['max_bound'] for e in exits):.2g}"
        print(f"| {path} | {wins}/{len(row)} = {wins / len(row):.1%} [{low:.1%}, {high:.1%}] | {per_task} | "
              f"{gained} / {lost} ({mcnemar_exact(gained, lost):.2g}) | {same}/{len(row)} | {passes:.2f} | {bound} |")


if __name__ == "__main__":
    main()
