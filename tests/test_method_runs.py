"""Short training runs of the methods: each must learn the phantom's contrast.

One parametrised test per check, over the methods of :data:`RUNS`, each with its own sizes, budget
and margins. A run trains through the shared trainer; its model must beat the identity floor on
the validation split (T2 is roughly an inverted T1 in the phantom: identity scores about 6 dB)
and, where listed, its own untrained start (the same parameters, built under seed 0). An
untrained generator can score near identity's PSNR or above it with a nearly uniform grey output
but with almost no structure (SSIM near 0.03), so some methods must also gain clearly in SSIM over
their start, which a grey image cannot. The style-based translators must also translate the test
split identically when its target images are garbage (they never read the target). Each run is
made once per module and shared by the checks that need it.
"""

from __future__ import annotations

import csv
import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pytest
import torch
import yaml

from mrbench.checkpoint import load_model
from mrbench.inference.translate import translate_store
from mrbench.slices import SliceStore
from mrbench.training.loop import train
from mrbench.training.validation import validate, validation_rows
from mrbench_methods import get_plugin

ROOT = Path(__file__).resolve().parents[1]


def ends_at(steps: int) -> dict[str, Any]:
    """Trainer settings: ``steps`` steps of batch 4 that validate, save and log once, at the end,
    and keep the last weights."""
    every = ("steps", "val_every", "checkpoint_every", "log_every")
    return {"batch_size": 4, "select": "last"} | dict.fromkeys(every, steps)


@dataclass(frozen=True)
class ShortRun:
    """A method's short run and what its trained model must reach.

    ``over_floor`` / ``over_start``: per metric, the margin by which the trained model's validation
    score must exceed the identity floor's / its untrained start's. ``params``: the method's
    parameters, ``"tiny"`` (its ``tiny_params``, updated with ``overrides``) or ``"demo"`` (its
    ``config/demo.yaml`` entry's). ``score``: ``"model"`` validates ``model.pt``, ``"log"`` takes
    the last row of ``val_log.csv``. ``demo_store``: a demo-size run of the ``config/demo.yaml``
    entry on the demo phantom against an identity run (:func:`demo_store_run`).
    ``never_reads_target``: checked on the test split as well. ``logged_psnr``: the validation
    PSNR of ``model.pt`` is the one its record holds. ``sampling_steps``: the model's, after
    loading.
    """

    over_floor: dict[str, float]
    params: dict[str, Any] | str = "tiny"
    overrides: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    over_start: dict[str, float] = field(default_factory=dict)
    score: str = "model"
    demo_store: bool = False
    never_reads_target: bool = False
    logged_psnr: bool = False
    sampling_steps: int | None = None


#: the run sizes (16 px phantom slices): small widths, the official losses (and update order)
UNIT_DDPM = dict(unet_ch=16, unet_mult=[1, 2], unet_res_blocks=1, unet_attn=[], translator_ngf=8,
                 translator_blocks=1, lr_denoiser=2e-3, lr_translator=2e-3, sample_steps=20,
                 release_time=100)  # fmt: skip
STARGAN_V2 = dict(dim=8, max_dim=32, style_dim=16, latent_dim=8, mapping_hidden=32, ds_iter=50,
                  lr=1e-3, f_lr=1e-5)  # fmt: skip
#: content 4x4, 2x2 tokens
INSTAFORMER = dict(ngf=8, mlp_hidden=32, embed_dim=64, embed_down=1, depth=2, heads=2, dim_head=32,
                   mlp_dim=128, ndf=8, n_layers_d=2, num_patches=64, nce_nc=32,
                   lr=1e-3)  # fmt: skip

