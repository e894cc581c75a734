"""The README's Python examples run as written, in a folder holding a (mock) main-job run."""

from __future__ import annotations

import re
from pathlib import Path

import torch

from rvq.config_cli import config_from
from rvq.pipeline import PipelineConfig, run_pipeline

README = Path(__file__).parents[2] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_python_examples_run(tmp_path: Path, monkeypatch) -> None:
    cfg = config_from(PipelineConfig, suite="libero_object", tasks=[0], env="mock", demos_per_task=3,
                      tokenizer={"steps": 10}, heads={"steps": 4}, width=32, main_depth=1, batch_size=16, trials=1,
                      workers=1, out_dir=str(tmp_path / "runs" / "pipeline"))
    run_pipeline(cfg, log=lambda _: None)
    monkeypatch.chdir(tmp_path)
    blocks = python_blocks()
    assert len(blocks) == 2
    namespace: dict = {}
    for block in blocks:
        exec(compile(block, str(README), "exec"), namespace)  # noqa: S102 - the README's own examples
    assert namespace["codes"].shape == (4, 8, 16, 8) and namespace["actions"].shape == (4, 8, 7)
    assert torch.isfinite(namespace["actions"]).all()


def test_readme_workflow_commands_parse_with_their_commands_configs() -> None:
    import shlex

    from rvq.config_cli import parse_config
    from rvq.data.phase2 import Phase2DataConfig
    from rvq.eval import EvalConfig
    from rvq.eval.report import EvalReportConfig
    from rvq.expert.collect import CollectConfig
    from rvq.policies.assemble import MakeBundleConfig
    from rvq.training.heads import TrainHeadConfig
    from rvq.training.tokenizer import TrainTokenizerConfig

    configs = {"collect-demos": CollectConfig, "train-tokenizer": TrainTokenizerConfig,
               "build-phase2-data": Phase2DataConfig, "train-draft": TrainHeadConfig, "train-main": TrainHeadConfig,
               "make-bundle": MakeBundleConfig, "eval": EvalConfig, "eval-report": EvalReportConfig}
    block = re.search(r"## Workflow\n\n```bash\n(.*?)```", README.read_text(), flags=re.S).group(1)
    commands = [line.split("  #")[0].strip() for line in block.replace("\\\n", "").splitlines()]
    commands = [shlex.split(line)[1:] for line in commands if line]
    assert [argv[0] for argv in commands] == list(configs)  # every step of the workflow, in order
    for name, *argv in commands:
        fixed = {"kind": name.removeprefix("train-")} if name in ("train-draft", "train-main") else None
        assert parse_config(configs[name], argv, f"rvq {name}", fixed=fixed) is not None
