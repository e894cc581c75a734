"""Decoding the main head over the RFSQ layers: greedy, residual speculative decoding (a draft proposes the coarse
layers, the main model verifies) and certified early exit."""

from rvq.rsd.decode import DEFAULT_TAU, DepthRule, early_exit_decode, greedy_decode, speculative_decode
from rvq.rsd.early_exit import ExitRule, decode_at_depths
from rvq.rsd.scripted import ScriptedDraft, forced_proposal
from rvq.rsd.stats import ExitStats, ExitSummary, RSDStats, RSDSummary, token_departure

__all__ = ["DEFAULT_TAU", "DepthRule", "ExitRule", "ExitStats", "ExitSummary", "RSDStats", "RSDSummary",
           "ScriptedDraft", "decode_at_depths", "early_exit_decode", "forced_proposal", "greedy_decode",
           "speculative_decode", "token_departure"]
