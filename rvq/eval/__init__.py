"""LIBERO evaluation: configuration, the episode runner (resume, workers, shards, videos), reports."""

from rvq.eval.config import EvalConfig
from rvq.eval.evaluate import run_eval
from rvq.eval.report import build_report, merge_results, wilson_interval, write_report
from rvq.eval.runner import run_episode

__all__ = ["EvalConfig", "build_report", "merge_results", "run_episode", "run_eval",
           "wilson_interval", "write_report"]
