"""`rvq pipeline` on the mock env: every stage runs, a rerun skips them all, and a changed setting redoes its stage
and everything downstream (never a stale result under new settings)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from rvq.config_cli import config_from, updated
from rvq.pipeline import STAGE_FILE, STARTED_FILE, PipelineConfig, run_pipeline
from rvq.policies import verify_bundle

STUDY = Path(__file__).parents[2] / "configs" / "study"
STAGES = ["collect", "tokenizer", "phase2", "draft", "main", "policy", "departure", "eval_main", "eval_main_exit",
          "eval_main_depth", "eval_rsd", "eval_rsd_grid"]


def tiny(tmp_path: Path) -> PipelineConfig:
    return config_from(PipelineConfig, suite="libero_object", tasks=[0, 1], env="mock", demos_per_task=3,
                       tokenizer={"steps": 10}, heads={"steps": 4}, width=32, main_depth=1, batch_size=16, trials=1,
                       workers=1, policies=["main", "main_exit", "main_depth", "rsd", "rsd_grid"],
                       out_dir=str(tmp_path / "run"))


def test_pipeline_runs_skips_and_redoes_what_changed(tmp_path: Path) -> None:
    cfg = tiny(tmp_path)
    logs: list[str] = []
    report = run_pipeline(cfg, log=logs.append)
    run = Path(cfg.out_dir)
    assert all((run / s / STAGE_FILE).is_file() for s in STAGES)
    assert {p.name for p in (run / "policy" / "bundle").iterdir()} >= {"config.json", "tokenizer", "draft", "main",
                                                                      "features.json"}
    assert verify_bundle(run / "policy" / "bundle", "rsd").protocol == {"suite": "libero_object",
                                                                         "execute_steps": None,
                                                                         "temporal_ensemble": None,
                                                                         "exit_tolerance": 0.1}
    suites = {r["policy"]: r for r in report["episodes"]["suites"]}
    assert set(suites) == {"main", "main_exit", "main_depth", "rsd", "rsd_grid"}
    assert all(r["episodes"] == 2 and r["errors"] == 0 for r in suites.values())
    text = (run / "report.md").read_text()
    assert "| main |" in text and "| rsd_grid | tau 1.0, within 1 grid step(s) |" in text
    outputs = json.loads((run / "departure" / STAGE_FILE).read_text())["outputs"]
    departure = outputs["rsd_grid"]
    assert 0.0 <= departure["token_mismatch"] <= departure["chunk_mismatch"] <= 1.0
    exits = outputs["exit"]
    assert set(exits) == {"tolerance 0.001", "tolerance 0.01", "tolerance 0.1", "depth 1", "depth 2", "depth 3"}
    assert exits["depth 2"]["mean_depth"] == 2 and all(e["within_bound"] == 1.0 for e in exits.values())
    assert "Early exit against full greedy decoding" in text
    passes = {r["policy"]: r.get("mean_main_passes") for r in report["episodes"]["suites"]}
    assert passes["main"] == 8 and passes["rsd"] <= 8 and 1 <= passes["main_exit"] <= 8  # the tokenizer's 8 layers
    assert passes["main_depth"] == 1  # eval.exit_depth's default
    records = [json.loads(line) for line in (run / "eval_main_exit" / "results.jsonl").read_text().splitlines()]
    assert all("exit" in r["policy_stats"] for r in records)

    logs.clear()
    run_pipeline(cfg, log=logs.append)
    assert sum("skipped" in line for line in logs) == len(STAGES)

    logs.clear()
    records = {s: (run / s / STAGE_FILE).read_bytes() for s in STAGES}
    logs.clear()
    run_pipeline(updated(cfg, standardize_features=True), log=logs.append, plan=True)
    assert "[main] inputs changed since the last run: would be redone" in logs  # the heads' recipe is an input
    logs.clear()
    run_pipeline(updated(cfg, heads={"steps": 5}, roundtrip_reference=True), log=logs.append, plan=True)
    assert "[tokenizer] done before with the same inputs: would be skipped" in logs
    assert "[main] inputs changed since the last run: would be redone" in logs
    assert "[eval_expert_roundtrip] not done yet: would run" not in logs  # mock env: no expert rows
    assert {s: (run / s / STAGE_FILE).read_bytes() for s in STAGES} == records  # a plan changes nothing

    logs.clear()
    before = json.loads((run / "collect" / STAGE_FILE).read_text())["fingerprint"]
    run_pipeline(updated(cfg, heads={"steps": 5}), log=logs.append)
    redone = sorted(line.split("]")[0][1:] for line in logs if "inputs changed" in line)
    assert redone == sorted(["draft", "main", "policy", "departure", "eval_main", "eval_main_exit", "eval_main_depth",
                             "eval_rsd", "eval_rsd_grid"])
    assert json.loads((run / "collect" / STAGE_FILE).read_text())["fingerprint"] == before


def test_interrupted_stage_runs_again_and_configs_are_checked(tmp_path: Path) -> None:
    cfg = tiny(tmp_path)
    run_pipeline(cfg, log=lambda _: None)
    main = Path(cfg.out_dir) / "main"
    (main / STAGE_FILE).unlink()  # as if main had been killed before its record
    finished = main.joinpath("metrics.jsonl").read_text().splitlines()
    logs: list[str] = []
    run_pipeline(cfg, log=logs.append)
    assert "[main] interrupted before with the same inputs: resumed in its folder" in logs
    assert "[main] running" in logs and "[draft] done before with the same inputs: skipped" in logs
    # it went on from its last saved state (the last step) instead of training again from step 0
    assert main.joinpath("metrics.jsonl").read_text().splitlines() == finished
    assert json.loads((main / STAGE_FILE).read_text())["outputs"]["loss"] == pytest.approx(
        json.loads(finished[-1])["val"]["loss"])
    other = updated(cfg, demos_dir=str(Path(cfg.out_dir) / "collect" / "demos"), out_dir=str(tmp_path / "other"))
    logs.clear()
    run_pipeline(updated(other, policies=["main"]), log=logs.append)
    assert not (tmp_path / "other" / "collect" / "demos").exists()  # trained on the given files, none collected
    assert json.loads((tmp_path / "other" / "tokenizer" / STAGE_FILE).read_text())["outputs"]["val_mse"] == \
        json.loads((Path(cfg.out_dir) / "tokenizer" / STAGE_FILE).read_text())["outputs"]["val_mse"]
    with pytest.raises(ValueError, match="no .hdf5 demo files"):
        run_pipeline(updated(other, demos_dir=str(tmp_path)), log=logs.append)
    with pytest.raises(ValueError, match="policies must be a non-empty subset"):
        updated(cfg, policies=["expert"])
    with pytest.raises(ValueError, match="heads.lr must be > 0"):
        updated(cfg, lr=0.0)
    path = tmp_path / "p.toml"
    path.write_text('suite = "libero_object"\nbogus = 1\n')
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \[.bogus.\] for PipelineConfig"):
        PipelineConfig.from_file(path)
    path.write_text('tasks = [0]\nenv = "mock"\n')
    assert PipelineConfig.from_file(path, out_dir="x").tasks == [0]


def test_untrained_control_is_the_trained_folder_with_fresh_heads(tmp_path: Path) -> None:
    import torch

    from rvq.models import read_main

    cfg = updated(tiny(tmp_path), policies=["main"], untrained_control=True)
    report = run_pipeline(cfg, log=lambda _: None)
    run = Path(cfg.out_dir)
    trained = read_main(run / "policy" / "bundle" / "main")
    fresh = read_main(run / "policy_untrained" / "bundle" / "main")
    assert fresh.model.config == trained.model.config and fresh.tokenizer_identity == trained.tokenizer_identity
    assert fresh.feature_identity == trained.feature_identity and fresh.metrics == {"untrained": True}
    assert not torch.equal(fresh.model.head_weight, trained.model.head_weight)
    assert {p.name for p in (run / "policy_untrained").iterdir()} == {"bundle", STAGE_FILE, STARTED_FILE}
    assert verify_bundle(run / "policy_untrained" / "bundle", "main").digests("main")["tokenizer"] == \
        verify_bundle(run / "policy" / "bundle", "main").digests("main")["tokenizer"]  # the same tokenizer
    assert json.loads((run / "policy_untrained" / STARTED_FILE).read_text())["fingerprint"] == \
        json.loads((run / "policy_untrained" / STAGE_FILE).read_text())["fingerprint"]  # its own, not copied
    assert not (run / "draft").exists() and set(report["heads"]) == {"main"}  # main-only trains no draft
    rows = {r["policy"]: r for r in report["episodes"]["suites"]}
    assert set(rows) == {"main", "main_untrained"} and rows["main_untrained"]["episodes"] == 2


@pytest.mark.parametrize("path", sorted(Path(__file__).parents[2].joinpath("configs").rglob("*.toml")),
                         ids=lambda p: p.name)
def test_shipped_pipeline_configs_load(path: Path) -> None:
    cfg = PipelineConfig.from_file(path)
    assert cfg.env == "libero" and len(cfg.tasks) == 10 and cfg.out_dir.startswith("runs/")


def test_study_configs_train_the_tokenizer_their_rows_name() -> None:
    """The study's earlier runs keep the recipe they were made with; the cascade runs train robust's default."""
    from rvq.pipeline import _tokenizer_config

    models = {p.stem: _tokenizer_config(PipelineConfig.from_file(p)).resolved().model
              for p in STUDY.glob("libero_*.toml")}
    cascades = [models.pop(f"libero_{run}_cascade")
                for run in ("object_robust", "spatial_robust", "object_contact", "spatial_stall")]
    assert all(m.cascade and m.linear_inverse and m.quantizer == "robust" for m in cascades)
    assert len(models) == 6 and not any(m.cascade for m in models.values())
    assert {m.quantize_dropout for m in models.values()} == {0.35}


def test_decoding_study_configs_collect_the_headline_runs_demos_with_their_settings() -> None:
    """The decoding rows (issue 45) collect the headline runs' demos (the same collect stage: same settings, so the
    same fingerprint) and learn with their settings under temporal ensembling; the naive runs read the robust run's
    demos and differ in the quantizer and decode main_depth at one layer."""
    for suite, headline in (("object", "libero_object_contact_cascade"), ("spatial", "libero_spatial_stall_cascade")):
        robust, naive = (PipelineConfig.from_file(STUDY / f"decoding_libero_{suite}{tail}.toml")
                         for tail in ("", "_naive"))
        base = PipelineConfig.from_file(STUDY / f"{headline}.toml")
        plans = [run_pipeline(c, log=lambda _: None, plan=True)["fingerprints"] for c in (robust, base)]
        assert not robust.data.demos_dir and plans[0]["collect"] == plans[1]["collect"]
        assert naive.data.demos_dir == f"{robust.out_dir}/collect/demos"
        assert robust.heads == naive.heads == base.heads and robust.tokenizer == base.tokenizer
        assert robust.eval.temporal_ensemble and naive.eval.temporal_ensemble and robust.eval.trials == 50
        assert robust.eval.policies == ["main_exit", "main", "rsd"] and naive.eval.policies == ["main", "main_depth"]
        assert naive.tokenizer.quantizer == "naive" and naive.eval.exit_depth == 1


def test_spatial_cascade_run_collects_the_robust_runs_demos_and_trains_its_own_tokenizer() -> None:
    """The cascade run's rows pair with the robust run's: the same collect stage, a different tokenizer."""
    plans = {name: run_pipeline(PipelineConfig.from_file(STUDY / f"libero_spatial_{name}.toml"),
                                log=lambda _: None, plan=True)["fingerprints"]
             for name in ("robust", "robust_cascade")}
    assert plans["robust"]["collect"] == plans["robust_cascade"]["collect"]
    assert plans["robust"]["tokenizer"] != plans["robust_cascade"]["tokenizer"]


def test_contact_run_differs_from_the_object_cascade_run_in_its_grasp_rule() -> None:
    """The contact run collects its own demos with the grasp rule as the one setting apart from the cascade run's
    (which reuses the robust run's timer-rule demos), and evaluates the contact-rule expert beside its heads."""
    contact, timer = (PipelineConfig.from_file(STUDY / f"libero_object_{name}_cascade.toml")
                      for name in ("contact", "robust"))
    robust = PipelineConfig.from_file(STUDY / "libero_object_robust.toml")
    rules = (contact.expert_grasp_hold, timer.expert_grasp_hold, robust.expert_grasp_hold)
    assert rules == ("contact", "timer", "timer")
    assert replace(contact.data, demos_dir=timer.data.demos_dir) == timer.data and not contact.data.demos_dir
    assert contact.data == robust.data  # the same demo count and reset seeds as the demos the timer runs share
    shared = ("tokenizer", "heads", "tasks", "seed", "suite", "workers", "device")
    assert [getattr(contact, name) for name in shared] == [getattr(timer, name) for name in shared]
    assert replace(contact.eval, expert_reference=False) == timer.eval and contact.eval.expert_reference
    plans = {name: run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
             for name, cfg in (("contact", contact), ("robust", robust))}
    assert plans["contact"]["collect"] != plans["robust"]["collect"]


def test_execute_steps_changes_only_the_learned_policies_eval_fingerprints(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="execute_steps must be >= 0"):
        config_from(PipelineConfig, execute_steps=-1)
    cfg = updated(tiny(tmp_path), env="libero", policies=["main", "rsd"])
    before = run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
    after = run_pipeline(updated(cfg, execute_steps=4), log=lambda _: None, plan=True)["fingerprints"]
    changed = sorted(name for name in before if before[name] != after[name])
    # the policy bundle records K in its protocol; the expert reference and the training stages are kept
    assert changed == ["eval_main", "eval_rsd", "policy"]


def test_takeover_rounds_add_stages_after_round_zero_and_evaluate_the_last_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="takeover_rounds must be >= 0"):
        config_from(PipelineConfig, takeover_rounds=-1)
    with pytest.raises(ValueError, match="need the scripted expert in LIBERO"):
        config_from(PipelineConfig, env="mock", takeover_rounds=1)
    with pytest.raises(ValueError, match=r"takeover_steps must be \[low, high\]"):
        config_from(PipelineConfig, takeover_steps=[100, 10])
    cfg = updated(tiny(tmp_path), env="libero", policies=["main", "rsd"])
    logs: list[str] = []
    before = run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
    after = run_pipeline(updated(cfg, takeover_rounds=2), log=logs.append, plan=True)["fingerprints"]
    added = sorted(set(after) - set(before))
    assert added == sorted(f"{stage}_r{r}" for r in (1, 2)
                           for stage in ("takeover", "phase2", "draft", "main", "policy"))
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["eval_main", "eval_rsd"]  # round 0 is reused as it was; the learned rows see the last round
    assert any(line.startswith("[takeover_r2] not done yet") for line in logs)
    more = run_pipeline(updated(cfg, takeover_rounds=2, takeover_demos_per_task=5), log=lambda _: None,
                        plan=True)["fingerprints"]
    redone = sorted(name for name in after if after[name] != more[name])
    assert "takeover_r1" in redone and "phase2" not in redone and "main" not in redone


