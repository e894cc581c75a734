"""The local policy service: each worker on a connection of its own, so one killed in the middle of a message (or
while waiting for its answer) harms no other worker's requests, and the service stops when asked."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import numpy as np

from mocks.fault_policies import LatencyPolicyFactory
from rvq.eval import EvalConfig
from rvq.eval.policy_service import PolicyService


def test_a_worker_cut_off_mid_message_or_mid_wait_harms_no_other_worker(tmp_path: Path) -> None:
    cfg = EvalConfig(suite="libero_goal", tasks=[0], trials=1, policy="main", env="mock", out_dir=str(tmp_path),
                     render=False, workers=3, device="cpu", episode_timeout=30.0)
    service = PolicyService(cfg, LatencyPolicyFactory(fixed_ms=1.0, per_sample_ms=0.0), max_batch=3,
                            max_wait_ms=5.0)
    try:
        torn, waiting, healthy = (service.connect()(cfg) for _ in range(3))
        # a worker killed while writing a request: a length header promising more bytes than ever come
        os.write(torn.conn.fileno(), struct.pack("!i", 1 << 20) + b"partial")
        torn.conn.close()
        # a worker killed after sending, before its answer
        waiting.conn.send({"obs": {}, "instruction": "x", "sent": 0.0})
        waiting.conn.close()
        healthy.reset("pick up the bowl", 0, 0)
        chunks = [healthy.act({}) for _ in range(5)]
        assert all(np.array_equal(c, chunks[0]) and c.shape == (8, 7) for c in chunks)
        assert service.alive() and service.silent_for() < 5
    finally:
        stats = service.close()
    assert not service.alive()
    assert stats["requests"] == 6  # the healthy worker's 5 and the one sent before its worker died; the torn none
