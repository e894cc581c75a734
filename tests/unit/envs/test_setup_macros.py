"""`rvq setup-libero` performs robosuite's own set-up step: a private macros file (no import-time warnings)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

from rvq.envs.setup import write_robosuite_macros


def test_private_macros_are_a_copy_written_once(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "macros.py").write_text("SIMULATION_TIMESTEP = 0.002\n")
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name: SimpleNamespace(submodule_search_locations=[str(tmp_path)]))
    private = write_robosuite_macros()
    assert private == tmp_path / "macros_private.py" and private.read_text() == "SIMULATION_TIMESTEP = 0.002\n"
    private.write_text("# the user's own settings\n")
    assert write_robosuite_macros().read_text() == "# the user's own settings\n"  # never overwritten
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert write_robosuite_macros() is None
