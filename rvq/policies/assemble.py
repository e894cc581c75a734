"""`rvq make-bundle`: a tokenizer, trained heads and their feature source → one policy bundle (what eval runs)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal


from rvq.backbones.source import load_feature_source
from rvq.backbones.state import StateFeatures
from rvq.models import read_draft, read_main
from rvq.policies.bundle import PolicyBundle
from rvq.processors import libero_action_steps
from rvq.tokenizer import ActionTokenizer


@dataclass
class MakeBundleConfig:
    """`rvq make-bundle`: tokenizer + heads + feature source → a policy bundle folder. The bundle's manifest records
    what it is (identities, feature source, processor steps, protocol); the paths it was made from are not part of
    it."""

    tokenizer: str  # Phase 1 tokenizer checkpoint
    main: str  # main head checkpoint (rvq train-main)
    # the heads' feature source, as given to build-phase2-data: a VLA hub id (recorded, not copied) or local folder
    # (copied in), state:SUITE, or a features.json
    backbone: str
    out_dir: str  # the bundle folder (new or empty)
    draft: str | None = None  # draft head checkpoint (rvq train-draft); None: a main-only bundle
    suite: str | None = None  # protocol: the suite the heads were trained for
    execute_steps: int | None = None  # protocol: actions of each chunk executed before acting again (None: all)
    temporal_ensemble: float | None = None  # protocol: act every step with the chunks ensembled, this decay
    # protocol: policy main stops its layer passes once the executed action is certified within this many raw action
    # units of the full decode (rvq.rsd.early_exit; None: every layer)
    exit_tolerance: float | None = None
    exit_depth: int | None = None  # protocol: policy main decodes at most this many layers (None: every layer)
    # VLA images, after the 180° turn: resize (Lanczos, OpenVLA) or oft (+ JPEG round trip and the 90% centre crop
    # OFT-trained models expect); the same as build-phase2-data's, which made the heads' features
    image_transform: Literal["resize", "oft"] = "resize"
    flip_gripper: bool = False  # the heads emit the OpenVLA-family gripper ([0, 1], 1 = open): the gripper step flips it
    # run Python code shipped in the backbone folder or hub repo (OpenVLA/OFT need it); off: a backbone that asks
    # for it is refused
    trust_remote_code: bool = False


def make_bundle(cfg: MakeBundleConfig) -> PolicyBundle:
    """Load and cross-check the parts (each head against the tokenizer's and the features' identities), then write
    the bundle to `cfg.out_dir`; returns it."""
    features = load_feature_source(cfg.backbone, "cpu", cfg.trust_remote_code, cfg.image_transform)
    is_state = isinstance(features.source, StateFeatures)
    tokenizer = ActionTokenizer.from_checkpoint(cfg.tokenizer)
    ids = {"tokenizer_identity": tokenizer.identity, "feature_identity": features.identity}
    main = read_main(cfg.main, **ids)
    draft = read_draft(cfg.draft, **ids) if cfg.draft else None
    protocol = {"suite": cfg.suite, "execute_steps": cfg.execute_steps or None,
                "temporal_ensemble": cfg.temporal_ensemble, "exit_tolerance": cfg.exit_tolerance or None,
                "exit_depth": cfg.exit_depth}
    # a VLA named by hub id stays a reference (its weights and code come from the Hub); a local folder is copied in
    local = Path(cfg.backbone).is_dir()
    bundle = PolicyBundle(tokenizer, main, draft, features,
                          feature_hub_id=None if is_state or local else cfg.backbone,
                          backbone_folder=cfg.backbone if local and not is_state else None,
                          protocol={k: v for k, v in protocol.items() if v is not None},
                          action_steps=libero_action_steps(cfg.flip_gripper))
    bundle.save_pretrained(cfg.out_dir)
    return bundle
