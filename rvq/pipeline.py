"""`rvq pipeline`: collect → tokenizer → Phase 2 data → draft and main → policy folder → eval → report, for one
suite and a set of tasks, with state features (physics only), everything under one run folder.

Each stage writes `<run>/<stage>/stage.json` with a fingerprint of its inputs: the resolved config its body runs
with (paths of other stages aside), the content of the files it reads from outside the run, the fingerprints of the
stages it reads, and `PIPELINE_VERSION`. On rerun a stage whose fingerprint matches is skipped; one whose inputs changed is redone
from an empty folder, and so is everything downstream of it (their fingerprints change with it). A stage that
failed or was interrupted has no `stage.json` and runs again: in its own folder when it had started with the same
inputs (`stage_started.json`), so resumable bodies (collection, evaluation) keep their finished work.

The module is the run's config (`PipelineConfig`), its stage graph (`stage_graph`: each `Stage` names the stages it
reads and its body is given their outputs only), the stage runner (`Run`), the stage bodies and the report.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from rvq.backbones.state import StateFeatures
from rvq.config_cli import build, config_from, nest, read_config_file
from rvq.data.feature_store import as_tensor
from rvq.data.identity import demo_digests
from rvq.data.phase2 import build_phase2_data, load_phase2_data
from rvq.device import check_device
from rvq.envs.mock_env import mock_state_features
from rvq.envs.scene_chain import SCENE_PROTOCOL
from rvq.envs.suites import TaskIds, check_suite, check_tasks
from rvq.eval import EvalConfig, run_eval
from rvq.eval.report import render_markdown, write_report
from rvq.eval.results import RunLock
from rvq.eval.temporal_ensemble import DEFAULT_ENSEMBLE_DECAY
from rvq.expert.collect import CollectConfig, collect_demos, collect_mock_demos
from rvq.expert.scripted import check_grasp_hold, check_phase_end, expert_identity
from rvq.files import json_digest, write_bytes_atomic
from rvq.models import HeadCheckpoint, MainModel, read_draft, read_main
from rvq.policies.bundle import PolicyBundle, load_bundle
from rvq.processors import gripper_flip
from rvq.rsd import greedy_decode, speculative_decode
from rvq.rsd.decode import DEFAULT_TAU
from rvq.rsd.early_exit import DEFAULT_EXIT_TOLERANCE, PROBE_DEPTHS, PROBE_TOLERANCES, exit_departure, probe_rules
from rvq.rsd.stats import token_departure
from rvq.tokenizer import ActionTokenizer
from rvq.training.heads import TrainHeadConfig, train_head
from rvq.training.tokenizer import TrainTokenizerConfig, train_tokenizer


# in every stage's fingerprint: raised when what a stage does with the same config changes (every stage is redone)
PIPELINE_VERSION = 2
STAGE_FILE = "stage.json"
RUN_PREFIX = "<run>/"  # a stage record's paths inside the run folder: a copied or moved run reads its own files
STARTED_FILE = "stage_started.json"  # written when a stage starts: an interrupted stage with the same inputs resumes
# report row -> policy kind. Rows named in RELAXED_RULES run RSD with those acceptance rules, the others exact:
# rsd_relaxed, a layer whose tokens agree with main's on a fraction >= the default tau; rsd_grid, a layer whose
# tokens are all within one grid step of main's (tau = 1)
# main_exit, main-only passes with certified early exit at `eval.exit_tolerance` (rvq.rsd.early_exit); main_depth, the
# first `eval.exit_depth` layers alone (no certificate: naive tokens, whose later layers could each add a grid step)
ROWS = {"main": "main", "main_exit": "main", "main_depth": "main", "rsd": "rsd", "rsd_relaxed": "rsd",
        "rsd_grid": "rsd"}
RELAXED_RULES = {"rsd_relaxed": {"tau": DEFAULT_TAU, "max_grid_distance": None},
                 "rsd_grid": {"tau": 1.0, "max_grid_distance": 1}}
POLICIES = tuple(ROWS)
UNTRAINED = "main_untrained"


def _at_least_one(cfg: Any, group: str, *names: str) -> None:
    """Refuse a count below 1, naming it with its `group` (a dotted prefix such as "heads.")."""
    for name in names:
        if int(getattr(cfg, name)) < 1:
            raise ValueError(f"{group}{name} must be >= 1, got {getattr(cfg, name)}")


@dataclass
class PipelineDataConfig:
    """The demonstrations the heads learn from (collected by the scripted expert in LIBERO, or `demos_dir`), and
    the state features read from them."""
    demos_per_task: int = 20  # libero: successes kept from randomized resets; mock: demos per task
    demos_dir: str = ""  # train on this folder of demo files (e.g. another run's collect/demos) instead of collecting
    # DAgger-style rounds (rvq.expert.takeover): the round's policy acts from randomized resets, the expert takes over
    # and finishes; the heads are trained again on every demo so far. 0: none
    takeover_rounds: int = 0
    takeover_demos_per_task: int = 30  # demos kept per task in each takeover round
    takeover_steps: list[int] = field(default_factory=lambda: [20, 160])  # the takeover step is drawn from this range

    def __post_init__(self) -> None:
        _at_least_one(self, "data.", "demos_per_task", "takeover_demos_per_task")
        if self.takeover_rounds < 0:
            raise ValueError(f"takeover_rounds must be >= 0, got {self.takeover_rounds}")
        if len(self.takeover_steps) != 2 or not 0 <= self.takeover_steps[0] <= self.takeover_steps[1]:
            raise ValueError(f"takeover_steps must be [low, high] with 0 <= low <= high, got {self.takeover_steps}")


@dataclass
class PipelineTokenizerConfig:
    """The action tokenizer (`rvq train-tokenizer`'s defaults for everything not set here)."""
    quantizer: str = "robust"  # robust or naive RFSQ
    steps: int = 3000  # training steps
    # the model recipe's options (rvq.rfsq.TokenizerConfig); None: `rvq train-tokenizer`'s default
    quantize_dropout: float | None = None  # the fraction of training chunks decoded from a random prefix
    coarse_decoder: bool | None = None  # layer 0 alone (k = 1) gets a decoder of its own
    layer0_warmup_ratio: float | None = None  # this share of the training steps reconstructs from layer 0 alone
    encoder_mlp: bool | None = None  # False: the encoder is its linear path alone
    linear_inverse: bool | None = None  # the decoders' linear paths invert the encoder's exactly (atanh)
    cascade: bool | None = None  # layer 0 a one-layer tokenizer of its own, layers 1..L-1 on its action residual
    layer0_share: float | None = None  # a cascade's layer 0 goes on training on this share of each batch's chunks
    select_by: str | None = None  # the best checkpoint by the full depth's held-out error or by every prefix's mean

    def __post_init__(self) -> None:
        _at_least_one(self, "tokenizer.", "steps")

        # a bad value is refused before any stage runs, by the config the stage builds (`_tokenizer_config`)
        config_from(TrainTokenizerConfig, quantizer=self.quantizer, **self.recipe())

    def recipe(self) -> dict[str, Any]:
        """The model options set here, as `TrainTokenizerConfig` leaf names (unset ones are not given)."""
        names = ("quantize_dropout", "coarse_decoder", "layer0_warmup_ratio", "encoder_mlp", "linear_inverse",
                 "cascade", "layer0_share", "select_by")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


@dataclass
class PipelineHeadsConfig:
    """The draft and main token predictors (`rvq train-draft` / `train-main`'s defaults for everything else)."""
    steps: int = 1500  # training steps of each head
    width: int = 256  # hidden width of both heads
    lr: float = 3e-4  # the study configs use 1e-3 with standardized features (docs/history/RESULTS.md)
    standardize_features: bool = False  # heads standardize their inputs (rvq.models.standardize); see TrainHeadConfig
    main_depth: int = 2  # the main head's transformer layers
    batch_size: int = 128  # rows per training step of each head

    def __post_init__(self) -> None:
        _at_least_one(self, "heads.", "steps", "width", "main_depth", "batch_size")
        if not self.lr > 0:
            raise ValueError(f"heads.lr must be > 0, got {self.lr}")


@dataclass
class PipelineEvalConfig:
    """The report's rows and how they are evaluated (physics only)."""
    trials: int = 10  # trial i from the suite's fixed initial state i (never seen in training on libero)
    execute_steps: int = 0  # learned policies execute this many actions of each chunk, then act again (0: all)
    temporal_ensemble: bool = False  # learned policies act every step, chunks ensembled (ACT, decay 0.01; rvq.eval)
    # learned rows: main (every layer), main_exit, main_depth, rsd, rsd_relaxed, rsd_grid
    policies: list[str] = field(default_factory=lambda: ["main", "main_exit", "rsd"])
    exit_tolerance: float = DEFAULT_EXIT_TOLERANCE  # main_exit: early exit's tolerance, raw action units
    exit_depth: int = 1  # main_depth: the layers decoded (no certificate)
    expert_reference: bool = True  # libero: also evaluate the scripted expert on the same trials
    roundtrip_reference: bool = False  # libero: and the expert with its actions through the run's tokenizer
    untrained_control: bool = False  # also evaluate main-only with the heads at initialization (the negative control)

    def __post_init__(self) -> None:
        _at_least_one(self, "eval.", "trials")
        if self.execute_steps < 0:
            raise ValueError(f"execute_steps must be >= 0 (0: the whole chunk), got {self.execute_steps}")
        if self.temporal_ensemble and self.execute_steps:
            raise ValueError("temporal_ensemble acts on every step; it does not combine with execute_steps")
        if isinstance(self.exit_depth, bool) or not isinstance(self.exit_depth, int) or self.exit_depth < 1:
            raise ValueError(f"eval.exit_depth must be a whole number of layers >= 1, got {self.exit_depth!r}")
        if isinstance(self.exit_tolerance, bool) or not math.isfinite(self.exit_tolerance) or self.exit_tolerance <= 0:
            raise ValueError(f"eval.exit_tolerance must be a finite number > 0 (raw action units), "
                             f"got {self.exit_tolerance}")
        unknown = sorted(set(self.policies) - set(POLICIES))
        if unknown or not self.policies:
            raise ValueError(f"policies must be a non-empty subset of {POLICIES}, got {self.policies}")


@dataclass
class PipelineConfig:
    """Everything a pipeline run depends on, in groups: `data`, `tokenizer`, `heads`, `eval` (dotted flags such as
    `--heads.lr`, TOML tables such as `[heads]`). `env`: "libero" (the real simulator) or "mock"."""
    suite: str = "libero_object"  # libero_spatial, libero_object, libero_goal, libero_10 or libero_90
    tasks: TaskIds = field(default_factory=lambda: [0, 1, 2])  # the suite's task ids (0 1 2, 0-2)
    env: str = "libero"  # libero (the real simulator) or mock
    expert_grasp_hold: str = "timer"  # how the expert's grasp ends, in its demos and reference rows (GRASP_HOLDS)
    expert_phase_end: str = "limit"  # how its moving phases end, in its demos and reference rows (PHASE_ENDS)
    workers: int = 2  # simulator processes for collection and evaluation
    device: str = "cpu"  # training and policy inference (the simulator runs on CPU); "auto" takes CUDA if present
    seed: int = 0  # training seeds and the heads' validation split (collection seeds each reset by task and attempt)
    out_dir: str = "runs/pipeline"  # the run folder (rerun to resume)
    data: PipelineDataConfig = field(default_factory=PipelineDataConfig)
    tokenizer: PipelineTokenizerConfig = field(default_factory=PipelineTokenizerConfig)
    heads: PipelineHeadsConfig = field(default_factory=PipelineHeadsConfig)
    eval: PipelineEvalConfig = field(default_factory=PipelineEvalConfig)

    def __post_init__(self) -> None:
        check_suite(self.suite)
        self.tasks = check_tasks(list(self.tasks), self.suite)
        if self.env not in ("libero", "mock"):
            raise ValueError(f"env must be 'libero' or 'mock', got {self.env!r}")
        _at_least_one(self, "", "workers")
        check_device(self.device)
        collects = self.env == "libero" and not self.data.demos_dir  # the scripted expert collects the demos
        if check_grasp_hold(self.expert_grasp_hold, "expert_grasp_hold") != "timer" and not collects:
            raise ValueError("expert_grasp_hold applies to demos the scripted expert collects in LIBERO; the mock env "
                             "and demos_dir do not collect with it")
        if check_phase_end(self.expert_phase_end, "expert_phase_end") != "limit" and not collects:
            raise ValueError("expert_phase_end applies to demos the scripted expert collects in LIBERO; the mock env "
                             "and demos_dir do not collect with it")
        if self.data.takeover_rounds and self.env == "mock":
            raise ValueError("takeover rounds need the scripted expert in LIBERO (env = 'libero')")

    @classmethod
    def from_file(cls, path: str | Path, **overrides: Any) -> "PipelineConfig":
        """A TOML or JSON file of `PipelineConfig` settings, groups as tables (unknown keys are refused), then
        `overrides` (as `config_from` takes them; None: not given)."""
        given = nest(cls, {k: v for k, v in overrides.items() if v is not None}, by_leaf=True)
        return build(cls, given, build(cls, read_config_file(path, cls)))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _read_record(path: Path) -> dict[str, Any]:
    """A finished stage's record: a JSON object with a fingerprint string and an outputs object. It is written last and
    atomically, so anything else was changed by hand or by a failing disk: refused, never taken as done or redone."""
    try:
        record = json.loads(path.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a stage record ({exc}); delete its folder to run the stage again") from exc
    if not (isinstance(record, dict) and isinstance(record.get("fingerprint"), str)
            and isinstance(record.get("outputs"), dict)):
        shown = sorted(record) if isinstance(record, dict) else type(record).__name__
        raise ValueError(f"{path}: not a stage record (expected an object with a fingerprint string and an outputs "
                         f"object, got {shown}); delete its folder to run the stage again")
    return record


def _check_outputs_exist(record_path: Path, recorded: Any, resolved: Any) -> None:
    """A finished stage's files inside the run folder must still be there (a stage taken as done would otherwise
    point its followers at nothing, or at a report of work whose files were deleted)."""
    if isinstance(recorded, dict):
        for key in recorded:
            _check_outputs_exist(record_path, recorded[key], resolved[key])
    elif isinstance(recorded, list):
        for item, path in zip(recorded, resolved):
            _check_outputs_exist(record_path, item, path)
    elif isinstance(recorded, str) and recorded.startswith(RUN_PREFIX) and not Path(resolved).exists():
        raise ValueError(f"{record_path}: the stage's output {resolved} is missing; delete its folder "
                         f"({record_path.parent}) to run the stage again")


def _paths_in_run(value: Any, root: str, to_record: bool) -> Any:
    """Stage outputs with paths inside the run folder written as `<run>/...` (`to_record`), or read back as paths
    under this run's folder."""
    if isinstance(value, dict):
        return {key: _paths_in_run(item, root, to_record) for key, item in value.items()}
    if isinstance(value, list):
        return [_paths_in_run(item, root, to_record) for item in value]
    if isinstance(value, str) and to_record and value.startswith(root + os.sep):
        return RUN_PREFIX + Path(value).relative_to(root).as_posix()
    if isinstance(value, str) and not to_record and value.startswith(RUN_PREFIX):
        return str(Path(root) / value[len(RUN_PREFIX):])
    return value


def config_settings(config: Any, leave_out: tuple[str, ...]) -> dict[str, Any]:
    """A stage's config (a dataclass) as fingerprint settings: every field, nested groups included, but the
    `leave_out` ones (paths into the run, which upstream fingerprints stand for, and ways of running that do not
    change the result)."""
    return {key: value for key, value in asdict(config).items() if key not in leave_out}


class Run:
    """The run folder and its stages' records."""
    def __init__(self, cfg: PipelineConfig, log: Callable[[str], None] = print, plan: bool = False) -> None:
        self.cfg, self.root, self.log, self.plan = cfg, Path(cfg.out_dir).resolve(), log, plan
        self.fingerprints: dict[str, str] = {}
        self.outputs: dict[str, dict[str, Any]] = {}

    def stage(self, name: str, settings: dict[str, Any], upstream: list[str],
              body: Callable[[Path], dict[str, Any]]) -> dict[str, Any]:
        """Run `body(folder)` unless a finished record with the same inputs exists; returns its outputs. In plan
        mode nothing runs or is deleted: the log says what a run would do."""
        folder = self.root / name
        inputs = {"stage": name, "version": PIPELINE_VERSION, "settings": settings,
                  "upstream": {u: self.fingerprints[u] for u in upstream}}
        fingerprint = json_digest(inputs)
        record_path = folder / STAGE_FILE
        self.fingerprints[name] = fingerprint
        if record_path.is_file():
            record = _read_record(record_path)
            if record["fingerprint"] == fingerprint:
                self.log(f"[{name}] done before with the same inputs: {'would be ' if self.plan else ''}skipped")
                self.outputs[name] = _paths_in_run(record["outputs"], str(self.root), to_record=False)
                _check_outputs_exist(record_path, record["outputs"], self.outputs[name])
                return self.outputs[name]
            self.log(f"[{name}] inputs changed since the last run: {'would be ' if self.plan else ''}redone")
        started = _read_json(folder / STARTED_FILE).get("fingerprint") == fingerprint
        if not record_path.is_file():
            what = "interrupted with the same inputs: would resume" if started else "not done yet: would run"
            if self.plan:
                self.log(f"[{name}] {what}")
        if self.plan:
            self.outputs[name] = {}
            return {}
        if started and not record_path.is_file():
            self.log(f"[{name}] interrupted before with the same inputs: resumed in its folder")
        else:  # another stage's leftovers: never mixed with this run's
            if folder.exists():
                shutil.rmtree(folder)
            folder.mkdir(parents=True)
            (folder / STARTED_FILE).write_text(json.dumps({"fingerprint": fingerprint}))
        start = time.perf_counter()
        self.log(f"[{name}] running")
        outputs = body(folder)
        seconds = time.perf_counter() - start
        record = {"fingerprint": fingerprint, "inputs": inputs, "seconds": round(seconds, 1),
                  "outputs": _paths_in_run(outputs, str(self.root), to_record=True)}
        # the record is the stage's "finished" mark: written last, atomically
        write_bytes_atomic(record_path, json.dumps(record, indent=2))
        self.log(f"[{name}] finished in {seconds:.0f} s")
        self.outputs[name] = outputs
        return outputs


def feature_source(cfg: PipelineConfig):
    if cfg.env == "mock":
        return mock_state_features(cfg.suite)
    return StateFeatures.for_suite(cfg.suite)


def run_pipeline(cfg: PipelineConfig, log: Callable[[str], None] = print, plan: bool = False) -> dict[str, Any]:
    """Run (or resume) every stage of `cfg`; returns the report (also `<run>/report.md` and `report.json`).
    `plan`: only log which stages a run would skip, run or redo (nothing is run, written or deleted)."""
    run = Run(cfg, log, plan)
    if plan:  # reads only: a plan may be made while another process runs the folder
        return _run_stages(run, cfg)

    run.root.mkdir(parents=True, exist_ok=True)
    with RunLock(run.root, "pipeline run", lock_path=run.root / ".pipeline.lock"):  # one writer per run folder
        (run.root / "pipeline_config.json").write_text(json.dumps(asdict(cfg), indent=2))
        return _run_stages(run, cfg)


@dataclass(frozen=True)
class Stage:
    """One node of the run's graph: its settings (fingerprinted with the fingerprints of its upstream stages), the
    stages it reads, and its body, which is given its folder and the outputs of exactly those stages (so nothing a
    body reads can be missing from its fingerprint)."""

    name: str
    settings: dict[str, Any]
    upstream: tuple[str, ...]
    body: Callable[[Path, dict[str, dict[str, Any]]], dict[str, Any]]


def stage_graph(cfg: PipelineConfig, log: Callable[[str], None] = print) -> list[Stage]:
    """The run's stages in the order they run (each after every stage it reads): collect → tokenizer → (per takeover
    round: takeover →) Phase 2 → heads → policy → departure → untrained control → an evaluation per report row."""
    stages: list[Stage] = []

    def add(name: str, settings: dict[str, Any], upstream: list[str], body) -> str:
        stages.append(Stage(name, settings, tuple(upstream), body))
        return name

    expert_settings = expert_identity(cfg.expert_grasp_hold, cfg.expert_phase_end)  # every stage the expert acts in
    if cfg.data.demos_dir:  # the files themselves are the input: added or rewritten files redo what follows
        add("collect", {"demos_dir": demo_digests(cfg.data.demos_dir)}, [],
            lambda folder, up: {"demos": str(Path(cfg.data.demos_dir).resolve()), "summaries": []})
    else:  # no seed here: collection seeds each randomized reset by (task, attempt), whatever the run's seed
        add("collect", {"suite": cfg.suite, "tasks": cfg.tasks, "env": cfg.env,
                        "demos_per_task": cfg.data.demos_per_task}
            | (expert_settings if cfg.env == "libero" else {}),  # the mock's demos are not the expert's
            [], lambda folder, up: _collect(cfg, folder))
    add("tokenizer", config_settings(_tokenizer_config(cfg).resolved(), _RUN_ONLY), ["collect"],
        lambda folder, up: _tokenizer(cfg, folder, up["collect"]["demos"]))
    features = feature_source(cfg)
    demo_stages, policy_stage = ["collect"], ""
    for round_ in range(cfg.data.takeover_rounds + 1):
        # round 0 trains on the collected demos; round r > 0 first collects takeover demos with round r-1's policy
        suffix = f"_r{round_}" if round_ else ""
        if round_:
            settings = {"suite": cfg.suite, "tasks": cfg.tasks, "per_task": cfg.data.takeover_demos_per_task,
                        "steps": list(cfg.data.takeover_steps), **expert_settings}
            demo_stages = [*demo_stages, add(f"takeover{suffix}", settings, [policy_stage],
                                             lambda folder, up, source=policy_stage:
                                             _takeover(cfg, folder, up[source]["folder"], log))]
        phase2_stage = add(f"phase2{suffix}", {"features": features.identity}, [*demo_stages, "tokenizer"],
                           lambda folder, up, reads=tuple(demo_stages): _phase2(
                               folder, [up[s]["demos"] for s in reads], up["tokenizer"]["checkpoint"], features))
        heads = {kind: add(f"{kind}{suffix}", config_settings(_head_config(cfg, kind), _RUN_ONLY),
                           [phase2_stage, "tokenizer"],
                           lambda folder, up, kind=kind, data=phase2_stage:
                           _head(cfg, kind, folder, up[data]["data"], up["tokenizer"]["checkpoint"]))
                 for kind in _head_kinds(cfg)}
        policy_stage = add(f"policy{suffix}", _protocol(cfg), ["tokenizer", *heads.values()],
                           lambda folder, up, heads=heads: _assemble(cfg, folder, up["tokenizer"]["checkpoint"],
                                                                     {k: up[s] for k, s in heads.items()}, features))
    relaxed = [name for name in cfg.eval.policies if name in RELAXED_RULES]
    exits = "main_exit" in cfg.eval.policies
    if relaxed or exits:
        add("departure", {"rows": relaxed, "exit_tolerance": cfg.eval.exit_tolerance if exits else None},
            [policy_stage, phase2_stage],
            lambda folder, up: _departure(cfg, relaxed, up[phase2_stage]["data"], up[policy_stage]["folder"]))
    # row name -> (policy kind, the stage whose folder holds its checkpoints / round-trip tokenizer)
    rows = {name: (ROWS[name], policy_stage) for name in cfg.eval.policies}
    if cfg.eval.untrained_control:
        rows[UNTRAINED] = ("main", add("policy_untrained", {"seed": cfg.seed}, [policy_stage],
                                       lambda folder, up: _assemble_untrained(folder, up[policy_stage]["folder"],
                                                                              cfg.seed)))
    if cfg.env == "libero" and cfg.eval.expert_reference:
        rows["expert"] = ("expert", None)
    if cfg.env == "libero" and cfg.eval.roundtrip_reference:
        rows["expert_roundtrip"] = ("expert", "tokenizer")
    for name, (kind, source) in rows.items():
        settings = {**config_settings(_eval_config(cfg, kind, name), _EVAL_RUN_ONLY),
                    "scenes": SCENE_PROTOCOL if cfg.env == "libero" else None,
                    **(expert_settings if kind == "expert" else {})}
        add(f"eval_{name}", settings, [source] if source else [],
            lambda folder, up, name=name, kind=kind, source=source: _eval(cfg, kind, name, folder, up.get(source, {})))
    return stages


def _run_stages(run: Run, cfg: PipelineConfig) -> dict[str, Any]:
    stages = stage_graph(cfg, run.log)
    for stage in stages:
        run.stage(stage.name, stage.settings, list(stage.upstream),
                  lambda folder, stage=stage: stage.body(folder, {u: run.outputs[u] for u in stage.upstream}))
    if run.plan:
        return {"fingerprints": run.fingerprints}
    last_round = f"_r{cfg.data.takeover_rounds}" if cfg.data.takeover_rounds else ""
    heads = {kind: run.outputs[f"{kind}{last_round}"] for kind in _head_kinds(cfg)}
    evals = {s.name.removeprefix("eval_"): run.outputs[s.name] for s in stages if s.name.startswith("eval_")}
    return _report(run, cfg, heads, evals)


def _head_kinds(cfg: PipelineConfig) -> list[str]:
    """The heads the chosen policies need: main always, the draft for RSD."""
    return (["draft"] if any(ROWS[name] == "rsd" for name in cfg.eval.policies) else []) + ["main"]


def _ensemble_decay(cfg: PipelineConfig, kind: str) -> float | None:
    """The temporal ensemble's decay for a row of this policy kind (None: off; the expert acts every step anyway)."""
    return DEFAULT_ENSEMBLE_DECAY if cfg.eval.temporal_ensemble and kind != "expert" else None


def _execute_steps(cfg: PipelineConfig, kind: str) -> int | None:
    """Actions executed per chunk for a row of this policy kind: the learned policies' K, None for the whole chunk
    (the expert reference always runs whole chunks)."""
    return (cfg.eval.execute_steps or None) if kind != "expert" else None


def _collect(cfg: PipelineConfig, folder: Path) -> dict[str, Any]:
    out = folder / "demos"
    if cfg.env == "mock":
        collect_mock_demos(cfg.suite, cfg.tasks, cfg.data.demos_per_task, out)
        return {"demos": str(out), "summaries": []}
    wanted = cfg.data.demos_per_task
    summaries = collect_demos(CollectConfig(cfg.suite, cfg.tasks, out_dir=str(out), workers=cfg.workers, images=False,
                                            random_resets=wanted,
                                            grasp_hold=cfg.expert_grasp_hold, phase_end=cfg.expert_phase_end))
    short = [t["task"] for t in summaries if t.get("kept", wanted) < wanted]
    if short:
        raise RuntimeError(f"the expert kept fewer than {wanted} demos for task(s) {short}: {summaries}")
    return {"demos": str(out), "summaries": summaries}


def _takeover(cfg: PipelineConfig, folder: Path, policy: str, log: Callable[[str], None]) -> dict[str, Any]:
    """Takeover demos with `policy` (a policy folder). A task may keep fewer than asked when the policy finishes
    episodes before the takeover (those have no expert part): the summaries say how many, the log names them."""
    out, wanted, (low, high) = folder / "demos", cfg.data.takeover_demos_per_task, cfg.data.takeover_steps
    summaries = collect_demos(CollectConfig(cfg.suite, cfg.tasks, out_dir=str(out), workers=cfg.workers, images=False,
                                            random_resets=wanted, takeover_policy=policy, takeover_steps=(low, high),
                                            grasp_hold=cfg.expert_grasp_hold, phase_end=cfg.expert_phase_end))
    short = {t["task"]: t.get("kept", 0) for t in summaries if t.get("kept", wanted) < wanted}
    if short:
        log(f"[{folder.name}] kept fewer than {wanted} takeover demos (task: kept): {short}")
    if not any(t.get("file") for t in summaries):
        raise RuntimeError(f"no takeover demo was kept for any task: {summaries}")
    return {"demos": str(out), "summaries": summaries}


# fields of a training config that name the run's own paths (upstream fingerprints stand for them) or how it is run
_RUN_ONLY = ("demos", "data", "tokenizer", "out_dir", "resume", "progress", "log_to", "wandb_project")
# fields of an evaluation config that change how it runs, not its episodes' results (records are equal across them)
_EVAL_RUN_ONLY = ("checkpoints", "roundtrip_tokenizer", "out_dir", "workers", "executor", "ray_address",
                  "episode_timeout", "stall_timeout", "max_worker_deaths", "policy_service", "service_max_batch",
                  "service_max_wait_ms", "policy_replicas", "progress", "videos", "identity")


def _tokenizer_config(cfg: PipelineConfig, folder: Path | None = None, demos: str | None = None):
    """The `TrainTokenizerConfig` the tokenizer stage trains with."""
    return config_from(TrainTokenizerConfig, quantizer=cfg.tokenizer.quantizer, demos=[demos] if demos else [],
                       out_dir=str(folder) if folder else "", steps=cfg.tokenizer.steps, seed=cfg.seed,
                       device=cfg.device, progress=False, resume=_resume_from(folder) if folder else None,
                       **cfg.tokenizer.recipe())


def _tokenizer(cfg: PipelineConfig, folder: Path, demos: str) -> dict[str, Any]:
    report = train_tokenizer(_tokenizer_config(cfg, folder, demos))
    best = report["best"]
    return {"checkpoint": report["checkpoint"], "val_mse": best["mse"], "mse_by_layers": best.get("mse_by_layers")}


def _phase2(folder: Path, demos: list[str], tokenizer: str, features) -> dict[str, Any]:
    path = build_phase2_data(demos, ActionTokenizer.from_checkpoint(tokenizer, device="cpu"), features,
                             folder / "phase2.h5", progress=False)
    return {"data": str(path)}


def _resume_from(folder: Path) -> str | None:
    """A training stage interrupted with the same inputs (the only way its folder is kept) goes on from its last
    saved state; the loader refuses a state made on other data or with another config."""
    last = folder / "last.pt"
    return str(last) if last.is_file() else None


def _head_config(cfg: PipelineConfig, kind: str, folder: Path | None = None, data: str | None = None,
                 tokenizer: str | None = None):
    """The `TrainHeadConfig` a head stage trains with."""
    return config_from(TrainHeadConfig, kind=kind, data=[data] if data else [], tokenizer=tokenizer or "",
                       out_dir=str(folder) if folder else "", steps=cfg.heads.steps, batch_size=cfg.heads.batch_size,
                       width=cfg.heads.width, lr=cfg.heads.lr, standardize_features=cfg.heads.standardize_features,
                       depth=cfg.heads.main_depth if kind == "main" else None, heads=4, seed=cfg.seed,
                       device=cfg.device, progress=False, eval_every=max(1, cfg.heads.steps // 5),
                       resume=_resume_from(folder) if folder else None)


def _head(cfg: PipelineConfig, kind: str, folder: Path, data: str, tokenizer: str) -> dict[str, Any]:
    report = train_head(_head_config(cfg, kind, folder, data, tokenizer))
    best = report["best"]
    keep = ("loss", "mean_token_accuracy", "token_accuracy", "chance_accuracy", "majority_accuracy",
            "layer_exact_match", "action_mse_raw", "tokenizer_mse_raw")
    return {"checkpoint": report["checkpoint"], **{k: best[k] for k in keep}}


def _protocol(cfg: PipelineConfig) -> dict[str, Any]:
    """The evaluation settings the run's learned policies act under, recorded in their bundle."""
    return {"suite": cfg.suite, "execute_steps": _execute_steps(cfg, "main"),
            "temporal_ensemble": _ensemble_decay(cfg, "main"), "exit_tolerance": cfg.eval.exit_tolerance}


def _write_bundle(folder: Path, bundle) -> dict[str, Any]:
    """Write `bundle` into `<stage folder>/bundle` (a leftover of an interrupted attempt with the same inputs is
    replaced: it is this stage's own output)."""
    target = folder / "bundle"
    if target.exists():
        shutil.rmtree(target)
    bundle.save_pretrained(target)
    return {"folder": str(target)}


def _assemble(cfg: PipelineConfig, folder: Path, tokenizer: str, heads: dict[str, dict[str, Any]],
              features) -> dict[str, Any]:
    """The policy bundle of the run's tokenizer, heads and feature source (verified as it is made)."""
    main = read_main(heads["main"]["checkpoint"])
    draft = read_draft(heads["draft"]["checkpoint"]) if "draft" in heads else None
    bundle = PolicyBundle(ActionTokenizer.from_checkpoint(tokenizer), main, draft, features, protocol=_protocol(cfg))
    return _write_bundle(folder, bundle)


def _assemble_untrained(folder: Path, trained: str, seed: int) -> dict[str, Any]:
    """The trained policy bundle with its main head replaced by a freshly initialized one of the same config and
    identities: what the learned policy would do had training taught it nothing."""

    trained_bundle = load_bundle(trained, "main", device="cpu")
    old = trained_bundle.heads["main"]
    torch.manual_seed(seed)
    main = HeadCheckpoint(MainModel(old.model.config).eval(), old.tokenizer_identity, old.feature_identity,
                          old.feature_info, {"untrained": True})
    return _write_bundle(folder, PolicyBundle(trained_bundle.tokenizer, main, None, trained_bundle.features,
                                              protocol=trained_bundle.protocol, action_steps=trained_bundle.actions))


def _departure(cfg: PipelineConfig, rows: list[str], data: str, folder: str) -> dict[str, Any]:
    """How far each relaxed RSD rule departs from exact decoding on the held-out Phase 2 episodes (the heads'
    validation split): token, layer and chunk mismatch against main's greedy tokens, the action MSE (raw units)
    between the two decodings, and the accepted draft layers and main passes it buys."""

    bundle = load_bundle(folder, "rsd" if rows else "main", device="cpu")
    tokenizer, draft, main = bundle.tokenizer, bundle.draft, bundle.main
    # the heads' validation split: the split `train_head` makes with the run's seed
    _, val = load_phase2_data(data).split_by_episode(TrainHeadConfig.val_fraction, cfg.seed)
    out: dict[str, Any] = {"rows": len(val)}
    if "main_exit" in cfg.eval.policies:
        out["exit"] = _exit_departure(cfg, bundle, as_tensor(val.features), val.valid)
    with torch.inference_mode():
        exact = greedy_decode(main, as_tensor(val.features))
        for name in rows:
            codes, stats = speculative_decode(draft, main, as_tensor(val.features), exact=False, **RELAXED_RULES[name])
            err = ((tokenizer.decode(codes) - tokenizer.decode(exact)) ** 2).mean(-1)  # [N, C]
            out[name] = {**token_departure(codes, exact), **RELAXED_RULES[name],
                         "action_mse_vs_exact_raw": float((err * val.valid).sum() / val.valid.sum().clamp(min=1)),
                         "mean_accepted_layers": float(stats.accepted.float().mean()),
                         "layer_acceptance": stats.layer_acceptance()}
    return out


def _exit_departure(cfg: PipelineConfig, bundle, features, valid) -> dict[str, Any]:
    """Early exit against full greedy on held-out rows, for the run's tolerance, the probe's tolerances and fixed
    depths (`rvq.rsd.early_exit.exit_departure`)."""
    flip = gripper_flip(bundle.actions)
    rules = probe_rules(bundle.tokenizer, sorted({cfg.eval.exit_tolerance, *PROBE_TOLERANCES}), PROBE_DEPTHS, flip)
    return {name: exit_departure(bundle.main, bundle.tokenizer, features, valid, rule, flip)
            for name, rule in rules.items()}


def _eval(cfg: PipelineConfig, kind: str, label: str, folder: Path, source: dict[str, Any]) -> dict[str, Any]:
    """One report row: `source` is the outputs of the policy folder's stage (`folder`), or of the tokenizer stage
    (`checkpoint`) for the expert's round trip, or empty for the plain expert."""
    path = run_eval(_eval_config(cfg, kind, label, folder, source), progress=False)
    return {"results": str(path)}


def _eval_config(cfg: PipelineConfig, kind: str, label: str, folder: Path | None = None,
                 source: dict[str, Any] | None = None):
    """The `EvalConfig` of one report row (not yet validated: that reads the bundle)."""
    source = source or {}
    return EvalConfig(suite=cfg.suite, tasks=list(cfg.tasks), trials=cfg.eval.trials, policy=kind,
                      checkpoints=source.get("folder"), roundtrip_tokenizer=source.get("checkpoint"),
                      env=cfg.env, label=label, exact=label not in RELAXED_RULES, **RELAXED_RULES.get(label, {}),
                      # the main row decodes every layer (the lossless reference), main_exit stops early,
                      # main_depth at a fixed depth
                      exit_tolerance=cfg.eval.exit_tolerance if label == "main_exit" else 0.0,
                      exit_depth=cfg.eval.exit_depth if label == "main_depth" else None,
                      execute_steps=_execute_steps(cfg, kind), temporal_ensemble=_ensemble_decay(cfg, kind),
                      expert_grasp_hold=cfg.expert_grasp_hold if kind == "expert" else "timer",
                      expert_phase_end=cfg.expert_phase_end if kind == "expert" else "limit",
                      out_dir=str(folder) if folder else "", workers=cfg.workers, render=False, device=cfg.device)


def _head_lines(heads: dict[str, dict[str, Any]]) -> list[str]:
    """Held-out per-layer token accuracy of the emitted tokens next to the majority-code baseline and chance."""
    fmt = lambda xs: " | ".join(f"{x:.3f}" for x in xs)  # noqa: E731
    layers = max(len(h["token_accuracy"]) for h in heads.values())
    pad = lambda xs: fmt(xs) + " | –" * (layers - len(xs))  # noqa: E731
    lines = ["Held-out token accuracy per layer (Phase 2 validation episodes; main: greedy, layer by layer):", "",
             "| head | metric | " + " | ".join(f"L{i}" for i in range(layers)) + " |", "|---|---|" + "---|" * layers]
    for kind, head in heads.items():
        lines += [f"| {kind} | token accuracy | {pad(head['token_accuracy'])} |",
                  f"| {kind} | majority-code baseline | {pad(head['majority_accuracy'])} |",
                  f"| {kind} | whole-layer exact match | {pad(head['layer_exact_match'])} |"]
    chance = next(iter(heads.values()))["chance_accuracy"]
    return [*lines, "", f"Chance: {chance:.3f}.", ""]


def _exit_lines(departure: dict[str, Any] | None) -> list[str]:
    if not departure or "exit" not in departure:
        return []
    lines = [f"Early exit against full greedy decoding, offline on the {departure['rows']} held-out Phase 2 rows "
             "(executed actions: raw units, gripper binarized):", "",
             "| rule | mean depth (main passes per chunk) | certified bound, mean / max | measured departure, mean / "
             "max | action MSE vs full | gripper flips |", "|---|---|---|---|---|---|"]
    for name, d in departure["exit"].items():
        lines.append(f"| {name} | {d['mean_depth']:.2f} | {d['mean_bound']:.3g} / {d['max_bound']:.3g} | "
                     f"{d['mean_departure_raw']:.3g} / {d['max_departure_raw']:.3g} | "
                     f"{d['action_mse_vs_full_raw']:.3g} | "
                     f"{d['gripper_flips']} |")
    return [*lines, ""]


def _departure_lines(departure: dict[str, Any] | None) -> list[str]:
    if not departure or not set(departure) - {"rows", "exit"}:
        return []
    lines = [f"Relaxed RSD against exact decoding, offline on the {departure['rows']} held-out Phase 2 rows:", "",
             "| row | rule | tokens differing | chunks differing | action MSE vs exact (raw) | accepted layers |",
             "|---|---|---|---|---|---|"]
    for name, d in departure.items():
        if name in ("rows", "exit"):
            continue
        rule = f"tau {d['tau']}" + (f", within {d['max_grid_distance']} grid step(s)" if d["max_grid_distance"] else "")
        lines.append(f"| {name} | {rule} | {d['token_mismatch']:.3f} | {d['chunk_mismatch']:.3f} | "
                     f"{d['action_mse_vs_exact_raw']:.3g} | {d['mean_accepted_layers']:.2f} |")
    return [*lines, ""]


def _rsd_lines(episodes: dict[str, Any]) -> list[str]:
    rows = [r for r in episodes["suites"] if "layer_acceptance" in r]
    if not rows:
        return []
    k = len(rows[0]["layer_acceptance"])
    lines = ["RSD per chunk (all episodes): accepted draft layers, acceptance per layer, main passes:", "",
             "| policy | mean accepted layers | " + " | ".join(f"L{j} accepted" for j in range(k))
             + " | main passes per chunk |", "|---|---|" + "---|" * (k + 1)]
    lines += [f"| {r['policy']} | {r['mean_accepted_layers']:.2f} | "
              + " | ".join(f"{a:.2f}" for a in r["layer_acceptance"]) + f" | {r['mean_main_passes']:.2f} |"
              for r in rows]
    return [*lines, ""]


def _report(run: Run, cfg: PipelineConfig, heads: dict[str, dict[str, Any]], evals: dict[str, dict[str, Any]]):
    episodes = write_report([ev["results"] for ev in evals.values()], run.root)
    text = "\n".join([f"# rvq pipeline: {cfg.suite} tasks {cfg.tasks} ({cfg.env})", "", render_markdown(episodes),
                      *_rsd_lines(episodes), *_departure_lines(run.outputs.get("departure")),
                      *_exit_lines(run.outputs.get("departure")), *_head_lines(heads)])
    (run.root / "report.md").write_text(text)
    report = {"config": asdict(cfg), "episodes": episodes, "heads": heads, "fingerprints": run.fingerprints}
    (run.root / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return report
