"""The policy bundle: one manifest over hub-style parts, verified at load; older `.pt` folders still load."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from mocks.generate_mock_checkpoints import generate
from rvq.envs import MockLiberoEnv
from rvq.envs.mock_env import mock_state_features
from rvq.hub_format import read_payload, write_payload
from rvq.models import HeadCheckpoint, MainConfig, MainModel
from rvq.policies import PolicyBundle, TokenPolicy, load_bundle, verify_bundle
from rvq.policies.bundle import read_layout
from rvq.processors import BinarizeGripper, libero_action_steps, libero_observation_steps
from rvq.rsd import greedy_decode


@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "policy"
    generate(out, seed=0, tokenizer_steps=20)
    return out


def _chunk(folder: Path, mode: str = "rsd") -> np.ndarray:
    policy = TokenPolicy.from_dir(folder, mode=mode, device="cpu")
    env = MockLiberoEnv("libero_object", 2)
    obs = env.reset(0)
    policy.reset(env.instruction, 2, 0)
    return policy.act(obs)


def _legacy_copy(bundle_dir: Path, target: Path) -> Path:
    """The same policy in the layout rvq wrote before bundles: `tokenizer.pt`, `main.pt`, `draft.pt`, `backbone/`."""
    target.mkdir()
    for name in ("tokenizer", "main", "draft"):
        write_payload(target / f"{name}.pt", read_payload(bundle_dir / name))
    shutil.copytree(bundle_dir / "backbone", target / "backbone")
    return target


def _copy(bundle_dir: Path, target: Path) -> Path:
    shutil.copytree(bundle_dir, target)
    return target


def test_manifest_pins_every_part_and_the_bundle_round_trips(bundle_dir: Path, tmp_path: Path) -> None:
    manifest = json.loads((bundle_dir / "config.json").read_text())
    assert manifest["format"] == "rvq.bundle" and set(manifest["parts"]) == {"tokenizer", "main", "draft"}
    assert manifest["feature_source"] == {"kind": "backbone", "path": "backbone"}
    card = (bundle_dir / "README.md").read_text()  # the model card the Hub shows: what this policy is
    assert "library_name: rvq" in card and f"identity `{manifest['tokenizer_identity'][:12]}`" in card
    assert "| draft head | DraftModel" in card and "`rotate_180`" in card and "`binarize_gripper`" in card
    for name in ("tokenizer", "main", "draft"):
        assert {p.name for p in (bundle_dir / name).iterdir()} == {"config.json", "model.safetensors"}
    bundle = PolicyBundle.from_pretrained(bundle_dir, mode="rsd", device="cpu")
    assert bundle.modes == ("rsd", "main") and bundle.tokenizer.identity == manifest["tokenizer_identity"]
    bundle.save_pretrained(tmp_path / "again")  # written again from the loaded objects: the same parts, byte for byte
    again = json.loads((tmp_path / "again" / "config.json").read_text())
    assert again["parts"] == manifest["parts"]
    np.testing.assert_array_equal(_chunk(tmp_path / "again"), _chunk(bundle_dir))
    with pytest.raises(FileExistsError, match="new or empty"):
        bundle.save_pretrained(tmp_path / "again")


def test_a_folder_written_before_bundles_loads_read_only_with_the_same_actions(bundle_dir: Path,
                                                                             tmp_path: Path) -> None:
    legacy = _legacy_copy(bundle_dir, tmp_path / "legacy")
    before = {p.name: p.stat().st_mtime_ns for p in legacy.iterdir()}
    np.testing.assert_array_equal(_chunk(legacy), _chunk(bundle_dir))
    assert {p.name: p.stat().st_mtime_ns for p in legacy.iterdir()} == before  # nothing written into it
    layout = read_layout(legacy, "rsd")
    assert layout.legacy and set(layout.digests("rsd")) == {"tokenizer.pt", "main.pt", "draft.pt"}
    (legacy / "draft.pt").unlink()
    with pytest.raises(FileNotFoundError, match=r"missing \['draft.pt'\]"):
        verify_bundle(legacy, "rsd")
    assert read_layout(legacy, "main").legacy  # main-only still runs
    (legacy / "backbone.txt").write_text("openvla/openvla-7b")
    with pytest.raises(ValueError, match="more than one feature source"):
        verify_bundle(legacy, "main")
    shutil.rmtree(legacy / "backbone")
    (legacy / "backbone.txt").unlink()
    with pytest.raises(FileNotFoundError, match="no feature source"):
        verify_bundle(legacy, "main")


def test_a_part_changed_after_the_manifest_is_refused(bundle_dir: Path, tmp_path: Path) -> None:
    folder = _copy(bundle_dir, tmp_path / "b")
    config = folder / "main" / "config.json"
    meta = json.loads(config.read_text())
    meta["metrics"] = {"edited": True}
    config.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="part 'main' is not the one the manifest was written with"):
        verify_bundle(folder, "main")
    folder = _copy(bundle_dir, tmp_path / "c")  # weights swapped under an intact config.json
    shutil.copy(bundle_dir / "draft" / "model.safetensors", folder / "main" / "model.safetensors")
    with pytest.raises(ValueError, match="is not the file config.json was written with"):
        verify_bundle(folder, "main")


@pytest.mark.parametrize("edit, error", [
    (lambda m: m.update(format="rvq.main"), "not an rvq policy bundle manifest"),
    (lambda m: m.update(version=99), "bundle version 99"),
    (lambda m: m.pop("feature_identity"), r"lacks \['feature_identity'\]"),
    (lambda m: m["parts"]["main"].update(path="../elsewhere"), "relative and inside the bundle"),
    (lambda m: m.update(feature_source={"kind": "webcam"}), "feature_source must have a kind"),
    (lambda m: m.update(protocol={"speed": 2}), "protocol must be an object with keys among"),
    (lambda m: m.update(protocol={"suite": "bogus"}), "protocol.suite: unknown suite 'bogus'"),
    (lambda m: m.update(protocol={"execute_steps": -1}), "protocol.execute_steps must be a whole number >= 1"),
    (lambda m: m.update(protocol={"execute_steps": "abc"}), "protocol.execute_steps must be a whole number >= 1"),
    (lambda m: m.update(protocol={"temporal_ensemble": -1}), "protocol.temporal_ensemble must be a finite number"),
    (lambda m: m.update(protocol={"exit_tolerance": True}), "protocol.exit_tolerance must be a finite number"),
    (lambda m: m.update(protocol={"exit_depth": 0}), "protocol.exit_depth must be a whole number of layers"),
    (lambda m: m.update(tokenizer_identity="0" * 64), "tokenizer part is not the one the manifest names"),
    (lambda m: m.update(feature_identity="0" * 64), "main head reads other features than the manifest names"),
])
def test_a_bad_manifest_is_refused_naming_the_problem(bundle_dir: Path, tmp_path: Path, edit, error: str) -> None:
    folder = _copy(bundle_dir, tmp_path / "b")
    manifest = json.loads((folder / "config.json").read_text())
    edit(manifest)
    (folder / "config.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=error):
        verify_bundle(folder, "main")


def test_missing_pieces_and_mixed_forms_are_refused(bundle_dir: Path, tmp_path: Path) -> None:
    folder = _copy(bundle_dir, tmp_path / "b")
    shutil.copy(folder / "main" / "config.json", tmp_path / "keep.json")
    write_payload(folder / "main.pt", read_payload(folder / "main"))
    with pytest.raises(ValueError, match="keep one form"):
        verify_bundle(folder, "main")
    (folder / "main.pt").unlink()
    shutil.rmtree(folder / "backbone")
    with pytest.raises(FileNotFoundError, match="feature source 'backbone' is missing"):
        verify_bundle(folder, "main")
    with pytest.raises(FileNotFoundError, match="policy folder not found"):
        verify_bundle(tmp_path / "nowhere", "main")
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="not a policy folder"):
        verify_bundle(tmp_path / "empty", "main")


def test_a_main_only_bundle_runs_main_and_refuses_rsd(bundle_dir: Path, tmp_path: Path) -> None:
    full = load_bundle(bundle_dir, "main", device="cpu")
    assert full.draft is None and full.modes == ("main",)  # main mode reads no draft
    full.save_pretrained(tmp_path / "main_only")
    assert not (tmp_path / "main_only" / "draft").exists()
    np.testing.assert_array_equal(_chunk(tmp_path / "main_only", "main"), _chunk(bundle_dir, "main"))
    with pytest.raises(FileNotFoundError, match="main-only bundle: run it with policy 'main'"):
        verify_bundle(tmp_path / "main_only", "rsd")
    with pytest.raises(ValueError, match="needs a draft head"):
        TokenPolicy(full, mode="rsd")


def test_parts_that_do_not_belong_together_are_refused(bundle_dir: Path) -> None:
    bundle = load_bundle(bundle_dir, "rsd", device="cpu")
    torch.manual_seed(3)
    stranger = MainModel(bundle.main.config).eval()
    with pytest.raises(TypeError, match="must be a HeadCheckpoint"):  # a bare model names nothing it was trained for
        PolicyBundle(bundle.tokenizer, stranger, None, bundle.features)
    with pytest.raises(ValueError, match="non-empty hash"):
        HeadCheckpoint(stranger, "", bundle.features.identity)
    with pytest.raises(ValueError, match="different tokenizer"):
        PolicyBundle(bundle.tokenizer, HeadCheckpoint(stranger, "another-tokenizer", bundle.features.identity), None,
                     bundle.features)
    named = HeadCheckpoint(stranger, bundle.tokenizer.identity, bundle.features.identity)
    PolicyBundle(bundle.tokenizer, named, None, bundle.features)  # named for this tokenizer and features: taken
    with pytest.raises(TypeError, match="the draft head holds a MainModel"):
        PolicyBundle(bundle.tokenizer, named, named, bundle.features)
    state = mock_state_features("libero_object")
    with pytest.raises(ValueError, match=r"-d features, the feature source gives"):
        PolicyBundle(bundle.tokenizer, named, None, state)
    with pytest.raises(ValueError, match="unknown protocol setting"):
        PolicyBundle(bundle.tokenizer, named, None, bundle.features, protocol={"speed": 2})


def test_a_state_feature_bundle_names_its_layout(bundle_dir: Path, tmp_path: Path) -> None:
    tokenizer = load_bundle(bundle_dir, "main", device="cpu").tokenizer
    features = mock_state_features("libero_object")
    torch.manual_seed(0)
    head = MainModel(MainConfig(features.feature_dim, tokenizer.tokens, width=32, depth=1, heads=4)).eval()
    PolicyBundle(tokenizer, HeadCheckpoint(head, tokenizer.identity, features.identity), None, features,
                 protocol={"suite": "libero_object", "execute_steps": 4}).save_pretrained(tmp_path / "state")
    layout = verify_bundle(tmp_path / "state", "main")
    assert layout.reads_state and layout.protocol == {"suite": "libero_object", "execute_steps": 4}
    layout_file = tmp_path / "state" / "features.json"
    described = json.loads(layout_file.read_text())
    described["name"] = "another_layout"  # a valid layout, but not the one the heads read
    layout_file.write_text(json.dumps(described))
    with pytest.raises(ValueError, match="trained on features of another source"):
        verify_bundle(tmp_path / "state", "main")


def test_from_pretrained_takes_a_hub_id_and_push_to_hub_uploads_a_loadable_bundle(bundle_dir: Path, tmp_path: Path,
                                                                                monkeypatch) -> None:
    """The Hub is out of reach here: its two entry points are replaced by a local 'hub' folder, so what is tested is
    rvq's side (which calls it makes, and that what it uploads loads back)."""
    import huggingface_hub
    import huggingface_hub.hub_mixin as hub_mixin

    hub = tmp_path / "hub"
    calls: list[dict] = []

    class FakeApi:
        def __init__(self, token=None) -> None:
            pass

        def create_repo(self, repo_id, **kwargs):
            return type("Url", (), {"repo_id": repo_id})()

        def upload_folder(self, repo_id, folder_path, **kwargs):
            calls.append({"upload": repo_id, **kwargs})
            shutil.copytree(folder_path, hub / repo_id)
            return f"https://huggingface.co/{repo_id}"

    def fake_config_download(repo_id, filename, revision=None, **kwargs):
        return str(hub / repo_id / filename)

    def fake_snapshot(repo_id, revision=None, **kwargs):
        calls.append({"snapshot": repo_id, "revision": revision})
        return str(hub / repo_id)

    monkeypatch.setattr(hub_mixin, "HfApi", FakeApi)
    monkeypatch.setattr(hub_mixin, "hf_hub_download", fake_config_download)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot)
    bundle = load_bundle(bundle_dir, "rsd", device="cpu")
    bundle.push_to_hub("lab/rvq-policy")
    assert calls[0]["upload"] == "lab/rvq-policy" and (hub / "lab/rvq-policy" / "config.json").is_file()
    with pytest.raises(FileNotFoundError, match="policy folder not found"):  # a local path is not looked up online
        PolicyBundle.from_pretrained(tmp_path / "nowhere", mode="rsd", device="cpu")
    loaded = PolicyBundle.from_pretrained("lab/rvq-policy", revision="v1", mode="rsd", device="cpu")
    assert calls[-1] == {"snapshot": "lab/rvq-policy", "revision": "v1"}
    assert loaded.layout.digests("rsd") == read_layout(bundle_dir, "rsd").digests("rsd")


