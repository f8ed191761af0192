"""HiFi-Syn (reconstruction from the paper): traits that mark it as a reconstruction, the hard-
structure re-weighting, per-structure discrimination restricted to each structure's patches,
the three discrimination levels as switches (its demo-size run: tests/test_method_runs.py)."""

from __future__ import annotations

import torch

from mrbench_methods import get_plugin
from mrbench_methods.hifi_syn import HiFiSyn, hard_structure_weights


def test_traits_mark_a_reconstruction_with_labels() -> None:
    cls = get_plugin("hifi_syn")
    assert cls is HiFiSyn and cls.display_name == "HiFi-Syn"
    assert cls.reconstruction and cls.needs_labels
    assert any("method section" in d for d in cls.deviations)
    assert cls.components({}) == {"Pixel (memory)": True, "Structure": True, "Global": True}
    assert cls.components({"use_structure": False})["Structure"] is False


def test_hard_structures_weigh_more() -> None:
    equal = hard_structure_weights(torch.tensor([0.7, 0.7, 0.7]))
    assert torch.allclose(equal, torch.ones(3))
    losses = torch.tensor([0.2, 1.0, 3.0])
    w = hard_structure_weights(losses)
    assert torch.allclose(w.sum(), torch.tensor(3.0))
    assert w[2] > w[1] > w[0]
    assert (w * losses).mean() > losses.mean()
    # a higher temperature flattens the weights towards 1
    flat = hard_structure_weights(losses, tau=100.0)
    assert (flat - 1).abs().max() < (w - 1).abs().max()


def test_per_structure_loss_only_counts_each_structures_patches() -> None:
    model = HiFiSyn(HiFiSyn.tiny_params, image_size=32)
    logits = torch.zeros(1, 5, 4, 4)
    onehot = torch.zeros(1, 5, 4, 4)
    onehot[:, 1, :2] = 1  # structure 1 on the top half
    onehot[:, 2, 2:] = 1  # structure 2 on the bottom half
    logits[:, 1, :2] = 10.0  # confident "real" on structure 1's patches
    logits[:, 1, 2:] = -10.0  # wrong elsewhere: must not count for structure 1
    per = model._per_structure(logits, onehot, real=True)
    assert per[1] < 1e-3
    assert torch.isclose(per[2], torch.log(torch.tensor(2.0)), atol=1e-5)
    assert per[0] == 0 and per[3] == 0  # absent structures


def test_structure_level_switch_removes_its_losses() -> None:
    torch.manual_seed(0)
    x = torch.rand(2, 1, 32, 32) * 2 - 1
    lab = (torch.rand(2, 1, 32, 32) * 4).floor()
    batch = {"a": x, "b": x.flip(-1), "label_a": lab, "label_b": lab.flip(-1)}
    full = HiFiSyn(HiFiSyn.tiny_params, image_size=32).train_step(batch, 0)
    assert {"struct_a", "struct_b", "D_struct_a", "D_struct_b"} <= set(full)
    off = HiFiSyn({**HiFiSyn.tiny_params, "use_structure": False}, image_size=32)
    losses = off.train_step(batch, 0)
    assert not any(k.startswith(("struct", "D_struct")) for k in losses)
    no_pixel = HiFiSyn({**HiFiSyn.tiny_params, "use_memory_losses": False}, image_size=32)
    assert no_pixel.train_step(batch, 0)["mem_key"] == 0.0
