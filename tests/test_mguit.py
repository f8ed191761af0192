"""MGUIT: official sizes, the memory's read and update rules, the memory as saved state (through
a checkpoint and a SIGKILL-resumed run, bitwise); its demo-size run: tests/test_method_runs.py."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from conftest import RESUME_TRAINING, kill_and_resume

from mrbench.checkpoint import load_checkpoint
from mrbench_methods.mguit import MGUIT
from mrbench_methods.nets.memory import ClassMemory, class_masks

#: REFERENCES section 3b: official MGUIT networks, 1-channel images
OFFICIAL_M = {"enc_c": 9.01, "enc_s": 1.49, "gen": 11.65}
TINY_SPEC = {
    "method": "mguit_tiny",
    "plugin": "mguit",
    "params": {**MGUIT.tiny_params, "dis_scales": 1, "d_iter": 2},
    "training": RESUME_TRAINING,
}


def _count(module: torch.nn.Module) -> float:
    return sum(p.numel() for p in module.parameters()) / 1e6


def test_paper_size_parameter_counts_match_official() -> None:
    model = MGUIT({}, image_size=256)
    for name, official in OFFICIAL_M.items():
        got = _count(getattr(model, name))
        assert abs(got - official) / official < 0.005, f"{name}: {got:.3f} M vs {official} M"
    side = sum(_count(getattr(model, n)) for n in OFFICIAL_M)
    assert abs(side - 22.1) / 22.1 < 0.005, f"generator side {side:.2f} M vs 22.1 M"
    # keys 256-d, values 128-d at H/4; the memory holds no parameters
    assert model.memory.keys.shape[1] == 256 and model.memory.values.shape[2] == 128
    assert not list(model.memory.parameters())
    assert {"memory.keys", "memory.values", "memory.owner"} <= set(model.state_dict())


def test_class_masks_take_the_majority_of_each_block() -> None:
    lab = torch.zeros(1, 1, 8, 8)
    lab[..., :4, :4] = 2
    lab[..., 0, 4] = 3  # one voxel of 16 does not change the block's class
    got = class_masks(lab, 5, (2, 2))
    assert got.tolist() == [[[2, 0], [0, 0]]]


def _unit(v: list[float]) -> torch.Tensor:
    return F.normalize(torch.tensor(v, dtype=torch.float32), dim=0)


def test_memory_read_is_per_class_and_update_follows_the_official_rule() -> None:
    torch.manual_seed(0)
    mem = ClassMemory([2, 1], kdim=2, vdim=3)
    mem.keys.copy_(torch.stack([_unit([1, 0]), _unit([0, 1]), _unit([1, 1])]))
    mem.values.copy_(torch.arange(18, dtype=torch.float32).reshape(2, 3, 3))
    keys0, values0 = mem.keys.clone(), mem.values.clone()
    # one pixel per domain, both of class 0, content along item 0's key
    cont = {d: _unit([1, 0]).reshape(1, 2, 1, 1) for d in ("a", "b")}
    sty = {d: torch.tensor([1.0, 2.0, 3.0]).reshape(1, 3, 1, 1) for d in ("a", "b")}
    cls = {d: torch.zeros(1, 1, 1, dtype=torch.long) for d in ("a", "b")}
    out = mem.step(cont, sty, cls)
    # the pixel's best item (0) moves: 0.25 q + 0.25 q + 0.5 key, normalised -> stays [1, 0]
    assert torch.allclose(out["keys"][0], _unit([1, 0]))
    # item 1 got no pixel: its key is unchanged, its values are halved (official rule)
    assert torch.allclose(out["keys"][1], keys0[1])
    assert torch.allclose(out["values"][:, 1], 0.5 * values0[:, 1])
    # item 0's value: 0.5 instance-normalised style + 0.5 old value
    inorm = (torch.tensor([1.0, 2.0, 3.0]) - 2) / torch.sqrt(torch.tensor(2 / 3 + 1e-5))
    assert torch.allclose(out["values"][0, 0], 0.5 * inorm + 0.5 * values0[0, 0], atol=1e-5)
    # class 2's item is untouched (absent from both images)
    assert torch.equal(out["keys"][2], keys0[2]) and torch.equal(out["values"][:, 2], values0[:, 2])
    # read of the same iteration with the updated memory, over class 0's items only
    w = torch.softmax(_unit([1, 0]) @ out["keys"][:2].t(), 0)
    assert torch.allclose(out["read"][("a", "b")].flatten(), w @ out["values"][1, :2])
    assert out["key_loss"].item() > 0 and out["value_loss"].item() > 0
    # the buffers change only on commit
    assert torch.equal(mem.keys, keys0)
    mem.commit(out["keys"], out["values"])
    assert torch.equal(mem.keys, out["keys"])
    # test time: all classes' keys; a content along item 2's key reads mostly item 2's value
    q = _unit([1, 1]).reshape(1, 2, 1, 1) * 10
    got = mem.read_all(q, "b").flatten()
    w = torch.softmax(q.flatten() @ mem.keys.t(), 0)
    assert torch.allclose(got, w @ mem.values[1])


def test_memory_survives_a_checkpoint_round_trip_and_is_used_at_test_time() -> None:
    torch.manual_seed(0)
    model = MGUIT(MGUIT.tiny_params, image_size=32)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    lab = (torch.rand(2, 1, 32, 32) * 4).floor()
    before = model.memory.keys.clone()
    model.train_step({"a": x, "b": x.flip(-1), "label_a": lab, "label_b": lab.flip(-1)}, 0)
    assert not torch.equal(model.memory.keys, before), "a training step did not update the memory"
    buf = io.BytesIO()
    torch.save(model.full_state(), buf)
    buf.seek(0)
    torch.manual_seed(5)
    clone = MGUIT(MGUIT.tiny_params, image_size=32)
    clone.load_full_state(torch.load(buf, weights_only=True))
    assert torch.equal(clone.memory.keys, model.memory.keys)
    assert torch.equal(clone.memory.values, model.memory.values)
    model.eval()
    clone.eval()
    assert torch.equal(model.translate(x, "a_to_b"), clone.translate(x, "a_to_b"))
    # the translation depends on the memory's target-domain values
    clone.memory.values[1].mul_(-1)
    assert not torch.equal(model.translate(x, "a_to_b"), clone.translate(x, "a_to_b"))


def test_training_without_labels_is_a_clear_error() -> None:
    model = MGUIT(MGUIT.tiny_params, image_size=32)
    x = torch.zeros(1, 1, 32, 32)
    with pytest.raises(KeyError, match="label_a"):
        model.train_step({"a": x, "b": x}, 0)


def test_resume_after_sigkill_is_bitwise_identical(phantom_store: Path, tmp_path: Path) -> None:
    full, resumed, killed = kill_and_resume(phantom_store, tmp_path, TINY_SPEC, "--seed", "3")
    assert "memory.keys" in killed["method"]["model"]
    ca = load_checkpoint(full / "checkpoints/last.pt")
    cb = load_checkpoint(resumed / "checkpoints/last.pt")
    for key in ("memory.keys", "memory.values"):
        assert torch.equal(ca["method"]["model"][key], cb["method"]["model"][key]), key
