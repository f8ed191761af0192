"""The method contract, checked for every registered plugin (new methods are picked up alone).

Out-of-tree plugins are checked too: those of installed packages (entry-point group
``mrbench.methods``), of the folders in ``MRBENCH_PLUGIN_PATH`` and of ``pytest --plugin-path
FOLDER``.

Each plugin is built with its ``tiny_params`` at 32 px on the CPU. The checks are what the
trainer relies on: a training step updates the networks and returns finite losses; translation
keeps shape and range in both directions; ``full_state`` survives a ``weights_only`` round trip
exactly (same translations, same next training step); a fixed seed gives identical losses.
Plugins whose ``needs_labels`` trait is set get tissue class maps (``label_a``/``label_b``,
classes 0-3 from the synthetic tissue) in their training batches; the others never do.

The contract is pair-neutral: every plugin also trains and translates on a slice store of a pair
other than T1w/T2w (T2w/FLAIR), and a plugin written against the old T1/T2 keys or directions
fails with one line naming the new contract.
"""

from __future__ import annotations

import io
import math

import pytest
import torch
from conftest import brain_batch, seeded, write_pair_store

from mrbench.pairs import CONTRACT, Batch, ContractError
from mrbench_methods import DIRECTIONS, NEUTRAL_DIRECTIONS, registry
from mrbench_methods.base import split_direction

SIZE = 32
PLUGINS = sorted(registry())


def _batch(seed: int, b: int = 2, labels: bool = False) -> dict[str, torch.Tensor]:
    """Smooth, brain-like random images in [-1, 1] with a disc mask, ``b`` a function of ``a``;
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
        model.translate(batch["a"], "a_to_flair")


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
        out = seeded(9, model.translate, _batch(10, labels=_labels(name))["a"], "a_to_b")
        runs.append((losses, out))
    assert runs[0][0] == runs[1][0], f"{name}: losses differ between two runs with one seed"
    assert torch.equal(runs[0][1], runs[1][1])


# ------------------------------------------------------------------ any contrast pair
@pytest.fixture(scope="module")
def flair_store(tmp_path_factory: pytest.TempPathFactory):
    """A tiny store split holding T1w, T2w and FLAIR, read as the pair (t2, flair)."""
    from mrbench.slices import SliceStore

    folder = write_pair_store(tmp_path_factory.mktemp("pair") / "train", ("t1", "t2", "flair"))
    return lambda labels: SliceStore(folder, labels=labels, pair=("t2", "flair"))


@pytest.mark.parametrize("name", PLUGINS)
def test_every_plugin_trains_and_translates_on_t2_flair(name: str, flair_store) -> None:
    """A batch of the store's (t2, flair) pair, as the trainer builds it: the method trains (or
    fits) on the neutral keys and translates both ways with shape and range kept."""
    from mrbench.training.sampling import collate

    store = flair_store(_labels(name))
    batch = collate([store.pair(i, (i + 3) % len(store)) for i in range(4)])
    assert isinstance(batch, Batch) and batch.contrasts == ("t2", "flair")
    torch.testing.assert_close(batch["a"][0], store.image("t2", 0))
    torch.testing.assert_close(batch["b"][0], store.image("flair", 3))
    model = _build(name)
    losses = _fit_or_step(model, batch)
    assert all(math.isfinite(v) for v in losses.values()), f"{name}: {losses}"
    model.prepare_inference(iter([batch]))
    model.eval()
    paired = collate([store[i] for i in range(2)])
    for direction in NEUTRAL_DIRECTIONS:
        src = paired[direction.split("_to_")[0]]
        out = seeded(3, model.translate, src, direction)
        assert out.shape == src.shape, f"{name} {direction}: shape {tuple(out.shape)}"
        assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1, name


def test_split_direction_is_neutral_and_refuses_old_names() -> None:
    assert DIRECTIONS == NEUTRAL_DIRECTIONS == ("a_to_b", "b_to_a")
    assert split_direction("a_to_b") == ("a", "b") and split_direction("b_to_a") == ("b", "a")
    with pytest.raises(ContractError, match="pair-neutral: batch keys 'a', 'b'"):
        split_direction("t1_to_t2")
    with pytest.raises(ValueError, match="unknown direction 't2_to_flair'"):
        split_direction("t2_to_flair")


#: an out-of-tree plugin written against the old contract: it reads batch["t1"]
OLD_KEYS = """
import torch
from torch import nn
from mrbench_methods.base import TranslationMethod


class OldKeys(TranslationMethod):
    def __init__(self, params=None, image_size=64):
        super().__init__(params, image_size)
        self.w = nn.Parameter(torch.ones(()))

    def train_step(self, batch, step):
        return {"l1": float((batch["t1"] * self.w - batch["t2"]).abs().mean())}

    def translate(self, x, direction):
        return x * self.w if direction == "t1_to_t2" else x
"""


def test_old_contract_plugin_fails_with_one_line_naming_the_new_one() -> None:
    """batch["t1"] and direction == "t1_to_t2" in a plugin of the old contract both raise
    ContractError with one line naming the new keys and directions, never a silent wrong
    branch or a bare KeyError."""
    namespace: dict = {}
    exec(compile(OLD_KEYS, "old_plugin.py", "exec"), namespace)  # noqa: S102 - test source
    model = namespace["OldKeys"]()
    batch = brain_batch(0, 2, 16, contrasts=("t2", "flair"))
    with pytest.raises(ContractError) as err:
        model.train_step(batch, 0)
    text = str(err.value)
    assert "\n" not in text and "batch key 't1'" in text and CONTRACT in text
    direction = NEUTRAL_DIRECTIONS[0]  # what the library hands translate
    with pytest.raises(ContractError, match="name 't1_to_t2' belongs to the old T1/T2"):
        model.translate(batch["a"], direction)


@pytest.mark.parametrize(
    "name", [n for n in PLUGINS if "content_maps" in registry()[n].capabilities]
)
def test_content_maps_take_neutral_domains(name: str) -> None:
    model = _build(name).eval()
    x = _batch(12)["a"]
    with torch.no_grad():
        za, zb = model.content_map(x, "a"), model.content_map(x, "b")
    assert za.shape[0] == zb.shape[0] == x.shape[0]
    with pytest.raises(ContractError, match="domain 't1' belongs to the old T1/T2"):
        model.content_map(x, "t1")
    with pytest.raises(ValueError, match="expected 'a' or 'b'"):
        model.content_map(x, "flair")
