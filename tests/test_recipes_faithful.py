"""The baselines' official recipes and test-time choices follow their official code: iteration
caps and decay rules derived for any split size, augmentation, the PatchNCE normalisation, the
test-time memory read of MGUIT, the attribute code DRIT++ validates with, the optimiser column of
the recipes table and the collapse footnote of Table 1."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from mrbench.config import recipes
from mrbench.reporting import recipes_table
from mrbench.training.schedules import LRSchedule
from mrbench.training.settings import resolve_training
from mrbench_methods import get_plugin

#: IXI in the paper: 54 training subjects, 100 slices each
IXI_TRAIN_SLICES = 54 * 100


def _official(plugin: str, train_slices: int) -> dict:
    cls = get_plugin(plugin)
    return resolve_training(cls, recipes.recipe_training(cls, "official"), train_slices)


def _lr_at(training: dict, step: int) -> float:
    """The learning-rate factor of ``step`` under the resolved training section."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    return LRSchedule({"o": opt}, training).lr(1.0, step)


@pytest.mark.parametrize("plugin", ["mguit", "hifi_syn"])
def test_memory_methods_stop_at_the_official_iteration_cap_on_ixi(plugin: str) -> None:
    # official train.py (DRIT's): 1200 epochs, decay from 600, at most 500k full iterations;
    # with d_iter 3 every full iteration follows two content-discriminator-only steps
    t = _official(plugin, IXI_TRAIN_SLICES)
    assert t["batch_size"] == 1
    assert t["steps"] == 500_000 * 3
    # the cap comes before epoch 600 (1.62 M steps): the rate never decays
    assert _lr_at(t, t["steps"] - 1) == 1.0


@pytest.mark.parametrize(
    ("train_slices", "steps", "last_lr"),
    [
        (IXI_TRAIN_SLICES, 1_500_000, 1.0),  # capped at 555 epochs, before the decay
        (1_000, 600_000, 1 / 300_000),  # 1200 epochs of 500 steps, decay from epoch 600
        (3_000, 1_500_000, 1 / 3),  # capped at epoch 1000: two thirds of the decay done
    ],
)
def test_drit_steps_follow_the_official_rule(train_slices: int, steps: int, last_lr: float) -> None:
    t = _official("drit", train_slices)
    assert t["batch_size"] == 2 and t["steps"] == steps
    per_epoch = train_slices // 2
    assert _lr_at(t, 600 * per_epoch - 1) == 1.0
    assert _lr_at(t, t["steps"] - 1) == pytest.approx(last_lr, rel=1e-5)
    text = recipes_table.lr_schedule_text(t)
    assert text.startswith("linear decay to 0 from epoch 600")
    assert ("iteration cap at step 1,500,000" in text) == (steps * 2 < 1200 * train_slices)


def test_patchnce_normalises_by_norm_plus_epsilon() -> None:
    # the official Normalize: x / (||x|| + 1e-7); with the 0.02 head init the projected
    # features' norms are ~1e-6, where max(||x||, eps) would differ by ~10 %
    from mrbench_methods.nets.patchnce import PatchSampleMLP

    torch.manual_seed(0)
    mlp = PatchSampleMLP([8], nc=16)
    feat = torch.randn(2, 8, 4, 4) * 1e-3
    (out,), (pid,) = mlp([feat], num_patches=5)
    with torch.no_grad():
        x = mlp.heads[0](feat.flatten(2).transpose(1, 2)[:, pid].flatten(0, 1))
    norms = x.norm(dim=1, keepdim=True)
    assert float(norms.max()) < 1e-5  # the regime the official init produces
    torch.testing.assert_close(out.detach(), x / (norms + 1e-7), rtol=1e-5, atol=0.0)


def test_mguit_never_reads_memory_items_of_classes_absent_from_training() -> None:
    # IXI has no tumour label (class 4): its items are never updated and keep their random
    # initial values; the test-time read must give them no weight
    from mrbench_methods.mguit import MGUIT

    torch.manual_seed(0)
    model = MGUIT(MGUIT.tiny_params, image_size=32)
    x = torch.rand(1, 1, 32, 32) * 2 - 1
    lab = torch.zeros(1, 1, 32, 32)
    for c in range(4):  # background, CSF, GM, WM in four bands; no class 4
        lab[..., 8 * c : 8 * (c + 1), :] = c
    batch = {"a": x, "b": x.flip(-1), "label_a": lab, "label_b": lab}
    model.train_step(batch, 0)
    mem = model.memory
    assert mem.trained.tolist() == [True, True, True, True, False]
    tumour = mem.owner == 4
    model.eval()
    content = model.enc_c(x, "a")
    got = mem.read_all(content, "b")
    # the same read without the tumour items: their values do not enter
    q = content.permute(0, 2, 3, 1).reshape(-1, content.shape[1])
    w = torch.softmax(q @ mem.keys[~tumour].t(), dim=1)
    want = (w @ mem.values[1, ~tumour]).reshape(1, 8, 8, -1).permute(0, 3, 1, 2)
    torch.testing.assert_close(got, want)
    # changing the never-trained values changes nothing at test time
    before = model.translate(x, "a_to_b")
    mem.values[:, tumour] = 100.0
    assert torch.equal(model.translate(x, "a_to_b"), before)


