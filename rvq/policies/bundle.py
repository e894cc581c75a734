"""A token policy's bundle: one folder with a manifest and its parts stored hub-style, verified together at load.

    <bundle>/config.json   the manifest (the file the Hugging Face Hub reads at a repo's root):
        {"format": "rvq.bundle", "version": 2,
         "parts": {"tokenizer": {"path": "tokenizer", "config_sha256": ...}, "main": {...}, "draft": {...}},
         "tokenizer_identity": ..., "feature_identity": ...,
         "feature_source": {"kind": "state", "path": "features.json"} | {"kind": "backbone", "path": "backbone"}
                           | {"kind": "hub", "id": "openvla/openvla-7b"},
         "processors": {"observation": [{"type": "rotate_180", ...}, {"type": "resize_image", ...}],
                        "action": [{"type": "unnormalize"}, {"type": "binarize_gripper", "flip": false}]},
         "protocol": {...}}
    <bundle>/tokenizer/, main/, draft/   `rvq.hub_format` parts (config.json + model.safetensors); no draft/ in a
                                         main-only bundle
    <bundle>/features.json or backbone/  the feature source, unless the manifest names a hub id
    <bundle>/README.md     the model card (huggingface_hub)

A part's config.json names the sha256 of its weights, and the manifest names the sha256 of each part's config.json:
the manifest pins every byte the policy runs, and a part replaced after the manifest was written is refused.
The policy the bundle declares is observation steps → feature source → heads → tokenizer → action steps
(`rvq.processors`): `processors` lists the steps, the feature identity covers the observation steps, and the action
steps' `unnormalize` is bound to the tokenizer part's statistics. `protocol` holds the evaluation settings the heads
were trained for (for example the chunk's executed steps); `rvq eval` takes them where its own options are not
given.

A version-1 manifest (before processors were declared: its protocol named `image_transform` and `flip_gripper`)
and a folder written before bundles existed (`tokenizer.pt`, `main.pt`, `draft.pt` beside its feature source, no
manifest) still load, read-only, with the steps those settings meant and the same identity checks.

`PolicyBundle` is a `huggingface_hub.ModelHubMixin`: `from_pretrained` takes a folder or a hub id, `save_pretrained`
and `push_to_hub` write or publish the folder above.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import ModelHubMixin

from rvq.backbones import FeatureExtractor
from rvq.backbones import save_backbone
from rvq.backbones.source import load_feature_source
from rvq.backbones.state import FEATURES_FILE, StateFeatures
from rvq.envs.suites import check_suite
from rvq.files import write_bytes_atomic
from rvq.hub_format import CONFIG_NAME, payload_digest
from rvq.models import DraftModel, HeadCheckpoint, MainModel, check_pair, read_draft, read_main
from rvq.models.checkpoint import check_identities
from rvq.processors import (ObservationFeatures, Pipeline, Unnormalize, gripper_flip, image_method,
                            libero_action_steps, libero_observation_steps, observation_features)
from rvq.tokenizer import ActionTokenizer

BUNDLE_FORMAT = "rvq.bundle"
BUNDLE_VERSION = 2
READ_VERSIONS = (1, 2)
MANIFEST_NAME = CONFIG_NAME
PART_NAMES = ("tokenizer", "main", "draft")
LEGACY_FILES = {"tokenizer": "tokenizer.pt", "main": "main.pt", "draft": "draft.pt"}
BACKBONE_DIR, BACKBONE_TXT = "backbone", "backbone.txt"
FEATURE_KINDS = ("state", "backbone", "hub")
PROTOCOL_KEYS = ("suite", "execute_steps", "temporal_ensemble", "exit_tolerance", "exit_depth")
# version 1 declared the steps by these
V1_PROTOCOL_KEYS = ("suite", "execute_steps", "temporal_ensemble", "image_transform", "flip_gripper")
PROCESSOR_KINDS = ("observation", "action")
MODES = ("rsd", "main")


def parts_for(mode: str) -> tuple[str, ...]:
    """The parts a policy of this mode runs: tokenizer and main, and the draft for RSD."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    return ("tokenizer", "main", "draft") if mode == "rsd" else ("tokenizer", "main")


