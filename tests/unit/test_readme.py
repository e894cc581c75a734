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
                      tokenizer_steps=10, head_steps=4, head_width=32, main_depth=1, batch_size=16, eval_trials=1,
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
