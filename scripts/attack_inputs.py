"""Hostile and careless inputs against the CLI, as a user would give them (issue 48's attack rerun).

Makes a tiny mock pipeline run, then runs every case in a fresh copy of what it damages and checks the outcome it
must have: `refused` (exit 2, one `rvq CMD: error:` line naming the problem, no traceback) or `runs` (exit 0: the
input is not wrong, or the run says what it found, e.g. a warning). Anything else is a finding: a traceback, a hang,
a silent exit 0 where a refusal was due, a refusal that does not name the problem. Prints one line per case and the
counts by class; exits 1 on any finding.

    PYTHONPATH=. python scripts/attack_inputs.py [--work /tmp/rvq-attack]      # about 5 minutes on CPU-2
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pyarrow as pa
import pyarrow.parquet as pq
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from mocks.libero_files import write_libero_folder  # noqa: E402
from rvq.data.episodes import read_demos  # noqa: E402
from rvq.data.lerobot_write import write_lerobot_dataset  # noqa: E402

RVQ = [sys.executable, "-m", "rvq.cli"]
TINY = ["--env", "mock", "--suite", "libero_spatial", "--tasks", "0", "--workers", "1", "--data.demos-per-task", "2",
        "--tokenizer.steps", "5", "--heads.steps", "5", "--heads.batch-size", "8", "--eval.trials", "1"]
EVAL = ["--suite", "libero_spatial", "--env", "mock", "--tasks", "0", "--workers", "1", "--no-render"]


@dataclass
class Case:
    kind: str  # the class of input: stage records, configs, bundles, results, checkpoints, LeRobot datasets
    name: str
    make: Callable[[Path], list[str]]  # given a fresh folder, damages a copy of something and returns the argv
    expect: str  # "refused" or "runs"
    names: str  # what stderr must contain (the file, key or problem)


def outcome(argv: list[str], cwd: Path, timeout: float = 300) -> tuple[str, str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env, cwd=cwd)
    except subprocess.TimeoutExpired:
        return "hang", ""
    err = done.stderr.strip()
    if "Traceback" in err:
        return "traceback", err.splitlines()[-1]
    errors = [line for line in err.splitlines() if ": error:" in line]
    if done.returncode == 2 and len(errors) == 1:
        return "refused", errors[0]
    return ("runs" if done.returncode == 0 else f"exit {done.returncode}"), (err.splitlines() or [""])[-1]


# --- what the cases damage -------------------------------------------------------------------------------------------


def copy(source: Path, folder: Path) -> Path:
    shutil.copytree(source, folder / source.name)
    return folder / source.name


def edit_json(path: Path, change: Callable[[dict], object]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def stage_case(run: Path, text: str | None = None, change: Callable[[dict], object] | None = None):
    def make(folder: Path) -> list[str]:
        copied = copy(run, folder)
        record = copied / "tokenizer" / "stage.json"
        if change is not None:
            edit_json(record, change)
        else:
            record.write_text(text)
        return [*RVQ, "pipeline", *TINY, "--out-dir", str(copied)]
    return make


def toml_case(body: str):
    def make(folder: Path) -> list[str]:
        (folder / "run.toml").write_text("env = 'mock'\nsuite = 'libero_spatial'\n" + body)
        return [*RVQ, "pipeline", "--config", str(folder / "run.toml"), "--out-dir", str(folder / "run"), "--plan"]
    return make


def manifest_case(bundle: Path, change: Callable[[dict], object] | None = None, part: str = "config.json",
                  text: str | None = None):
    def make(folder: Path) -> list[str]:
        copied = copy(bundle, folder)
        if text is not None:
            (copied / part).write_text(text)
        else:
            edit_json(copied / part, change)
        return [*RVQ, "eval", "--policy", "main", "--checkpoints", str(copied), *EVAL, "--trials", "1",
                "--out-dir", str(folder / "out")]
    return make


def results_case(run: Path, data: bytes | None = None, keep_lines: int | None = None):
    def make(folder: Path) -> list[str]:
        copied = copy(run / "eval_main", folder)
        path = copied / "results.jsonl"
        if data is not None:
            path.write_bytes(data)
        else:
            path.write_text("".join(path.read_text().splitlines(keepends=True)[:keep_lines]))
        return [*RVQ, "eval-report", str(copied), "--out-dir", str(folder / "report")]
    return make


def incomplete_run(folder: Path) -> list[str]:
    out = folder / "eval"
    subprocess.run([*RVQ, "eval", "--policy", "noop", *EVAL, "--trials", "4", "--out-dir", str(out)], check=True,
                   capture_output=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    path = out / "results.jsonl"
    path.write_text("".join(path.read_text().splitlines(keepends=True)[:2]))
    return [*RVQ, "eval-report", str(out), "--out-dir", str(folder / "report")]


def integer_tokenizer(run: Path):
    def make(folder: Path) -> list[str]:
        from safetensors.torch import load_file, save_file

        import hashlib

        copied = copy(run / "tokenizer" / "tokenizer", folder)
        weights = load_file(copied / "model.safetensors")
        save_file({k: v.to(torch.int64) if v.is_floating_point() else v for k, v in weights.items()},
                  copied / "model.safetensors")
        # the recorded hash made to match: a file written so on purpose, not a torn one
        edit_json(copied / "config.json", lambda c: c.__setitem__(
            "weights_sha256", hashlib.sha256((copied / "model.safetensors").read_bytes()).hexdigest()))
        return [*RVQ, "train-draft", "--data", str(run / "phase2" / "phase2.h5"), "--tokenizer", str(copied),
                "--optim.steps", "2", "--out-dir", str(folder / "draft"), "--no-progress"]
    return make


def lerobot_case(source: Path, change: Callable[[Path], object]):
    def make(folder: Path) -> list[str]:
        copied = copy(source, folder)
        change(copied)
        return [*RVQ, "train-tokenizer", "--demos", str(copied), "--optim.steps", "2", "--out-dir",
                str(folder / "tok"), "--no-progress"]
    return make


def info(change: Callable[[dict], object]) -> Callable[[Path], None]:
    return lambda root: edit_json(root / "meta" / "info.json", change)


def frames(change: Callable[[pa.Table], pa.Table]) -> Callable[[Path], None]:
    def edit(root: Path) -> None:  # the file holding episode 1 (v2.1: its own file; v3.0: the one file)
        path = next(p for p in sorted((root / "data").rglob("*.parquet"))
                    if 1 in pq.read_table(p, columns=["episode_index"])["episode_index"].to_pylist())
        pq.write_table(change(pq.read_table(path)), path)
    return edit


def column(table: pa.Table, name: str, values: list, kind=None) -> pa.Table:
    return table.set_column(table.column_names.index(name), name, pa.array(values, type=kind))


def cases(run: Path, lerobot: dict[str, Path]) -> list[Case]:
    bundle = run / "policy" / "bundle"
    out = [
        Case("stage records", "stage.json is a list", stage_case(run, "[]"), "refused", "stage.json: not a stage record"),
        Case("stage records", "stage.json is not JSON", stage_case(run, "{"), "refused", "stage.json: not a stage record"),
        Case("stage records", "stage.json without outputs", stage_case(run, change=lambda r: r.pop("outputs")),
             "refused", "stage.json: not a stage record"),
        Case("stage records", "stage.json outputs a list", stage_case(run, change=lambda r: r.__setitem__("outputs", [1])),
             "refused", "stage.json: not a stage record"),
        Case("stage records", "stage.json fingerprint a number",
             stage_case(run, change=lambda r: r.__setitem__("fingerprint", 5)), "refused", "not a stage record"),
        Case("stage records", "a finished stage's output folder deleted", lambda f: (
            shutil.rmtree(copy(run, f) / "tokenizer" / "tokenizer"),
            [*RVQ, "pipeline", *TINY, "--out-dir", str(f / run.name)])[1], "refused", "is missing; delete its folder"),
        Case("stage records", "stage_started.json not JSON (the stage runs again from scratch)", lambda f: (
            (copy(run, f) / "eval_main" / "stage.json").unlink(),
            (f / run.name / "eval_main" / "stage_started.json").write_text("[1"),
            [*RVQ, "pipeline", *TINY, "--out-dir", str(f / run.name)])[2], "runs", ""),
    ]
    out += [Case("configs", f"TOML {body.strip()!r}", toml_case(body), "refused", names) for body, names in [
        ("[heads]\nlr = inf\n", "heads.lr: expected a finite number, got inf"),
        ("tasks = 'zero'\n", "tasks: expected a list"),
        ("[heads\nlr = 1\n", "not a readable TOML or JSON file"),
        ("heads = 3\n", "heads: expected a table of settings"),
        ("[eval]\npolicies = 'main'\n", "eval.policies: expected a list"),
        ("workers = -1\n", "workers must be >= 1"),
        ("[tokenizer]\nsteps = 0\n", "tokenizer.steps must be >= 1"),
        ("[heads]\nsteps = 5.5\n", "heads.steps: expected a whole number, got 5.5"),
        ("[heads]\nsteps = true\n", "heads.steps: expected a whole number, got True"),
        ("seed = 99999999999999999999\n", "seed: expected a whole number of 64 bits"),
        ("seed = -1\n", "seed: a seed must be >= 0"),
        ("bogus = 1\n", "unknown setting(s) ['bogus']"),
        ("device = 'tpu'\n", "tpu"),
    ]]
    out += [
        Case("configs", "--config names no file", lambda f: [*RVQ, "pipeline", "--config", str(f / "nope.toml")],
             "refused", "nope.toml: not a readable TOML or JSON file"),
    ]
    protocol = lambda key, value: lambda m: m["protocol"].__setitem__(key, value)  # noqa: E731
    out += [Case("bundles", f"manifest {what}", manifest_case(bundle, change), "refused", names)
            for what, change, names in [
        ("protocol.execute_steps 'abc'", protocol("execute_steps", "abc"), "protocol.execute_steps must be a whole number"),
        ("protocol.execute_steps -1", protocol("execute_steps", -1), "protocol.execute_steps must be a whole number"),
        ("protocol.temporal_ensemble NaN", protocol("temporal_ensemble", float("nan")), "protocol.temporal_ensemble"),
        ("protocol.exit_tolerance -1", protocol("exit_tolerance", -1), "protocol.exit_tolerance must be a finite"),
        ("protocol.suite 'bogus'", protocol("suite", "bogus"), "protocol.suite: unknown suite 'bogus'"),
        ("protocol a list", lambda m: m.__setitem__("protocol", []), "protocol must be an object"),
        ("parts without main", lambda m: m["parts"].pop("main"), "parts must name tokenizer, main"),
        ("version 'x'", lambda m: m.__setitem__("version", "x"), "bundle version 'x'"),
        ("an unknown processor", lambda m: m["processors"]["action"].append({"type": "bogus"}),
         "unknown type 'bogus'"),
        ("feature_source null", lambda m: m.__setitem__("feature_source", None), "feature_source must have a kind"),
    ]]
    out += [
        Case("bundles", "manifest not JSON", manifest_case(bundle, text="{"), "refused", "config.json"),
        Case("bundles", "features.json cut short", manifest_case(bundle, part="features.json", text='{"kind": "state"}'),
             "refused", "features.json"),
        Case("bundles", "tokenizer config.json replaced", manifest_case(bundle, part="tokenizer/config.json", text="[]"),
             "refused", "changed since"),
        Case("checkpoints", "tokenizer weights stored as int64 (hash rewritten to match)", integer_tokenizer(run),
             "refused", "dtype torch.int64 in file, torch.float32 expected"),
        Case("results", "results.jsonl bytes that are not UTF-8", results_case(run, data=b"\xff\xfe\x00 x\n"),
             "refused", "no episode records"),
        Case("results", "results.jsonl of a list", results_case(run, data=b"[1, 2]\n"), "refused", "no episode records"),
        Case("results", "a run with 0 of its planned episodes", results_case(run, keep_lines=0), "refused",
             "no episode records"),
        Case("results", "eval-report of a run with 2 of its 4 planned episodes (must say so)", incomplete_run,
             "runs", "2 of 4 planned episodes"),
        Case("results", "eval-report of a folder that does not exist",
             lambda f: [*RVQ, "eval-report", str(f / "nope")], "refused", "no results file or folder"),
    ]
    for version, source in lerobot.items():
        for what, change, expect, names in [
            ("features.action = 5", info(lambda i: i["features"].__setitem__("action", 5)), "refused",
             "features.action must be an object"),
            ("features a list", info(lambda i: i.__setitem__("features", [])), "refused", "no 'action' feature"),
            ("action shape ['x']", info(lambda i: i["features"]["action"].__setitem__("shape", ["x"])), "refused",
             "features.action.shape"),
            ("fps NaN", info(lambda i: i.__setitem__("fps", float("nan"))), "refused", "'fps' must be"),
            ("chunks_size 'x'", info(lambda i: i.__setitem__("chunks_size", "x")), "refused", "'chunks_size' must be"),
            ("total_episodes 'two'", info(lambda i: i.__setitem__("total_episodes", "two")), "refused",
             "'total_episodes' must be"),
            ("info.json not JSON", lambda r: (r / "meta" / "info.json").write_text("{"), "refused", "info.json: not JSON"),
            ("no data files", lambda r: [p.unlink() for p in (r / "data").rglob("*.parquet")], "refused",
             "without data/**/*.parquet"),
            ("an episode's rows lost", frames(lambda t: t.filter(pa.compute.not_equal(t["episode_index"], 1))),
             "refused", "lists episodes the data files do not hold"),
            ("an episode's last frames lost", frames(lambda t: t.filter(pa.compute.invert(pa.compute.and_(
                pa.compute.equal(t["episode_index"], 1), pa.compute.greater_equal(t["frame_index"], 5))))),
             "refused", "the data files hold 5 frames of it"),
            ("frame_index NaN", frames(lambda t: column(t, "frame_index", [float("nan")] + [
                float(x) for x in t["frame_index"].to_pylist()[1:]])), "refused", "['frame_index'] must be whole"),
            ("actions stored as strings", frames(lambda t: column(t, "action", [[str(v) for v in r] for r in
                                                                                t["action"].to_pylist()])),
             "refused", "'action' values must be equal-length lists of numbers"),
            ("an action row null", frames(lambda t: column(t, "action", [None] + t["action"].to_pylist()[1:],
                                                           pa.list_(pa.float32()))),
             "refused", "'action' values must be equal-length lists of numbers"),
            ("the task table missing", lambda r: [p.unlink() for p in (r / "meta").glob("tasks.*")], "refused",
             "not found"),
            ("a data file that is not parquet", lambda r: sorted((r / "data").rglob("*.parquet"))[0].write_bytes(
                b"PAR1 garbage"), "refused", ".parquet"),
            ("data_path template bogus (rvq reads the rows' own indices)",
             info(lambda i: i.__setitem__("data_path", "data/{bogus}.parquet")), "runs", ""),
        ]:
            out.append(Case("LeRobot datasets", f"{version}: {what}", lerobot_case(source, change), expect, names))
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--work", default="/tmp/rvq-attack", help="scratch folder (emptied first)")
    work = Path(parser.parse_args().work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    run = work / "T"
    made = subprocess.run([*RVQ, "pipeline", *TINY, "--out-dir", str(run)], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(ROOT)), cwd=work)
    if made.returncode:
        print(made.stderr[-2000:])
        return 1
    lerobot = {}
    write_libero_folder(work / "demos", ["pick up the bowl", "open the drawer"], num_demos=2, steps=10, image_size=16)
    for version in ("v3.0", "v2.1"):
        lerobot[version] = write_lerobot_dataset(read_demos([work / "demos"], split_arms=False),
                                                 work / f"lerobot_{version}", version=version)
    counts: Counter[tuple[str, str]] = Counter()
    findings = 0
    for number, case in enumerate(cases(run, lerobot)):
        folder = work / f"case{number:03d}"
        folder.mkdir()
        got, line = outcome(case.make(folder), folder)
        ok = got == case.expect and case.names in line
        findings += not ok
        counts[(case.kind, got if ok else f"FINDING ({got})")] += 1
        print(f"{'ok     ' if ok else 'FINDING'} {case.kind:17} {case.name[:60]:60} {got:9} {line[:160]}", flush=True)
    print("\n| class | cases | as expected | findings |\n|---|---|---|---|")
    for kind in dict.fromkeys(k for k, _ in counts):
        total = sum(n for (k, _), n in counts.items() if k == kind)
        bad = sum(n for (k, g), n in counts.items() if k == kind and g.startswith("FINDING"))
        print(f"| {kind} | {total} | {total - bad} | {bad} |")
    return 1 if findings else 0


if __name__ == "__main__":
    raise SystemExit(main())
