"""Can the demo's networks fit the phantom's T1w -> T2w mapping at all within the demo budget?

A diagnostic for the demo's sizes: the generator of one method (default: CycleGAN's ResNet
generator at its ``config/demo.yaml`` parameters) is trained with *paired* L1 supervision on a
phantom slice store for a fixed number of steps, and its validation PSNR (the trainer's
validation protocol; every prediction multiplied by the brain mask) is printed next to three
references computed on the same store:

- ``identity``: the source image itself;
- ``affine``: the best affine map ``a * T1w + b`` inside the brain, fitted on the training set;
- ``intensity_map``: the benchmark's 1-D intensity mapping plugin (fitted on the training set).

Paired supervision is an upper bound on what the unpaired objective of the method can reach in
the same steps with the same network. Where the paired fit stays below ``intensity_map``, the
demo's image size, widths or budget (not the method's loss) keep the method below the floor.

    python benchmarks/demo_capacity.py [--sizes 32,64] [--steps 600] [--method cyclegan]
        [--network G_a_to_b] [--params '{"ngf": 16}'] [--lr 2e-4]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _common import ROOT, write_table  # noqa: E402


def phantom_store(folder: Path, size: int, voxel_size: float, n_subjects: int) -> Path:
    """A phantom slice store (train/val) at ``size`` px from subjects at ``voxel_size`` mm."""
    from mrbench.datasets.phantom import prepare_subject
    from mrbench.datasets.phantom_volumes import PhantomSettings, subject_ids, write_phantom
    from mrbench.slices import SubjectVolumes, build_split

    ids = subject_ids(n_subjects)
    write_phantom(folder / "raw", n_subjects, 0, PhantomSettings(voxel_size=voxel_size))
    for sid in ids:
        prepare_subject(folder / "raw", sid, folder / "subjects" / sid)
    n_val = max(1, n_subjects // 5)
    for split, subjects in (("train", ids[:-n_val]), ("val", ids[-n_val:])):
        vols = [SubjectVolumes.in_dir(s, folder / "subjects" / s) for s in subjects]
        build_split(vols, folder / "slices" / split, size=size, slices_per_subject=16)
    return folder / "slices"


def _psnr(pred: np.ndarray, target: np.ndarray) -> float:
    """Mean over slices of the max01 PSNR (both divided by the target slice maximum)."""
    from mrbench.training.valmetrics import psnr_batch

    return float(np.nanmean(psnr_batch(target.astype(np.float64), pred.astype(np.float64))))


def fit_paired(
    store: Path, method: str, network: str, params: dict, lr: float, steps: int, batch: int
) -> tuple[float, float]:
    """Validation PSNR of ``network`` of ``method`` after ``steps`` paired L1 steps; seconds."""
    from mrbench_methods import get_plugin

    t1 = torch.from_numpy(np.load(store / "train" / "t1.npy"))[:, None] * 2 - 1
    t2 = torch.from_numpy(np.load(store / "train" / "t2.npy"))[:, None] * 2 - 1
    v1 = torch.from_numpy(np.load(store / "val" / "t1.npy"))[:, None] * 2 - 1
    v2 = np.load(store / "val" / "t2.npy")
    vm = np.load(store / "val" / "mask.npy") > 0
    torch.manual_seed(0)
    model = get_plugin(method)(params, t1.shape[-1])
    net = getattr(model, network)
    opt = torch.optim.Adam(net.parameters(), lr=lr, betas=(0.5, 0.999))
    gen = torch.Generator().manual_seed(0)
    start = time.perf_counter()
    for _ in range(steps):
        idx = torch.randint(0, len(t1), (batch,), generator=gen)
        loss = (net(t1[idx]) - t2[idx]).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    seconds = time.perf_counter() - start
    with torch.inference_mode():
        pred = ((net(v1) + 1) / 2).clamp(0, 1)[:, 0].numpy()
    return _psnr(pred * vm, v2), seconds


def references(store: Path) -> dict[str, float]:
    """Identity, the best affine map and the intensity-map plugin on the validation slices."""
    from mrbench_methods import get_plugin

    tr1, tr2 = np.load(store / "train" / "t1.npy"), np.load(store / "train" / "t2.npy")
    trm = np.load(store / "train" / "mask.npy") > 0
    v1, v2 = np.load(store / "val" / "t1.npy"), np.load(store / "val" / "t2.npy")
    vm = np.load(store / "val" / "mask.npy") > 0
    a, b = np.polyfit(tr1[trm], tr2[trm], 1)
    affine = np.where(vm, np.clip(a * v1 + b, 0, 1), 0)
    imap = get_plugin("intensity_map")({}, v1.shape[-1])
    train = {
        "a": torch.from_numpy(tr1)[:, None] * 2 - 1,
        "b": torch.from_numpy(tr2)[:, None] * 2 - 1,
        "mask_a": torch.from_numpy(trm)[:, None].float(),
        "mask_b": torch.from_numpy(trm)[:, None].float(),
    }
    imap.fit(iter([train]))
    with torch.inference_mode():
        x = torch.from_numpy(v1)[:, None] * 2 - 1
        mapped = ((imap.translate(x, "a_to_b") + 1) / 2).clamp(0, 1)[:, 0].numpy() * vm
    return {
        "identity": _psnr(v1, v2),
        "affine": _psnr(affine, v2),
        "intensity_map": _psnr(mapped, v2),
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="32,64", help="image sizes (px), comma-separated")
    p.add_argument("--steps", type=int, default=600, help="paired L1 steps")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--method", default="cyclegan", help="plugin whose network is fitted")
    p.add_argument("--network", default="G_a_to_b", help="attribute of the plugin (a module)")
    p.add_argument("--params", default="{}", help="JSON overrides of the demo parameters")
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument("--subjects", type=int, default=10)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (a demo job: 1)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    demo = yaml.safe_load((ROOT / "config" / "demo.yaml").read_text())
    params = dict(demo["methods"][args.method].get("params") or {}) | json.loads(args.params)
    demo_px = int(demo["datasets"]["phantom"]["image_size"])
    demo_mm = float(demo["datasets"]["phantom"]["voxel_size"])
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        # the voxel size that keeps the demo's field of view at this image size
        voxel = demo_mm * demo_px / size
        with tempfile.TemporaryDirectory() as tmp:
            store = phantom_store(Path(tmp), size, voxel, args.subjects)
            refs = references(store)
            psnr, sec = fit_paired(
                store, args.method, args.network, params, args.lr, args.steps, args.batch
            )
        rows.append(
            {
                "px": size,
                "voxel_mm": round(voxel, 2),
                "method": args.method,
                "network": args.network,
                "steps": args.steps,
                "batch": args.batch,
                "lr": args.lr,
                "paired_fit_psnr": round(psnr, 2),
                **{k: round(v, 2) for k, v in refs.items()},
                "fit_seconds": round(sec, 1),
                "sec_per_step": round(sec / args.steps, 4),
            }
        )
    write_table(
        "demo_capacity",
        rows,
        "Paired L1 fit of a demo network on the phantom (T1w -> T2w, validation PSNR in dB)",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
