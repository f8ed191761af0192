"""Cluster resources of the training rules: GPUs, CPUs, memory and wall time from the config.

A batch scheduler kills a job that outlives its ``runtime`` or its ``mem_mb``, and queues a job that
asks for far more than it needs behind everyone else. The training rules therefore derive their
requests from what the job will do: the number of optimisation steps, the batch size, the image
size (cost grows with the pixel count) and the method (a diffusion model's step costs several
GAN steps). The per-method cost is the plugin's ``seconds_per_image_256`` trait: an estimate for
one current datacentre GPU at 256 px (from FLOP counts, not yet a measured time; the figure to
replace it is what ``benchmarks/train_throughput.py`` measures on that GPU); a run that needs
another limit overrides it on the command line (``--set-resources train:runtime=<minutes>``).

The rule's ``resources:`` call these functions with the method's resolved spec, i.e. the config
entry ``{"plugin": ..., "params": {...}, "training": {...}}`` whose ``training`` section is the
global ``training`` section with the method's overrides applied. A bare training section is
accepted as well. Snakemake passes ``attempt`` (1, 2, ...) to resource callables: a retried job
(timeout, preemption) resumes from its last checkpoint and gets more time than the first try.

Keys read from ``training``: ``steps``, ``batch_size``, ``gpus_per_job`` (default 1) and
``num_workers`` (data-loader processes per GPU, default 2). The top-level config key
``gpu_resource: false`` switches the ``gpu`` resource off (CPU-only runs, e.g. the SLURM test on a
cluster without GPUs); the job then trains on CPU in one process.
"""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from typing import Any

from mrbench.config.facts_cache import memoized

#: cost used for a plugin whose ``seconds_per_image_256`` is unknown (None): assume a diffusion
#: model (seconds of one training step per image at 256 px on one reference GPU)
DEFAULT_SECONDS_PER_IMAGE_256 = 0.35
#: a CPU step is this many times slower than a GPU step (conservative for small models)
CPU_SLOWDOWN = 40.0
#: fixed minutes per job: start-up, data loading, checkpoints, final model
OVERHEAD_MINUTES = 10
#: wall time of a non-trainable method (fits a lookup table or nothing)
UNTRAINED_MINUTES = 15
#: safety factor on the estimate; each retry adds half of it again
SAFETY = 1.5
#: SLURM limits rarely allow more than a week
MAX_MINUTES = 7 * 24 * 60
#: a forward pass costs about a third of a training step (forward and backward) per image: the
#: translation cost of a plugin that states none (one generator pass per slice)
FORWARD_SHARE = 1.0 / 3.0
#: test slices per direction assumed before the test split exists (IXI's is about 2,000)
DEFAULT_TEST_SLICES = 2500


def _training(spec: Mapping[str, Any]) -> Mapping[str, Any]:
    training = spec.get("training", spec)
    if not isinstance(training, Mapping):
        raise ValueError(f"training section must be a mapping, got {type(training).__name__}")
    return training


def _int_key(training: Mapping[str, Any], key: str, default: int | None = None) -> int:
    value = training.get(key, default)
    if value is None:
        raise ValueError(f"training.{key} is missing (needed for the job's resources)")
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise ValueError(f"training.{key} must be a non-negative number, got {value!r}")
    return int(value)


def _plugin(spec: Mapping[str, Any]) -> Any:
    from mrbench_methods.base import get_plugin

    try:
        return get_plugin(str(spec.get("plugin")))
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None


def _trainable(spec: Mapping[str, Any]) -> bool:
    """The spec's ``trainable`` (resolved entries carry it), else the plugin's trait."""
    if "trainable" in spec:
        return bool(spec["trainable"])
    return bool(_plugin(spec).trainable)


@memoized("plugin_seconds_per_image_256")
def plugin_seconds_per_image_256(spec: Mapping[str, Any]) -> float:
    """The plugin's estimated ``seconds_per_image_256``, or the cautious default if unknown."""
    cost = _plugin(spec).seconds_per_image_256
    return DEFAULT_SECONDS_PER_IMAGE_256 if cost is None else float(cost)


