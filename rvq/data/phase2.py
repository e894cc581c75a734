"""Phase 2 training data: cached VLA features and token labels, one row per demo step.

Row `i` holds the features of step `t` of an episode and the codes of the action chunk that starts
at `t` (the next `C` raw actions, last one repeated past the end, as in Phase 1). Files are HDF5:

    features [N, D] float32        codes [N, C, H, L] uint8       actions [N, C, A] float32 (raw)
    valid [N, C] bool              episode [N] int32 (global)    task [N] int32     step [N] int32
    attrs: format, version, tokenizer_identity, feature_identity, feature_info (JSON),
           instructions (JSON, by task id), sources (JSON, by task id), episodes (JSON names), image_key,
           run_config (JSON, when `rvq build-phase2-data` made it)

`load_phase2_data` refuses files made with different tokenizers or feature extractors. Features larger than
`RVQ_FEATURE_MEMORY_MB` stay on disk (`rvq.data.feature_store.LazyFeatures`) and are read a batch at a time.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from tqdm import tqdm

from rvq.data.chunks import chunk_episode
from rvq.data.episodes import Episode, read_demos, read_obs
from rvq.data.feature_store import Features, LazyFeatures, feature_chunks, feature_memory_budget
from rvq.data.hdf5 import read_hdf5
from rvq.data.state_obs import read_state_observations
from rvq.processors import observation_features

PHASE2_FORMAT = "rvq.phase2-data"
PHASE2_VERSION = 1
DEFAULT_IMAGE_KEY = "agentview_rgb"


@dataclass
class Phase2DataConfig:
    """`rvq build-phase2-data`: demos → cached features (VLA or state) + token labels, one HDF5 file (its
    `run_config` attribute keeps this config)."""

    demos: list[str]  # LIBERO-layout HDF5 files or folders (one task per file), or LeRobot datasets
    tokenizer: str  # Phase 1 tokenizer checkpoint (labels the actions)
    # hub id or local folder of the VLA (or a tiny backbone), or state:SUITE for state features (demos from
    # `rvq collect-demos`); give the same source to `rvq make-bundle`
    backbone: str
    out: str  # output .h5 file
    image_key: str = DEFAULT_IMAGE_KEY  # observation key of the camera image
    batch_size: int = 32  # observations per feature-extraction batch
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    progress: bool = True  # show the progress bar
    # run Python code shipped in the backbone folder or hub repo (OpenVLA/OFT need it); off: a backbone that asks
    # for it is refused
    trust_remote_code: bool = False
    # VLA images, after the 180° turn: resize (Lanczos, OpenVLA) or oft (+ JPEG round trip and the 90% centre crop
    # OFT-trained models expect); an observation step, part of the features' identity: give make-bundle the same
    image_transform: Literal["resize", "oft"] = "resize"


@dataclass
class Phase2Data:
    """Phase 2 rows (see module docstring for shapes); features in RAM or read lazily from the files."""

    features: Features
    codes: torch.Tensor
    actions: torch.Tensor
    valid: torch.Tensor
    episode: torch.Tensor
    task: torch.Tensor
    step: torch.Tensor
    tokenizer_identity: str
    feature_identity: str
    feature_info: dict[str, Any]
    instructions: list[str]
    episodes: list[str]

    def __len__(self) -> int:
        return int(self.features.shape[0])

    @property
    def feature_dim(self) -> int:
        return int(self.features.shape[1])

    def subset(self, rows: torch.Tensor) -> "Phase2Data":
        fields = {k: getattr(self, k)[rows] for k in ("codes", "actions", "valid", "episode", "task", "step")}
        features = self.features.take(rows) if isinstance(self.features, LazyFeatures) else self.features[rows]
        return Phase2Data(features=features, **fields, tokenizer_identity=self.tokenizer_identity, feature_identity=self.feature_identity,
                          feature_info=self.feature_info, instructions=self.instructions, episodes=self.episodes)

    def split_by_episode(self, val_fraction: float = 0.2, seed: int = 0) -> tuple["Phase2Data", "Phase2Data"]:
        """Hold out whole episodes, stratified by task (each task with ≥ 2 episodes gives ≥ 1)."""
        if not 0.0 < val_fraction < 1.0:
            raise ValueError(f"val_fraction must be in (0, 1), got {val_fraction}")
        rng = np.random.default_rng(seed)
        episode, task = self.episode.numpy(), self.task.numpy()
        held_out: list[int] = []
        for t in np.unique(task):
            eps = np.unique(episode[task == t])
            if len(eps) >= 2:
                rng.shuffle(eps)
                held_out.extend(eps[: max(1, round(val_fraction * len(eps)))].tolist())
        if not held_out:
            raise ValueError("cannot split by episode: no task has two or more episodes")
        is_val = torch.from_numpy(np.isin(episode, held_out))
        return self.subset(~is_val), self.subset(is_val)


def _episode_observations(episode: Episode, image_key: str, state_features: bool) -> list[dict]:
    """The episode's observations in the env contract: images + instruction (VLA) or state (state features)."""
    if state_features:
        return read_state_observations(episode)
    images = read_obs(episode, image_key)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"{episode.name}: {image_key} must be [T, H, W, 3] uint8, got {images.dtype} {list(images.shape)}")
    if len(images) != len(episode):
        raise ValueError(f"{episode.name}: {len(images)} images but {len(episode)} actions")
    return [{"agentview": image, "instruction": episode.instruction} for image in images]


