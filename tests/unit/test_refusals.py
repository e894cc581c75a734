"""What rvq refuses: hostile and careless inputs, each with the error type and what its message must name.

One row per case found by the hardening run (issue 13). Every case must raise a clear error naming the
file, key or problem: no silent wrong output, no raw traceback from the CLI (exit code 2, one message).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from mocks.libero_files import write_libero_file
from rvq.config_cli import config_from
from rvq.cli import build_parser, main
from rvq.data import ActionNormalizer, read_demos
from rvq.models import TokenSpace, load_main, save_head
from rvq.rfsq import ActionRFSQAE, load_tokenizer, save_tokenizer
from rvq.tokenizer import ActionTokenizer
from tests.unit.models.helpers import small_main


@dataclass(frozen=True)
class Case:
    name: str
    run: Callable[[Path], object]  # given a fresh folder, does the hostile thing
    error: type[BaseException]
    names: tuple[str, ...]  # substrings the message must contain ("{tmp}" = the case's folder)


# --- builders -----------------------------------------------------------------------------------------


def demo_file(path: Path, actions: list[np.ndarray], **attrs) -> Path:
    """A robomimic/LIBERO-layout file with one demo per array (stored exactly as given)."""
    with h5py.File(path, "w") as f:
        data = f.create_group("data")
        for key, value in attrs.items():
            data.attrs[key] = value
        for i, a in enumerate(actions):
            data.create_group(f"demo_{i}").create_dataset("actions", data=a)
    return path


def good(steps: int = 20, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (steps, 7))


def tokenizer_file(tmp: Path, stats: dict | None = None, poison: str | None = None) -> Path:
    model = ActionRFSQAE().eval()
    if poison:
        with torch.no_grad():
            dict(model.named_parameters())[poison].fill_(float("inf"))
    stats = stats or ActionNormalizer.fit(good(64)).to_dict()
    return save_tokenizer(tmp / "tokenizer.pt", model, action_stats=stats)


def integer_weights(path: Path) -> Path:
    """The checkpoint at `path` with its float weights stored as int64 (its recorded hashes rewritten to match)."""
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = {k: v.to(torch.int64) if v.is_floating_point() else v
                             for k, v in payload["state_dict"].items()}
    torch.save(payload, path)
    return path


def main_file(tmp: Path, nan: bool = False, tokenizer_identity: object = "t" * 64) -> Path:
    model = small_main(tokens=TokenSpace())
    if nan:
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float("nan"))
    path = save_head(tmp / "main.pt", model, "t" * 64, "f" * 64)
    if tokenizer_identity != "t" * 64:
        payload = torch.load(path, weights_only=True)
        payload["tokenizer_identity"] = tokenizer_identity
        torch.save(payload, path)
    return path


def corrupt_object_header(tmp: Path) -> Path:
    """A file whose `actions` object header fails its checksum (HDF5 ≥ 1.10 headers carry one)."""
    path = tmp / "corrupt.hdf5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_group("data").create_group("demo_0").create_dataset("actions", data=good())
    raw = bytearray(path.read_bytes())
    headers = [i for i in range(len(raw)) if raw[i:i + 4] == b"OHDR"]
    last = headers[-1]  # the dataset's header is written last
    raw[last + 8:last + 16] = b"\xff" * 8
    path.write_bytes(bytes(raw))
    return path


def cli(argv: list[str]) -> None:
    """Run the CLI; a refusal must be exit code 2 with one `rvq …: error:` line, re-raised as ValueError."""
    err = io.StringIO()
    with redirect_stderr(err):
        code = main(argv)
    message = err.getvalue()
    if code == 2 and message.startswith(f"rvq {argv[0]}: error:") and "Traceback" not in message:
        raise ValueError(message)
    raise AssertionError(f"expected a clean refusal (exit 2), got exit {code}: {message!r}")


def phase2_args(tmp: Path, data: Path) -> list[str]:
    return ["train-draft", "--data", str(data), "--tokenizer", str(tokenizer_file(tmp)), "--out-dir", str(tmp / "r"),
            "--optim.steps", "1", "--no-progress"]


def resume_with_other_demos(tmp: Path) -> None:
    from rvq.training.tokenizer import TrainTokenizerConfig, train_tokenizer

    for name, seed in (("a", 0), ("b", 1)):
        write_libero_file(tmp / name / "task_demo.hdf5", "reach", num_demos=4, steps=30, seed=seed, images=False)
    base = dict(out_dir=str(tmp / "run"), steps=4, eval_every=2, batch_size=16, device="cpu", progress=False)
    train_tokenizer(config_from(TrainTokenizerConfig, demos=[str(tmp / "a")], **base))
    train_tokenizer(config_from(TrainTokenizerConfig, demos=[str(tmp / "b")], resume=str(tmp / "run" / "last.pt"), **base))


def remote_code_backbone(tmp: Path) -> None:
    from rvq.backbones import FeatureExtractor, build_backbone, save_backbone

    folder = save_backbone(build_backbone("tiny"), tmp / "backbone")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "configuration_evil.EvilConfig"}
    (folder / "config.json").write_text(json.dumps(config))
    marker = tmp / "code-ran"
    (folder / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    try:
        FeatureExtractor.from_pretrained(folder, device="cpu")
    finally:
        assert not marker.exists(), "code from the backbone folder ran"


def shard_without_episodes(tmp: Path) -> None:
    from rvq.eval import EvalConfig

    EvalConfig(suite="libero_spatial", tasks=[0], trials=2, policy="noop", env="mock", out_dir=str(tmp),
               shard=(5, 100)).validate()


CASES = [
    # silent wrong outputs
    Case("demo with 0 action columns among good demos",
         lambda t: read_demos([demo_file(t / "d.hdf5", [good(), np.zeros((20, 0)), good(seed=1)])]),
         ValueError, ("{tmp}/d.hdf5:demo_1", "A > 0", "[20, 0]")),
    Case("bool actions", lambda t: read_demos([demo_file(t / "d.hdf5", [good() > 0])]),
         ValueError, ("{tmp}/d.hdf5:demo_0", "dtype bool")),
    Case("byte-string actions", lambda t: read_demos([demo_file(t / "d.hdf5", [np.full((20, 7), b"0.1")])]),
         ValueError, ("{tmp}/d.hdf5:demo_0", "dtype |S3")),
    Case("complex actions", lambda t: read_demos([demo_file(t / "d.hdf5", [good() + 1j])]),
         ValueError, ("{tmp}/d.hdf5:demo_0", "complex")),
    Case("tokenizer.encode on a bool tensor",
         lambda t: ActionTokenizer.from_checkpoint(tokenizer_file(t)).encode(torch.ones(2, 8, 7, dtype=torch.bool)),
         ValueError, ("raw actions", "torch.bool")),
    Case("tokenizer.encode on a complex tensor",
         lambda t: ActionTokenizer.from_checkpoint(tokenizer_file(t)).encode(torch.ones(2, 8, 7, dtype=torch.cfloat)),
         ValueError, ("raw actions", "complex")),
    Case("tokenizer statistics with NaN",
         lambda t: load_tokenizer(tokenizer_file(t, {**ActionNormalizer.fit(good(64)).to_dict(),
                                                     "low": [float("nan")] + [-1.0] * 6})),
         ValueError, ("{tmp}/tokenizer.pt", "'low'", "NaN", "[0]")),
    Case("tokenizer statistics with low > high",
         lambda t: ActionTokenizer.from_checkpoint(tokenizer_file(
             t, {"kind": "bounds_q99", "low": [1.0] * 7, "high": [-1.0] * 7, "mask": [True] * 6 + [False]})),
         ValueError, ("{tmp}/tokenizer.pt", "low > high", "[0, 1, 2, 3, 4, 5]")),
    Case("inf in the tokenizer's decoder weights",
         lambda t: load_tokenizer(tokenizer_file(t, poison="decoder.2.weight")),
         ValueError, ("{tmp}/tokenizer.pt", "decoder.2.weight", "NaN/inf")),
    Case("main.pt with all-NaN weights", lambda t: load_main(main_file(t, nan=True)),
         ValueError, ("{tmp}/main.pt", "not finite", "NaN/inf")),
    Case("tokenizer weights stored as int64 (were cast: 'actions contains NaN' at encode)",
         lambda t: ActionTokenizer.from_checkpoint(integer_weights(tokenizer_file(t))),
         ValueError, ("{tmp}/tokenizer.pt", "dtype torch.int64 in file, torch.float32 expected")),
    Case("main head weights stored as int64", lambda t: load_main(integer_weights(main_file(t))),
         ValueError, ("{tmp}/main.pt", "dtype torch.int64 in file, torch.float32 expected")),
    # unclear errors
    Case("corrupt HDF5 object header", lambda t: read_demos([corrupt_object_header(t)]),
         ValueError, ("{tmp}/corrupt.hdf5", "corrupt")),
    Case("problem_info that is not JSON",
         lambda t: read_demos([demo_file(t / "d.hdf5", [good()], problem_info="{not json")]),
         ValueError, ("{tmp}/d.hdf5", "problem_info", "not JSON")),
    Case("'data' stored as a dataset", lambda t: read_demos([_data_as_dataset(t / "d.hdf5")]),
         ValueError, ("{tmp}/d.hdf5", "'data' is a Dataset")),
    Case("'actions' stored as a group", lambda t: read_demos([_actions_as_group(t / "d.hdf5")]),
         ValueError, ("{tmp}/d.hdf5:demo_0", "'actions' is a Group")),
    Case("every demo of width 0", lambda t: cli(["train-tokenizer", "--demos", str(
        demo_file(t / "d.hdf5", [np.zeros((20, 0))] * 3)), "--out-dir", str(t / "r"), "--no-progress"]),
         ValueError, ("{tmp}/d.hdf5:demo_0", "A > 0")),
    Case("empty .pt", lambda t: load_tokenizer(_touch(t / "empty.pt")),
         ValueError, ("{tmp}/empty.pt", "empty (0 bytes)")),
    Case("head whose tokenizer_identity is None", lambda t: load_main(main_file(t, tokenizer_identity=None)),
         ValueError, ("{tmp}/main.pt", "tokenizer_identity", "None")),
    Case("model.encode on float64", lambda t: ActionRFSQAE().encode(torch.zeros(2, 8, 7, dtype=torch.float64)),
         ValueError, ("torch.float64", "torch.float32", "convert")),
    Case("model.encode on float16", lambda t: ActionRFSQAE().encode(torch.zeros(2, 8, 7, dtype=torch.float16)),
         ValueError, ("torch.float16", "convert")),
    Case("tokenizer.decode on float codes in a NumPy array",
         lambda t: ActionTokenizer.from_checkpoint(tokenizer_file(t)).decode(np.zeros((1, 8, 16, 8))),
         ValueError, ("codes must be integers", "float64")),
    Case("train-draft --data given a random file",
         lambda t: cli(phase2_args(t, _write(t / "random.h5", np.random.default_rng(0).bytes(4096)))),
         ValueError, ("{tmp}/random.h5", "not a readable HDF5 file")),
    Case("train-draft --data given a truncated file",
         lambda t: cli(phase2_args(t, _truncated_phase2(t))),
         ValueError, ("{tmp}/truncated.h5",)),
    Case("--shard 5/100 with 2 episodes", shard_without_episodes,
         ValueError, ("shard 5/100 holds no episodes", "has 2")),
    Case("resume with different --demos", resume_with_other_demos,
         ValueError, ("{tmp}/run/last.pt", "demos", "train_episodes")),
    Case("backbone folder that ships code", remote_code_backbone,
         ValueError, ("{tmp}/backbone", "--trust-remote-code", "auto_map in config.json")),
]


def _touch(path: Path) -> Path:
    path.write_bytes(b"")
    return path


def _write(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _data_as_dataset(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f.create_dataset("data", data=good())
    return path


def _actions_as_group(path: Path) -> Path:
    with h5py.File(path, "w") as f:
        f.create_group("data").create_group("demo_0").create_group("actions")
    return path


def _truncated_phase2(tmp: Path) -> Path:
    from rvq.data.phase2 import PHASE2_FORMAT

    path = tmp / "truncated.h5"
    with h5py.File(path, "w") as f:
        f.attrs["format"] = PHASE2_FORMAT
        f.create_dataset("features", data=np.random.default_rng(0).normal(size=(4096, 64)).astype(np.float32))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_refused_with_a_message_naming_the_problem(case: Case, tmp_path: Path) -> None:
    with pytest.raises(case.error) as info:
        case.run(tmp_path)
    message = str(info.value)
    for expected in case.names:
        assert expected.replace("{tmp}", str(tmp_path)) in message, (expected, message)


def test_decode_accepts_integer_numpy_codes_like_tensors(tmp_path: Path) -> None:
    tok = ActionTokenizer.from_checkpoint(tokenizer_file(tmp_path))
    codes = np.random.default_rng(0).integers(0, 7, (2, 8, 16, 8))
    assert torch.equal(tok.decode(codes), tok.decode(torch.from_numpy(codes)))


def test_tokenizer_loads_with_device_auto(tmp_path: Path) -> None:
    """`rvq build-phase2-data` passes its default `--device auto` to the tokenizer."""
    tok = ActionTokenizer.from_checkpoint(tokenizer_file(tmp_path), device="auto")
    assert tok.device.type in ("cpu", "cuda")


def test_resume_with_the_same_data_is_accepted(tmp_path: Path) -> None:
    from rvq.training.tokenizer import TrainTokenizerConfig, train_tokenizer

    write_libero_file(tmp_path / "a" / "task_demo.hdf5", "reach", num_demos=4, steps=30, images=False)
    base = dict(demos=[str(tmp_path / "a")], out_dir=str(tmp_path / "run"), eval_every=2, batch_size=16,
                device="cpu", progress=False, steps=4)
    train_tokenizer(config_from(TrainTokenizerConfig, **base))
    report = train_tokenizer(config_from(TrainTokenizerConfig, **base, resume=str(tmp_path / "run" / "last.pt")))
    assert report["best"]["step"] in (2, 4)


def test_help_of_rvq_and_every_subcommand() -> None:
    parser = build_parser()
    assert "train-tokenizer" in parser.format_help()
    subcommands = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction").choices
    assert len(subcommands) >= 10
    for name in ["--help"] + [f"{cmd} --help" for cmd in subcommands]:
        out = io.StringIO()
        with pytest.raises(SystemExit) as exit_info, redirect_stderr(out), redirect_stdout(out):
            main(name.split())
        assert exit_info.value.code == 0, (name, out.getvalue())
        assert "usage: rvq" in out.getvalue(), name
