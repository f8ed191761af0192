"""The method contract, checked for every registered plugin (new methods are picked up alone).

Out-of-tree plugins are checked too: those of installed packages (entry-point group
``mrbench.methods``), of the folders in ``MRBENCH_PLUGIN_PATH`` and of ``pytest --plugin-path
FOLDER``.

Each plugin is built with its ``tiny_params`` at 32 px on the CPU. The checks are what the
trainer relies on: a training step updates the networks and returns finite losses; translation
keeps shape and range in both directions; ``full_state`` survives a ``weights_only`` round trip
exactly (same translations, same next training step); a fixed seed gives identical losses.
Plugins whose ``needs_labels`` trait is set get tissue class maps (``label_t1``/``label_t2``,
classes 0-3 from the synthetic tissue) in their training batches; the others never do.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from conftest import brain_batch, seeded

from mrbench_methods import DIRECTIONS, registry

SIZE = 32
PLUGINS = sorted(registry())


def _batch(seed: int, b: int = 2, labels: bool = False) -> dict[str, torch.Tensor]:
    """Smooth, brain-like random images in [-1, 1] with a disc mask, T2 a function of T1;
    with ``labels``, tissue classes (0 outside the mask, 1-3 by tissue value)."""
    return brain_batch(seed, b, SIZE, labels=labels)


def _labels(name: str) -> bool:
    return bool(registry()[name].needs_labels)


def _build(name: str, seed: int = 0):
    cls = registry()[name]
    torch.manual_seed(seed)
    return cls(dict(cls.tiny_params), image_size=SIZE)


def _fit_or_step(model, batch: dict[str, torch.Tensor], step: int = 0) -> dict[str, float]:
    if not model.trainable:
        model.fit(iter([batch]))
        return {}
    model.train()
    return model.train_step(batch, step)


@pytest.mark.parametrize("name", PLUGINS)
def test_train_step_updates_and_returns_finite_losses(name: str) -> None:
    model = _build(name)
    batch = _batch(1, labels=_labels(name))
    if not model.trainable:
        model.fit(iter([batch]))  # must not fail
        return
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    losses = model.train_step(batch, 0)
    assert losses, f"{name}: train_step returned no losses"
    for key, value in losses.items():
        assert isinstance(value, float), f"{name}: loss {key} is {type(value).__name__}"
        assert math.isfinite(value), f"{name}: loss {key} = {value}"
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, f"{name}: a training step changed no weight"


@pytest.mark.parametrize("name", PLUGINS)
def test_translate_shape_and_range(name: str) -> None:
    model = _build(name)
    batch = _batch(2, labels=_labels(name))
    _fit_or_step(model, batch)
    model.eval()
    for direction in DIRECTIONS:
        src = batch[direction.split("_to_")[0]]
        out = seeded(3, model.translate, src, direction)
        assert out.shape == src.shape, f"{name} {direction}: shape {tuple(out.shape)}"
        assert out.is_floating_point()
        assert torch.isfinite(out).all(), f"{name} {direction}: non-finite output"
        assert out.min() >= -1 and out.max() <= 1, f"{name} {direction}: outside [-1, 1]"
    with pytest.raises(ValueError):
        model.translate(batch["t1"], "t1_to_flair")


@pytest.mark.parametrize("name", PLUGINS)
def test_full_state_round_trip_is_exact(name: str) -> None:
    model = _build(name, seed=0)
    _fit_or_step(model, _batch(4, labels=_labels(name)))
    buf = io.BytesIO()
    torch.save(model.full_state(), buf)
    buf.seek(0)
    state = torch.load(buf, weights_only=True)
    clone = _build(name, seed=123)  # different initial weights, overwritten by the state
    clone.load_full_state(state)
    for key, value in model.state_dict().items():
        assert torch.equal(value, clone.state_dict()[key]), f"{name}: {key} differs after load"
    model.eval()
    clone.eval()
    x = _batch(5, labels=_labels(name))
    for direction in DIRECTIONS:
        src = x[direction.split("_to_")[0]]
        a, b = (seeded(7, m.translate, src, direction) for m in (model, clone))
        assert torch.equal(a, b), f"{name} {direction}: translation differs after load"
    if model.trainable:  # optimiser and extra state: the next step must be the same too
        batch = _batch(6, labels=_labels(name))
        la, lb = (seeded(11, _fit_or_step, m, batch, 1) for m in (model, clone))
        assert la == lb, f"{name}: next step differs after load ({la} vs {lb})"


@pytest.mark.parametrize("name", PLUGINS)
def test_same_seed_same_losses(name: str) -> None:
    runs = []
    for _ in range(2):
        model = _build(name, seed=42)
        losses = [_fit_or_step(model, _batch(8 + s, labels=_labels(name)), s) for s in range(2)]
        model.eval()
        out = seeded(9, model.translate, _batch(10, labels=_labels(name))["t1"], "t1_to_t2")
        runs.append((losses, out))
    assert runs[0][0] == runs[1][0], f"{name}: losses differ between two runs with one seed"
    assert torch.equal(runs[0][1], runs[1][1])