@memoized("plugin_translate_seconds_per_image_256")
def plugin_translate_seconds_per_image_256(spec: Mapping[str, Any]) -> float | None:
    """The plugin's stated ``translate_seconds_per_image_256``, ``None`` if it states none
    (memoized: a warm dry run must not import the plugins and torch)."""
    cost = getattr(_plugin(spec), "translate_seconds_per_image_256", None)
    return None if cost is None else float(cost)


def translate_seconds_per_image(spec: Mapping[str, Any], image_size: int) -> float:
    """Estimated GPU seconds to translate one slice of ``image_size`` px: the plugin's
    ``translate_seconds_per_image_256`` (diffusion samplers state it: hundreds of network
    evaluations per slice), else one forward pass, :data:`FORWARD_SHARE` of a training step."""
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    cost = plugin_translate_seconds_per_image_256(spec)
    if cost is None:
        cost = plugin_seconds_per_image_256(spec) * FORWARD_SHARE
    return float(cost) * (image_size / 256.0) ** 2


def validations(training: Mapping[str, Any]) -> int:
    """How many validations a run makes: one every ``val_every_epochs`` of ``epochs``, else one
    every ``val_every`` of ``steps``, and one after the last step; 0 if neither is set."""
    epochs, every_epochs = training.get("epochs"), training.get("val_every_epochs")
    if epochs and every_epochs:
        return math.ceil(float(epochs) / float(every_epochs)) + 1
    steps, every = training.get("steps"), training.get("val_every")
    if steps and every:
        return math.ceil(float(steps) / float(every)) + 1
    return 0


def validation_minutes(spec: Mapping[str, Any], image_size: int) -> float:
    """GPU minutes of one validation: ``val_max_slices`` slices translated in both directions."""
    slices = _int_key(_training(spec), "val_max_slices", 0)
    return 2 * slices * translate_seconds_per_image(spec, image_size) / 60.0


def translate_runtime_minutes(
    spec: Mapping[str, Any], image_size: int, n_slices: int | None = None, attempt: int = 1
) -> int:
    """Wall-time request (minutes) of one ``translate`` job: ``n_slices`` test slices (default
    :data:`DEFAULT_TEST_SLICES`) at the plugin's translation cost, on one GPU, with the
    training jobs' overhead and safety factor."""
    n = DEFAULT_TEST_SLICES if n_slices is None else max(1, int(n_slices))
    minutes = n * translate_seconds_per_image(spec, image_size) / 60.0 + OVERHEAD_MINUTES
    factor = SAFETY * (1.0 + 0.5 * (max(1, attempt) - 1))
    return int(min(MAX_MINUTES, math.ceil(minutes * factor)))


def gpu_enabled(config: Mapping[str, Any]) -> bool:
    """Whether jobs request the ``gpu`` resource (config key ``gpu_resource``, default true)."""
    value = config.get("gpu_resource", True)
    if not isinstance(value, bool):
        raise ValueError(f"gpu_resource must be true or false, got {value!r}")
    return value


def train_gpus(spec: Mapping[str, Any], config: Mapping[str, Any] | None = None) -> int:
    """GPUs one training job asks for: ``training.gpus_per_job`` (default 1), 0 without GPUs."""
    if config is not None and not gpu_enabled(config):
        return 0
    if not _trainable(spec):
        return 0
    gpus = _int_key(_training(spec), "gpus_per_job", 1)
    return gpus


def eval_gpus(config: Mapping[str, Any], method_gpus: int, device: str) -> int:
    """GPUs an evaluation job (``translate``, ``fidelity``) asks for: one where it may run on a
    GPU (the method trains on one, the GPU resource is on and ``evaluation.device`` is not
    ``cpu``), else none. A job that asks for none is pinned to the CPU (:func:`eval_device`): a
    job that takes a GPU lock without Snakemake counting it would wait for, or crowd, the GPUs
    Snakemake gave to trainings."""
    if not gpu_enabled(config) or str(device) == "cpu" or int(method_gpus) <= 0:
        return 0
    return 1


