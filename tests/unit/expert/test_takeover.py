"""Takeover demos (`rvq.expert.takeover`): the drawn takeover step, the policy folder's fingerprint, the policy
prefix, and the settings refused before any simulator starts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rvq.expert.collect import CollectConfig, collect_demos, reset_seed
from rvq.expert.takeover import draw_takeover_step, policy_fingerprint, policy_prefix


def test_takeover_step_is_stable_and_covers_its_range() -> None:
    steps = [draw_takeover_step(reset_seed(2, a, True), 20, 160) for a in range(400)]
    assert steps == [draw_takeover_step(reset_seed(2, a, True), 20, 160) for a in range(400)]
    assert min(steps) >= 20 and max(steps) <= 160 and len(set(steps)) > 100  # spread over the range, not one value
    assert draw_takeover_step(7, 5, 5) == 5


def test_takeover_seeds_differ_from_the_plain_demos_seeds() -> None:
    plain = {reset_seed(t, a) for t in range(10) for a in range(1000)}
    takeover = {reset_seed(t, a, True) for t in range(10) for a in range(1000)}
    assert not plain & takeover and len(takeover) == 10_000


def _policy_folder(folder: Path) -> Path:
    folder.mkdir()
    for name in ("tokenizer.pt", "main.pt", "features.json"):
        (folder / name).write_bytes(name.encode())
    return folder


def test_policy_fingerprint_follows_the_files_that_decide_actions(tmp_path: Path) -> None:
    folder = _policy_folder(tmp_path / "policy")
    before = policy_fingerprint(folder)
    (folder / "draft.pt").write_bytes(b"draft")  # the prefix runs the main head only
    assert policy_fingerprint(folder) == before
    (folder / "main.pt").write_bytes(b"retrained")
    assert policy_fingerprint(folder) != before
    (folder / "main.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing \['main.pt'\]"):
        policy_fingerprint(folder)


class _CountingEnv:
    """Succeeds on step `succeed_at` (or never)."""

    instruction, task_id = "pick up the cup", 3

    def __init__(self, succeed_at: int | None) -> None:
        self.succeed_at, self.actions = succeed_at, []

    def step(self, action):
        self.actions.append(np.asarray(action))
        return {"step": len(self.actions)}, len(self.actions) == self.succeed_at


class _ChunkPolicy:
    def __init__(self) -> None:
        self.calls, self.resets = 0, []

    def reset(self, instruction, task_id, trial) -> None:
        self.resets.append((instruction, task_id, trial))

    def act(self, obs):
        self.calls += 1
        return np.full((3, 7), float(self.calls))


def test_policy_prefix_runs_whole_chunks_for_the_drawn_steps_and_stops_on_success() -> None:
    env, policy = _CountingEnv(None), _ChunkPolicy()
    obs, steps, success = policy_prefix(env, policy, {"step": 0}, 7)
    assert (steps, success, obs) == (7, False, {"step": 7})
    assert policy.calls == 3 and policy.resets == [("pick up the cup", 3, -1)]
    assert [a[0] for a in env.actions] == [1, 1, 1, 2, 2, 2, 3]  # each chunk executed in order, the last cut short
    env, policy = _CountingEnv(4), _ChunkPolicy()
    assert policy_prefix(env, policy, {"step": 0}, 50)[1:] == (4, True)


def test_takeover_settings_are_refused_before_any_simulator_starts(tmp_path: Path) -> None:
    folder = _policy_folder(tmp_path / "policy")
    out = str(tmp_path / "out")
    with pytest.raises(ValueError, match="start from randomized resets"):
        collect_demos(CollectConfig(takeover_policy=str(folder), out_dir=out))
    with pytest.raises(ValueError, match="0 <= low <= high"):
        collect_demos(CollectConfig(takeover_policy=str(folder), random_resets=2, takeover_steps=(50, 10),
                                    out_dir=out))
    with pytest.raises(FileNotFoundError, match="policy folder not found"):
        collect_demos(CollectConfig(takeover_policy=str(tmp_path / "nowhere"), random_resets=2, out_dir=out))
    assert CollectConfig(takeover_policy=str(folder), random_resets=2).starts() == "takeover"


def test_cli_takeover_steps_must_be_a_range(tmp_path: Path, capsys) -> None:
    from rvq.cli import main

    for bad in (["abc"], ["5", "x"], ["20-160"]):
        with pytest.raises(SystemExit) as exit_info:  # the config library's usage error, naming the flag
            main(["collect-demos", "--takeover-steps", *bad, "--out-dir", str(tmp_path)])
        assert exit_info.value.code == 2 and "--takeover-steps" in capsys.readouterr().err
    assert not any(tmp_path.iterdir())  # nothing collected
