"""Executors under faults, on the mock env: a killed worker's episode is requeued (once) or recorded as an error
(every time), a stopped worker is killed at the stall timeout, a stopped policy service stops the run, a hung policy
call is stopped at the timeout, a slow episode is stopped between steps; every episode is recorded exactly once and
the run never hangs. Progress lines carry no escape codes in logs."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

import time

from mocks.fault_policies import FaultyPolicyFactory, StoppingBatchPolicyFactory
from rvq.eval import EvalConfig, run_eval
from rvq.eval.executors import ProcessExecutor
from rvq.eval.scheduler import Scheduler, hard_deadline
from rvq.eval.progress import EvalProgress
from rvq.eval.results import read_results


def cfg(tmp_path: Path, **kw) -> EvalConfig:
    settings = dict(suite="libero_goal", tasks=[0, 1], trials=2, policy="noop", env="mock", max_steps=16,
                    out_dir=str(tmp_path / "eval"), render=False, workers=2, device="cpu")
    return EvalConfig(**{**settings, **kw})


def episodes(records: list[dict]) -> list[tuple[int, int]]:
    return sorted((r["task"], r["trial"]) for r in records)


def test_a_killed_worker_is_replaced_and_its_episode_requeued(tmp_path: Path) -> None:
    factory = FaultyPolicyFactory(kill_trials={1}, once_dir=str(tmp_path / "once"))
    records = read_results(run_eval(cfg(tmp_path), factory=factory, progress=False))
    assert episodes(records) == [(0, 0), (0, 1), (1, 0), (1, 1)]  # none lost, none twice
    assert all(r["error"] is None and r["steps"] == 16 for r in records)
    assert len(list((tmp_path / "once").iterdir())) == 2  # both trial-1 episodes killed a worker once


def test_an_episode_that_always_kills_its_worker_is_an_error_and_the_run_goes_on(tmp_path: Path) -> None:
    factory = FaultyPolicyFactory(kill_trials={1})
    records = read_results(run_eval(cfg(tmp_path, tasks=[0], trials=3, max_worker_deaths=2), factory=factory,
                                    progress=False))
    assert episodes(records) == [(0, 0), (0, 1), (0, 2)]
    errors = {r["trial"]: r["error"] for r in records}
    assert errors[0] is None and errors[2] is None
    assert "died (exit code -9)" in errors[1] and "killed its worker 2 times" in errors[1]


def test_a_stopped_worker_is_killed_at_the_stall_timeout_and_its_episode_requeued(tmp_path: Path) -> None:
    """SIGSTOP leaves a worker alive and silent: past `stall_timeout` without a step it is killed and replaced, its
    episode run again (once here), long before the hour-long episode timeout."""
    factory = FaultyPolicyFactory(stop_trials={1}, once_dir=str(tmp_path / "once"))
    start = time.monotonic()
    records = read_results(run_eval(cfg(tmp_path, tasks=[0], trials=3, stall_timeout=2.0), factory=factory,
                                    progress=False))
    assert episodes(records) == [(0, 0), (0, 1), (0, 2)]
    assert all(r["error"] is None and r["steps"] == 16 for r in records)
    assert (tmp_path / "once" / "stopped-task0-trial1").exists() and time.monotonic() - start < 60


def test_an_episode_that_always_stalls_is_an_error_naming_the_stall(tmp_path: Path) -> None:
    factory = FaultyPolicyFactory(stop_trials={0})
    records = read_results(run_eval(cfg(tmp_path, tasks=[0], trials=2, stall_timeout=1.5), factory=factory,
                                    progress=False))
    errors = {r["trial"]: r["error"] for r in records}
    assert errors[1] is None and "made no progress for 1.5 s" in errors[0] and "killed its worker 2 times" in errors[0]


def test_a_stopped_policy_service_stops_the_run_in_one_line_and_is_killed(tmp_path: Path) -> None:
    """The policy service beats; stopped mid-run it is silent, and the run stops naming it instead of waiting an
    episode timeout per request; the service process is killed, so the program can exit."""
    config = cfg(tmp_path, policy="main", tasks=[0], trials=4, stall_timeout=2.0, policy_service="on")
    executor, records = ProcessExecutor(config, StoppingBatchPolicyFactory(stop_at=3)), []
    Path(config.out_dir).mkdir(parents=True)  # run_eval makes it; the service's stats are written there
    start = time.monotonic()
    with pytest.raises(RuntimeError, match=r"policy service \(pid \d+\) made no progress for 2 s") as caught:
        executor.run([(0, trial) for trial in range(4)], lambda record, worker=None: records.append(record),
                     EvalProgress(4, "stall", enabled=False))
    assert time.monotonic() - start < 60 and len(records) < 4 and all(r["error"] is None for r in records)
    pid = int(re.search(r"pid (\d+)", str(caught.value)).group(1))
    assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_a_hung_policy_call_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    factory = FaultyPolicyFactory(hang_trials={0})
    records = read_results(run_eval(cfg(tmp_path, tasks=[0], trials=2, episode_timeout=4.0), factory=factory,
                                    progress=False))
    by_trial = {r["trial"]: r for r in records}
    assert "timeout" in by_trial[0]["error"] and "worker was killed" in by_trial[0]["error"]
    assert by_trial[0]["seconds"] >= 4.0
    assert by_trial[1]["error"] is None and by_trial[1]["steps"] == 16


def test_a_slow_episode_is_stopped_between_steps_inline(tmp_path: Path) -> None:
    factory = FaultyPolicyFactory(slow_trials={0}, slow_s=2.5)  # 2 chunks of 8 steps: 5 s > the 4 s timeout
    records = read_results(run_eval(cfg(tmp_path, tasks=[0], trials=2, workers=1, episode_timeout=4.0),
                                    factory=factory, progress=False))
    by_trial = {r["trial"]: r for r in records}
    assert "EpisodeTimeout" in by_trial[0]["error"] and 0 < by_trial[0]["steps"] < 16
    assert by_trial[1]["error"] is None


def test_a_worker_that_cannot_build_its_policy_stops_the_run(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="could not start"):
        run_eval(cfg(tmp_path), factory=_broken_factory, progress=False)


def _broken_factory(cfg):
    raise OSError("weights missing")


def test_the_scheduler_prefers_the_workers_task_and_drops_a_second_record() -> None:
    emitted = []
    sched = Scheduler(cfg(Path("/tmp")), [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2)], lambda r, w=None: emitted.append(r))
    assert sched.take(None) == (1, 0)  # a fresh worker takes the task with the most episodes left
    assert sched.take(None, others=[1]) == (0, 0)  # ... that no other worker holds
    assert sched.take(0, others=[1]) == (0, 1)  # then that task's next trial, in order
    assert sched.take(0, others=[1]) == (1, 1)  # task 0 is done: share task 1
    assert sched.take(7) == (1, 2)
    sched.finish((1, 0), {"trial": 0}, 0)
    sched.finish((1, 0), {"trial": 0, "again": True}, 1)
    assert emitted == [{"trial": 0}]
    assert hard_deadline(3600) == 3610 and hard_deadline(1.0) == 2.0


def test_progress_in_a_log_is_plain_lines() -> None:
    stream = io.StringIO()
    with EvalProgress(2, "eval x", stream=stream, heartbeat_s=0.0) as bar:
        bar.step(0, 10)
        bar.episode_done({"success": True, "error": None}, 0)
        bar.episode_done({"success": False, "error": "boom"}, 1)
    text = stream.getvalue()
    assert "\r" not in text and "\x1b" not in text
    assert "[eval x] in flight, steps: 10" in text
    assert "[eval x] 2/2 episodes, 1 successes, 1 errors" in text


@pytest.mark.parametrize(("kw", "message"), [
    ({"executor": "threads"}, "unknown executor"), ({"episode_timeout": 0.0}, "episode_timeout must be > 0"),
    ({"max_worker_deaths": 0}, "max_worker_deaths must be >= 1"), ({"ray_address": "auto"}, "applies to --executor ray"),
    ({"policy_service": "maybe"}, "must be auto, on or off"), ({"policy_service": "on"}, "serves rsd/main policies"),
    ({"service_max_batch": 0}, "service_max_batch must be >= 1"), ({"service_max_wait_ms": -1.0}, "must be >= 0"),
    ({"image_transform": "crop"}, "unknown image transform"), ({"image_transform": "oft"}, "applies to token policies"),
    ({"mock_step_latency_ms": -1.0}, "mock_step_latency_ms must be >= 0"),
    ({"checkpoints": "some/bundle"}, "--checkpoints: token policies' options"),  # not ignored for a noop policy
    ({"flip_gripper": True}, "--flip-gripper: token policies' options"),
])
def test_executor_arguments_are_checked(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cfg(tmp_path, **kw).validate()
