"""FID/KID with a registered tiny feature extractor (no Inception weights can be downloaded here).

The numbers these tests compute come from a 2-layer random network, not Inception-v3; the
results say so themselves (``inception`` is False and the note names the extractor).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_fidelity import register_feature_extractor
from torch_fidelity.feature_extractor_base import FeatureExtractorBase
from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

from mrbench.evaluation.fidelity import RANDCONV, SliceImages, compute_fidelity
from mrbench.io import InputError

TINY = "test-tiny-features"


class TinyFeatures(FeatureExtractorBase):
    def __init__(self, name, features_list, **kwargs):
        super().__init__(name, features_list)
        torch.manual_seed(1)
        self.net = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3)
        )

    @staticmethod
    def get_provided_features_list():
        return ("8",)

    @staticmethod
    def get_default_feature_layer_for_metric(metric):
        return "8"

    @staticmethod
    def can_be_compiled():
        return False

    @staticmethod
    def get_dummy_input_for_compile():
        return torch.zeros(1, 3, 16, 16, dtype=torch.uint8)

    def forward(self, x):
        return (self.net(x.float() / 255).mean(dim=(2, 3)).double(),)


if TINY not in FEATURE_EXTRACTORS_REGISTRY:
    register_feature_extractor(TINY, TinyFeatures)


def _images(n, kind, seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:16, 0:16]
    base = np.exp(-((yy - 8) ** 2 + (xx - 8) ** 2) / 20.0)
    if kind == "blob":
        return np.clip(base[None] + rng.normal(0, 0.05, (n, 16, 16)), 0, 1)
    return rng.uniform(0, 1, (n, 16, 16))


def test_slice_images_are_uint8_rgb():
    ds = SliceImages(np.full((2, 8, 8), 0.5))
    assert ds[0].dtype == torch.uint8 and ds[0].shape == (3, 8, 8) and int(ds[0][1, 0, 0]) == 128


def test_fid_kid_rank_distributions_and_label_extractor():
    real = _images(24, "blob", 0)
    close = compute_fidelity(_images(24, "blob", 1), real, feature_extractor=TINY, device="cpu")
    far = compute_fidelity(_images(24, "noise", 2), real, feature_extractor=TINY, device="cpu")
    assert far["fid"] > close["fid"] >= 0
    assert far["kid_mean"] > close["kid_mean"]
    assert close["inception"] is False and TINY in close["note"]
    assert "not Inception" in close["note"]
    # the KID subset size is reduced to the number of slices
    assert close["kid_subset_size"] == 24


def test_builtin_randconv_extractor_and_small_sets():
    real = _images(10, "blob", 0)
    res = compute_fidelity(
        _images(8, "noise", 1),
        real,
        feature_extractor=RANDCONV,
        kid_subset_size=1000,
        device="cpu",
    )
    assert res["kid_subset_size"] == 8 and np.isfinite(res["fid"])
    assert res["feature_extractor"] == RANDCONV and res["inception"] is False
    with pytest.raises(InputError, match="at least 2"):
        compute_fidelity(real[:1], real, feature_extractor=TINY, device="cpu")
