"""CycleGAN: published network sizes at paper size (its short run: tests/test_method_runs.py)."""

from __future__ import annotations

import pytest
import torch

from mrbench_methods import get_plugin
from mrbench_methods.nets.patchgan import PatchDiscriminator, receptive_field
from mrbench_methods.nets.resnet import ResnetGenerator


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def test_paper_size_parameter_counts() -> None:
    # REFERENCES section 3: generator 11.37 M, PatchGAN 2.76 M for one-channel images
    assert _count(ResnetGenerator(1, 1, 64, 9)) / 1e6 == pytest.approx(11.37, abs=0.01)
    assert _count(PatchDiscriminator(1, 64, 3)) / 1e6 == pytest.approx(2.76, abs=0.01)
    assert receptive_field(3) == 70
    # SynDiff's non-diffusive generator: the same network with 6 blocks, 7.83 M
    assert _count(ResnetGenerator(1, 1, 64, 6)) / 1e6 == pytest.approx(7.83, abs=0.01)


def test_paper_defaults_build_the_published_model() -> None:
    cls = get_plugin("cyclegan")
    d = cls.defaults
    assert (d["ngf"], d["ndf"], d["n_blocks"], d["n_layers_d"]) == (64, 64, 9, 3)
    assert (d["lambda_cycle"], d["lambda_identity"], d["pool_size"]) == (10.0, 0.5, 50)
    assert (d["lr"], d["beta1"], d["beta2"]) == (2e-4, 0.5, 0.999)
    assert cls.training_defaults["lr_schedule"] == "linear"
    model = cls({}, image_size=256)
    counts = model.num_parameters()
    assert counts["G_a_to_b"] == counts["G_b_to_a"] == 11_365_633
    assert counts["D_a"] == counts["D_b"] == 2_762_689
    std = model.G_a_to_b.model[1].weight.std().item()
    assert std == pytest.approx(0.02, rel=0.1)  # N(0, 0.02) initialisation
    with pytest.raises(ValueError, match="unknown parameter"):
        cls({"ngf2": 3})
