"""DisDiff and its Table 2 ablation variants: one plugin, four configurations.

The generic contract test builds each registered plugin once with its ``tiny_params``; the
variants of DisDiff are parameters, so each is checked here explicitly: it builds, trains a step
with the losses of its modules only, translates both ways deterministically under a seed and
survives a ``weights_only`` state round trip. Then: the inference attribute code, the content
discriminator's effect on the content maps and paper-size parameter counts (the short training run
and the Fig. 3 figure of its model: tests/test_method_runs.py).
"""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
import torch
from conftest import brain_batch, seeded

from mrbench_methods import get_plugin
from mrbench_methods.nets.drit import ContentDiscriminator, Disentangler

SIZE = 32

#: the config entries of the four variants (Table 2 of the paper), as in config/config.yaml
VARIANTS = {
    "disdiff": {},
    "disdiff_no_dc": {"use_content_discriminator": False},
    "disdiff_dis_only": {"use_diffusion": False, "use_content_discriminator": False},
    "disdiff_diff_only": {"use_disentanglement": False, "use_content_discriminator": False},
}
#: loss names each module must (and must not) log
DIS_LOSSES = {"self_recon", "cross_cycle", "kl", "g_image_adv", "d_image"}
DIFF_LOSSES = {"g_diffusion_adv", "diffusion_cycle", "d_diffusion"}
DC_LOSSES = {"d_content", "g_content_adv"}


def disdiff_cls():
    return get_plugin("disdiff")


def build(variant: str, seed: int = 0, size: int = SIZE, **extra):
    cls = disdiff_cls()
    torch.manual_seed(seed)
    return cls({**cls.tiny_params, **VARIANTS[variant], **extra}, image_size=size)


def _brains(seed: int, b: int = 4) -> dict[str, torch.Tensor]:
    """Paired brain-like slices (:func:`conftest.brain_batch`, from 5 x 5 px of noise)."""
    return brain_batch(seed, b, SIZE, coarse=5)


# ------------------------------------------------------------------------ variants
@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_variant_builds_trains_and_translates(variant: str) -> None:
    model = build(variant)
    want_dis = variant != "disdiff_diff_only"
    want_diff = variant != "disdiff_dis_only"
    want_dc = variant == "disdiff"
    assert hasattr(model, "disentangler") == want_dis
    assert hasattr(model, "diff_gen") == want_diff
    assert hasattr(model, "content_dis") == want_dc
    assert set(model.optimizers()) == {"gen", "dis"} | ({"content_dis"} if want_dc else set())
    expected_ema = {"disentangler"} if want_dis else set()
    assert set(model.ema_modules()) == expected_ema | ({"diff_gen"} if want_diff else set())
    assert model.training_defaults == {"lr_schedule": "plateau", "lr_patience": 2}
    for opt in model.optimizers().values():
        for group in opt.param_groups:
            assert group["lr"] == 1e-4 and group["betas"] == (0.5, 0.9)

    batch = _brains(1)
    before = {k: v.detach().clone() for k, v in model.state_dict().items()}
    model.train()
    losses = model.train_step(batch, 0)  # step 0 carries the R1 penalty
    assert all(isinstance(v, float) and math.isfinite(v) for v in losses.values()), losses
    keys = set(losses)
    assert (keys >= DIS_LOSSES) == want_dis and not (DIS_LOSSES & keys and not want_dis)
    assert (keys >= DIFF_LOSSES) == want_diff and not (DIFF_LOSSES & keys and not want_diff)
    assert (keys >= DC_LOSSES) == want_dc and not (DC_LOSSES & keys and not want_dc)
    if want_diff:
        assert {"r1_a", "r1_b"} <= keys
    # every network got an update
    for name in model.num_parameters():
        moved = [
            k for k, v in model.state_dict().items()
            if k.startswith(name + ".") and not torch.equal(v, before[k])
        ]  # fmt: skip
        assert moved, f"{variant}: {name} was not updated"

    model.eval()
    outputs = {}
    for direction, src in (("a_to_b", "a"), ("b_to_a", "b")):
        out, again = (seeded(5, model.translate, batch[src], direction) for _ in range(2))
        assert out.shape == batch[src].shape
        assert torch.isfinite(out).all() and out.min() >= -1 and out.max() <= 1
        assert torch.equal(out, again), f"{variant} {direction}: not deterministic under a seed"
        outputs[direction] = out

    # weights_only round trip: a differently initialised model translates identically
    buf = io.BytesIO()
    torch.save(model.full_state(), buf)
    buf.seek(0)
    fresh = build(variant, seed=1)
    fresh.load_full_state(torch.load(buf, weights_only=True))
    fresh.eval()
    for direction, src in (("a_to_b", "a"), ("b_to_a", "b")):
        assert torch.equal(seeded(5, fresh.translate, batch[src], direction), outputs[direction])


