"""LIBERO evaluation: configuration, the episode runner (resume, workers, shards, videos), reports."""

from rvq.eval.config import EvalConfig, parse_shard
from rvq.eval.report import build_report, merge_results, wilson_interval, write_report
from rvq.eval.runner import run_eval, run_episode

__all__ = ["EvalConfig", "build_report", "merge_results", "parse_shard", "run_episode", "run_eval",
           "wilson_interval", "write_report"]
