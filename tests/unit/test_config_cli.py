"""The training commands' options come from their config dataclasses: flags, `--config` files, saved run configs."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rvq.cli import main
from rvq.config_cli import (RUN_CONFIG, _leaves, ambiguous_leaves, config_from, leaf_paths, parse_config,
                            save_run_config, split_config_flag)
from rvq.rfsq import TokenizerConfig
from rvq.training.heads import TrainHeadConfig
from rvq.training.tokenizer import TrainTokenizerConfig


def test_flags_have_one_spelling_and_a_config_file_gives_defaults_that_flags_override(tmp_path: Path) -> None:
    cfg = parse_config(TrainTokenizerConfig, ["--model.hidden-dim", "8", "--model.no-linear-skip", "--demos", "a",
                                              "b"], "rvq t")
    assert (cfg.model.hidden_dim, cfg.model.linear_skip, cfg.demos) == (8, False, ["a", "b"])
    (tmp_path / "c.toml").write_text('demos = ["x"]\n[optim]\nsteps = 123\n[model]\nquantizer = "naive"\n')
    cfg = parse_config(TrainTokenizerConfig, ["--config", str(tmp_path / "c.toml"), "--optim.steps", "7"], "rvq t")
    assert (cfg.optim.steps, cfg.model.quantizer, cfg.demos) == (7, "naive", ["x"])  # the flag wins over the file
    for flat in (["--hidden-dim", "8"], ["--no-linear-skip"], ["--steps", "7"]):  # the flat spellings are gone
        with pytest.raises(SystemExit):
            parse_config(TrainTokenizerConfig, flat, "rvq t")
    (tmp_path / "flat.toml").write_text("steps = 123\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['steps'\]"):
        parse_config(TrainTokenizerConfig, ["--config", str(tmp_path / "flat.toml")], "rvq t")
    (tmp_path / "bad.toml").write_text("stepz = 3\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['stepz'\]"):
        parse_config(TrainTokenizerConfig, [f"--config={tmp_path / 'bad.toml'}"], "rvq t")
    with pytest.raises(ValueError, match="given twice"):
        split_config_flag(["--config", "a", "--config", "b"])
    with pytest.raises(SystemExit):  # an unknown flag: the library's usage error
        parse_config(TrainTokenizerConfig, ["--hidden-dims", "8"], "rvq t")


def test_the_command_sets_what_is_not_a_flag(tmp_path: Path) -> None:
    cfg = parse_config(TrainHeadConfig, [], "rvq train-draft", fixed={"kind": "draft"}, defaults={"out_dir": "runs/d"})
    assert cfg.kind == "draft" and cfg.out_dir == "runs/d"
    with pytest.raises(SystemExit):
        parse_config(TrainHeadConfig, ["--kind", "main"], "rvq train-draft", fixed={"kind": "draft"})
    (tmp_path / "c.json").write_text(json.dumps({"kind": "main"}))
    with pytest.raises(ValueError, match="kind is 'main' there, but `rvq train-draft` sets 'draft'"):
        parse_config(TrainHeadConfig, ["--config", str(tmp_path / "c.json")], "rvq train-draft", fixed={"kind": "draft"})


def test_nested_groups_take_dotted_flags_and_tables(tmp_path: Path) -> None:
    dotted = parse_config(TrainHeadConfig, ["--optim.lr", "1e-3", "--model.width", "64",
                                            "--model.standardize-features"], "rvq train-main")
    assert (dotted.optim.lr, dotted.model.width, dotted.model.standardize_features) == (1e-3, 64, True)
    assert config_from(TrainHeadConfig, lr=1e-3, width=64, standardize_features=True) == dotted  # Python keywords
    (tmp_path / "c.toml").write_text('seed = 3\n[optim]\nsteps = 50\n[model]\ndepth = 2\n')
    cfg = parse_config(TrainHeadConfig, ["--config", str(tmp_path / "c.toml"), "--model.depth", "1"], "rvq train-main")
    assert (cfg.seed, cfg.optim.steps, cfg.model.depth) == (3, 50, 1)
    assert cfg.optim.lr == TrainHeadConfig().optim.lr  # the rest of a group keeps its defaults
    # a group's defaults are its run's: the tokenizer trains with its own learning rate, not the heads'
    assert TrainTokenizerConfig().optim.lr == 2e-3 and config_from(TrainTokenizerConfig, steps=5).optim.lr == 2e-3
    (tmp_path / "bad.toml").write_text("[optim]\nlrr = 1\n")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['optim.lrr'\]"):
        parse_config(TrainHeadConfig, ["--config", str(tmp_path / "bad.toml")], "rvq train-main")
    for cls in (TrainHeadConfig, TrainTokenizerConfig):  # every field is a Python keyword: none is ambiguous
        assert not ambiguous_leaves(cls) and len(leaf_paths(cls)) == len(_leaves(cls))


def test_no_tokenizer_field_is_dropped_on_the_way_to_the_model() -> None:
    settable = {f.name for f in dataclasses.fields(TokenizerConfig)}
    cfg = parse_config(TrainTokenizerConfig, ["--model.calibration-momentum", "0.2", "--model.range-margin", "1.3"],
                       "rvq t")
    model = cfg.model  # the run's model group is the tokenizer's own config: nothing to copy, nothing to drop
    assert isinstance(model, TokenizerConfig)
    assert (model.calibration_momentum, model.range_margin) == (0.2, 1.3)
    assert settable <= set(leaf_paths(TrainTokenizerConfig))  # every field has a flag


@pytest.mark.parametrize("argv, expected", [
    ([], (None, None)),  # unset: the quantizer's recipe
    (["--model.cascade"], (True, None)), (["--model.no-cascade"], (False, None)),
    (["--model.cascade", "False"], (False, None)),  # tyro's own spelling
    (["--model.no-encoder-mlp", "--model.cascade"], (True, False)), (["--model.encoder-mlp"], (None, True)),
])
def test_a_setting_that_defaults_to_the_recipe_is_a_flag_pair_as_every_boolean(argv: list[str], expected) -> None:
    cfg = parse_config(TrainTokenizerConfig, argv, "rvq t")
    assert (cfg.model.cascade, cfg.model.encoder_mlp) == expected


def test_a_run_saves_its_resolved_config_which_reproduces_it_as_a_config_file(tmp_path: Path) -> None:
    cfg = parse_config(TrainTokenizerConfig, ["--optim.steps", "9", "--demos", "d1", "--out-dir", str(tmp_path)],
                       "rvq t")
    path = save_run_config(cfg, tmp_path)
    assert path.name == RUN_CONFIG and json.loads(path.read_text())["optim"]["steps"] == 9
    assert parse_config(TrainTokenizerConfig, ["--config", str(path)], "rvq t") == cfg


def test_help_shows_defaults_and_field_comments(capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["train-tokenizer", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "--model.quantize-dropout" in text and "default: 0.2" in text and "--model.no-linear-skip" in text
    assert "--layer0-warmup-ratio" in text and "--model.hidden-dim" in text and "--hidden-dim " not in text
    assert "q99_guarded" in text and "runs/tokenizer" in text


def test_train_tokenizer_writes_its_run_config_and_refuses_a_bad_file_by_name(tmp_path: Path, capsys) -> None:
    from mocks.libero_files import write_libero_file

    write_libero_file(tmp_path / "demos" / "task_demo.hdf5", "reach", num_demos=4, steps=40, seed=0, images=False)
    out = tmp_path / "run"
    argv = ["train-tokenizer", "--demos", str(tmp_path / "demos"), "--optim.steps", "4", "--optim.eval-every", "4",
            "--model.num-layers", "3", "--no-progress", "--device", "cpu", "--out-dir", str(out)]
    assert main(argv) == 0
    saved = json.loads((out / RUN_CONFIG).read_text())
    assert saved["model"]["num_layers"] == 3 and saved["optim"]["steps"] == 4 and saved["out_dir"] == str(out)
    assert main(["train-tokenizer", "--config", str(tmp_path / "missing.toml")]) == 2
    assert "missing.toml: not a readable TOML or JSON file" in capsys.readouterr().err


def test_pipeline_takes_its_config_file_and_any_field_as_a_flag(tmp_path: Path, capsys) -> None:
    study = Path(__file__).parents[2] / "configs" / "study" / "libero_object_robust.toml"
    out = tmp_path / "run"
    assert main(["pipeline", "--config", str(study), "--out-dir", str(out), "--tasks", "0", "1", "--plan"]) == 0
    text = capsys.readouterr().out
    assert "[collect] not done yet: would run" in text and not out.exists()  # --plan touches nothing
    from rvq.pipeline import PipelineConfig

    cfg = parse_config(PipelineConfig, ["--config", str(study), "--out-dir", str(out), "--heads.steps", "7"], "p")
    assert (cfg.heads.steps, cfg.data.demos_per_task, cfg.tasks, cfg.out_dir) == (7, 50, list(range(10)), str(out))
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:  # the library reports a setting the config refuses, with its reason
        main(["pipeline", "--env", "mock", "--eval.execute-steps", "-1", "--plan"])
    assert exit_info.value.code == 2
    assert "execute_steps must be >= 0" in " ".join(capsys.readouterr().err.split())


def test_output_folders_have_one_spelling() -> None:
    from rvq.backbones.tiny import TinyBackboneConfig
    from rvq.eval.report import EvalReportConfig
    from rvq.expert.collect import CollectConfig
    from rvq.policies.assemble import MakeBundleConfig

    bundle = ["--tokenizer", "t", "--main", "m", "--backbone", "b"]
    for cls, argv in ((EvalReportConfig, ["r.jsonl"]), (MakeBundleConfig, bundle), (TinyBackboneConfig, []),
                      (CollectConfig, [])):
        assert parse_config(cls, [*argv, "--out-dir", "x"], "c").out_dir == "x"
        with pytest.raises(SystemExit):
            parse_config(cls, [*argv, "--out", "y"], "c")
    cfg = parse_config(CollectConfig, ["--tasks", "0-2", "--out-dir", "d", "--no-images", "--takeover-steps", "5",
                                       "9"], "c")
    assert (cfg.tasks, cfg.out_dir, cfg.images, cfg.takeover_steps) == ([0, 1, 2], "d", False, (5, 9))


def test_every_command_parses_its_config_with_required_inputs_defaults_in_help_and_a_file(tmp_path: Path,
                                                                                          capsys) -> None:
    from rvq.cli import COMMANDS
    from rvq.data.phase2 import Phase2DataConfig
    from rvq.eval.report import EvalReportConfig
    from rvq.policies.assemble import MakeBundleConfig

    report = parse_config(EvalReportConfig, ["a.jsonl", "b", "--out-dir", "o"], "c")
    assert (report.results, report.out_dir) == (["a.jsonl", "b"], "o")  # the result files stay positional
    with pytest.raises(SystemExit):  # an input without a default is a required flag
        parse_config(MakeBundleConfig, ["--tokenizer", "t", "--main", "m", "--out-dir", "x"], "rvq make-bundle")
    assert "--backbone" in capsys.readouterr().err
    (tmp_path / "p2.toml").write_text('demos = ["d"]\ntokenizer = "t"\nbackbone = "state:libero_object"\n'
                                      'out = "p.h5"\nimage_transform = "oft"\n')
    cfg = parse_config(Phase2DataConfig, ["--config", str(tmp_path / "p2.toml"), "--batch-size", "8"], "c")
    assert (cfg.demos, cfg.backbone, cfg.image_transform, cfg.batch_size, cfg.device) == \
        (["d"], "state:libero_object", "oft", 8, "auto")  # required inputs from the file, flags over it
    with pytest.raises(SystemExit):  # not one of the transforms
        parse_config(Phase2DataConfig, ["--config", str(tmp_path / "p2.toml"), "--image-transform", "crop"], "c")
    with pytest.raises(TypeError):  # from Python, a missing input is an error, never a placeholder
        config_from(MakeBundleConfig, tokenizer="t", main="m")
    capsys.readouterr()
    for name in COMMANDS:  # every command's help shows its defaults
        with pytest.raises(SystemExit) as exit_info:
            main([name, "--help"])
        assert exit_info.value.code == 0
        text = " ".join(capsys.readouterr().out.split())
        assert f"usage: rvq {name}" in text and "(default:" in text, name


def test_eval_reads_its_config_and_task_ranges_are_a_typed_value(tmp_path: Path, capsys) -> None:
    from rvq.eval import EvalConfig

    argv = ["--suite", "libero_object", "--tasks", "0-2,5", "7", "--trials", "3", "--policy", "rsd", "--no-exact",
            "--shard", "1", "4", "--temporal-ensemble", "0.01", "--flip-gripper", "--expert-grasp-hold", "contact",
            "--expert-phase-end", "stall", "--out-dir", str(tmp_path / "e"), "--no-render", "--no-progress",
            "--episode-timeout", "None"]
    cfg = parse_config(EvalConfig, argv, "rvq eval")
    assert (cfg.suite, cfg.tasks, cfg.trials, cfg.exact, cfg.shard) == \
        ("libero_object", [0, 1, 2, 5, 7], 3, False, (1, 4))
    assert (cfg.temporal_ensemble, cfg.flip_gripper, cfg.expert_grasp_hold) == (0.01, True, "contact")
    assert cfg.expert_phase_end == "stall"
    assert (cfg.out_dir, cfg.render, cfg.progress, cfg.episode_timeout) == (str(tmp_path / "e"), False, False, None)
    assert parse_config(EvalConfig, ["--tasks", "all"], "rvq eval").tasks == []  # all of the suite
    for old in (["--relaxed"], ["--shard", "1/4"], ["--grasp-hold", "contact"], ["--phase-end", "stall"],
                ["--out", "x"], ["--temporal-ensemble"]):  # the recorded spellings are gone: one each
        with pytest.raises(SystemExit):
            parse_config(EvalConfig, old, "rvq eval")
    capsys.readouterr()
    with pytest.raises(SystemExit):
        parse_config(EvalConfig, ["--tasks", "3-x"], "rvq eval")
    assert "cannot parse task list '3-x'" in " ".join(capsys.readouterr().err.split())
    (tmp_path / "eval.toml").write_text('suite = "libero_object"\ntasks = [1, 2]\nexact = false\ntau = 0.6\n')
    cfg = parse_config(EvalConfig, ["--config", str(tmp_path / "eval.toml"), "--tau", "0.8"], "rvq eval")
    assert (cfg.suite, cfg.tasks, cfg.exact, cfg.tau) == ("libero_object", [1, 2], False, 0.8)
    with pytest.raises(SystemExit):  # not a setting of an evaluation
        parse_config(EvalConfig, ["--identity", "x"], "rvq eval")


@pytest.mark.parametrize(("text", "message"), [
    ("[heads]\nsteps = 5.5\n", "heads.steps: expected a whole number, got 5.5"),
    ("[heads]\nsteps = true\n", "heads.steps: expected a whole number, got True"),  # a bool is not a count
    ("seed = nan\n", "seed: expected a whole number, got nan"),
    ("seed = -1\n", "seed: a seed must be >= 0, got -1"),  # numpy's generators refuse it deep inside
    ("seed = 99999999999999999999\n", "seed: expected a whole number of 64 bits"),  # torch's manual_seed overflows
    ("[heads]\nlr = inf\n", "heads.lr: expected a finite number, got inf"),
    ("[heads]\nlr = nan\n", "heads.lr: expected a finite number, got nan"),
    ("tasks = 'zero'\n", "tasks: expected a list"),
    ("tasks = [0, 1.5]\n", r"tasks\[1\]: expected a whole number, got 1.5"),
    ("[eval]\npolicies = 'main'\n", "eval.policies: expected a list"),
    ("[eval]\ntemporal_ensemble = 1\n", "eval.temporal_ensemble: expected true or false, got 1"),
    ("suite = 3\n", "suite: expected a string, got 3"),
    ("heads = 3\n", r"heads: expected a table of settings \(a group\), got 3"),  # was "unknown setting 'heads'"
])
def test_a_config_file_value_of_the_wrong_type_is_refused_naming_the_file_and_key(tmp_path: Path, text: str,
                                                                                  message: str) -> None:
    from rvq.pipeline import PipelineConfig

    path = tmp_path / "run.toml"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"--config {path}: {message}"):
        PipelineConfig.from_file(path)
    with pytest.raises(ValueError, match=message):  # a flag's file and Python's keywords, the same check
        parse_config(PipelineConfig, ["--config", str(path)], "rvq pipeline")


def test_python_keywords_are_checked_and_a_whole_number_is_a_float_where_one_is_meant() -> None:
    from rvq.pipeline import PipelineConfig

    with pytest.raises(ValueError, match="heads.steps: expected a whole number, got 5.5"):
        config_from(PipelineConfig, heads={"steps": 5.5})
    cfg = config_from(TrainHeadConfig, lr=1)  # `lr = 1` and `lr = 1.0` are one setting (and one fingerprint)
    assert cfg.optim.lr == 1.0 and isinstance(cfg.optim.lr, float)
    assert config_from(TrainHeadConfig, lr=1) == config_from(TrainHeadConfig, lr=1.0)


@pytest.mark.parametrize("device", ["tpu", "cuda:x", "gpu", "CPU", ""])
def test_a_device_rvq_cannot_run_on_is_refused_when_planned_not_when_the_job_starts(device: str) -> None:
    from rvq.eval import EvalConfig
    from rvq.pipeline import PipelineConfig

    with pytest.raises(ValueError, match=f"device must be auto, cpu, cuda or cuda:N, got '{device}'"):
        config_from(PipelineConfig, env="mock", device=device)
    with pytest.raises(ValueError, match="device must be auto, cpu, cuda or cuda:N"):
        EvalConfig(suite="libero_goal", tasks=[0], trials=1, policy="noop", env="mock", device=device).validate()
    assert config_from(PipelineConfig, env="mock", device="cuda:1").device == "cuda:1"  # planned on a CPU machine