@dataclass(frozen=True)
class BundleLayout:
    """Where a bundle's parts lie and what its manifest promises; for a legacy folder, what its files are.

    `parts`: part name → path (a part folder, or a legacy `.pt` file); `feature_source`: what
    `rvq.backbones.source.load_feature_source` takes (a path or a hub id)."""

    root: Path
    parts: dict[str, Path]
    feature_kind: str
    feature_source: str
    manifest: dict[str, Any] | None  # None: a legacy folder

    @property
    def legacy(self) -> bool:
        return self.manifest is None

    @property
    def protocol(self) -> dict[str, Any]:
        """The evaluation settings (`PROTOCOL_KEYS`; a version-1 manifest's step settings are in `processors`)."""
        return {k: v for k, v in self.manifest["protocol"].items() if k in PROTOCOL_KEYS} if self.manifest else {}

    @property
    def reads_state(self) -> bool:
        """Whether the features come from simulator state (physics only suffices) rather than images."""
        return self.feature_kind == "state"

    def processors(self, image_transform: str | None = None) -> dict[str, Pipeline]:
        """The observation and action steps: the manifest's, a version-1 manifest's protocol settings as steps, or
        LIBERO's defaults for a legacy folder (resized by `image_transform`, default resize). Asking another image
        transform than the bundle declares is refused: its heads were trained on the declared one's features."""
        manifest = self.manifest or {}
        if "processors" in manifest:
            steps = {kind: Pipeline.from_config(manifest["processors"][kind], f"{self.root}: processors.{kind}")
                     for kind in PROCESSOR_KINDS}
        else:
            v1 = manifest.get("protocol", {})
            method = v1.get("image_transform") or ("resize" if manifest else image_transform or "resize")
            observation = Pipeline() if self.reads_state else libero_observation_steps(method)
            steps = {"observation": observation, "action": libero_action_steps(bool(v1.get("flip_gripper")))}
        declared = image_method(steps["observation"])
        if image_transform is not None and declared is not None and image_transform != declared:
            raise ValueError(f"{self.root}: the bundle's heads read images prepared by {declared!r}; image transform "
                             f"{image_transform!r} would give them other features")
        return steps

    def image_transform(self, requested: str | None = None) -> str:
        """The VLA image preprocessing that runs: the declared one (a requested other one is refused), else
        `requested`, else resize."""
        return image_method(self.processors(requested)["observation"]) or requested or "resize"

    def flip_gripper(self, requested: bool | None = None) -> bool:
        """Whether the gripper is flipped: `requested` when given (it replaces the bundle's step), else the bundle's."""
        return gripper_flip(self.processors()["action"]) if requested is None else requested

    def digests(self, mode: str) -> dict[str, str]:
        """What identifies the parts a policy of `mode` runs: the sha256 of each part's config.json (which names its
        weights' sha256) from the manifest, and of its declared steps, or of each legacy `.pt` file (the identity
        evaluations had before)."""
        if self.manifest is None:
            return {LEGACY_FILES[name]: payload_digest(self.parts[name]) for name in parts_for(mode)}
        digests = {name: self.manifest["parts"][name]["config_sha256"] for name in parts_for(mode)}
        if "processors" in self.manifest:  # absent from version 1, whose evaluations keep their identity
            blob = json.dumps(self.manifest["processors"], sort_keys=True).encode()
            digests["processors"] = hashlib.sha256(blob).hexdigest()
        return digests


