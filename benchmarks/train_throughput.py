"""Training throughput of every registered trainable method: images/s and peak memory per step.

Two sizes per method, through the same code: ``demo`` (the method's parameters in
``config/demo.yaml`` if it lists the plugin, else its ``tiny_params``; the demo's image size) and
``paper`` (the published defaults, 256 px). Batches are smooth synthetic images, so the numbers
measure the method's compute, not data loading (``benchmarks/dataloader_throughput.py`` covers
that). On a CPU the paper size runs ``--paper-steps`` (default 1) timed steps after one warm-up.

    python benchmarks/train_throughput.py [--methods cyclegan,syndiff] [--sizes demo,paper]

Prints a table and writes ``benchmarks/results/train_throughput.csv``; ``networks_M`` lists the
parameters of each top-level network in millions (the counts compared with the official ones).
Peak memory is the CUDA peak allocated during the timed steps on a GPU, the process's peak
resident memory on a CPU.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from methods import registry  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "train_throughput.csv"
PAPER_SIZE = 256


def _demo_config() -> tuple[dict[str, dict[str, Any]], int, int]:
    """Demo params per plugin, the demo image size and batch size (from config/demo.yaml)."""
    path = ROOT / "config" / "demo.yaml"
    params: dict[str, dict[str, Any]] = {}
    size, batch = 32, 4
    if path.exists():
        cfg = yaml.safe_load(path.read_text()) or {}
        for entry in (cfg.get("methods") or {}).values():
            params.setdefault(entry["plugin"], dict(entry.get("params") or {}))
        sizes = [d.get("image_size") for d in (cfg.get("datasets") or {}).values()]
        size = next((s for s in sizes if s), size)
        batch = int((cfg.get("training") or {}).get("batch_size", batch))
    return params, size, batch


def _batch(b: int, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    coarse = torch.rand(b, 1, 8, 8, generator=g)
    t1 = torch.nn.functional.interpolate(coarse, size=size, mode="bilinear") * 2 - 1
    t2 = -t1
    mask = torch.ones_like(t1)
    out = {"t1": t1, "t2": t2, "mask_t1": mask, "mask_t2": mask.clone()}
    return {k: v.to(device) for k, v in out.items()}


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    plugin: str, params: dict, size: int, batch: int, steps: int, device: torch.device
) -> dict[str, Any]:
    cls = registry()[plugin]
    torch.manual_seed(0)
    model = cls(params, image_size=size).to(device)
    model.train()
    data = _batch(batch, size, device)
    model.train_step(data, 0)  # warm-up (allocations, cuDNN choices)
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for step in range(1, steps + 1):
        model.train_step(data, step)
    if device.type == "cuda":
        torch.cuda.synchronize()
    sec = (time.perf_counter() - t0) / steps
    n_params = sum(p.numel() for p in model.parameters())
    networks = ";".join(f"{k}={v / 1e6:.2f}" for k, v in model.num_parameters().items())
    return {
        "method": plugin,
        "px": size,
        "batch": batch,
        "params_M": round(n_params / 1e6, 3),
        "networks_M": networks,
        "sec_per_step": round(sec, 4),
        "images_per_s": round(batch / sec, 3),
        "peak_mem_mb": round(_peak_mb(device), 1),
        "timed_steps": steps,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="", help="comma-separated plugins (default: all)")
    p.add_argument("--sizes", default="demo,paper", help="demo, paper or both")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--steps", type=int, default=5, help="timed steps (demo, and paper on GPU)")
    p.add_argument("--paper-steps", type=int, default=1, help="timed paper-size steps on CPU")
    p.add_argument("--paper-batch", type=int, default=1, help="batch at paper size")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=OUT)
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(args.device)
    sizes = [s for s in args.sizes.split(",") if s]
    bad = sorted(set(sizes) - {"demo", "paper"})
    if bad:
        p.error(f"--sizes: unknown size(s) {', '.join(bad)}; expected demo and/or paper")
    plugins = {n: c for n, c in sorted(registry().items()) if c.trainable}
    if args.methods:
        wanted = [m for m in args.methods.split(",") if m]
        unknown = sorted(set(wanted) - set(plugins))
        if unknown:
            p.error(f"--methods: unknown or non-trainable {', '.join(unknown)}")
        plugins = {n: plugins[n] for n in wanted}
    demo_params, demo_size, demo_batch = _demo_config()
    rows = []
    for name, cls in plugins.items():
        for size in sizes:
            if size == "demo":
                params = demo_params.get(name, dict(cls.tiny_params))
                px, batch, steps = demo_size, demo_batch, args.steps
            else:
                params, px, batch = {}, PAPER_SIZE, args.paper_batch
                steps = args.steps if device.type == "cuda" else args.paper_steps
            row = {"size": size, **measure(name, params, px, batch, steps, device)}
            row["device"] = str(device)
            print(", ".join(f"{k}={v}" for k, v in row.items()), flush=True)
            rows.append(row)
            if device.type == "cuda":
                torch.cuda.empty_cache()
    gpu = torch.cuda.get_device_name(0) if device.type == "cuda" else "none"
    machine = {
        "cpu": platform.processor() or platform.machine(),
        "cpu_threads": torch.get_num_threads(),
        "gpu": gpu,
        "torch": torch.__version__.split("+")[0],
    }
    cols = list(rows[0]) if rows else []
    print(f"\ntraining throughput ({machine['gpu']} / {machine['cpu_threads']} CPU threads)")
    print("  ".join(f"{c:>12}" for c in cols))
    for r in rows:
        print("  ".join(f"{r[c]!s:>12}" for c in cols))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(f".{args.out.name}.tmp{os.getpid()}")
    with tmp.open("w", newline="") as f:
        w = csv.DictWriter(f, [*machine, *cols])
        w.writeheader()
        for r in rows:
            w.writerow({**machine, **r})
    os.replace(tmp, args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