def build_phase2_data(
    demo_paths: list[str | os.PathLike],
    tokenizer,
    extractor,
    out_path: str | os.PathLike,
    image_key: str = DEFAULT_IMAGE_KEY,
    batch_size: int = 32,
    progress: bool = True,
    run_config: dict[str, Any] | None = None,
) -> Path:
    """Read demos (files or folders; one task per file), extract features, label with codes, write HDF5.

    `tokenizer`: `rvq.tokenizer.ActionTokenizer`; `extractor`: an `rvq.processors.ObservationFeatures` (observation
    steps → feature source; what a policy bundle runs), or a bare `rvq.backbones.FeatureExtractor` (images, given
    LIBERO's observation steps) or `rvq.backbones.state.StateFeatures` (recorded state and object poses).
    `run_config`: the command's resolved config, kept as the file's `run_config` attribute (JSON).
    """
    extractor = observation_features(extractor)
    config = tokenizer.config
    episodes = read_demos(list(demo_paths), action_dim=config.action_dim, split_arms=False)
    instructions: dict[int, str] = {ep.task_id: ep.instruction for ep in episodes}
    sources: dict[int, str] = {ep.task_id: ep.source for ep in episodes}
    total = sum(len(ep) for ep in episodes)
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(out_path.name + ".tmp")
    C, H, L = config.chunk_size, config.hidden_dim, config.num_layers
    try:
        with h5py.File(tmp, "w") as f:
            feats = f.create_dataset("features", (total, extractor.feature_dim), dtype="float32")
            codes = f.create_dataset("codes", (total, C, H, L), dtype="uint8")
            actions = f.create_dataset("actions", (total, C, config.action_dim), dtype="float32")
            valid = f.create_dataset("valid", (total, C), dtype="bool")
            ids = {name: f.create_dataset(name, (total,), dtype="int32") for name in ("episode", "task", "step")}
            row = 0
            bar = tqdm(total=total, desc="phase2 features", disable=not progress)
            for index, ep in enumerate(episodes):
                chunks, chunk_valid = chunk_episode(ep.actions, C)
                ep_codes = tokenizer.encode(torch.from_numpy(chunks.astype(np.float32))).cpu().to(torch.uint8).numpy()
                n = len(ep)
                start = row
                observations = _episode_observations(ep, image_key, not extractor.reads_images)
                for begin in range(0, n, batch_size):
                    batch = observations[begin : begin + batch_size]
                    feats[row : row + len(batch)] = extractor.features(batch).cpu().numpy()
                    row += len(batch)
                    bar.update(len(batch))
                codes[start:row] = ep_codes
                actions[start:row] = chunks
                valid[start:row] = chunk_valid
                ids["episode"][start:row] = index
                ids["task"][start:row] = ep.task_id
                ids["step"][start:row] = np.arange(n)
            bar.close()
            f.attrs["format"] = PHASE2_FORMAT
            f.attrs["version"] = PHASE2_VERSION
            f.attrs["tokenizer_identity"] = tokenizer.identity
            f.attrs["feature_identity"] = extractor.identity
            described = extractor.describe()
            keys = ("name", "class", "family", "feature_dim", "preprocess", "observation_steps", "kind", "objects")
            f.attrs["feature_info"] = json.dumps({k: described[k] for k in keys if k in described})
            f.attrs["instructions"] = json.dumps([instructions[t] for t in sorted(instructions)])
            f.attrs["sources"] = json.dumps([sources[t] for t in sorted(sources)])
            f.attrs["episodes"] = json.dumps([ep.name for ep in episodes])
            f.attrs["image_key"] = image_key
            if run_config is not None:
                f.attrs["run_config"] = json.dumps(run_config, sort_keys=True)
    except BaseException:
        tmp.unlink(missing_ok=True)  # no half-written file is left behind
        raise
    os.replace(tmp, out_path)
    return out_path


PHASE2_DATASETS = ("features", "codes", "actions", "valid", "episode", "task", "step")
PHASE2_ATTRS = ("tokenizer_identity", "feature_identity", "feature_info", "instructions", "episodes")


WHAT = "Phase 2 data from `rvq build-phase2-data`"


def _feature_bytes(path: Path) -> int:
    """Size of a file's features in RAM (float32), read from the dataset's shape without loading it."""
    if not path.is_file():
        raise FileNotFoundError(f"Phase 2 data file not found: {path}")

    def size(f: h5py.File) -> int:
        dataset = f.get("features")
        return int(np.prod(dataset.shape)) * 4 if isinstance(dataset, h5py.Dataset) else 0

    return read_hdf5(path, size, WHAT)