def eval_device(device: str, gpus: int) -> str:
    """``--device`` of an evaluation job that asked for ``gpus`` GPUs: the configured device
    where it has one, ``cpu`` where it has none."""
    return str(device) if gpus else "cpu"


def seconds_per_image(spec: Mapping[str, Any], image_size: int, gpus: int = 1) -> float:
    """Estimated seconds of one training step per image for ``spec`` at ``image_size`` px."""
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    base = plugin_seconds_per_image_256(spec)
    cost = base * (image_size / 256.0) ** 2
    return cost * (CPU_SLOWDOWN if gpus == 0 else 1.0)


def train_runtime_minutes(
    spec: Mapping[str, Any],
    image_size: int,
    attempt: int = 1,
    config: Mapping[str, Any] | None = None,
) -> int:
    """Wall-time request (minutes) of one training job.

    steps x batch size x seconds per image (scaled with the pixel count, divided over the GPUs
    of a data-parallel job), plus every validation (:func:`validations` x
    :func:`validation_minutes`; a diffusion sampler's validation can outweigh its training),
    plus a fixed overhead, times a safety factor that grows by half with each retry. A bad or
    missing key raises ValueError naming it.
    """
    if not _trainable(spec):
        return UNTRAINED_MINUTES * attempt
    training = _training(spec)
    steps = _int_key(training, "steps")
    batch = max(1, _int_key(training, "batch_size", 1))
    gpus = train_gpus(spec, config)
    per_step = seconds_per_image(spec, image_size, gpus) * batch / max(1, gpus)
    # process 0 validates alone, on one device (on the CPU that many times slower)
    val = validations(training) * validation_minutes(spec, image_size)
    val *= CPU_SLOWDOWN if gpus == 0 else 1.0
    minutes = steps * per_step / 60.0 + val + OVERHEAD_MINUTES
    factor = SAFETY * (1.0 + 0.5 * (max(1, attempt) - 1))
    return int(min(MAX_MINUTES, math.ceil(minutes * factor)))


def train_mem_mb(
    spec: Mapping[str, Any],
    image_size: int,
    attempt: int = 1,
    config: Mapping[str, Any] | None = None,
    data_mb: float = 0.0,
) -> int:
    """Host memory (MB) of one training job.

    A python/torch process needs about 3 GB; each data-loader worker holds a copy of the batch
    pipeline; the slice store (``data_mb``, e.g. ``input.size_mb`` of the train split) is read
    into memory once per process. A retry after an out-of-memory kill asks for half as much again.
    """
    training = _training(spec)
    procs = max(1, train_gpus(spec, config))
    workers = _int_key(training, "num_workers", 2)
    batch = max(1, _int_key(training, "batch_size", 1))
    pixels = (image_size / 256.0) ** 2
    per_process = 3000 + workers * (300 + 50 * batch * pixels) + 1.2 * float(data_mb)
    mem = procs * per_process * (1.0 + 0.5 * (max(1, attempt) - 1))
    return int(math.ceil(mem / 100.0) * 100)


def train_launcher(gpus: int, python: str | None = None) -> str:
    """Command that starts ``mrbench`` for a training job with ``gpus`` GPUs.

    One GPU (or none): ``python -m mrbench.cli``. Several: torchrun on this node with one
    process per GPU; every process runs ``mrbench.cli`` and :mod:`mrbench.training.distributed`
    picks up the rank. ``python`` is the job's interpreter: the first on ``PATH`` (the environment
    that runs Snakemake, or the rule's conda environment).
    """
    exe = shlex.quote(python or "python")
    if gpus <= 1:
        return f"{exe} -m mrbench.cli"
    return (
        f"{exe} -m torch.distributed.run --standalone --nnodes=1 --nproc-per-node={int(gpus)}"
        " -m mrbench.cli"
    )