def read_layout(folder: str | os.PathLike, mode: str = "rsd") -> BundleLayout:
    """A bundle (or legacy) folder → its layout, refusing what `mode` needs but the folder lacks, a manifest that
    does not match its parts, and a folder holding both forms. Reads the manifest and the parts' config.json only."""
    root = Path(folder)
    needed = parts_for(mode)
    if not root.is_dir():
        raise FileNotFoundError(f"policy folder not found: {root}")
    manifest_path = root / MANIFEST_NAME
    legacy_files = [f for f in LEGACY_FILES.values() if (root / f).exists()]
    if not manifest_path.is_file():
        if not legacy_files:
            raise FileNotFoundError(f"{root}: not a policy folder (no {MANIFEST_NAME} manifest of an rvq bundle, and "
                                    f"no {LEGACY_FILES['tokenizer']} / {LEGACY_FILES['main']} of an older one)")
        return _legacy_layout(root, needed)
    if legacy_files:
        raise ValueError(f"{root}: holds a bundle manifest and older checkpoint files {legacy_files}; keep one form")
    manifest = read_manifest(manifest_path)
    missing = [name for name in needed if name not in manifest["parts"]]
    if missing:
        hint = " (a main-only bundle: run it with policy 'main')" if missing == ["draft"] else ""
        raise FileNotFoundError(f"{root}: the bundle has no {missing} part for policy {mode!r}{hint}")
    parts = {}
    for name, entry in manifest["parts"].items():
        path = _inside(root, entry["path"], f"part {name!r}")
        config = path / CONFIG_NAME
        if not config.is_file():
            raise FileNotFoundError(f"{root}: the manifest's part {name!r} has no {config.relative_to(root)}")
        if payload_digest(config) != entry["config_sha256"]:
            raise ValueError(f"{root}: part {name!r} is not the one the manifest was written with ({config} changed "
                             "since); write the bundle again")
        parts[name] = path
    source = manifest["feature_source"]
    if source["kind"] == "hub":
        return BundleLayout(root, parts, "hub", source["id"], manifest)
    path = _inside(root, source["path"], "feature source")
    if not path.exists():
        raise FileNotFoundError(f"{root}: the manifest's feature source {source['path']!r} is missing")
    return BundleLayout(root, parts, source["kind"], str(path), manifest)


def _inside(root: Path, relative: Any, what: str) -> Path:
    """A manifest path, refused unless it names something inside the bundle folder."""
    if not isinstance(relative, str) or not relative or Path(relative).is_absolute() or ".." in Path(relative).parts:
        raise ValueError(f"{root}: the manifest's {what} path must be relative and inside the bundle, got {relative!r}")
    return root / relative


def read_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a bundle manifest's entries (format, version, parts, identities, feature source, protocol)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the bundle manifest {path}: {exc}") from exc
    if not isinstance(data, dict) or data.get("format") != BUNDLE_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ValueError(f"{path}: not an rvq policy bundle manifest (format {found!r}, expected {BUNDLE_FORMAT!r})")
    if data.get("version") not in READ_VERSIONS:
        raise ValueError(f"{path}: bundle version {data.get('version')!r}; this rvq reads versions {READ_VERSIONS}")
    required = ("parts", "tokenizer_identity", "feature_identity", "feature_source", "protocol")
    missing = [k for k in (*required, *(("processors",) if data["version"] >= 2 else ())) if k not in data]
    if missing:
        raise ValueError(f"{path}: the manifest lacks {missing}")
    parts = data["parts"]
    if not isinstance(parts, dict) or not {"tokenizer", "main"} <= set(parts) or set(parts) - set(PART_NAMES):
        raise ValueError(f"{path}: parts must name tokenizer, main and optionally draft, got {parts!r}")
    for name, entry in parts.items():
        if not isinstance(entry, dict) or not isinstance(entry.get("config_sha256"), str) or "path" not in entry:
            raise ValueError(f"{path}: part {name!r} must give 'path' and 'config_sha256', got {entry!r}")
    check_identities(data, f"{path}: ")
    source = data["feature_source"]
    if not isinstance(source, dict) or source.get("kind") not in FEATURE_KINDS:
        raise ValueError(f"{path}: feature_source must have a kind in {FEATURE_KINDS}, got {source!r}")
    field = "id" if source["kind"] == "hub" else "path"
    if not isinstance(source.get(field), str) or not source[field]:
        raise ValueError(f"{path}: a {source['kind']} feature source needs a non-empty {field!r}, got {source!r}")
    keys = PROTOCOL_KEYS if data["version"] >= 2 else V1_PROTOCOL_KEYS
    if not isinstance(data["protocol"], dict) or set(data["protocol"]) - set(keys):
        raise ValueError(f"{path}: protocol must be an object with keys among {keys}, got {data['protocol']!r}")
    check_protocol(data["protocol"], f"{path}: ")
    if "processors" in data:
        processors = data["processors"]
        if not isinstance(processors, dict) or set(processors) != set(PROCESSOR_KINDS):
            raise ValueError(f"{path}: processors must name {PROCESSOR_KINDS} step lists, got {processors!r}")
        for kind in PROCESSOR_KINDS:
            steps = Pipeline.from_config(processors[kind], f"{path}: processors.{kind}")
            if kind == "action":
                check_action_steps(steps, f"{path}: ")
    return data