#: ``ema_decay: None``: an average with decay 0.99 or more still leans on the initial weights after
#: this few steps
RUNS: dict[str, ShortRun] = {
    "cyclegan": ShortRun(
        params=dict(ngf=8, ndf=8, n_blocks=2, n_layers_d=2, pool_size=8),
        training=dict(steps=250, batch_size=2, val_every=25, checkpoint_every=250),
        over_floor={"psnr": 3.0},
        over_start={"psnr": 1.0, "ssim": 0.05},
        logged_psnr=True,
    ),
    "syndiff": ShortRun(
        training=ends_at(40) | dict(log_every=20, ema_decay=None, lr_schedule="constant"),
        over_floor={"psnr": 1.0},
        over_start={"psnr": 0.5},
        score="log",
    ),
    # about 25 s of one CPU core; the run reaches about 12 dB
    "unit_ddpm": ShortRun(
        params=UNIT_DDPM,
        training=dict(
            steps=250,
            batch_size=4,
            val_every=250,
            checkpoint_every=250,
            select="last",
            ema_decay=None,
        ),
        over_floor={"psnr": 2.0, "ssim": 0.3},
        sampling_steps=20,
    ),
    # the full model on 16 px slices
    "disdiff": ShortRun(
        overrides={"lr": 1e-3},
        training=ends_at(40) | dict(ema_decay=None, lr_schedule="constant"),
        over_floor={"psnr": 1.0},
        over_start={"psnr": 0.5},
        score="log",
    ),
    "stargan_v2": ShortRun(
        params=STARGAN_V2,
        training=dict(steps=120, batch_size=4, val_every=40, checkpoint_every=120, ema_decay=None),
        over_floor={"psnr": 2.0},
        over_start={"ssim": 0.05},
        never_reads_target=True,
    ),
    "instaformer": ShortRun(
        params=INSTAFORMER,
        training=dict(steps=120, batch_size=4, val_every=40, checkpoint_every=120),
        over_floor={"psnr": 2.0},
        over_start={"ssim": 0.05},
        never_reads_target=True,
    ),
    "drit": ShortRun(params="demo", training=ends_at(150), over_floor={"psnr": 2.0}, score="log"),
    "attentiongan": ShortRun(
        params="demo", training=ends_at(100), over_floor={"psnr": 2.0}, score="log"
    ),
    "mguit": ShortRun(demo_store=True, over_floor={"psnr": 1.0}),
    "hifi_syn": ShortRun(demo_store=True, over_floor={"psnr": 1.0}),
    # the supervised reference at its demo size: trained on pairs, well above the floor
    "pix2pix": ShortRun(demo_store=True, over_floor={"psnr": 3.0}),
}


@dataclass(frozen=True)
class Outcome:
    """A finished short run: its ``model.pt`` and the validation scores of the trained model, the
    identity floor and the untrained start (empty where not needed)."""

    model: Path
    scores: dict[str, float]
    floor: dict[str, float]
    start: dict[str, float]


def demo_config() -> dict[str, Any]:
    """``config/demo.yaml`` (anchors and merges resolved by the YAML loader)."""
    return yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())


def last_val_psnr(run_dir: Path) -> float:
    with open(run_dir / "val_log.csv") as fh:
        return float(list(csv.DictReader(fh))[-1]["psnr"])


def demo_store_run(name: str, store_dir: Path, out: Path) -> Outcome:
    """The method's ``config/demo.yaml`` entry for its demo steps, validated on 16 slices at the
    end, and an identity run validated on the same slices (its floor)."""
    demo = demo_config()
    entry = demo["methods"][name]
    training = {**demo["training"], **(entry.get("training") or {})}
    steps = int(training["steps"])
    spec = {
        "method": name,
        "plugin": entry["plugin"],
        "params": entry["params"],
        "training": {**training, "val_every": steps, "checkpoint_every": steps,
                     "val_max_slices": 16},
    }  # fmt: skip
    path = train(spec, store_dir, out / name, seed=0, device="cpu", progress=False)
    ident = {"method": "identity", "plugin": "identity", "training": {"val_max_slices": 16}}
    train(ident, store_dir, out / "identity", seed=0, device="cpu", progress=False)
    floor = {"psnr": last_val_psnr(out / "identity")}
    return Outcome(path, {"psnr": last_val_psnr(out / name)}, floor, {})


def _params(name: str, run: ShortRun) -> dict[str, Any]:
    if run.params == "tiny":
        return {**get_plugin(name).tiny_params, **run.overrides}
    if run.params == "demo":
        return dict(demo_config()["methods"][name].get("params") or {})
    assert isinstance(run.params, dict)
    return dict(run.params)


def _short_run(name: str, run: ShortRun, store_dir: Path, out: Path) -> Outcome:
    if run.demo_store:
        return demo_store_run(name, store_dir, out)
    params = _params(name, run)
    val = SliceStore(store_dir / "val")
    rows = validation_rows(val, 64)
    cpu = torch.device("cpu")
    floor = validate(get_plugin("identity")({}, image_size=val.size), val, rows, 8, cpu)
    start: dict[str, float] = {}
    if run.over_start:
        torch.manual_seed(0)
        start = validate(get_plugin(name)(params, image_size=val.size), val, rows, 8, cpu)
    spec = {"method": name, "plugin": name, "params": params, "training": dict(run.training)}
    path = train(spec, store_dir, out / "run", seed=0, progress=False, log=lambda m: None)
    if run.score == "log":
        scores = {"psnr": last_val_psnr(out / "run")}
    else:
        scores = validate(load_model(path), val, rows, 8, cpu)
    return Outcome(path, scores, floor, start)