def test_variant_translation_paths_use_their_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    """dis_only decodes G^j(z_c, z_a) without sampling; diffusion variants call their sampler
    4 times (T = 4) with the content map and attribute code (or the source image)."""
    x = _brains(2)["a"]
    dis_only = build("disdiff_dis_only").eval()
    zc = dis_only.disentangler.content(x, "a", noise=False)
    za = dis_only.attr_mean_b[None].expand(x.shape[0], -1)
    expected = dis_only.disentangler.decode(zc, za, "b").clamp(-1, 1)
    assert torch.allclose(dis_only.translate(x, "a_to_b"), expected)

    for variant in ("disdiff", "disdiff_diff_only"):
        model = build(variant).eval()
        calls: list[dict] = []
        gen = model.diff_gen["b"]
        original = gen.forward

        def spy(xin, t, z=None, cond=None, style=None, _orig=original, _calls=calls):
            _calls.append({"in_ch": xin.shape[1], "cond": cond, "style": style, "t": t.clone()})
            return _orig(xin, t, z, cond=cond, style=style)

        monkeypatch.setattr(gen, "forward", spy)
        model.translate(x, "a_to_b")
        assert [int(c["t"][0]) for c in calls] == [3, 2, 1, 0]
        if variant == "disdiff":
            content = model.disentangler.content(x, "a", noise=False)
            assert all(torch.equal(c["cond"], content) for c in calls)
            assert all(torch.equal(c["style"][0], model.attr_mean_b) for c in calls)
            assert all(c["in_ch"] == 1 for c in calls)
        else:
            assert all(c["cond"] is None and c["in_ch"] == 2 for c in calls)
        monkeypatch.undo()


def test_trainer_applies_the_papers_plateau_schedule() -> None:
    """Section 3.2: lr x0.1 after 2 validations without improvement, unless the config says else."""
    from mrbench.training.settings import resolve_training

    training = resolve_training(disdiff_cls(), {})
    assert (training["lr_schedule"], training["lr_patience"], training["lr_factor"]) == (
        "plateau",
        2,
        0.1,
    )
    assert resolve_training(disdiff_cls(), {"lr_schedule": "constant"})["lr_schedule"] == "constant"


def test_bad_parameters_are_rejected() -> None:
    cls = disdiff_cls()
    with pytest.raises(ValueError, match="cannot both be false"):
        cls({**cls.tiny_params, "use_disentanglement": False, "use_diffusion": False}, SIZE)
    with pytest.raises(ValueError, match="use_content_discriminator needs"):
        cls({**cls.tiny_params, "use_disentanglement": False}, SIZE)
    with pytest.raises(ValueError, match="attribute_mode"):
        cls({**cls.tiny_params, "attribute_mode": "random"}, SIZE)
    with pytest.raises(ValueError, match="unknown parameter"):
        cls({"lambda_cycle": 1.0}, SIZE)
    with pytest.raises(ValueError, match="divisible"):
        cls({**cls.tiny_params, "content_down": 3}, 20)


# ----------------------------------------------------------------- attribute codes
def test_inference_attribute_is_the_training_mean_and_lives_in_the_state() -> None:
    model = build("disdiff_dis_only")
    batches = [_brains(s, b=3) for s in (10, 11)]
    model.train()
    model.train_step(batches[0], 0)
    running = model.attr_mean_b.clone()
    assert running.abs().sum() > 0, "the running mean is updated during training"
    model.eval()
    model.prepare_inference(iter(batches))
    with torch.no_grad():
        mus = [model.disentangler.attribute(b["b"], "b")[1] for b in batches]
    assert torch.allclose(model.attr_mean_b, torch.cat(mus).mean(0), atol=1e-6)
    state = model.state_dict()
    assert "attr_mean_a" in state and "attr_mean_b" in state
    # deterministic with the mean code; the prior option samples (different under other seeds)
    x = batches[0]["a"]
    assert torch.equal(model.translate(x, "a_to_b"), model.translate(x, "a_to_b"))
    model.params["attribute_mode"] = "prior"
    a, b = (seeded(s, model.translate, x, "a_to_b") for s in (0, 1))
    assert not torch.equal(a, b)