def test_eval_takes_unset_options_from_the_bundle_protocol(bundle_dir: Path, tmp_path: Path) -> None:
    from rvq.eval import EvalConfig

    bundle = load_bundle(bundle_dir, "rsd", device="cpu")
    PolicyBundle(bundle.tokenizer, bundle.heads["main"], bundle.heads["draft"], bundle.features,
                 protocol={"execute_steps": 4}, action_steps=libero_action_steps(True)).save_pretrained(tmp_path / "k4")
    common = dict(suite="libero_object", tasks=[0], trials=1, policy="rsd", env="mock", device="cpu",
                  checkpoints=str(tmp_path / "k4"))
    resolved = EvalConfig(**common).validate()
    assert resolved.execute_steps == 4 and resolved.flip_gripper is True
    assert resolved.result_settings()["flip_gripper"] is True  # results record what ran, not "unset"
    assert EvalConfig(**common, flip_gripper=False).validate().flip_gripper is False
    assert EvalConfig(**common, execute_steps=2).validate().execute_steps == 2
    assert EvalConfig(**common, execute_steps=0).validate().execute_steps is None  # 0: whole chunks, explicitly
    whole = EvalConfig(**common, temporal_ensemble=0.01).validate()
    assert whole.execute_steps is None and whole.temporal_ensemble == 0.01
    plain = EvalConfig(**{**common, "checkpoints": str(bundle_dir)}).validate()
    assert plain.execute_steps is None and plain.image_transform == "resize" and plain.flip_gripper is False


