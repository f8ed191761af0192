"""FID and KID of translated test slices against the real target slices (torch-fidelity).

PSNR and SSIM reward blurry averages; distribution distances show whether the translated
images look like real images of the target contrast. Both compare Inception-v3 features of the
predicted test slices with those of the real target slices of the same test split.

Grey slices in ``[0, 1]`` become ``uint8`` RGB images (the grey value copied to 3 channels), the
input torch-fidelity expects; the Inception extractor resizes them to 299 px itself.

Feature extractors:

- ``inception-v3-compat`` (default): the network of the published FID/KID. Its weights come
  from ``weights_path`` or the torch hub cache (``$TORCH_HOME/hub/checkpoints``); with neither
  available offline, the computation stops with a message saying how to provide them.
- ``mrbench-randconv``: a fixed, randomly initialised 3-layer convolutional network (seed 0,
  64 features), for machines without the Inception weights. Its distances rank methods but are
  NOT comparable with any published FID/KID; every result row says so (``inception: false``).
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

INCEPTION = "inception-v3-compat"
RANDCONV = "mrbench-randconv"


class SliceImages(Dataset):
    """Slices ``(N, S, S)`` in ``[0, 1]`` as ``uint8`` tensors ``(3, S, S)``."""

    def __init__(self, slices: np.ndarray) -> None:
        self.slices = np.asarray(slices, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.slices)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = np.round(np.clip(self.slices[i], 0, 1) * 255).astype(np.uint8)
        return torch.from_numpy(img)[None].expand(3, -1, -1).contiguous()


def _register_randconv() -> None:
    from torch_fidelity import register_feature_extractor
    from torch_fidelity.feature_extractor_base import FeatureExtractorBase
    from torch_fidelity.registry import FEATURE_EXTRACTORS_REGISTRY

    if RANDCONV in FEATURE_EXTRACTORS_REGISTRY:
        return

    class RandConvFeatures(FeatureExtractorBase):
        """Fixed random convolutional features (not Inception; see the module docstring)."""

        def __init__(self, name: str, features_list: list[str], **kwargs: Any) -> None:
            super().__init__(name, features_list)
            gen = torch.Generator().manual_seed(0)
            chans = [3, 16, 32, 64]
            layers: list[torch.nn.Module] = []
            for cin, cout in zip(chans[:-1], chans[1:], strict=True):
                conv = torch.nn.Conv2d(cin, cout, 3, stride=2, padding=1)
                with torch.no_grad():
                    conv.weight.copy_(
                        torch.randn(conv.weight.shape, generator=gen) * (2.0 / (cin * 9)) ** 0.5
                    )
                    conv.bias.zero_()
                layers += [conv, torch.nn.LeakyReLU(0.2)]
            self.net = torch.nn.Sequential(*layers)

        @staticmethod
        def get_provided_features_list() -> tuple[str, ...]:
            return ("64",)

        @staticmethod
        def get_default_feature_layer_for_metric(metric: str) -> str:
            return "64"

        @staticmethod
        def can_be_compiled() -> bool:
            return False

        @staticmethod
        def get_dummy_input_for_compile() -> torch.Tensor:
            return torch.zeros(1, 3, 32, 32, dtype=torch.uint8)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
            feats = self.net(x.float() / 127.5 - 1).mean(dim=(2, 3))
            return (feats.double(),)

    register_feature_extractor(RANDCONV, RandConvFeatures)


def compute_fidelity(
    pred: np.ndarray,
    target: np.ndarray,
    *,
    feature_extractor: str = INCEPTION,
    weights_path: str | Path | None = None,
    kid_subset_size: int = 1000,
    device: str = "auto",
) -> dict[str, Any]:
    """FID and KID of predicted slices against target slices (both ``(N, S, S)`` in [0, 1]).

    ``kid_subset_size`` is reduced to the number of slices where there are fewer (KID needs
    subsets no larger than either set).
    """
    import torch_fidelity

    from mrbench.io import InputError

    _register_randconv()
    n_pred, n_target = len(pred), len(target)
    if min(n_pred, n_target) < 2:
        raise InputError(f"FID/KID need at least 2 slices per set, got {n_pred} and {n_target}")
    subset = int(min(kid_subset_size, n_pred, n_target))
    use_cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    kwargs: dict[str, Any] = {
        "input1": SliceImages(pred),
        "input2": SliceImages(target),
        "fid": True,
        "kid": True,
        "kid_subset_size": subset,
        "feature_extractor": feature_extractor,
        "cuda": use_cuda,
        "cache": False,
        "verbose": False,
        "batch_size": 64,
        "save_cpu_ram": True,  # no DataLoader worker processes: slices are already in memory
    }
    if weights_path:
        if not Path(weights_path).exists():
            raise InputError(f"{weights_path}: feature-extractor weights not found")
        kwargs["feature_extractor_weights_path"] = str(weights_path)
    try:
        res = torch_fidelity.calculate_metrics(**kwargs)
    except (OSError, RuntimeError) as exc:
        if feature_extractor == INCEPTION and not weights_path:
            raise InputError(
                "Inception weights for FID/KID are not available offline "
                f"({str(exc).splitlines()[0] if str(exc) else type(exc).__name__}); "
                "set evaluation.fid.weights_path to pt_inception-2015-12-05-6726825d.pth "
                "or put it in $TORCH_HOME/hub/checkpoints"
            ) from None
        raise
    inception = feature_extractor == INCEPTION
    return {
        "fid": float(res["frechet_inception_distance"]),
        "kid_mean": float(res["kernel_inception_distance_mean"]),
        "kid_std": float(res["kernel_inception_distance_std"]),
        "n_pred": n_pred,
        "n_target": n_target,
        "kid_subset_size": subset,
        "feature_extractor": feature_extractor,
        "inception": inception,
        "note": ""
        if inception
        else f"features from {feature_extractor}, not Inception-v3: not comparable with "
        "published FID/KID",
    }


def _locked_device(requested: str) -> str:
    """``auto``/``cuda``: a GPU locked for this job (:func:`mrbench.training.gpu.acquire_device`,
    the scheduler's choice under SLURM), or the CPU where there is none; the workflow's
    ``fidelity`` jobs ask Snakemake for that GPU, so FID never crowds a training's device."""
    if requested not in ("auto", "cuda"):
        return requested
    from mrbench.io import InputError
    from mrbench.training.gpu import acquire_device

    try:
        slot = acquire_device(requested, wait_s=600.0)
    except RuntimeError as exc:
        raise InputError(f"--device {requested}: {exc}") from None
    print(slot.message, file=sys.stderr)  # stdout carries the result
    return "cuda" if slot.device == "cuda" else "cpu"


def fidelity_of_split(
    pred_dir: str | Path,
    store_dir: str | Path,
    direction: str,
    settings: dict[str, Any],
    device: str = "auto",
) -> dict[str, Any]:
    """FID/KID of one translated test split against its real target slices."""
    from mrbench.evaluation.scoring import prediction_windows
    from mrbench.io import InputError
    from mrbench.pairs import parse_direction
    from mrbench.slices import SliceStore

    try:
        source_mod, target_mod = parse_direction(direction)
    except ValueError as exc:
        raise InputError(str(exc)) from None
    store = SliceStore(store_dir, pair=(source_mod, target_mod))
    device = _locked_device(device)
    preds, targets = [], []
    for subject in store.subjects:
        preds.append(prediction_windows(pred_dir, store, subject))
        targets.append(np.asarray(store.arrays[target_mod][store.subject_rows(subject)]))
    res = compute_fidelity(
        np.concatenate(preds),
        np.concatenate(targets),
        feature_extractor=settings.get("feature_extractor", INCEPTION),
        weights_path=settings.get("weights_path"),
        kid_subset_size=int(settings.get("kid_subset_size", 1000)),
        device=device,
    )
    for key in ("fid", "kid_mean", "kid_std"):
        if not math.isfinite(res[key]):
            res["note"] = (res["note"] + "; " if res["note"] else "") + f"{key} not finite"
    return res