def check_protocol(protocol: Any, where: str = "", num_layers: int | None = None) -> dict[str, Any]:
    """Refuse a protocol whose values no evaluation could run: an unknown suite, `execute_steps` that is not a whole
    number >= 1, a `temporal_ensemble` decay or `exit_tolerance` that is not a finite number >= 0, an `exit_depth`
    that is not a whole number of layers in [1, num_layers]; naming the setting."""
    if not isinstance(protocol, dict):
        raise ValueError(f"{where}protocol must be an object, got {protocol!r}")

    def whole(value: Any) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    def finite(value: Any) -> bool:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= 0

    for key, value in protocol.items():
        if value is None:
            continue
        if key == "suite":
            try:
                check_suite(value)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"{where}protocol.suite: {exc}") from None
        elif key == "execute_steps" and not (whole(value) and value >= 1):
            raise ValueError(f"{where}protocol.execute_steps must be a whole number >= 1, got {value!r}")
        elif key in ("temporal_ensemble", "exit_tolerance") and not finite(value):
            raise ValueError(f"{where}protocol.{key} must be a finite number >= 0, got {value!r}")
        elif key == "exit_depth" and not (whole(value) and 1 <= value <= (num_layers or value)):
            raise ValueError(f"{where}protocol.exit_depth must be a whole number of layers in [1, "
                             f"{num_layers or 'L'}], got {value!r}")
    return protocol


def check_action_steps(steps: Pipeline, where: str = "") -> Pipeline:
    """Refuse action steps without exactly one `unnormalize` (the tokenizer decodes to normalized actions)."""
    if len(steps.find(Unnormalize)) != 1:
        raise ValueError(f"{where}a token policy's action steps need exactly one 'unnormalize' (its tokenizer decodes "
                         f"normalized actions), got {steps.to_config()}")
    return steps


def _legacy_layout(root: Path, needed: tuple[str, ...]) -> BundleLayout:
    missing = [LEGACY_FILES[name] for name in needed if not (root / LEGACY_FILES[name]).is_file()]
    if missing:
        raise FileNotFoundError(f"{root}: missing {missing} for this policy")
    sources = [p for p in (root / BACKBONE_DIR, root / BACKBONE_TXT, root / FEATURES_FILE) if p.exists()]
    if len(sources) > 1:
        raise ValueError(f"{root}: more than one feature source ({[p.name for p in sources]}); keep one")
    if not sources:
        raise FileNotFoundError(f"{root}: no feature source ({BACKBONE_DIR}/ folder, {BACKBONE_TXT} with the VLA's "
                                f"hub id, or {FEATURES_FILE} with a state-feature layout)")
    parts = {name: root / file for name, file in LEGACY_FILES.items() if (root / file).is_file()}
    found = sources[0]
    if found.name == BACKBONE_TXT:
        return BundleLayout(root, parts, "hub", found.read_text().strip(), None)
    kind = "state" if found.name == FEATURES_FILE else "backbone"
    return BundleLayout(root, parts, kind, str(found), None)