def test_eval_runs_the_early_exit_a_bundle_declares(bundle_dir: Path, tmp_path: Path) -> None:
    from rvq.eval import EvalConfig

    bundle = load_bundle(bundle_dir, "rsd", device="cpu")
    PolicyBundle(bundle.tokenizer, bundle.heads["main"], bundle.heads["draft"], bundle.features,
                 protocol={"exit_tolerance": 0.01}).save_pretrained(tmp_path / "exit")
    common = dict(suite="libero_object", tasks=[0], trials=1, env="mock", device="cpu",
                  checkpoints=str(tmp_path / "exit"))
    assert EvalConfig(**common, policy="main").validate().exit_tolerance == 0.01
    assert EvalConfig(**common, policy="main", exit_tolerance=0.0).validate().exit_tolerance is None  # every layer
    assert EvalConfig(**common, policy="main", exit_depth=2).validate().exit_tolerance is None
    assert EvalConfig(**common, policy="rsd").validate().exit_tolerance is None  # RSD runs its own decode
    with pytest.raises(ValueError, match="exit_depth must be a whole number of layers in"):
        PolicyBundle(bundle.tokenizer, bundle.heads["main"], None, bundle.features, protocol={"exit_depth": 9})


def test_make_bundle_assembles_trained_parts_and_refuses_a_foreign_feature_source(bundle_dir: Path, tmp_path: Path,
                                                                                  capsys) -> None:
    from rvq.cli import main

    parts = {name: str(bundle_dir / name) for name in ("tokenizer", "main", "draft")}
    argv = ["make-bundle", "--tokenizer", parts["tokenizer"], "--main", parts["main"], "--draft", parts["draft"],
            "--backbone", str(bundle_dir / "backbone"), "--suite", "libero_object", "--execute-steps", "4"]
    assert main([*argv, "--out-dir", str(tmp_path / "made")]) == 0
    made = verify_bundle(tmp_path / "made", "rsd")
    assert made.digests("rsd") == read_layout(bundle_dir, "rsd").digests("rsd")  # the same parts
    assert made.protocol == {"suite": "libero_object", "execute_steps": 4}
    assert made.processors()["observation"] == libero_observation_steps("resize")
    np.testing.assert_array_equal(_chunk(tmp_path / "made"), _chunk(bundle_dir))
    capsys.readouterr()
    state = ["--backbone", "state:libero_object", "--out-dir", str(tmp_path / "state")]
    assert main([*argv[:-6], *state]) == 2  # heads trained on the tiny VLA's features, not on state features
    assert "different feature extractor" in capsys.readouterr().err
    assert not (tmp_path / "state").exists()


