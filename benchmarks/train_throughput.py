"""Training throughput of every registered trainable method: images/s and peak memory per step.

Two sizes per method, through the same code: ``demo`` (the method's parameters in
``config/demo.yaml`` if it lists the plugin, else its ``tiny_params``; the demo's image size) and
``paper`` (the published defaults, 256 px). Batches are smooth synthetic images, so the numbers
measure the method's compute, not data loading (``benchmarks/dataloader_throughput.py`` covers
that). On a CPU the paper size runs ``--paper-steps`` (default 1) timed steps after one warm-up.

    python benchmarks/train_throughput.py [--methods cyclegan,syndiff] [--sizes demo,paper]

On a shared machine wall time follows the load; ``cpu_sec_per_step`` (the process's CPU time
per step, all threads) is the steadier figure for comparing two versions measured there.

Prints a table (with the parameter count of each network the method lists in
``num_parameters``) and writes ``benchmarks/results/train_throughput.csv``. Peak memory is the CUDA
peak allocated during the timed steps on a GPU, the process's peak resident memory on a CPU.

Each row also counts the floating-point operations of one step (``torch.utils.flop_counter``:
convolutions, matrix products and attention, forward and backward; elementwise work is not
counted) and the achieved FLOP/s as a fraction of the device's peak (``--peak-tflops``, or the
table :data:`PEAK_TFLOPS` for known GPUs), so that costs compare across machines.

The step runs as the trainer runs it: ``--optimizer-impl`` (default ``fused``, the trainer's
default), ``--memory-format`` (default ``contiguous``, the trainer's default) and ``--amp``
(bfloat16 autocast). ``--code-root`` imports the method plugins from
another checkout (e.g. an older commit) so that before/after pairs run under one script.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

ROOT = Path(__file__).resolve().parents[1]
if __name__ == "__main__" and "--code-root" in sys.argv:
    sys.path.insert(0, str(Path(sys.argv[sys.argv.index("--code-root") + 1]).resolve()))
else:
    sys.path.insert(0, str(ROOT))

# _common from this script's folder, also when --code-root puts an older checkout first
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_csv  # noqa: E402

import mrbench  # noqa: E402, F401  (maps mrbench_methods to methods/ in a checkout)
from mrbench_methods import registry  # noqa: E402

OUT = ROOT / "benchmarks" / "results" / "train_throughput.csv"
PAPER_SIZE = 256
#: dense peak TFLOP/s per (GPU name fragment, precision), from the vendors' data sheets
PEAK_TFLOPS: dict[tuple[str, str], float] = {
    ("H200", "bf16"): 989.0,
    ("H200", "fp32"): 67.0,
    ("H100", "bf16"): 989.0,
    ("H100", "fp32"): 67.0,
    ("A100", "bf16"): 312.0,
    ("A100", "fp32"): 19.5,
}


def peak_tflops(device: torch.device, precision: str, given: float | None) -> float | None:
    """The device's peak TFLOP/s: ``given``, else :data:`PEAK_TFLOPS` for a known GPU."""
    if given:
        return given
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    return next((v for (k, p), v in PEAK_TFLOPS.items() if k in name and p == precision), None)


def step_flops(model: torch.nn.Module, data: dict[str, torch.Tensor], step: int) -> float:
    """FLOPs of one training step (forward + backward), counted by torch's FlopCounterMode."""
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        model.train_step(data, step)
    return float(counter.get_total_flops())