# ------------------------------------------------------- content discriminator
def anatomy_slices(n: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Paired T1w/T2w slices of random elliptic 'brains' with four tissue classes.

    Background, CSF (rim and one or two ventricles), grey matter and a wobbly white-matter core;
    T1w orders them WM > GM > CSF, T2w CSF > GM > WM (plus a little noise). The same anatomy in
    both contrasts is what content maps should capture.
    """
    rng = np.random.default_rng(seed)
    grid = np.linspace(-1, 1, size)
    yy, xx = np.meshgrid(grid, grid, indexing="ij")
    t1 = np.zeros((n, size, size), np.float32)
    t2 = np.zeros_like(t1)
    t1_level = np.array([0.0, 0.2, 0.55, 0.85], np.float32)  # bg, CSF, GM, WM
    t2_level = np.array([0.0, 0.95, 0.6, 0.4], np.float32)
    for k in range(n):
        cx, cy = rng.uniform(-0.1, 0.1, 2)
        a, b = rng.uniform(0.65, 0.9, 2)
        th = rng.uniform(0, np.pi)
        x = (xx - cx) * np.cos(th) + (yy - cy) * np.sin(th)
        y = -(xx - cx) * np.sin(th) + (yy - cy) * np.cos(th)
        r = np.sqrt((x / a) ** 2 + (y / b) ** 2)
        wobble = 0.08 * np.sin(rng.integers(3, 7) * np.arctan2(y, x) + rng.uniform(0, 6))
        brain = r < 1
        label = np.where(brain, 2, 0)
        label = np.where(r < 0.72 + wobble, 3, label)
        csf = (r > 0.93) & brain
        for _ in range(int(rng.integers(1, 3))):
            vx, vy = rng.uniform(-0.3, 0.3, 2)
            rv = rng.uniform(0.08, 0.2)
            csf |= ((x - vx) / rv) ** 2 + ((y - vy) / (0.6 * rv)) ** 2 < 1
        label = np.where(csf, 1, label)
        noise = rng.normal(0, 0.02, (2, size, size)) * brain
        t1[k] = np.clip(t1_level[label] + noise[0], 0, 1)
        t2[k] = np.clip(t2_level[label] + noise[1], 0, 1)
    return {m: torch.from_numpy(v)[:, None] * 2 - 1 for m, v in (("a", t1), ("b", t2))}


def test_content_discriminator_makes_content_maps_modality_invariant() -> None:
    """D_c (eq. 7) must pull the T1w and T2w content maps together.

    Two runs from the same seed, data and batch order differ only in
    ``use_content_discriminator``. Both use the disentanglement module alone
    (``use_diffusion: false``: D_c acts on the encoders only, and the diffusion module would not
    fit the time budget), no training noise on the content (``content_noise: 0``) and lr 1e-3,
    150 steps of batch 4 on 32 px slices with anatomy (:func:`anatomy_slices`). On 32 held-out
    paired slices, :mod:`mrbench.evaluation.content_maps` measures

    - the modality gap (distance of the modality means over the within-modality spread) and
    - the paired distance ratio (T1w vs T2w map of the same slice over different slices).

    Both must be markedly smaller with D_c. Measured by this test with DRIT++'s official networks:
    gap 1.56 -> 0.92, ratio 0.91 -> 0.76 (with the earlier networks, before they followed the
    official code: 1.83 -> 0.80, ratio 0.97 -> 0.75; other seeds then: 1.54 -> 0.69 and
    2.54 -> 0.76, ratio 0.95 -> 0.70 and 1.00 -> 0.71).

    A fresh linear probe (logistic regression on pooled or flattened content maps, held-out
    half) was the first candidate, but after runs this short it separates the modalities
    perfectly with and without D_c (held-out accuracy 1.00 vs 1.00, pooled and flattened, also
    after 400 steps): an adversary that is fooled at every step does not remove every linearly
    decodable trace, so the probe cannot tell the runs apart. Its accuracies are printed, not
    asserted.
    """
    from mrbench.evaluation.content_maps import invariance_report

    train_data = anatomy_slices(64, SIZE, 100)
    held_out = anatomy_slices(32, SIZE, 200)
    reports = {}
    for use_dc in (False, True):
        model = build(
            "disdiff_dis_only",
            seed=0,
            use_content_discriminator=use_dc,
            lr=1e-3,
            lr_content_dis=1e-3,
            content_noise=0.0,
        )
        model.train()
        g = torch.Generator().manual_seed(0)
        for step in range(150):
            i = torch.randint(0, 64, (4,), generator=g)
            j = torch.randint(0, 64, (4,), generator=g)  # unpaired batches
            model.train_step({"a": train_data["a"][i], "b": train_data["b"][j]}, step)
        model.eval()
        zc_t1 = model.content_map(held_out["a"], "a")
        zc_t2 = model.content_map(held_out["b"], "b")
        reports[use_dc] = {k: round(v, 3) for k, v in invariance_report(zc_t1, zc_t2).items()}
    msg = f"without D_c: {reports[False]}; with D_c: {reports[True]}"
    print(msg)
    assert reports[True]["modality_gap"] < 0.6 * reports[False]["modality_gap"], msg
    ratio_with, ratio_without = (reports[b]["paired_distance_ratio"] for b in (True, False))
    assert ratio_with < ratio_without - 0.1, msg


# --------------------------------------------------------------------- paper size
def test_paper_size_networks() -> None:
    """DRIT++ sizes for the disentanglement module, SynDiff's for the diffusion module."""
    net = Disentangler()
    assert net.content_ch == 256 and net.attr_dim == 8
    x = torch.zeros(1, 1, 64, 64)
    assert net.content(x, "a").shape == (1, 256, 16, 16)
    counts = disdiff_cls()({}, image_size=256).num_parameters()
    print(counts)
    assert counts["disentangler"] == sum(p.numel() for p in net.parameters())
    # two SynDiff generators (39.7 M each with a 2-channel input) with a 1-channel input plus
    # the content projections
    assert 2 * 39.0e6 < counts["diff_gen"] < 2 * 41.0e6
    assert 2 * 27.0e6 < counts["diff_dis"] < 2 * 28.5e6
    assert ContentDiscriminator().net[0].in_channels == 256
