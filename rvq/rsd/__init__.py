"""Residual speculative decoding: a draft proposes the coarse RFSQ layers, the main model verifies."""

from rvq.rsd.decode import DEFAULT_TAU, greedy_decode, speculative_decode
from rvq.rsd.scripted import ScriptedDraft, forced_proposal
from rvq.rsd.stats import RSDStats, RSDSummary, token_departure

__all__ = ["DEFAULT_TAU", "RSDStats", "RSDSummary", "ScriptedDraft", "forced_proposal", "greedy_decode", "speculative_decode", "token_departure"]
