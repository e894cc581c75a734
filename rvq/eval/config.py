"""What an evaluation run is: suite, tasks, trials, policy, env, output, parallelism."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rvq.backbones.state import FEATURES_FILE
from rvq.envs import ENV_KINDS
from rvq.envs.suites import TRIALS_PER_TASK, check_suite, check_tasks
from rvq.policies import POLICIES, check_checkpoint_dir


@dataclass
class EvalConfig:
    suite: str = "libero_spatial"
    tasks: list[int] = field(default_factory=list)  # empty: all tasks of the suite
    trials: int = TRIALS_PER_TASK
    policy: str = "rsd"
    checkpoints: str | None = None  # rsd / main: folder with tokenizer.pt, draft.pt, main.pt, backbone/
    demos: str | None = None  # replay: LIBERO folder, one file per task
    out_dir: str = "runs/eval"
    workers: int = 1
    shard: tuple[int, int] = (0, 1)
    videos: int = 0  # videos of the first K trials of each task
    env: str = "libero"
    device: str = "auto"
    exact: bool = True
    flip_gripper: bool = False
    max_steps: int | None = None  # None: the suite's protocol value
    render: bool = True  # False: physics only (no images), for policies that do not look (expert, replay)
    roundtrip_tokenizer: str | None = None  # expert: pass its actions through this tokenizer (closed-loop study)
    trust_remote_code: bool = False  # let the backbone run code it ships (OpenVLA/OFT); off by default

    def validate(self) -> "EvalConfig":
        """Refuse bad runs before any simulator starts."""
        check_suite(self.suite)
        self.tasks = check_tasks(self.tasks, self.suite)
        if not 1 <= self.trials <= TRIALS_PER_TASK:
            raise ValueError(f"trials must be in [1, {TRIALS_PER_TASK}] (one per fixed initial state), got {self.trials}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; choose one of {POLICIES}")
        if self.env not in ENV_KINDS:
            raise ValueError(f"unknown env {self.env!r}; choose one of {ENV_KINDS}")
        index, count = self.shard
        if not (count >= 1 and 0 <= index < count):
            raise ValueError(f"shard must be i/n with 0 <= i < n, got {index}/{count}")
        episodes = len(self.tasks) * self.trials
        if index >= episodes:
            raise ValueError(f"shard {index}/{count} holds no episodes: the run has {episodes} "
                             f"({len(self.tasks)} task(s) x {self.trials} trial(s)); use at most {episodes} shards")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")
        if self.policy in ("rsd", "main"):
            if not self.checkpoints:
                raise ValueError(f"policy {self.policy!r} needs --checkpoints")
            check_checkpoint_dir(self.checkpoints, self.policy)
            check_head_identities(Path(self.checkpoints), self.policy)
        if self.policy == "expert" and self.env != "libero":
            raise ValueError("the scripted expert reads the real simulator's state: use --env libero")
        if self.roundtrip_tokenizer is not None:
            if self.policy != "expert":
                raise ValueError("--roundtrip-tokenizer applies to the expert policy only")
            from rvq.tokenizer import ActionTokenizer

            ActionTokenizer.from_checkpoint(self.roundtrip_tokenizer)  # refuse a bad file before any simulator
        if not self.render and self.policy in ("rsd", "main") and not reads_state(Path(self.checkpoints)):
            raise ValueError(f"policy {self.policy!r} looks at images (its folder has a VLA backbone, not "
                             f"{FEATURES_FILE}): it cannot run with rendering off")
        if self.policy == "replay" and not self.demos:
            raise ValueError("policy 'replay' needs --demos (a folder with one demo file per task)")
        return self

    @property
    def results_name(self) -> str:
        index, count = self.shard
        return "results.jsonl" if count == 1 else f"results-shard{index}-of-{count}.jsonl"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def reads_state(checkpoints: Path) -> bool:
    """Whether a policy folder's feature source is a state-feature layout (physics only suffices)."""
    return (checkpoints / FEATURES_FILE).is_file()


def check_head_identities(checkpoints: Path, policy: str) -> None:
    """Heads must name the tokenizer in the folder and agree on the features (cheap: no backbone load)."""
    from rvq.models import load_draft, load_main
    from rvq.rfsq import tokenizer_identity

    identity = tokenizer_identity(checkpoints / "tokenizer.pt")
    main = load_main(checkpoints / "main.pt", tokenizer_identity=identity)
    if policy == "rsd":
        load_draft(checkpoints / "draft.pt", tokenizer_identity=identity, feature_identity=main.feature_identity)


def parse_shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError as exc:
        raise ValueError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from exc
    return index, count