def _acceleration() -> Any:
    """The trainer's speed switches: ``mrbench.training.acceleration``, or
    ``mrbench.acceleration`` in a checkout from before the stage packages (--code-root); None in
    one older still."""
    import importlib

    for name in ("mrbench.training.acceleration", "mrbench.acceleration"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    return None


def _fast_optimizers(model: torch.nn.Module, impl: str) -> None:
    accel = _acceleration()
    if accel is None or not hasattr(accel, "use_optimizer_impl"):
        return  # an older checkout (--code-root) without the switch
    accel.use_optimizer_impl(model.optimizers(), impl)


def _memory_format(model: torch.nn.Module, name: str) -> str:
    """The trainer's ``memory_format``; an older checkout without it stays contiguous."""
    accel = _acceleration()
    if accel is None or not hasattr(accel, "use_memory_format"):
        return "contiguous"
    accel.use_memory_format(model, name)
    return name


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
    out = {"a": t1, "b": t2, "mask_a": mask, "mask_b": mask.clone()}  # the neutral contract
    return {k: v.to(device) for k, v in out.items()}


def _peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(
    plugin: str,
    params: dict,
    size: int,
    batch: int,
    steps: int,
    device: torch.device,
    *,
    amp: bool = False,
    optimizer_impl: str = "fused",
    memory_format: str = "contiguous",
    count_flops: bool = True,
    peak: float | None = None,
) -> dict[str, Any]:
    """One row: seconds per step (mean of ``steps`` timed steps after a warm-up), images/s,
    FLOPs per step (an extra, untimed step), achieved TFLOP/s, fraction of ``peak``, memory."""
    cls = registry()[plugin]
    torch.manual_seed(0)
    model = cls(params, image_size=size).to(device)
    model.train()
    _fast_optimizers(model, optimizer_impl)
    layout = _memory_format(model, memory_format)
    data = _batch(batch, size, device)
    cast = (
        torch.autocast(device.type, dtype=torch.bfloat16)
        if amp
        else torch.autocast(device.type, enabled=False)
    )
    with cast:
        model.train_step(data, 0)  # warm-up (allocations, cuDNN choices)
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        t0, c0 = time.perf_counter(), time.process_time()
        for step in range(1, steps + 1):
            model.train_step(data, step)
        if device.type == "cuda":
            torch.cuda.synchronize()
        sec = (time.perf_counter() - t0) / steps
        cpu_sec = (time.process_time() - c0) / steps
        peak_mb = _peak_mb(device)
        flops = step_flops(model, data, steps + 1) if count_flops else float("nan")
    n_params = sum(p.numel() for p in model.parameters())
    # per network, as the method groups them (e.g. DRIT++'s official classes)
    networks = ";".join(f"{k}={v / 1e6:.2f}M" for k, v in model.num_parameters().items())
    achieved = flops / sec / 1e12
    return {
        "method": plugin,
        "px": size,
        "batch": batch,
        "params_M": round(n_params / 1e6, 3),
        "networks": networks,
        "sec_per_step": round(sec, 4),
        "cpu_sec_per_step": round(cpu_sec, 4),
        "images_per_s": round(batch / sec, 3),
        "gflop_per_step": round(flops / 1e9, 2),
        "achieved_tflops": round(achieved, 4),
        "frac_of_peak": round(achieved / peak, 4) if peak else "",
        "peak_mem_mb": round(peak_mb, 1),
        "timed_steps": steps,
        "precision": "bf16" if amp else "fp32",
        "memory_format": layout,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--methods", default="", help="comma-separated plugins (default: all)")
    p.add_argument("--sizes", default="demo,paper", help="demo, paper or both")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--steps", type=int, default=5, help="timed steps (demo, and paper on GPU)")
    p.add_argument("--paper-steps", type=int, default=1, help="timed paper-size steps on CPU")
    p.add_argument("--paper-batch", type=int, default=1, help="batch at paper size")
    p.add_argument("--paper-size", type=int, default=PAPER_SIZE, help="px of the paper size")
    p.add_argument(
        "--paper-params", default="{}",
        help='JSON {plugin: {param: value}} overrides at paper size (e.g. fewer '
        'discriminator levels when --paper-size is below 256)',
    )  # fmt: skip
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads")
    p.add_argument("--out", type=Path, default=OUT)
    p.add_argument("--amp", action="store_true", help="bfloat16 autocast (CPU and CUDA)")
    p.add_argument(
        "--optimizer-impl", default="fused", choices=("fused", "foreach", "default"),
        help="Adam implementation (the trainer's optimizer_impl; default fused)",
    )  # fmt: skip
    p.add_argument(
        "--memory-format", default="contiguous", choices=("contiguous", "channels_last"),
        help="layout of the weights (the trainer's memory_format; default contiguous)",
    )  # fmt: skip
    p.add_argument("--no-flops", action="store_true", help="skip the FLOP-counting step")
    p.add_argument("--peak-tflops", type=float, default=None, help="device peak TFLOP/s")
    p.add_argument(
        "--code-root", type=Path, default=None,
        help="import mrbench and methods/ from this checkout instead (before/after comparisons)",
    )  # fmt: skip
    p.add_argument("--tag", default="", help="a label written in every row (e.g. before/after)")
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
                params = dict(json.loads(args.paper_params).get(name, {}))
                px, batch = args.paper_size, args.paper_batch
                steps = args.steps if device.type == "cuda" else args.paper_steps
            precision = "bf16" if args.amp else "fp32"
            row = {"tag": args.tag, "size": size}
            row |= measure(
                name, params, px, batch, steps, device, amp=args.amp,
                optimizer_impl=args.optimizer_impl, memory_format=args.memory_format,
                count_flops=not args.no_flops,
                peak=peak_tflops(device, precision, args.peak_tflops),
            )  # fmt: skip
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
    write_csv(args.out, machine, rows, cols)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