def _load_parts(layout: BundleLayout, mode: str, device: str | torch.device
                ) -> tuple[ActionTokenizer, HeadCheckpoint, HeadCheckpoint | None]:
    """Read the parts `mode` runs (each file once) and check that they belong together and to the manifest."""
    tokenizer = ActionTokenizer.from_checkpoint(layout.parts["tokenizer"], device=device)
    if layout.manifest is not None and tokenizer.identity != layout.manifest["tokenizer_identity"]:
        raise ValueError(f"{layout.root}: the tokenizer part is not the one the manifest names")
    main = read_main(layout.parts["main"], tokenizer_identity=tokenizer.identity, device=device)
    feature_identity = layout.manifest["feature_identity"] if layout.manifest else main.feature_identity
    if main.feature_identity != feature_identity:
        raise ValueError(f"{layout.root}: the main head reads other features than the manifest names")
    draft = None
    if mode == "rsd":
        draft = read_draft(layout.parts["draft"], tokenizer_identity=tokenizer.identity,
                           feature_identity=feature_identity, device=device)
    return tokenizer, main, draft


# parts `verify_bundle` read, kept for this process's next `load_bundle` of the same parts on the CPU (so an inline
# evaluation reads its weights once): keyed by folder, mode and the parts' content digests, taken once
_VERIFIED: dict[tuple[str, str, tuple[tuple[str, str], ...]], tuple] = {}


def _parts_key(layout: BundleLayout, mode: str) -> tuple[str, str, tuple[tuple[str, str], ...]]:
    return str(layout.root), mode, tuple(sorted(layout.digests(mode).items()))


def verify_bundle(folder: str | os.PathLike, mode: str = "rsd") -> BundleLayout:
    """Everything `load_bundle` checks that needs no VLA backbone (cheap: for refusing a run before any simulator
    starts): the layout, every part's hashes, and the identities that tie the parts together (a state-feature layout
    included). A backbone's own identity is checked when it loads."""
    layout = read_layout(folder, mode)
    parts = _load_parts(layout, mode, "cpu")
    _VERIFIED.clear()  # one bundle's parts at most
    _VERIFIED[_parts_key(layout, mode)] = parts
    main = parts[1]
    if layout.reads_state:
        steps = layout.processors()["observation"]
        _check_features(ObservationFeatures(StateFeatures.load(layout.feature_source), steps), main, layout.root)
    return layout


def _check_features(features: ObservationFeatures, main: HeadCheckpoint, root: Path) -> None:
    if features.identity != main.feature_identity:
        raise ValueError(f"{root}: the heads were trained on features of another source than {features.name!r} "
                         f"(identity {main.feature_identity[:12]}… in the heads, {features.identity[:12]}… given)")


def _looks_local(source: str) -> bool:
    """Whether `source` names a local path rather than a hub id `org/name`."""
    path = Path(source)
    return (path.is_absolute() or source.startswith((".", "~")) or source.count("/") != 1
            or path.parts[0] in {p.name for p in Path.cwd().iterdir() if p.is_dir()})


