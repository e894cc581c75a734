"""`rvq` itself: the command list and the version answer without importing torch."""

from __future__ import annotations

import subprocess
import sys

import rvq


def _run(*args: str) -> subprocess.CompletedProcess:
    code = ("import sys; from rvq.cli import main\n"
            "try:\n    main(sys.argv[1:])\nexcept SystemExit as exc:\n    code = exc.code\n"
            "print('torch imported:', 'torch' in sys.modules)\nsys.exit(code)")
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)


def test_help_and_version_do_not_import_torch() -> None:
    shown = _run("--help")
    assert shown.returncode == 0 and "rvq COMMAND --help" in shown.stdout and "pipeline" in shown.stdout
    assert "torch imported: False" in shown.stdout
    version = _run("--version")
    assert version.returncode == 0 and f"rvq {rvq.__version__}" in version.stdout
    assert "torch imported: False" in version.stdout
    unknown = _run("bogus-command")
    assert unknown.returncode == 2 and "invalid choice: 'bogus-command'" in unknown.stderr


def test_a_user_error_is_one_line_and_rvq_debug_shows_its_traceback(tmp_path, capsys, monkeypatch) -> None:
    import pytest

    from rvq.cli import main

    argv = ["eval-report", str(tmp_path / "missing"), "--out-dir", str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("rvq eval-report: error: no results file or folder")
    monkeypatch.setenv("RVQ_DEBUG", "1")
    with pytest.raises(FileNotFoundError):
        main(argv)


def test_a_run_stopped_by_another_process_is_one_line_and_rvq_debug_shows_that_processs_traceback(
        capsys, monkeypatch) -> None:
    """A worker or policy service failing is not rvq's traceback to show: one line ending with the other process's
    error; RVQ_DEBUG=1 prints that process's traceback too."""
    import pytest

    from rvq import cli
    from rvq.eval.results import EvalStopped

    trace = 'Traceback (most recent call last):\n  File "w.py", line 3, in build\nOSError: weights missing\n'

    def stopped(argv: list[str]) -> int:
        raise EvalStopped.from_traceback("evaluation worker could not start", trace)

    monkeypatch.setitem(cli.COMMANDS, "eval", (stopped, *cli.COMMANDS["eval"][1:]))
    assert cli.main(["eval"]) == 2
    assert capsys.readouterr().err == "rvq eval: error: evaluation worker could not start: OSError: weights missing\n"
    monkeypatch.setenv("RVQ_DEBUG", "1")
    with pytest.raises(EvalStopped):
        cli.main(["eval"])
    assert trace.strip() in capsys.readouterr().err
