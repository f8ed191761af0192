"""The floor baselines: identity and the per-intensity regression."""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils.data import DataLoader

from mrbench.slices import SliceStore
from mrbench_methods import get_plugin


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = torch.mean(((a + 1) / 2 - (b + 1) / 2) ** 2)
    return float(10 * torch.log10(1 / mse))


def test_identity_returns_source() -> None:
    m = get_plugin("identity")()
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    for d in ("a_to_b", "b_to_a"):
        assert torch.equal(m.translate(x, d), x)


def test_intensity_map_recovers_known_mapping() -> None:
    """On data where b = f(a) exactly (inside the mask), the lookup table recovers f."""
    g = torch.Generator().manual_seed(0)
    t1 = torch.rand(64, 1, 16, 16, generator=g) * 1.6 - 0.8
    t2 = -0.5 * t1**2 - 0.3 * t1 + 0.1
    mask = torch.ones_like(t1)
    batch = {"a": t1, "b": t2, "mask_a": mask, "mask_b": mask}
    m = get_plugin("intensity_map")({"bins": 256})
    m.fit(iter([batch]))
    x = torch.linspace(-0.75, 0.75, 50).view(1, 1, 5, 10)
    pred = m.translate(x, "a_to_b")
    assert torch.allclose(pred, -0.5 * x**2 - 0.3 * x + 0.1, atol=0.02)


def test_intensity_map_beats_identity_on_phantom(phantom_store: Path) -> None:
    train, test = SliceStore(phantom_store / "train"), SliceStore(phantom_store / "test")
    m = get_plugin("intensity_map")()
    m.fit(iter(DataLoader(train, batch_size=16)))
    batch = next(iter(DataLoader(test, batch_size=len(test))))
    for d, (src, dst) in {"a_to_b": ("a", "b"), "b_to_a": ("b", "a")}.items():
        floor = _psnr(batch[src], batch[dst])
        mapped = _psnr(m.translate(batch[src], d), batch[dst])
        assert mapped > floor + 3.0, (d, floor, mapped)
