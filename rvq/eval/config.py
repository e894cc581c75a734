"""What an evaluation run is: suite, tasks, trials, policy, env, output, parallelism."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from typing import Any

from tyro.conf import Suppress

from rvq.data.identity import demo_digests
from rvq.device import check_device
from rvq.envs import ENV_KINDS
from rvq.envs.scene_chain import SCENE_PROTOCOL
from rvq.envs.suites import ENV_SEED, MAX_STEPS, TRIALS_PER_TASK, TaskIds, check_suite, check_tasks
from rvq.expert.scripted import check_grasp_hold, check_phase_end
from rvq.expert.scripted import expert_identity
from rvq.hub_format import payload_digest
from rvq.policies import POLICIES
from rvq.policies.bundle import BundleLayout, read_layout, verify_bundle
from rvq.rsd.decode import DEFAULT_TAU
from rvq.rsd.early_exit import check_tolerance
from rvq.tokenizer import ActionTokenizer

EXECUTORS = ("auto", "inline", "process", "ray")  # where episodes run (rvq.eval.executors, rvq.eval.ray_executor)


@dataclass
class EvalConfig:
    """An evaluation run (`rvq eval`; `--config FILE` gives defaults): a policy on a LIBERO suite, OpenVLA/OFT
    protocol. Task lists also take ranges (`--tasks 0-4`, `0,3,5`); `--shard I N` runs its share."""

    suite: str = "libero_spatial"  # libero_spatial, libero_object, libero_goal, libero_10, libero_90
    tasks: TaskIds = field(default_factory=list)  # task ids, e.g. 0 3 5, 0,3,5 or 0-4 (empty: all of the suite)
    trials: int = TRIALS_PER_TASK  # trials per task: trial i starts from initial state i
    policy: str = "rsd"  # rsd, main (main-only greedy), replay, noop, expert
    # rsd / main: a policy bundle folder (rvq.policies.bundle; the older tokenizer.pt/draft.pt/main.pt layout loads)
    checkpoints: str | None = None
    demos: str | None = None  # replay: folder of LIBERO demo files, one per task
    out_dir: str = "runs/eval"  # output folder (rerun to resume)
    workers: int = 1  # simulator workers (local processes, or Ray actors)
    executor: str = "auto"  # inline | process | ray (rvq[ray]); auto: inline for 1 worker, else local processes
    ray_address: str | None = None  # ray: join this cluster ("auto" or host:port); None starts a local instance
    # seconds of wall clock per episode; past it the episode is stopped and recorded as an error (None: none)
    episode_timeout: float | None = 3600.0
    max_worker_deaths: int = 2  # an episode that killed this many workers is recorded as an error (the run goes on)
    # seconds a worker holding an episode (or the policy service) may go without a sign of progress before it is
    # killed: a worker's episode is requeued, a stalled policy service stops the run (None: only the episode timeout)
    stall_timeout: float | None = 120.0
    mock_step_latency_ms: float = 0.0  # mock env: sleep per step (stands in for a slow simulator in benchmarks)
    # on | off | auto (on for rsd/main with process workers): one process holds the policy and batches the requests
    policy_service: str = "auto"
    service_max_batch: int | None = None  # policy service: largest batch (None: the number of workers)
    service_max_wait_ms: float = 5.0  # policy service: how long to wait for more requests before running a batch
    # --executor ray: policy actors (one model copy each, on a GPU node when the policy runs on CUDA) shared by every
    # simulator actor
    policy_replicas: int = 1
    shard: tuple[int, int] = (0, 1)  # I N: this job's share of the episodes (shard I of N)
    videos: int = 0  # MP4s of the first K trials of each task
    env: str = "libero"  # libero (the simulator) or mock
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    exact: bool = True  # exact RSD (--no-exact: relaxed, lossy acceptance)
    tau: float = DEFAULT_TAU  # relaxed RSD: accept a draft layer when this fraction of its tokens agree with main's
    max_grid_distance: int | None = None  # relaxed RSD: ... or when every token is within this many grid steps
    # policy main: stop the main head's layer passes at the first depth whose certified bound on what the remaining
    # layers could change in the executed action is <= this, in raw action units (rvq.rsd.early_exit; 0: every
    # layer, the lossless reference); None: the bundle's protocol, else every layer
    exit_tolerance: float | None = None
    exit_depth: int | None = None  # policy main: decode this many layers at most (no certificate); None: as above
    # OpenVLA-family gripper: [0, 1] with 1 = open, split at 0.5 and inverted (as OFT); None: the bundle's step
    flip_gripper: bool | None = None
    max_steps: int | None = None  # None: the suite's protocol value (smaller for smoke tests)
    # actions of each chunk executed before the policy acts again (0: all). With neither this nor temporal_ensemble
    # given, a token policy takes its bundle's protocol (whole chunks if it names none)
    execute_steps: int | None = None
    # act every step, execute the chunks' weighted mean w_i = exp(-M i) (ACT's temporal ensembling: M = 0.01); the
    # gripper's mean is split at 0
    temporal_ensemble: float | None = None
    render: bool = True  # False: physics only, no cameras (expert/replay/noop and state-feature policies, ~10x faster)
    roundtrip_tokenizer: str | None = None  # expert: execute its actions after a round trip through this tokenizer
    expert_grasp_hold: str = "timer"  # expert: how its grasp ends (rvq.expert.scripted.GRASP_HOLDS)
    expert_phase_end: str = "limit"  # expert: how its moving phases end (rvq.expert.scripted.PHASE_ENDS)
    trust_remote_code: bool = False  # let the backbone run code it ships (OpenVLA/OFT); off by default
    # VLA images: resize | oft (rvq.backbones.preprocess); None: the bundle's declared steps, else resize
    image_transform: str | None = None
    label: str | None = None  # the row name in reports (default: the policy), e.g. rsd-naive
    progress: bool = True  # show the progress bar (not a result setting)
    identity: Suppress[str | None] = field(default=None, init=False)  # set by run_eval: `policy_identity` of this run

    @property
    def executor_kind(self) -> str:
        """The executor a run uses: `auto` resolved (inline for one worker, else local processes)."""
        if self.executor == "auto":
            return "inline" if self.workers == 1 else "process"
        return self.executor

    @property
    def serves_policy(self) -> bool:
        """Whether the workers share served policies (`policy_service`, auto: rsd/main on process workers or Ray
        actors): one policy service process locally, `policy_replicas` policy actors on Ray."""
        if self.policy_service == "auto":
            return self.policy in ("rsd", "main") and self.executor_kind in ("process", "ray")
        return self.policy_service == "on"

    @property
    def row_name(self) -> str:
        return self.label or self.policy

    def validate(self) -> "EvalConfig":
        """Refuse bad runs before any simulator starts."""
        check_suite(self.suite)
        check_device(self.device)
        self.tasks = check_tasks(self.tasks, self.suite)
        if not 1 <= self.trials <= TRIALS_PER_TASK:
            raise ValueError(f"trials must be in [1, {TRIALS_PER_TASK}] (one per fixed initial state), got {self.trials}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; choose one of {POLICIES}")
        if self.env not in ENV_KINDS:
            raise ValueError(f"unknown env {self.env!r}; choose one of {ENV_KINDS}")
        index, count = self.shard
        if not (count >= 1 and 0 <= index < count):
            raise ValueError(f"shard must be I N with 0 <= I < N, got {index} {count}")
        episodes = len(self.tasks) * self.trials
        if index >= episodes:
            raise ValueError(f"shard {index}/{count} holds no episodes: the run has {episodes} "
                             f"({len(self.tasks)} task(s) x {self.trials} trial(s)); use at most {episodes} shards")
        if self.label is not None and (not self.label.strip() or "\n" in self.label):
            raise ValueError(f"label must be a non-empty single line, got {self.label!r}")
        if self.max_steps is not None and self.max_steps < 1:
            raise ValueError(f"max_steps must be >= 1 (or unset for the suite's {MAX_STEPS[self.suite]}), "
                             f"got {self.max_steps}")
        layout = self._policy_layout()
        if self.execute_steps is not None and self.execute_steps < 0:
            raise ValueError(f"execute_steps must be >= 0 (0: the whole chunk), got {self.execute_steps}")
        if self.execute_steps == 0:
            self.execute_steps = None
        if self.temporal_ensemble is not None:
            if not self.temporal_ensemble >= 0.0:
                raise ValueError(f"temporal_ensemble (the decay m) must be >= 0, got {self.temporal_ensemble}")
            if self.execute_steps is not None:
                raise ValueError("temporal_ensemble acts on every step; it does not combine with execute_steps")
        if not 0.0 < self.tau <= 1.0:
            raise ValueError(f"tau must be in (0, 1], got {self.tau}")
        if self.max_grid_distance is not None and self.max_grid_distance < 0:
            raise ValueError(f"max_grid_distance must be >= 0, got {self.max_grid_distance}")
        relaxed = not self.exact or self.tau != DEFAULT_TAU or self.max_grid_distance is not None
        if relaxed and self.policy != "rsd":
            raise ValueError(f"--no-exact, --tau and --max-grid-distance are RSD's acceptance rules: they "
                             f"do not apply to policy {self.policy!r}")
        if self.exact and (self.tau != DEFAULT_TAU or self.max_grid_distance is not None):
            raise ValueError("--tau and --max-grid-distance are relaxed RSD's rules: add --no-exact")
        self._check_exit()
        if self.videos < 0:
            raise ValueError(f"videos must be >= 0, got {self.videos}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"unknown executor {self.executor!r}; choose one of {EXECUTORS}")
        if self.ray_address is not None and self.executor != "ray":
            raise ValueError("--ray-address applies to --executor ray only")
        if self.executor == "ray":
            try:
                import ray  # noqa: F401
            except ImportError as exc:
                raise ValueError("--executor ray needs Ray: pip install 'rvq[ray]'") from exc
        if self.episode_timeout is not None and not self.episode_timeout > 0:
            raise ValueError(f"episode_timeout must be > 0 seconds (or unset for none), got {self.episode_timeout}")
        if self.stall_timeout is not None and not self.stall_timeout > 0:
            raise ValueError(f"stall_timeout must be > 0 seconds (or unset for none), got {self.stall_timeout}")
        if self.mock_step_latency_ms < 0 or (self.mock_step_latency_ms and self.env != "mock"):
            raise ValueError(f"mock_step_latency_ms must be >= 0 and needs env 'mock', got {self.mock_step_latency_ms}")
        if self.image_transform not in ("resize", "oft"):
            raise ValueError(f"unknown image transform {self.image_transform!r}; choose resize or oft")
        if self.image_transform != "resize" and (layout is None or layout.reads_state):
            raise ValueError("--image-transform applies to token policies on a VLA backbone (state features and "
                             f"policy {self.policy!r} read no images)")
        if self.policy_service not in ("auto", "on", "off"):
            raise ValueError(f"policy_service must be auto, on or off, got {self.policy_service!r}")
        if self.policy_service == "on" and (self.policy not in ("rsd", "main") or self.executor_kind == "inline"):
            raise ValueError("--policy-service on serves rsd/main policies to process workers or Ray actors "
                             f"(policy {self.policy!r}, executor {self.executor_kind!r})")
        if self.policy_replicas < 1 or (self.policy_replicas != 1 and not (self.serves_policy
                                                                          and self.executor_kind == "ray")):
            raise ValueError(f"--policy-replicas {self.policy_replicas}: policy actors serve rsd/main policies on "
                             f"--executor ray (at least 1; policy {self.policy!r}, executor {self.executor_kind!r})")
        if self.service_max_batch is not None and self.service_max_batch < 1:
            raise ValueError(f"service_max_batch must be >= 1, got {self.service_max_batch}")
        if not self.service_max_wait_ms >= 0:
            raise ValueError(f"service_max_wait_ms must be >= 0, got {self.service_max_wait_ms}")
        if self.max_worker_deaths < 1:
            raise ValueError(f"max_worker_deaths must be >= 1, got {self.max_worker_deaths}")
        if self.policy == "expert" and self.env != "libero":
            raise ValueError("the scripted expert reads the real simulator's state: use --env libero")

        if check_grasp_hold(self.expert_grasp_hold, "expert_grasp_hold") != "timer" and self.policy != "expert":
            raise ValueError("--grasp-hold applies to the expert policy only")
        if check_phase_end(self.expert_phase_end, "expert_phase_end") != "limit" and self.policy != "expert":
            raise ValueError("--phase-end applies to the expert policy only")
        if self.roundtrip_tokenizer is not None:
            if self.policy != "expert":
                raise ValueError("--roundtrip-tokenizer applies to the expert policy only")

            ActionTokenizer.from_checkpoint(self.roundtrip_tokenizer)  # refuse a bad file before any simulator
        if not self.render and layout is not None and not layout.reads_state:
            raise ValueError(f"policy {self.policy!r} looks at images (its folder's feature source is a VLA, not a "
                             "state-feature layout): it cannot run with rendering off")
        if self.policy == "replay" and not self.demos:
            raise ValueError("policy 'replay' needs --demos (a folder with one demo file per task)")
        return self

    def _check_exit(self) -> None:
        """Early exit applies to policy main; its values are a finite tolerance >= 0 (0: every layer, the lossless
        reference, which any policy may name) and a depth within the tokenizer's layers (checked again when the policy
        loads)."""
        if self.exit_tolerance is not None:
            check_tolerance(self.exit_tolerance, "exit_tolerance")
            if self.exit_tolerance == 0:
                self.exit_tolerance = None  # every layer: the lossless reference
        given = self.exit_tolerance is not None or self.exit_depth is not None
        if given and self.policy != "main":
            raise ValueError(f"--exit-tolerance / --exit-depth apply to policy 'main' (main-only passes), not "
                             f"{self.policy!r}")
        if self.exit_depth is not None and (isinstance(self.exit_depth, bool) or self.exit_depth < 1):
            raise ValueError(f"exit_depth must be >= 1 layers, got {self.exit_depth}")

    def _policy_layout(self) -> BundleLayout | None:
        """A token policy's bundle, verified (None for other policies); fills the options left unset from the
        bundle: the chunk's executed steps (or temporal ensemble) from its protocol, the image transform and the
        gripper flip from its declared steps."""
        if self.policy not in ("rsd", "main"):
            given = [flag for flag, value in (("--checkpoints", self.checkpoints), ("--flip-gripper", self.flip_gripper))
                     if value]
            if given:  # a token policy's options: ignoring them would run something else than asked
                raise ValueError(f"{' and '.join(given)}: token policies' options (rsd, main), not {self.policy!r}'s")
            self.image_transform = self.image_transform or "resize"  # another value is refused below, named
            self.flip_gripper = False
            return None
        if not self.checkpoints:
            raise ValueError(f"policy {self.policy!r} needs --checkpoints")
        layout = verify_bundle(self.checkpoints, self.policy)
        if self.execute_steps is None and self.temporal_ensemble is None:
            self.execute_steps = layout.protocol.get("execute_steps")
            self.temporal_ensemble = layout.protocol.get("temporal_ensemble")
        if self.policy == "main" and self.exit_tolerance is None and self.exit_depth is None:
            self.exit_tolerance = layout.protocol.get("exit_tolerance")
            self.exit_depth = layout.protocol.get("exit_depth")
        self.image_transform = layout.image_transform(self.image_transform)
        self.flip_gripper = layout.flip_gripper(self.flip_gripper)
        return layout

    @property
    def results_name(self) -> str:
        index, count = self.shard
        return "results.jsonl" if count == 1 else f"results-shard{index}-of-{count}.jsonl"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def result_settings(self) -> dict[str, Any]:
        """Every setting that changes an episode's result (not tasks or trials: a run may be extended with more).
        A folder's results were all made under one such set; resume refuses another."""
        return {"suite": self.suite, "policy": self.policy, "row": self.row_name, "env": self.env,
                "env_seed": ENV_SEED, "scenes": SCENE_PROTOCOL, "max_steps": self.max_steps or MAX_STEPS[self.suite],
                "exact": self.exact if self.policy == "rsd" else None, "flip_gripper": self.flip_gripper,
                "relaxed_rules": [self.tau, self.max_grid_distance] if self.policy == "rsd" and not self.exact else None,
                "render": self.render, "image_transform": self.image_transform,
                "policy_identity": policy_identity(self),
                # only when set, so that folders written before the option existed still resume
                **({"execute_steps": self.execute_steps} if self.execute_steps is not None else {}),
                **({"temporal_ensemble": self.temporal_ensemble} if self.temporal_ensemble is not None else {}),
                **({"exit_tolerance": self.exit_tolerance} if self.exit_tolerance is not None else {}),
                **({"exit_depth": self.exit_depth} if self.exit_depth is not None else {})}


def policy_identity(cfg: EvalConfig) -> str:
    """A hash of what the policy is: its checkpoint files (a head names its feature source's identity, checked
    on load), the replayed demo files, or the round-trip tokenizer. Records carry it; reports keep apart episodes
    of different identities."""
    parts: dict[str, Any] = {"policy": cfg.policy}
    if cfg.policy in ("rsd", "main"):
        parts.update(read_layout(cfg.checkpoints, cfg.policy).digests(cfg.policy))
    elif cfg.policy == "replay":
        parts["demos"] = demo_digests(cfg.demos)  # by content (a few seconds a GB of demo files, once per run)
    if cfg.roundtrip_tokenizer:
        parts["roundtrip_tokenizer"] = payload_digest(cfg.roundtrip_tokenizer)
    if cfg.policy == "expert":  # rows of another revision, grasp or phase-end rule are not this expert's

        parts.update(expert_identity(cfg.expert_grasp_hold, cfg.expert_phase_end))
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:16]
