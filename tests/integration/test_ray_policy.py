"""Token policies on Ray policy actors (issue 50), on a local two-node Ray cluster: a head node with the simulators'
CPUs and a second node holding a (fake) GPU, where the policy replica goes. The records equal the inline run's with the
same mock bundle, also when the replica dies mid-run (Ray restarts it and retries the requests in flight)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mocks.fault_policies import ReplicaKillingFactory
from rvq.eval import EvalConfig, run_eval
from rvq.eval.results import read_results
from rvq.eval.runner import build_policy

ray = pytest.importorskip("ray")


@pytest.fixture(scope="module")
def two_nodes():
    """A head node (3 CPUs: the simulator actors) and a node with 1 CPU and 1 GPU (a resource only: the policy
    itself runs on the CPU), as `ray start` would make them on two machines."""
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "num_gpus": 0})
    gpu_node = cluster.add_node(num_cpus=1, num_gpus=1)
    ray.init(address=cluster.address, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield gpu_node.node_id
    ray.shutdown()
    cluster.shutdown()


def outcome(records: list[dict]) -> list[tuple]:
    return sorted((r["task"], r["trial"], r["success"], r["steps"], r["error"], r["policy_stats"]["chunks"],
                   r["policy_stats"]["rsd"]["layer_acceptance"], r["policy_stats"]["rsd"]["mean_main_passes"])
                  for r in records)


def test_one_replica_on_the_gpu_node_serves_every_simulator_and_survives_its_death(
        mock_bundle: Path, two_nodes: str, tmp_path: Path, monkeypatch) -> None:
    import rvq.eval.ray_policy as ray_policy

    common = dict(suite="libero_spatial", tasks=[0, 1], trials=2, policy="rsd", checkpoints=str(mock_bundle), env="mock",
                  device="cpu", max_steps=24, render=True)
    inline = read_results(run_eval(EvalConfig(**common, out_dir=str(tmp_path / "inline")), progress=False))
    # the replica asks for the GPU (as a policy on CUDA does) while its policy runs on the CPU
    monkeypatch.setattr(ray_policy, "replica_resources", lambda cfg: {"num_cpus": 1, "num_gpus": 1})
    config = EvalConfig(**common, out_dir=str(tmp_path / "ray"), executor="ray", workers=2, service_max_wait_ms=20.0)
    factory = ReplicaKillingFactory(build_policy, once_dir=str(tmp_path / "once"), kill_at=3)
    served = read_results(run_eval(config, factory=factory, progress=False))
    assert outcome(served) == outcome(inline)  # bit-equal decodes: padding makes a batch's mates irrelevant
    assert (tmp_path / "once" / "replica-killed").exists()  # the replica died once, mid-run
    stats = json.loads((tmp_path / "ray" / "results.policy_service.json").read_text())["replicas"]
    assert len(stats) == 1 and stats[0]["node"] == two_nodes  # on the node with the GPU
    assert set(stats[0]["batch_sizes"]) <= {"1", "2"} and stats[0]["max_batch"] == 2
    assert ray.is_initialized()  # a cluster the run joined stays up


def test_policy_replicas_need_a_ray_executor_and_a_token_policy(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--policy-replicas 2"):
        EvalConfig(suite="libero_spatial", policy="noop", env="mock", executor="ray", workers=2, policy_replicas=2,
                   out_dir=str(tmp_path)).validate()
    with pytest.raises(ValueError, match="--policy-replicas 0"):
        EvalConfig(suite="libero_spatial", policy="noop", env="mock", policy_replicas=0,
                   out_dir=str(tmp_path)).validate()