def test_expert_grasp_hold_redoes_the_demos_and_the_expert_row(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expert_grasp_hold must be one of"):
        config_from(PipelineConfig, expert_grasp_hold="sometimes")
    with pytest.raises(ValueError, match="the mock env and demos_dir do not collect with it"):
        config_from(PipelineConfig, env="mock", expert_grasp_hold="contact")
    cfg = updated(tiny(tmp_path), env="libero", policies=["main"], takeover_rounds=1)
    before = run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
    after = run_pipeline(updated(cfg, expert_grasp_hold="contact"), log=lambda _: None, plan=True)["fingerprints"]
    assert sorted(before) == sorted(after)
    assert all(before[name] != after[name] for name in before), before  # demos change, so does all that follows


def test_expert_phase_end_redoes_the_demos_and_the_expert_row(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="expert_phase_end must be one of"):
        config_from(PipelineConfig, expert_phase_end="sometimes")
    with pytest.raises(ValueError, match="the mock env and demos_dir do not collect with it"):
        config_from(PipelineConfig, env="mock", expert_phase_end="stall")
    with pytest.raises(ValueError, match="the mock env and demos_dir do not collect with it"):
        config_from(PipelineConfig, demos_dir=str(tmp_path), expert_phase_end="stall")
    cfg = updated(tiny(tmp_path), env="libero", policies=["main"], takeover_rounds=1)
    before = run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
    after = run_pipeline(updated(cfg, expert_phase_end="stall"), log=lambda _: None, plan=True)["fingerprints"]
    both = run_pipeline(updated(cfg, expert_phase_end="stall", expert_grasp_hold="contact"), log=lambda _: None,
                        plan=True)["fingerprints"]
    assert sorted(before) == sorted(after) == sorted(both)
    assert all(before[name] != after[name] != both[name] for name in before), before  # all follows the demos


def test_a_new_expert_revision_redoes_the_libero_demos_and_expert_row_only(tmp_path: Path, monkeypatch) -> None:
    import rvq.expert.scripted

    libero = updated(tiny(tmp_path), env="libero", policies=["main"])
    mock = updated(tiny(tmp_path), policies=["main"])
    before = {c.env: run_pipeline(c, log=lambda _: None, plan=True)["fingerprints"] for c in (libero, mock)}
    monkeypatch.setattr(rvq.expert.scripted, "EXPERT_REVISION", rvq.expert.scripted.EXPERT_REVISION + 1)
    after = {c.env: run_pipeline(c, log=lambda _: None, plan=True)["fingerprints"] for c in (libero, mock)}
    assert all(before["libero"][name] != after["libero"][name] for name in before["libero"])  # demos change
    assert before["mock"] == after["mock"]  # the mock's demos are not the expert's


def test_the_tokenizer_recipe_is_an_input_of_the_tokenizer_stage(tmp_path: Path) -> None:
    import rvq.pipeline

    # the stage trains with `rvq train-tokenizer`'s recipe, resolved: robust's default is the cascade
    assert rvq.pipeline._tokenizer_config(tiny(tmp_path)).resolved().model_config().cascade
    assert not rvq.pipeline._tokenizer_config(updated(tiny(tmp_path), quantizer="naive")).resolved().model.cascade
    with pytest.raises(ValueError, match=r"quantize_dropout must be in \[0, 1\], got 1.5"):  # before any stage runs
        config_from(PipelineConfig, quantize_dropout=1.5)
    cfg = updated(tiny(tmp_path), env="libero", policies=["main"])
    before = run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
    recipe = updated(cfg, layer0_warmup_ratio=0.5)
    assert rvq.pipeline._tokenizer_config(recipe).model_config().layer0_warmup == 5  # half of the 10 steps
    after = run_pipeline(recipe, log=lambda _: None, plan=True)["fingerprints"]
    unchanged = ["collect", "eval_expert"]  # the demos and the expert's own row do not use the tokenizer
    assert sorted(name for name in before if before[name] == after[name]) == unchanged
    # a recipe setting given as its resolved default is the same input as leaving it unset
    default_ratio = rvq.pipeline._tokenizer_config(cfg).resolved().layer0_warmup_ratio
    same = run_pipeline(updated(cfg, layer0_warmup_ratio=default_ratio), log=lambda _: None, plan=True)
    assert same["fingerprints"] == before


def test_temporal_ensemble_changes_only_the_learned_policies_eval_fingerprints(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not combine with execute_steps"):
        config_from(PipelineConfig, temporal_ensemble=True, execute_steps=4)
    cfg = updated(tiny(tmp_path), env="libero", policies=["main", "rsd"])
    before = run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
    after = run_pipeline(updated(cfg, temporal_ensemble=True), log=lambda _: None, plan=True)["fingerprints"]
    # the bundle's protocol records the ensemble
    assert sorted(name for name in before if before[name] != after[name]) == ["eval_main", "eval_rsd", "policy"]
    mock = updated(tiny(tmp_path), policies=["main"], temporal_ensemble=True)
    report = run_pipeline(mock, log=lambda _: None)
    (row,) = report["episodes"]["suites"]
    assert row["episodes"] == 2 and row["errors"] == 0
    assert json.loads((Path(mock.out_dir) / "eval_main" / "eval_config.json").read_text())["temporal_ensemble"] == 0.01


def test_a_second_writer_of_a_run_folder_is_refused_and_a_plan_is_not(tmp_path: Path, capsys) -> None:
    from rvq.cli import main
    from rvq.eval.results import RunInUse, RunLock

    cfg = tiny(tmp_path)
    run = Path(cfg.out_dir)
    run.mkdir(parents=True)
    with RunLock(run, "pipeline run", lock_path=run / ".pipeline.lock"):  # another process running the folder
        with pytest.raises(RunInUse, match=r"in use by another pipeline run \(pid \d+\)"):
            run_pipeline(cfg, log=lambda _: None)
        assert run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]  # planning only reads
        assert main(["pipeline", "--env", "mock", "--out-dir", str(run), "--tasks", "0"]) == 2
        assert "in use by another pipeline run" in capsys.readouterr().err
    assert not (run / "collect").exists()  # nothing was run while the folder was held


def test_a_stage_fingerprint_hashes_its_resolved_config_so_every_setting_and_default_counts(tmp_path: Path,
                                                                                            monkeypatch) -> None:
    import dataclasses

    import rvq.pipeline
    from rvq.rfsq import TokenizerConfig

    cfg = updated(tiny(tmp_path), env="libero", policies=["main", "rsd"])
    before = run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
    # a recipe default of `rvq train-tokenizer` that changes after a run redoes its tokenizer (no list of names kept
    # by hand: the stage hashes the resolved config it runs with)
    resolved = TokenizerConfig.resolved
    monkeypatch.setattr(TokenizerConfig, "resolved", lambda self: dataclasses.replace(resolved(self), mlp_dim=64))
    tokenizer_default = run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
    assert tokenizer_default["tokenizer"] != before["tokenizer"] and tokenizer_default["collect"] == before["collect"]
    monkeypatch.undo()
    # so does any setting of the heads' config, also one the pipeline does not name
    head_config = rvq.pipeline._head_config
    monkeypatch.setattr(rvq.pipeline, "_head_config", lambda *a, **k: dataclasses.replace(
        head_config(*a, **k), model=dataclasses.replace(head_config(*a, **k).model, dropout=0.5)))
    head_default = run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
    assert sorted(k for k in before if before[k] != head_default[k]) == ["draft", "eval_main", "eval_rsd", "main",
                                                                        "policy"]
    monkeypatch.undo()
    # a change to what the stages do bumps the version: every stage is redone
    monkeypatch.setattr(rvq.pipeline, "PIPELINE_VERSION", rvq.pipeline.PIPELINE_VERSION + 1)
    bumped = run_pipeline(cfg, log=lambda _: None, plan=True)["fingerprints"]
    assert all(bumped[k] != before[k] for k in before)
    monkeypatch.undo()
    # how a row runs (workers) is not an input: its records are equal
    assert run_pipeline(updated(cfg, workers=3), log=lambda _: None, plan=True)["fingerprints"] == before


def test_settings_have_one_spelling_dotted_flags_and_tables(tmp_path: Path) -> None:
    from rvq.config_cli import parse_config

    dotted = parse_config(PipelineConfig, ["--heads.steps", "7", "--tokenizer.steps", "9", "--eval.trials", "2",
                                           "--data.demos-per-task", "4", "--heads.standardize-features"], "p")
    assert (dotted.heads.steps, dotted.tokenizer.steps, dotted.eval.trials) == (7, 9, 2)
    assert dotted.data.demos_per_task == 4 and dotted.heads.standardize_features
    for flat in (["--head-steps", "7"], ["--demos-per-task", "4"], ["--out", "x"]):  # the old spellings are gone
        with pytest.raises(SystemExit):
            parse_config(PipelineConfig, flat, "p")
    (tmp_path / "flat.toml").write_text("head_steps = 5\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['head_steps'\]"):
        PipelineConfig.from_file(tmp_path / "flat.toml")
    (tmp_path / "flat_leaf.toml").write_text("lr = 1e-3\n")  # a file names the group's table
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['lr'\]"):
        PipelineConfig.from_file(tmp_path / "flat_leaf.toml")
    (tmp_path / "tables.toml").write_text("[heads]\nsteps = 5\n")
    assert PipelineConfig.from_file(tmp_path / "tables.toml", lr=1e-3).heads == \
        updated(PipelineConfig(), heads={"steps": 5, "lr": 1e-3}).heads
    with pytest.raises(ValueError, match=r"'steps' of PipelineConfig is ambiguous.*'tokenizer.steps', 'heads.steps'"):
        updated(PipelineConfig(), steps=5)  # Python keywords: a leaf two groups share names neither
    with pytest.raises(ValueError, match="heads.lr must be > 0"):  # a group checks its own settings
        updated(PipelineConfig(), lr=0.0)


def test_a_copied_run_reads_its_own_files_and_demo_files_count_by_content(tmp_path: Path) -> None:
    import os
    import shutil

    import h5py

    cfg = updated(tiny(tmp_path), policies=["main"])
    run_pipeline(cfg, log=lambda _: None)
    copy = tmp_path / "copy"
    shutil.copytree(cfg.out_dir, copy)
    shutil.rmtree(cfg.out_dir)  # the original is gone: the copy reads only its own files
    logs: list[str] = []
    run_pipeline(updated(cfg, out_dir=str(copy)), log=logs.append)
    assert not [line for line in logs if line.endswith("running")], logs
    assert json.loads((copy / "policy" / STAGE_FILE).read_text())["outputs"]["folder"] == "<run>/policy/bundle"
    # demos_dir is an input by content: a value rewritten in place with the size and time kept (as `cp -p` or
    # `rsync -t` leave them), or an added `.h5` file the reader also reads, redoes the stages after it
    demos = copy / "collect" / "demos"
    other = updated(cfg, demos_dir=str(demos), out_dir=str(tmp_path / "other"))
    before = run_pipeline(other, log=lambda _: None, plan=True)["fingerprints"]["collect"]
    first = sorted(demos.glob("*.hdf5"))[0]
    stat = first.stat()
    with h5py.File(first, "r+") as handle:
        actions = handle["data/demo_0/actions"]
        actions[0, 0] = actions[0, 0] + 0.5
    os.utime(first, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert first.stat().st_size == stat.st_size and first.stat().st_mtime_ns == stat.st_mtime_ns
    rewritten = run_pipeline(other, log=lambda _: None, plan=True)["fingerprints"]["collect"]
    assert rewritten != before
    shutil.copy(first, demos / "zz_extra.h5")
    assert run_pipeline(other, log=lambda _: None, plan=True)["fingerprints"]["collect"] not in (before, rewritten)


@pytest.mark.parametrize("text, names", [("[]", "got list"), ("{", "not a stage record (Expecting"),
                                         ('{"fingerprint": "x"}', "got ['fingerprint']"),
                                         ('{"fingerprint": "x", "outputs": [1]}', "got ['fingerprint', 'outputs']"),
                                         (b"\xff\xfe", "not a stage record ('utf-8' codec")])
def test_a_stage_record_changed_by_hand_is_refused_naming_its_file(tmp_path: Path, text, names) -> None:
    from rvq.pipeline import Run

    run = Run(tiny(tmp_path), log=lambda _: None)
    ran: list[Path] = []
    run.stage("tokenizer", {"a": 1}, [], lambda folder: ran.append(folder) or {"checkpoint": str(folder / "t")})
    record = run.root / "tokenizer" / STAGE_FILE
    assert ran and json.loads(record.read_text())["outputs"] == {"checkpoint": "<run>/tokenizer/t"}
    record.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(ValueError, match="delete its folder to run the stage again") as info:
        run.stage("tokenizer", {"a": 1}, [], lambda folder: ran.append(folder) or {})
    assert str(record) in str(info.value) and names in str(info.value) and len(ran) == 1


def test_a_finished_stage_whose_output_was_deleted_is_refused_naming_it(tmp_path: Path) -> None:
    from rvq.pipeline import Run

    run = Run(tiny(tmp_path), log=lambda _: None)

    def body(folder: Path) -> dict:
        (folder / "t").mkdir()
        return {"checkpoint": str(folder / "t"), "files": [str(folder / "t")], "elsewhere": str(tmp_path)}

    run.stage("tokenizer", {"a": 1}, [], body)
    assert run.stage("tokenizer", {"a": 1}, [], body)["checkpoint"] == str(run.root / "tokenizer" / "t")
    (run.root / "tokenizer" / "t").rmdir()
    with pytest.raises(ValueError, match=r"stage.json: the stage's output .*tokenizer/t is missing; delete its folder"):
        run.stage("tokenizer", {"a": 1}, [], body)


def test_the_stage_graph_is_explicit_and_each_body_reads_only_its_upstream(tmp_path: Path) -> None:
    from rvq.pipeline import stage_graph

    cfg = updated(tiny(tmp_path), takeover_rounds=1, untrained_control=True, env="libero", expert_reference=True,
                  roundtrip_reference=True)
    stages = stage_graph(cfg, log=lambda _: None)
    names = [s.name for s in stages]
    assert names == ["collect", "tokenizer", "phase2", "draft", "main", "policy", "takeover_r1", "phase2_r1",
                     "draft_r1", "main_r1", "policy_r1", "departure", "policy_untrained", "eval_main",
                     "eval_main_exit", "eval_main_depth", "eval_rsd", "eval_rsd_grid", "eval_main_untrained",
                     "eval_expert", "eval_expert_roundtrip"]
    edges = {s.name: s.upstream for s in stages}
    assert all(names.index(u) < names.index(name) for name, ups in edges.items() for u in ups)  # runs in order
    assert edges["phase2_r1"] == ("collect", "takeover_r1", "tokenizer")  # both rounds' demos
    assert edges["takeover_r1"] == ("policy",) and edges["eval_main"] == ("policy_r1",)
    assert edges["eval_expert"] == () and edges["eval_expert_roundtrip"] == ("tokenizer",)
    # a body is given its upstream stages' outputs and nothing else: what it reads is in its fingerprint
    seen: dict[str, set[str]] = {}

    class Outputs(dict):
        def __getitem__(self, key):
            seen.setdefault(self.stage, set()).add(key)
            return super().__getitem__(key)

    for stage in stages[1:6]:  # (collect would start the simulator)
        up = Outputs({u: {"demos": "d", "checkpoint": "c", "data": "p", "folder": "f"} for u in stage.upstream})
        up.stage = stage.name
        try:
            stage.body(tmp_path / stage.name, up)
        except Exception:  # noqa: BLE001 - the fake paths fail inside the body: only what it read matters here
            pass
        assert seen.get(stage.name, set()) <= set(stage.upstream)
    assert seen["tokenizer"] == {"collect"} and seen["phase2"] == {"collect", "tokenizer"}