def _rewrite_manifest(folder: Path, change) -> Path:
    path = folder / "config.json"
    manifest = json.loads(path.read_text())
    change(manifest)
    path.write_text(json.dumps(manifest))
    return folder


def test_the_manifest_declares_the_steps_around_the_model(bundle_dir: Path) -> None:
    manifest = json.loads((bundle_dir / "config.json").read_text())
    assert manifest["version"] == 2
    assert manifest["processors"] == {"observation": libero_observation_steps().to_config(),
                                      "action": libero_action_steps().to_config()}
    bundle = load_bundle(bundle_dir, "rsd", device="cpu")
    assert bundle.processors["observation"] == libero_observation_steps()
    assert bundle.actions.steps[0].normalizer is bundle.tokenizer.normalizer  # bound to the tokenizer's statistics
    flipped = TokenPolicy(bundle, "rsd", flip_gripper=True)  # an explicit setting replaces the declared one
    assert flipped.actions.find(BinarizeGripper)[0].flip and not TokenPolicy(bundle, "rsd").flip_gripper
    env = MockLiberoEnv("libero_object", 2)
    obs = env.reset(0)
    plain, turned = TokenPolicy(bundle, "main").act(obs), flipped.act(obs)
    np.testing.assert_array_equal(plain[:, :6], turned[:, :6])
    raw = bundle.tokenizer.decode(greedy_decode(bundle.main, bundle.features.features([obs])))[0, :, 6].numpy()
    np.testing.assert_array_equal(plain[:, 6], np.where(raw > 0, 1.0, -1.0))
    np.testing.assert_array_equal(turned[:, 6], np.where(raw > 0.5, -1.0, 1.0))  # OpenVLA's gripper: 1 = open


