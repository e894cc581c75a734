"""Scripted LIBERO expert (privileged simulator state): a positive control and a demonstration source."""

from rvq.expert.scripted import ScriptedExpert

__all__ = ["ScriptedExpert"]
