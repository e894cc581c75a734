"""Policies for the LIBERO runner: RSD and main-only token policies, demo replay, no-op."""

from rvq.policies.base import Policy, binarize_gripper
from rvq.policies.bundle import PolicyBundle, load_bundle, verify_bundle
from rvq.policies.simple import NoopPolicy, ReplayPolicy
from rvq.policies.token_policy import TokenPolicy, check_checkpoint_dir

POLICIES = ("rsd", "main", "replay", "noop", "expert")

__all__ = ["POLICIES", "NoopPolicy", "Policy", "PolicyBundle", "ReplayPolicy", "TokenPolicy", "binarize_gripper",
           "check_checkpoint_dir", "load_bundle", "verify_bundle"]
