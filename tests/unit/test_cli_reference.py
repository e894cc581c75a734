"""docs/cli.md is generated from the config dataclasses, is current, and describes every option `--help` shows."""

from __future__ import annotations

from pathlib import Path

import pytest

from rvq.cli import COMMANDS, CONFIGS, main
from rvq.cli_reference import config_class, options, reference

DOC = Path(__file__).parents[2] / "docs" / "cli.md"


def test_the_reference_page_is_current() -> None:
    assert set(CONFIGS) == set(COMMANDS)
    assert DOC.read_text() == reference(), "regenerate: python -m rvq.cli_reference > docs/cli.md"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_every_option_is_described_and_is_what_help_shows(command: str, capsys) -> None:
    rows = options(config_class(command))
    assert rows and all(row["description"].strip() for row in rows), [r["flag"] for r in rows if not r["description"]]
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    assert exit_info.value.code == 0
    shown = capsys.readouterr().out
    shown_words = " ".join(shown.replace("│", " ").split())
    for row in rows:
        flag = row["flag"].split(",")[0]
        if flag.startswith("--"):
            assert flag in shown, (command, flag)
        else:  # a positional argument: tyro shows its type, so look for its description
            assert " ".join(row["description"].split()[:4]) in shown_words, (command, flag)