def _read_one(path: Path, lazy: bool) -> Phase2Data:
    if not path.is_file():
        raise FileNotFoundError(f"Phase 2 data file not found: {path}")
    data = read_hdf5(path, lambda f: _read_rows(f, path, lazy), WHAT)
    for chunk in feature_chunks(data.features):  # a bounded chunk at a time when lazy
        if not torch.isfinite(chunk).all():
            raise ValueError(f"{path}: features contain NaN/inf")
    return data


def _read_rows(f: h5py.File, path: Path, lazy: bool = False) -> Phase2Data:
    if f.attrs.get("format") != PHASE2_FORMAT:
        raise ValueError(f"{path}: not a Phase 2 data file (format {f.attrs.get('format')!r}, expected {PHASE2_FORMAT!r})")
    missing = [k for k in PHASE2_DATASETS if not isinstance(f.get(k), h5py.Dataset)]
    if missing:
        raise ValueError(f"{path}: missing dataset(s) {missing}")
    missing = [k for k in PHASE2_ATTRS if k not in f.attrs]
    if missing:
        raise ValueError(f"{path}: missing attribute(s) {missing}")
    try:
        info, instructions, episodes = (json.loads(f.attrs[k]) for k in ("feature_info", "instructions", "episodes"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: an attribute that must be JSON is not ({exc})") from exc
    shape = f["features"].shape
    if len(shape) != 2 or shape[0] != f["codes"].shape[0]:
        raise ValueError(f"{path}: features must be [N, D] with one row per code row, got {list(shape)} "
                         f"for {f['codes'].shape[0]} rows")
    if f["features"].dtype != np.float32:
        raise ValueError(f"{path}: features must be float32, got {f['features'].dtype}")
    return Phase2Data(
        features=LazyFeatures([path], [shape[0]], shape[1]) if lazy else torch.from_numpy(f["features"][()]),
        codes=torch.from_numpy(f["codes"][()].astype(np.int64)),
        actions=torch.from_numpy(f["actions"][()]),
        valid=torch.from_numpy(f["valid"][()]),
        episode=torch.from_numpy(f["episode"][()].astype(np.int64)),
        task=torch.from_numpy(f["task"][()].astype(np.int64)),
        step=torch.from_numpy(f["step"][()].astype(np.int64)),
        tokenizer_identity=str(f.attrs["tokenizer_identity"]),
        feature_identity=str(f.attrs["feature_identity"]),
        feature_info=info,
        instructions=instructions,
        episodes=episodes,
    )


def load_phase2_data(paths: list[str | os.PathLike] | str | os.PathLike, lazy: bool | None = None) -> Phase2Data:
    """Load one or more Phase 2 files; refuses files from different tokenizers or feature extractors.

    `lazy`: keep the features on disk and read them a batch at a time (`LazyFeatures`); None: when they exceed
    `RVQ_FEATURE_MEMORY_MB` (labels, ids and actions are small and always read)."""
    paths = [Path(p) for p in (paths if isinstance(paths, (list, tuple)) else [paths])]
    if not paths:
        raise ValueError("no Phase 2 data files given")
    if lazy is None:
        lazy = sum(_feature_bytes(p) for p in paths) > feature_memory_budget()
    parts = [_read_one(p, lazy) for p in paths]
    first = parts[0]
    for path, part in zip(paths[1:], parts[1:]):
        for name in ("tokenizer_identity", "feature_identity"):
            if getattr(part, name) != getattr(first, name):
                raise ValueError(
                    f"{path}: {name} {getattr(part, name)[:12]}… differs from {paths[0]}'s "
                    f"{getattr(first, name)[:12]}…; Phase 2 files made with different "
                    f"{'tokenizers' if name.startswith('tok') else 'feature extractors'} cannot be mixed"
                )
    if len(parts) == 1:
        return first
    # Renumber episodes and tasks so they stay distinct across files.
    episode_offset, task_offset, merged = 0, 0, []
    instructions, episodes = [], []
    for part in parts:
        merged.append((part.episode + episode_offset, part.task + task_offset))
        episode_offset += len(part.episodes)
        task_offset += len(part.instructions)
        instructions += part.instructions
        episodes += part.episodes
    cat = lambda name: torch.cat([getattr(p, name) for p in parts])  # noqa: E731
    if lazy:
        dims = {part.feature_dim for part in parts}
        if len(dims) != 1:
            raise ValueError(f"Phase 2 files have different feature widths {sorted(dims)}: {[str(p) for p in paths]}")
        features: Features = LazyFeatures(paths, [len(part) for part in parts], dims.pop())
    else:
        features = cat("features")
    return Phase2Data(
        features=features, codes=cat("codes"), actions=cat("actions"), valid=cat("valid"),
        episode=torch.cat([m[0] for m in merged]), task=torch.cat([m[1] for m in merged]), step=cat("step"),
        tokenizer_identity=first.tokenizer_identity, feature_identity=first.feature_identity,
        feature_info=first.feature_info, instructions=instructions, episodes=episodes,
    )
