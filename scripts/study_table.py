"""The learned-policy study's table (docs/history/RESULTS.md) from finished `rvq pipeline` runs of one suite.

    python scripts/study_table.py runs/study/libero_object_robust runs/study/libero_object_naive

Each run folder contributes its rows (expert, expert round trip, main, rsd, rsd_relaxed), named by the run's
quantizer; heads' held-out accuracy comes from the run's Phase 2 validation episodes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from rvq.config_cli import config_from
from rvq.pipeline import PipelineConfig


def quantizer_of(report: dict) -> str:
    """The run's quantizer; its config is grouped (or flat, in reports written before the groups)."""
    return config_from(PipelineConfig, **report["config"]).tokenizer.quantizer


def fmt_rate(row: dict) -> str:
    low, high = row["ci95"]
    return f"{row['successes']}/{row['episodes']} = {row['success_rate']:.1%} [{low:.1%}, {high:.1%}]"


def fmt_list(values: list[float] | None) -> str:
    return " / ".join(f"{v:.2f}" for v in values) if values else "–"


def table(runs: list[Path]) -> str:
    lines = ["| row | tokens | success (95% CI) | errors | draft acc. L0/L1/L2 | main acc. L0/L1/L2 | "
             "main exact match L0/L1/L2 | accepted layers (of 3) | acceptance L0/L1/L2 | main passes per chunk | "
             "ms per chunk |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in runs:
        report = json.loads((run / "report.json").read_text())
        quantizer, heads = quantizer_of(report), report["heads"]
        draft, main = heads.get("draft"), heads["main"]
        for row in report["episodes"]["suites"]:
            name = row["policy"]
            learned = name not in ("expert", "expert_roundtrip")
            tokens = quantizer if name != "expert" else "–"
            cells = [name, tokens, fmt_rate(row), str(row["errors"]),
                     fmt_list(draft["token_accuracy"][:3]) if learned and draft and name != "main" else "–",
                     fmt_list(main["token_accuracy"][:3]) if learned else "–",
                     fmt_list(main["layer_exact_match"][:3]) if learned else "–",
                     f"{row['mean_accepted_layers']:.2f}" if "mean_accepted_layers" in row else "–",
                     fmt_list(row.get("layer_acceptance")),
                     f"{row['mean_main_passes']:.2f}" if "mean_main_passes" in row else ("8" if name == "main" else "–"),
                     f"{row['mean_chunk_ms']:.1f}" if "mean_chunk_ms" in row else "–"]
            lines.append("| " + " | ".join(cells) + " |")
    baselines = []
    for run in runs:
        report = json.loads((run / "report.json").read_text())
        main = report["heads"]["main"]
        baselines.append(f"{quantizer_of(report)}: majority-code baseline L0/L1/L2 "
                         f"{fmt_list(main['majority_accuracy'][:3])}, chance {main['chance_accuracy']:.3f}")
    return "\n".join(lines) + "\n\n" + "; ".join(baselines) + ".\n"


if __name__ == "__main__":
    print(table([Path(p) for p in sys.argv[1:]]))
