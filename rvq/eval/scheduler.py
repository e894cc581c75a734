"""The bookkeeping every multi-worker executor shares (local processes, Ray actors): pending episodes, which worker
holds which, deaths per episode, records emitted once, and the clocks workers are watched by."""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Callable, Collection
from typing import Any

from rvq.eval.config import EvalConfig
from rvq.eval.runner import Episode, episode_record

Emit = Callable[..., None]  # emit(record, worker=None)
POLL_S = 0.2  # how often the parent looks at its workers while no message comes
HEARTBEAT_S = 1.0  # a stepping worker reports a step at least this often (seconds)
TIMEOUT_GRACE_S = 10.0  # past the timeout, a worker's own check gets up to this long before the worker is killed


def hard_deadline(timeout: float) -> float:
    """Seconds after which a worker still running an episode is killed: the timeout plus a grace period for the
    worker's own between-steps check (which records a cleaner error and keeps the worker)."""
    return timeout + min(TIMEOUT_GRACE_S, max(1.0, 0.1 * timeout))


def lost_episode_record(cfg: EvalConfig, episode: Episode, why: str, worker_pid: int | None,
                        seconds: float) -> dict[str, Any]:
    """The record of an episode whose worker died or hung: an error, never a silent gap."""
    task, trial = episode
    return {**episode_record(cfg, task, trial), "error": why, "worker": worker_pid, "seconds": seconds}


class Scheduler:
    """The bookkeeping every multi-worker executor shares: pending episodes, which worker holds which, deaths per
    episode, and the records already emitted (a record arriving twice is dropped, never written twice)."""

    def __init__(self, cfg: EvalConfig, episodes: list[Episode], emit: Emit) -> None:
        self.cfg, self.emit = cfg, emit
        self.pending: deque[Episode] = deque(episodes)
        self.deaths: Counter[Episode] = Counter()
        self.emitted: set[Episode] = set()

    def take(self, task: int | None, others: Collection[int] = ()) -> Episode | None:
        """The next episode for a worker whose env holds `task`: that task's next trial if any; else the first
        trial of the task no other worker holds (`others`: their tasks) with the most episodes left; else the
        first pending one. So workers spread over tasks before they share one (one env per task, and each task's
        trials run in order on one worker: no scene-chain replays), and share only when workers outnumber tasks."""
        if not self.pending:
            return None
        left = Counter(t for t, _ in self.pending)
        if task is None or task not in left:
            free = [t for t in left if t not in set(others)]
            task = max(free, key=lambda t: (left[t], -t)) if free else None
        if task is not None:
            for i, episode in enumerate(self.pending):
                if episode[0] == task:
                    del self.pending[i]
                    return episode
        return self.pending.popleft()

    def finish(self, episode: Episode, record: dict[str, Any], worker: Any) -> None:
        if episode in self.emitted:
            return
        self.emitted.add(episode)
        self.emit(record, worker)

    def worker_died(self, episode: Episode, why: str, pid: int | None, seconds: float, worker: Any) -> None:
        """Requeue the episode of a dead worker, or record it as an error once it has killed enough workers."""
        self.deaths[episode] += 1
        if self.deaths[episode] >= self.cfg.max_worker_deaths:
            message = (f"{why}; this episode killed its worker {self.deaths[episode]} times "
                       f"(--max-worker-deaths {self.cfg.max_worker_deaths}), so it is recorded as an error")
            self.finish(episode, lost_episode_record(self.cfg, episode, message, pid, seconds), worker)
        else:
            self.pending.appendleft(episode)

    def timed_out(self, episode: Episode, pid: int | None, seconds: float, worker: Any) -> None:
        why = (f"episode ran past the {self.cfg.episode_timeout:g} s timeout (--episode-timeout) and did not "
               f"stop; its worker was killed after {seconds:.0f} s")
        self.finish(episode, lost_episode_record(self.cfg, episode, why, pid, seconds), worker)
