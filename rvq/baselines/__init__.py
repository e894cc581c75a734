"""Baseline action tokenizers measured against robust RFSQ."""
