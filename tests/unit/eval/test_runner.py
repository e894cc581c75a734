"""The runner's results integrity on the mock env: resume refuses other settings, one run per results file, the
writer repairs only its own torn tail, and bad arguments are refused."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rvq.cli import main
from rvq.envs import parse_tasks
from rvq.eval import EvalConfig, run_eval
from rvq.eval.results import RunLock, read_results
from rvq.policies import NoopPolicy


def noop(tmp_path: Path, **kw) -> EvalConfig:
    settings = dict(suite="libero_goal", tasks=[0], trials=2, policy="noop", env="mock", max_steps=3,
                    out_dir=str(tmp_path / "eval"), render=False)
    return EvalConfig(**{**settings, **kw})


def test_resume_refuses_other_result_settings_and_extends_with_more_trials(tmp_path: Path) -> None:
    path = run_eval(noop(tmp_path), progress=False)
    assert [r["trial"] for r in read_results(path)] == [0, 1]
    assert all(r["label"] == "noop" and r["checkpoint_identity"] for r in read_results(path))
    with pytest.raises(ValueError, match=r"max_steps: 3 there, 4 now"):
        run_eval(noop(tmp_path, max_steps=4), progress=False)
    with pytest.raises(ValueError, match=r"row: 'noop' there, 'other' now"):
        run_eval(noop(tmp_path, label="other"), progress=False)
    run_eval(noop(tmp_path, trials=3), progress=False)  # more trials of the same run: resumed, not redone
    assert [r["trial"] for r in read_results(path)] == [0, 1, 2]
    stored = json.loads((path.parent / "eval_config.json").read_text())
    assert stored["trials"] == 3 and stored["result_settings"]["max_steps"] == 3
    # without its record of settings, a folder of results is never resumed (another max_steps would mix in)
    (path.parent / "eval_config.json").unlink()
    with pytest.raises(ValueError, match="holds results but not eval_config.json"):
        run_eval(noop(tmp_path, max_steps=4, trials=3), progress=False)
    (path.parent / "eval_config.json").write_text("[]")  # not a record of settings
    with pytest.raises(ValueError, match="does not record the settings"):
        run_eval(noop(tmp_path, trials=3), progress=False)
    assert [r["trial"] for r in read_results(path)] == [0, 1, 2]  # nothing added


def test_second_run_on_a_results_file_is_refused(tmp_path: Path) -> None:
    cfg = noop(tmp_path)
    Path(cfg.out_dir).mkdir()
    with RunLock(Path(cfg.out_dir) / cfg.results_name):
        with pytest.raises(RuntimeError, match=r"in use by another evaluation \(pid \d+\)"):
            run_eval(cfg, progress=False)
    run_eval(cfg, progress=False)  # released: runs


def test_the_writer_cuts_only_its_own_torn_tail(tmp_path: Path) -> None:
    cfg = noop(tmp_path)
    path = run_eval(cfg, progress=False)
    first = path.read_text().splitlines()[0]
    path.write_text(first + "\n" + '{"suite": "libero_go')  # trial 1 was being written when the run died
    with pytest.warns(UserWarning, match="torn last line"):
        assert len(read_results(path)) == 1
    run_eval(cfg, progress=False)
    lines = path.read_text().splitlines()
    assert lines[0] == first and [json.loads(line)["trial"] for line in lines] == [0, 1]


@pytest.mark.parametrize(("kw", "message"), [
    ({"max_steps": 0}, "max_steps must be >= 1"), ({"max_steps": -5}, "max_steps must be >= 1"),
    ({"trials": 0}, "trials must be in"), ({"workers": 0}, "workers must be >= 1"),
    ({"videos": -1}, "videos must be >= 0"), ({"tau": 0.0}, r"tau must be in \(0, 1\]"),
    ({"max_grid_distance": -1}, "max_grid_distance must be >= 0"), ({"label": " "}, "label must be a non-empty single line"),
    ({"exact": False}, "RSD's acceptance rules: they do not apply to policy 'noop'"),
    ({"max_grid_distance": 1}, "RSD's acceptance rules: they do not apply to policy 'noop'"),
    ({"exit_depth": 2}, "apply to policy 'main'"),
])
def test_bad_arguments_are_refused(tmp_path: Path, kw: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        noop(tmp_path, **kw).validate()


def test_reversed_task_range_is_refused() -> None:
    with pytest.raises(ValueError, match=r"task range '3-1' is empty"):
        parse_tasks("3-1", "libero_goal")
    assert parse_tasks("1-3", "libero_goal") == [1, 2, 3]


def test_eval_exits_nonzero_when_episodes_errored(tmp_path: Path, capsys, monkeypatch) -> None:
    def broken(self, obs):
        raise RuntimeError("policy blew up")

    monkeypatch.setattr(NoopPolicy, "act", broken)
    args = ["eval", "--suite", "libero_goal", "--tasks", "0", "--trials", "2", "--policy", "noop", "--env", "mock",
            "--max-steps", "2", "--out-dir", str(tmp_path / "eval"), "--no-progress", "--no-render"]
    assert main(args) == 1
    assert "2 episode(s) ended in an error" in capsys.readouterr().err
    records = read_results(tmp_path / "eval" / "results.jsonl")
    assert all("policy blew up" in r["error"] for r in records)


def test_execute_steps_replans_after_k_actions_and_is_a_result_setting(tmp_path: Path, monkeypatch) -> None:
    calls: list[int] = []
    original = NoopPolicy.act

    def counted(self, obs):
        calls.append(1)
        return original(self, obs)

    monkeypatch.setattr(NoopPolicy, "act", counted)
    run_eval(noop(tmp_path, trials=1, max_steps=12), progress=False)
    assert len(calls) == 2  # chunks of 8: steps 0-7 and 8-11
    calls.clear()
    with pytest.raises(ValueError, match=r"execute_steps: absent there, 3 now"):
        run_eval(noop(tmp_path, trials=1, max_steps=12, execute_steps=3), progress=False)
    path = run_eval(noop(tmp_path, trials=1, max_steps=12, execute_steps=3, out_dir=str(tmp_path / "k3")), progress=False)
    assert len(calls) == 4 and read_results(path)[0]["steps"] == 12  # replanned at steps 0, 3, 6, 9
    with pytest.raises(ValueError, match=r"execute_steps: 3 there, absent now"):
        run_eval(noop(tmp_path, trials=2, max_steps=12, out_dir=str(tmp_path / "k3")), progress=False)
    with pytest.raises(ValueError, match="execute_steps must be >= 0"):
        noop(tmp_path, execute_steps=-1).validate()
    assert noop(tmp_path, execute_steps=0).validate().execute_steps is None  # 0: the whole chunk, said explicitly
    record = run_eval(noop(tmp_path, trials=1, execute_steps=9, out_dir=str(tmp_path / "k9")), progress=False)
    assert "execute_steps 9 exceeds the policy's chunk of 8 actions" in read_results(record)[0]["error"]