def test_a_version_1_manifest_loads_with_the_steps_its_protocol_meant(bundle_dir: Path, tmp_path: Path) -> None:
    def to_v1(manifest: dict) -> None:
        manifest["version"] = 1
        del manifest["processors"]
        manifest["protocol"] = {"execute_steps": 4, "image_transform": "resize", "flip_gripper": True}

    v1 = _rewrite_manifest(_copy(bundle_dir, tmp_path / "v1"), to_v1)
    layout = verify_bundle(v1, "rsd")
    assert layout.protocol == {"execute_steps": 4} and layout.flip_gripper() is True
    assert layout.processors() == {"observation": libero_observation_steps(), "action": libero_action_steps(True)}
    assert "processors" not in layout.digests("rsd")  # version-1 evaluations keep their policy identity
    assert "processors" in read_layout(bundle_dir, "rsd").digests("rsd")
    assert TokenPolicy.from_dir(v1, "main", device="cpu").flip_gripper is True


@pytest.mark.parametrize("change, match", [
    (lambda m: m["processors"]["observation"].append({"type": "sharpen"}), "unknown type 'sharpen'"),
    (lambda m: m["processors"]["action"].pop(0), "exactly one 'unnormalize'"),
    (lambda m: m["processors"].pop("action"), "processors must name"),
    (lambda m: m.pop("processors"), r"lacks \['processors'\]"),
    (lambda m: m["protocol"].update(flip_gripper=True), "protocol must be an object with keys among"),
])
def test_bad_step_declarations_are_refused(bundle_dir: Path, tmp_path: Path, change, match: str) -> None:
    folder = _rewrite_manifest(_copy(bundle_dir, tmp_path / "bad"), change)
    with pytest.raises(ValueError, match=match):
        verify_bundle(folder, "rsd")