def test_stargan_v2_official_recipe_augments_with_the_official_crop_and_flip() -> None:
    # official data_loader: RandomResizedCrop(scale 0.8-1.0, ratio 0.9-1.1) with p 0.5, resize
    # back, RandomHorizontalFlip, for sources and references alike
    import numpy as np

    from mrbench.training.augment import augmenter

    t = _official("stargan_v2", IXI_TRAIN_SLICES)
    assert t["augment"] == "random_resized_crop_flip"
    aug = augmenter(t, seed=3)
    size = 64
    draws = [aug.draw(size, 0, row, "a") for row in range(400)]
    cropped = [d for d in draws if d[2] * d[3] < size * size]
    assert 0.4 < len(cropped) / len(draws) < 0.6
    for top, left, h, w, _ in draws:
        assert 0.8 * size * size - 2 * size <= h * w <= size * size
        assert 0.9 - 0.05 <= w / h <= 1.1 + 0.05
        assert 0 <= top <= size - h and 0 <= left <= size - w
    assert 0.4 < np.mean([d[4] for d in draws]) < 0.6
    # image and mask move together, and the output keeps the slice size
    img = np.zeros((size, size), np.float32)
    img[10:30, 20:40] = 1.0
    image, mask = aug.apply(img, (img > 0).astype(np.float32), cropped[0])
    assert image.shape == mask.shape == (size, size)
    assert np.array_equal(image > 0.5, mask > 0.5)


def test_drit_validates_with_the_attribute_code_it_exports(phantom_store, tmp_path) -> None:
    # validation must score the model that export would write: the mean attribute code over
    # the training slices, not the running mean kept during training
    import copy

    from mrbench.training import runs
    from mrbench.training.validation import validate

    cls = get_plugin("drit")
    spec = {"method": "drit", "plugin": "drit", "params": dict(cls.tiny_params)}
    spec["training"] = {"steps": 2, "batch_size": 2, "val_max_slices": 4}
    run = runs.prepare_run(spec, phantom_store, tmp_path / "run", seed=1, log=lambda m: None)
    model = run.method
    torch.manual_seed(0)
    model._update_running_attributes({m: torch.randn(2, 8) for m in ("a", "b")})
    running = model.attr_mean_a.clone()
    got = run.validate()
    # the buffers training keeps are left as they were
    assert torch.equal(model.attr_mean_a, running)
    exported = copy.deepcopy(model).eval()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(run.seed)
        exported.prepare_inference(run.training_slices())
    assert not torch.equal(exported.attr_mean_a, running)
    bs = int(run.training["val_batch_size"])
    want = validate(exported, run.val_store, run.val_rows, bs, run.device, seed=run.seed)
    assert got["psnr"] == pytest.approx(want["psnr"], abs=1e-9)
    assert got["psnr_t2_to_t1"] == pytest.approx(want["psnr_t2_to_t1"], abs=1e-9)


