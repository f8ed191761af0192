"""AttentionGAN v2: the attention-guided generator at paper size, its output rule and CycleGAN's
recipe (its short demo-size run: tests/test_method_runs.py)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from mrbench_methods import get_plugin
from mrbench_methods.cyclegan import CycleGAN
from mrbench_methods.nets.attention_resnet import AttentionResnetGenerator
from mrbench_methods.nets.patchgan import PatchDiscriminator
from mrbench_methods.nets.resnet import ResnetBlock


def _count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_size_parameter_counts() -> None:
    """REFERENCES 3b: generator 11.76 M at one channel (grayscale fix), PatchGAN 2.76 M."""
    model = get_plugin("attentiongan")({}, image_size=256)
    counts = model.num_parameters()
    assert counts["G_a_to_b"] / 1e6 == pytest.approx(11.76, rel=0.005)
    assert counts["G_a_to_b"] == counts["G_b_to_a"] == 11_760_211
    assert counts["D_a"] == counts["D_b"] == 2_762_689
    assert isinstance(model.D_a, PatchDiscriminator)


def test_generator_layout_and_output_rule() -> None:
    torch.manual_seed(0)
    g = AttentionResnetGenerator(1, 1, ngf=8, n_blocks=2, n_candidates=9)
    assert sum(isinstance(m, ResnetBlock) for m in g.encoder) == 2
    assert g.content[-2].out_channels == 9 and g.attention[-1].out_channels == 10
    assert g.attention[-1].kernel_size == (1, 1) and g.content[-2].kernel_size == (7, 7)
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    with torch.no_grad():
        candidates, masks = g.parts(x)
        out = g(x)
    assert candidates.shape == (2, 9, 1, 16, 16) and masks.shape == (2, 10, 16, 16)
    assert torch.allclose(masks.sum(1), torch.ones(2, 16, 16), atol=1e-6)
    assert candidates.abs().max() <= 1
    manual = sum(candidates[:, i] * masks[:, i : i + 1] for i in range(9)) + x * masks[:, 9:]
    assert torch.allclose(out, manual, atol=1e-6)
    # all weight on the input mask: the output is the input
    with torch.no_grad():
        g.attention[-1].weight.zero_()
        g.attention[-1].bias.copy_(torch.tensor([-50.0] * 9 + [50.0]))
        assert torch.allclose(g(x), x, atol=1e-6)
    with pytest.raises(ValueError, match="in_ch"):
        AttentionResnetGenerator(1, 3)


def test_recipe_is_cyclegans() -> None:
    cls = get_plugin("attentiongan")
    assert issubclass(cls, CycleGAN)
    d = cls.defaults
    assert (d["ngf"], d["ndf"], d["n_blocks"], d["n_layers_d"], d["n_candidates"]) == (
        64,
        64,
        9,
        3,
        9,
    )
    assert (d["lambda_cycle"], d["lambda_identity"], d["pool_size"]) == (10.0, 0.5, 50)
    assert (d["lr"], d["beta1"], d["beta2"]) == (2e-4, 0.5, 0.999)
    assert cls.training_defaults["lr_schedule"] == "linear"
    model = cls(cls.tiny_params, image_size=32)
    assert isinstance(model.G_a_to_b, AttentionResnetGenerator)
    std = model.G_a_to_b.encoder[1].weight.std().item()
    assert std == pytest.approx(0.02, rel=0.2)  # N(0, 0.02) initialisation