def test_other_observation_steps_than_the_heads_were_trained_on_are_refused(bundle_dir: Path, tmp_path: Path) -> None:
    from rvq.eval import EvalConfig

    with pytest.raises(ValueError, match="read images prepared by 'resize'; image transform 'oft'"):
        load_bundle(bundle_dir, "rsd", device="cpu", image_transform="oft")
    with pytest.raises(ValueError, match="prepared by 'resize'"):
        EvalConfig(suite="libero_object", tasks=[0], trials=1, policy="rsd", env="mock", checkpoints=str(bundle_dir),
                   image_transform="oft").validate()

    def unturned(manifest: dict) -> None:  # a manifest edited to skip the 180° turn
        manifest["processors"]["observation"] = manifest["processors"]["observation"][1:]

    folder = _rewrite_manifest(_copy(bundle_dir, tmp_path / "unturned"), unturned)
    assert read_layout(folder).digests("rsd")["processors"] != read_layout(bundle_dir).digests("rsd")["processors"]
    with pytest.raises(ValueError, match="trained on features of another source"):  # the identity covers the steps
        load_bundle(folder, "rsd", device="cpu")


def test_a_bundle_verified_then_loaded_in_one_process_reads_its_parts_once(bundle_dir: Path, tmp_path: Path,
                                                                           monkeypatch) -> None:
    """`rvq eval` verifies a bundle before any simulator starts and then (inline) loads it in the same process:
    the parts verify read are the ones it runs, read once; a part changed in between is read again and refused."""
    import rvq.policies.bundle as bundle_module

    reads: list[str] = []
    load_parts = bundle_module._load_parts
    monkeypatch.setattr(bundle_module, "_load_parts", lambda layout, mode, device: reads.append(mode) or
                        load_parts(layout, mode, device))
    folder = _copy(bundle_dir, tmp_path / "policy")
    verify_bundle(folder, "main")
    loaded = load_bundle(folder, "main", device="cpu")
    assert reads == ["main"] and loaded.main is not None
    load_bundle(folder, "main", device="cpu")  # taken once: a second load reads again
    assert reads == ["main", "main"]
    verify_bundle(folder, "main")
    config = folder / "main" / "config.json"
    config.write_text(config.read_text().replace('"heads"', '"heads" ', 1))  # another content than the manifest's
    with pytest.raises(ValueError, match="is not the one the manifest was written with"):
        load_bundle(folder, "main", device="cpu")