def load_bundle(folder: str | os.PathLike, mode: str = "rsd", device: str = "auto", trust_remote_code: bool = False,
                image_transform: str | None = None) -> "PolicyBundle":
    """Load and verify a bundle (or legacy) folder: the parts `mode` runs, on `device`, with its feature source.
    `trust_remote_code`: let a VLA backbone run code it ships; `image_transform`: the VLA's image preprocessing
    (None: the bundle's protocol, else resize)."""
    layout = read_layout(folder, mode)
    steps = layout.processors(image_transform)
    features = load_feature_source(layout.feature_source, device, trust_remote_code, steps=steps["observation"])
    verified = _VERIFIED.pop(_parts_key(layout, mode), None)
    if verified is not None and torch.device(features.device).type == "cpu":
        tokenizer, main, draft = verified  # verified by this process a moment ago: the same content
    else:
        tokenizer, main, draft = _load_parts(layout, mode, features.device)
    return PolicyBundle(tokenizer, main, draft, features,
                        feature_hub_id=layout.feature_source if layout.feature_kind == "hub" else None,
                        backbone_folder=layout.feature_source if layout.feature_kind == "backbone" else None,
                        protocol=layout.protocol, action_steps=steps["action"], layout=layout)


CARD_TEMPLATE = "---\n{{ card_data }}\n---\n\n{{ body }}\n"


def _steps_text(steps: Pipeline) -> str:
    return " → ".join(f"`{entry.pop('type')}`" + (f" {entry}" if entry else "") for entry in steps.to_config()) or "none"