@pytest.fixture(scope="module")
def short_run(tmp_path_factory: pytest.TempPathFactory):
    """``short_run(name, request)``: the :class:`Outcome` of the method's run in :data:`RUNS`, made
    on first use (on the phantom store of ``request``'s session) and kept for the module."""
    done: dict[str, Outcome] = {}

    def get(name: str, request: pytest.FixtureRequest) -> Outcome:
        if name not in done:
            run = RUNS[name]
            store = "demo_phantom_store" if run.demo_store else "phantom_store"
            out = tmp_path_factory.mktemp(name)
            done[name] = _short_run(name, run, request.getfixturevalue(store), out)
        return done[name]

    return get


@pytest.mark.parametrize("name", list(RUNS))
def test_short_run_beats_its_baselines(name: str, short_run, request) -> None:
    run = RUNS[name]
    got = short_run(name, request)
    msg = f"{name}: trained {got.scores}, identity {got.floor}, untrained {got.start}"
    print(f"val PSNR: {name} {got.scores['psnr']:.2f}, identity {got.floor['psnr']:.2f}")
    for metric, margin in run.over_floor.items():
        assert got.scores[metric] > got.floor[metric] + margin, (metric, msg)
    for metric, margin in run.over_start.items():
        assert got.scores[metric] > got.start[metric] + margin, (metric, msg)
    if run.logged_psnr:
        logged = load_model(got.model).model_info["meta"]["val_psnr"]
        assert got.scores["psnr"] == pytest.approx(logged, abs=1e-6)
    if run.sampling_steps is not None:
        assert load_model(got.model).sampling_steps == run.sampling_steps


@pytest.mark.parametrize("name", [n for n, run in RUNS.items() if run.never_reads_target])
def test_translation_never_reads_the_target(
    name: str, short_run, request, phantom_store: Path, tmp_path: Path
) -> None:
    """Translating a split gives the same volumes when its target images are garbage."""
    trained = short_run(name, request).model
    rng = np.random.default_rng(0)
    for direction in ("t1_to_t2", "t2_to_t1"):
        dst = direction.split("_to_")[1]
        spoiled = tmp_path / f"spoiled_{direction}"
        shutil.copytree(phantom_store / "test", spoiled)
        arr = np.load(spoiled / f"{dst}.npy")
        np.save(spoiled / f"{dst}.npy", rng.random(arr.shape).astype(arr.dtype))
        a = translate_store(trained, phantom_store / "test", direction, tmp_path / "a" / direction,
                            device="cpu")  # fmt: skip
        b = translate_store(trained, spoiled, direction, tmp_path / "b" / direction, device="cpu")
        assert a["n_slices"] == b["n_slices"] > 0
        for f in sorted((tmp_path / "a" / direction).glob("*.nii.gz")):
            va = np.asarray(nib.load(f).dataobj)
            vb = np.asarray(nib.load(tmp_path / "b" / direction / f.name).dataobj)
            assert va.any()
            np.testing.assert_array_equal(va, vb)


def test_disdiff_content_maps_figure(short_run, request, phantom_store: Path, tmp_path) -> None:
    """Fig. 3 from the trained DisDiff model, through the function and the command line."""
    from mrbench.cli import main
    from mrbench.evaluation.content_maps import plot_content_maps

    model_file = short_run("disdiff", request).model
    assert model_file.exists()
    store_dir = phantom_store / "test"
    out = tmp_path / "fig3.png"
    stats = plot_content_maps(model_file, store_dir, out)
    assert out.stat().st_size > 1000 and math.isfinite(stats["pearson_r"])
    out_cli = tmp_path / "fig3_cli.png"
    rc = main(["content-maps", "--model", str(model_file), "--store", str(store_dir),
               "--out", str(out_cli), "--channels", "2"])  # fmt: skip
    assert rc == 0 and out_cli.exists()
    rc = main(["content-maps", "--model", str(model_file), "--store", str(store_dir),
               "--out", str(out_cli), "--subject", "nobody"])  # fmt: skip
    assert rc == 1