class _RowStore:
    """A slice store whose images are their row numbers (for the order of a pass)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def __len__(self) -> int:
        return self.n

    def pair(self, i: int, j: int) -> dict[str, torch.Tensor]:
        return {"a": torch.tensor([float(i)]), "b": torch.tensor([float(j)])}


@pytest.mark.parametrize("paired", [False, True])
def test_test_time_codes_see_a_seeded_random_subset_of_both_modalities(paired: bool) -> None:
    # the mean style/attribute codes stop after their first N slices: those must be a random,
    # seeded subset of each modality's slices, not the first N in store order
    from mrbench.training.sampling import one_pass

    def rows(seed: int) -> tuple[list[int], list[int]]:
        batches = list(one_pass(_RowStore(50), 8, paired, seed, torch.device("cpu")))
        return tuple(  # type: ignore[return-value]
            [int(v) for b in batches for v in b[m].flatten()] for m in ("a", "b")
        )

    t1, t2 = rows(0)
    assert sorted(t1) == sorted(t2) == list(range(50))
    assert t1 != list(range(50)) and (t1 == t2) == paired
    assert rows(0) == (t1, t2) and rows(1)[0] != t1


def test_paper_config_translates_instaformer_with_prior_styles() -> None:
    # training decodes content with z ~ N(0, I) or the same image's own style, never with a
    # mean code of other images: the paper config uses the draws training saw
    import yaml

    from mrbench.config.resolve import method_spec_dict

    root = Path(__file__).resolve().parents[1]
    config = yaml.safe_load((root / "config" / "config.yaml").read_text())
    assert method_spec_dict(config, "instaformer")["params"]["style_mode"] == "prior"


def test_recipes_table_reads_optimisers_from_the_run_and_labels_variants(
    phantom_store, tmp_path
) -> None:
    # the diffusion schedule's beta_start/beta_end are not Adam's betas; every optimiser's own
    # settings go into spec.json, and the table shows them; ablation variants get own labels
    import json

    from mrbench.training import runs

    cls = get_plugin("unit_ddpm")
    spec = {"method": "unit_ddpm", "plugin": "unit_ddpm", "params": dict(cls.tiny_params)}
    spec["training"] = {"steps": 1, "batch_size": 2}
    run = runs.prepare_run(spec, phantom_store, tmp_path / "u", seed=0, log=lambda m: None)
    runs.write_run_files(run)
    written = json.loads((tmp_path / "u" / "spec.json").read_text())
    assert written["optimizers"]["denoiser"]["betas"] == [0.9, 0.999]
    row = recipes_table.recipe_row(written)
    assert "beta_start" not in row["optimizer"] and "beta_end" not in row["optimizer"]
    assert "Adam" in row["optimizer"] and "betas (0.9, 0.999)" in row["optimizer"]
    assert "lr 0.001" in row["optimizer"]
    # DisDiff and an ablation variant: one distinct label each (no run needed for labels)
    paths = []
    full = dict(get_plugin("disdiff").defaults)  # spec.json holds the resolved params
    for method, params in (("disdiff", {}), ("disdiff_dis_only", {"use_diffusion": False})):
        one = {**written, "method": method, "plugin": "disdiff", "params": full | params}
        one.pop("optimizers")
        paths.append(tmp_path / f"{method}.json")
        paths[-1].write_text(json.dumps(one))
    _, df = recipes_table.recipe_table(paths)
    assert list(df["label"]) == ["DisDiff", "DisDiff (disdiff_dis_only)"]
    # without recorded optimisers (an older run): only learning rates and Adam betas
    assert "beta_min" not in df["optimizer"].iloc[0] and "lr" in df["optimizer"].iloc[0]


def _run_folder(folder: Path, method: str, plugin: str, val_log: dict) -> Path:
    import json

    import pandas as pd

    folder.mkdir(parents=True)
    spec = {"method": method, "plugin": plugin, "data": "/x/phantom/slices", "seed": 0}
    (folder / "spec.json").write_text(json.dumps(spec))
    pd.DataFrame(val_log).to_csv(folder / "val_log.csv", index=False)
    (folder / "model.pt").write_bytes(b"")
    return folder / "model.pt"


def test_table1_footnote_names_a_unit_ddpm_whose_translators_collapsed(tmp_path) -> None:
    # near-black translators (output spread a few % of the target's) meet the cycle loss while
    # the denoisers learn to expect empty conditions: Table 1 must say so under its numbers
    import pandas as pd
    from conftest import mrbench_cli, tidy_row

    from mrbench.reporting.train_logs import translator_collapse

    collapsed = {"step": [300, 600], "psnr": [9.7, 9.8], "psnr_translator_vs_input": [8.0, 7.9]}
    collapsed |= {"spread_translator_vs_target": [0.4, 0.03]}
    healthy = collapsed | {"spread_translator_vs_target": [0.6, 0.8]}
    copying = healthy | {"psnr_translator_vs_input": [35.0, 45.0]}
    assert "near-constant" in translator_collapse(pd.DataFrame(collapsed))
    assert translator_collapse(pd.DataFrame(healthy)) is None
    assert "copy their input" in translator_collapse(pd.DataFrame(copying))
    assert translator_collapse(pd.DataFrame({"step": [1], "psnr": [9.0]})) is None

    models = [
        _run_folder(tmp_path / "u", "unit_ddpm", "unit_ddpm", collapsed),
        _run_folder(tmp_path / "c", "cyclegan", "cyclegan", {"step": [1], "psnr": [20.0]}),
    ]
    rows = [
        tidy_row(dataset="phantom", method=m, subject=f"s{s}", metric=k, value=v + s)
        for m in ("unit_ddpm", "cyclegan")
        for s in range(3)
        for k, v in (("psnr", 10.0), ("ssim", 50.0))
    ]
    tidy = tmp_path / "tidy.csv"
    pd.DataFrame(rows).to_csv(tidy, index=False)
    out = tmp_path / "table1"
    args = ["report", "table1", "--tidy", str(tidy), "--out", str(out), "--model"]
    res = mrbench_cli(*args, *map(str, models))
    assert res.returncode == 0, res.stderr
    md = (tmp_path / "table1.md").read_text()
    note = next(line for line in md.splitlines() if "ollapse" in line)
    assert "UNIT-DDPM" in note and "near-constant" in note and "CycleGAN" not in note
