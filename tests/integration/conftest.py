"""Fixtures shared by the integration tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mock_bundle(tmp_path_factory) -> Path:
    """A consistent mock policy folder (tiny LLaVA backbone, tokenizer, draft and main heads), made by the script a
    user runs (`mocks/generate_mock_checkpoints.py`, seed 0)."""
    out = tmp_path_factory.mktemp("ck")
    subprocess.run([sys.executable, "mocks/generate_mock_checkpoints.py", "--output-dir", str(out), "--seed", "0"],
                   check=True, capture_output=True)
    return out