class PolicyBundle(ModelHubMixin, library_name="rvq", tags=["robotics", "libero", "action-tokenizer", "rfsq"],
                   model_card_template=CARD_TEMPLATE):
    """A token policy's parts, checked to belong together: the observation steps and feature source the heads read
    (`features`, an `rvq.processors.ObservationFeatures`), the main head, the draft (RSD only), the tokenizer and the
    action steps (`actions`), with the protocol settings they were trained for. `main` and `draft` are the models;
    `heads` holds them with their identities and metrics (`rvq.models.HeadCheckpoint`)."""

    def __init__(self, tokenizer: ActionTokenizer, main: HeadCheckpoint, draft: HeadCheckpoint | None = None,
                 features: ObservationFeatures | FeatureExtractor | StateFeatures | None = None,
                 feature_hub_id: str | None = None, backbone_folder: str | os.PathLike | None = None,
                 protocol: dict[str, Any] | None = None, action_steps: Pipeline | None = None,
                 layout: BundleLayout | None = None) -> None:
        """`main`, `draft`: heads as `read_main` / `read_draft` return them (or `HeadCheckpoint(model, tokenizer
        identity, feature identity)` for heads in memory). `features`: a bare source gets LIBERO's observation steps
        (`rvq.processors.observation_features`). A VLA feature source is saved as `feature_hub_id` (a reference:
        weights and code stay on the Hub), or as a copy of `backbone_folder` (the folder it was loaded from, its
        shipped code included), or else written with `save_pretrained`. `action_steps`: default LIBERO's
        (`rvq.processors.libero_action_steps`); their `unnormalize` is bound to the tokenizer's statistics.
        `layout`: where a loaded bundle came from."""
        if feature_hub_id is not None and backbone_folder is not None:
            raise ValueError("give the VLA feature source as a hub id or as a folder, not both")
        if features is None:
            raise ValueError("a policy bundle needs its feature source (a FeatureExtractor or StateFeatures)")
        features = observation_features(features)
        unknown = sorted(set(protocol or {}) - set(PROTOCOL_KEYS))
        if unknown:
            hint = (" (image transform and gripper flip are steps now: the features' observation steps and "
                    "action_steps)" if set(unknown) & {"image_transform", "flip_gripper"} else "")
            raise ValueError(f"unknown protocol setting(s) {unknown}; known: {PROTOCOL_KEYS}{hint}")
        check_protocol(dict(protocol or {}), num_layers=tokenizer.config.num_layers)
        actions = check_action_steps(libero_action_steps() if action_steps is None else action_steps)
        heads = {"main": main, **({"draft": draft} if draft is not None else {})}
        for name, head in heads.items():
            if not isinstance(head, HeadCheckpoint):
                raise TypeError(f"the {name} head must be a HeadCheckpoint (rvq.models.read_{name}, or "
                                f"HeadCheckpoint(model, tokenizer_identity, feature_identity)), got {type(head).__name__}")
            if not isinstance(head.model, DraftModel if name == "draft" else MainModel):
                raise TypeError(f"the {name} head holds a {type(head.model).__name__}")
            if head.tokenizer_identity != tokenizer.identity:
                raise ValueError(f"the {name} head was trained with a different tokenizer "
                                 f"({head.tokenizer_identity[:12]}…, tokenizer {tokenizer.identity[:12]}…)")
            if head.model.feature_dim != features.feature_dim:
                raise ValueError(f"the {name} head reads {head.model.feature_dim}-d features, the feature source "
                                 f"gives {features.feature_dim}")
            _check_features(features, head, Path(layout.root) if layout else Path("."))
            if head.model.config.tokens != tokenizer.tokens:
                raise ValueError(f"the {name} head predicts codes {head.model.config.tokens}, the tokenizer makes "
                                 f"{tokenizer.tokens}")
        if draft is not None:
            check_pair(draft, main)
        self.tokenizer, self.heads, self.features = tokenizer, heads, features
        self.actions = actions.replace(Unnormalize, normalizer=tokenizer.normalizer)
        self.main, self.draft = main.model, (draft.model if draft is not None else None)
        self.feature_hub_id, self.protocol, self.layout = feature_hub_id, dict(protocol or {}), layout
        self.backbone_folder = Path(backbone_folder) if backbone_folder is not None else None

    @property
    def modes(self) -> tuple[str, ...]:
        """The policies this bundle can run."""
        return MODES if self.draft is not None else ("main",)

    @property
    def processors(self) -> dict[str, Pipeline]:
        """The steps around the model: observation (before the feature source) and action (after the tokenizer)."""
        return {"observation": self.features.steps, "action": self.actions}

    def card_body(self) -> str:
        """The model card's text: what the parts are, the steps around them, the held-out metrics, how to run it."""
        config = self.tokenizer.config
        source = self.features.source
        lines = [f"# rvq token policy{' for ' + self.protocol['suite'] if self.protocol.get('suite') else ''}", "",
                 "A policy bundle of rvq: observation steps → feature source → draft and "
                 "main token heads (residual speculative decoding) → RFSQ action tokenizer → action steps.", "",
                 "| part | what |", "|---|---|",
                 f"| tokenizer | {config.quantizer} RFSQ: {config.num_layers} layers × {config.num_levels} levels, "
                 f"{config.hidden_dim} latent dimensions per step, chunks of {config.chunk_size} (identity "
                 f"`{self.tokenizer.identity[:12]}`) |"]
        for name, head in self.heads.items():
            val = (head.metrics or {}).get("val") or {}
            accuracy = val.get("mean_token_accuracy")
            lines.append(f"| {name} head | {type(head.model).__name__}, {sum(p.numel() for p in head.model.parameters()):,}"
                         " parameters" + (f"; held-out mean token accuracy {accuracy:.3f}" if accuracy is not None
                                          else "") + " |")
        if self.draft is None:
            lines.append("| draft head | none: main-only (greedy) decoding |")
        kind = "state features" if isinstance(source, StateFeatures) else "VLA"
        lines += [f"| features | {kind} `{self.features.name}`, {self.features.feature_dim}-d (identity "
                  f"`{self.features.identity[:12]}`) |",
                  f"| observation steps | {_steps_text(self.features.steps)} |",
                  f"| action steps | {_steps_text(self.actions)} |",
                  f"| protocol | {self.protocol or 'none recorded'} |", "",
                  "The manifest (`config.json`) pins each part's hash; the parts' identities are checked together "
                  "when the bundle loads.", "", "```python", "from rvq.policies import PolicyBundle, TokenPolicy", "",
                  'bundle = PolicyBundle.from_pretrained("<this repo or folder>", mode="rsd")',
                  'policy = TokenPolicy(bundle, "rsd")  # act(observation) → [C, 7] raw actions', "```", "",
                  "`rvq eval --checkpoints <folder> --suite <suite> --policy rsd` evaluates it on LIBERO."]
        return "\n".join(lines)

    def generate_model_card(self, *args: Any, **kwargs: Any) -> Any:
        """The mixin's card (tags, library) with `card_body` as its text."""
        return super().generate_model_card(*args, body=self.card_body(), **kwargs)

    def save_pretrained(self, save_directory: str | os.PathLike, **kwargs: Any) -> Any:
        """Write the bundle into `save_directory`, which must be new or empty (parts of another bundle are never
        mixed in). `kwargs`: `huggingface_hub.ModelHubMixin.save_pretrained`'s (`push_to_hub`, `repo_id`, ...)."""
        folder = Path(save_directory)
        if folder.exists() and (not folder.is_dir() or any(folder.iterdir())):
            raise FileExistsError(f"{folder}: a bundle is written into a new or empty folder")
        return super().save_pretrained(folder, **kwargs)

    def _save_pretrained(self, save_directory: Path) -> None:
        root = Path(save_directory)
        self.tokenizer.save(root / "tokenizer")
        for name, head in self.heads.items():
            head.save(root / name)
        if isinstance(self.features.source, StateFeatures):
            self.features.source.save(root)
            source = {"kind": "state", "path": FEATURES_FILE}
        elif self.feature_hub_id is not None:
            source = {"kind": "hub", "id": self.feature_hub_id}
        else:
            if self.backbone_folder is not None:
                shutil.copytree(self.backbone_folder, root / BACKBONE_DIR)
            else:
                save_backbone(self.features.source, root / BACKBONE_DIR)
            source = {"kind": "backbone", "path": BACKBONE_DIR}
        manifest = {"format": BUNDLE_FORMAT, "version": BUNDLE_VERSION,
                    "parts": {name: {"path": name, "config_sha256": payload_digest(root / name / CONFIG_NAME)}
                              for name in ("tokenizer", *self.heads)},
                    "tokenizer_identity": self.tokenizer.identity,
                    "feature_identity": self.heads["main"].feature_identity,
                    "feature_source": source, "protocol": self.protocol,
                    "processors": {kind: steps.to_config() for kind, steps in self.processors.items()}}
        write_bytes_atomic(root / MANIFEST_NAME, json.dumps(manifest, indent=2, sort_keys=True).encode())

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike, **kwargs: Any) -> "PolicyBundle":
        """A bundle from a folder or a hub id (`org/name`; `revision=`, `token=`, `cache_dir=` as huggingface_hub
        takes them), loaded for `mode=` ("rsd" or "main") on `device=`. A missing local folder is refused here rather
        than looked up on the Hub."""
        source = str(pretrained_model_name_or_path)
        if not os.path.isdir(source) and _looks_local(source):
            raise FileNotFoundError(f"policy folder not found: {source} (a hub id looks like org/name)")
        return super().from_pretrained(source, **kwargs)

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None, cache_dir: str | Path | None,
                         force_download: bool, local_files_only: bool, token: str | bool | None,
                         mode: str = "rsd", device: str = "auto", trust_remote_code: bool = False,
                         image_transform: str | None = None, **injected: Any) -> "PolicyBundle":
        # `injected`: the mixin passes manifest entries named like __init__ parameters (`protocol`); the manifest
        # read by `load_bundle` from the same folder is the one that counts
        folder = model_id
        if not os.path.isdir(model_id):
            from huggingface_hub import snapshot_download

            folder = snapshot_download(repo_id=model_id, revision=revision, cache_dir=cache_dir, token=token,
                                       force_download=force_download, local_files_only=local_files_only)
        return load_bundle(folder, mode, device, trust_remote_code, image_transform)
