"""Cluster resource requests of training jobs scale with the work and fail clearly on bad config."""

from __future__ import annotations

import pytest

from mrbench.config import resources as R


def spec(plugin: str = "disdiff", **training: object) -> dict:
    base = {"steps": 1000, "batch_size": 2, "num_workers": 2}
    base.update(training)
    return {"plugin": plugin, "params": {}, "training": base}


def test_runtime_grows_with_steps_image_size_and_batch() -> None:
    small = R.train_runtime_minutes(spec(steps=10_000), 64)
    assert R.train_runtime_minutes(spec(steps=100_000), 64) > small
    assert R.train_runtime_minutes(spec(steps=10_000), 256) > small
    assert R.train_runtime_minutes(spec(steps=10_000, batch_size=8), 64) > small


def test_runtime_formula_and_diffusion_costs_more_than_gan() -> None:
    s = spec("cyclegan", steps=60_000, batch_size=1)
    from mrbench_methods.base import get_plugin

    cost = get_plugin("cyclegan").seconds_per_image_256
    expected = (60_000 * cost / 60 + R.OVERHEAD_MINUTES) * R.SAFETY
    assert R.train_runtime_minutes(s, 256) == pytest.approx(expected, abs=1)
    assert R.train_runtime_minutes(spec("disdiff", steps=60_000), 256) > R.train_runtime_minutes(
        spec("cyclegan", steps=60_000), 256
    )


def test_retry_gets_more_time_and_memory() -> None:
    s = spec(steps=50_000)
    assert R.train_runtime_minutes(s, 256, attempt=2) > R.train_runtime_minutes(s, 256)
    assert R.train_mem_mb(s, 256, attempt=2) > R.train_mem_mb(s, 256)


def test_data_parallel_job_divides_time_and_multiplies_memory() -> None:
    one, two = spec(steps=100_000), spec(steps=100_000, gpus_per_job=2)
    assert R.train_runtime_minutes(two, 256) < R.train_runtime_minutes(one, 256)
    assert R.train_mem_mb(two, 256) > R.train_mem_mb(one, 256)
    assert R.train_gpus(two) == 2


def test_gpu_resource_switch_and_untrainable_methods() -> None:
    s = spec(gpus_per_job=2)
    assert R.train_gpus(s, {"gpu_resource": False}) == 0
    assert R.train_gpus(s, {}) == 2
    assert R.train_gpus(spec("identity")) == 0
    assert R.train_runtime_minutes(spec("identity"), 256) == R.UNTRAINED_MINUTES
    # a CPU job is estimated slower than a GPU job
    assert R.train_runtime_minutes(s, 256, config={"gpu_resource": False}) > (
        R.train_runtime_minutes(s, 256)
    )


@pytest.mark.parametrize(
    ("bad", "key"),
    [({"steps": -1}, "training.steps"), ({"batch_size": "x"}, "training.batch_size")],
)
def test_bad_training_values_name_the_key(bad: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key):
        R.train_runtime_minutes(spec(**bad), 64)


def test_missing_steps_and_bad_switch() -> None:
    with pytest.raises(ValueError, match="training.steps is missing"):
        R.train_runtime_minutes({"plugin": "disdiff", "training": {}}, 64)
    with pytest.raises(ValueError, match="gpu_resource"):
        R.gpu_enabled({"gpu_resource": "no"})


def test_launcher_uses_torchrun_only_for_several_gpus() -> None:
    assert R.train_launcher(0) == "python -m mrbench.cli"
    assert R.train_launcher(1, python="/usr/bin/python3") == "/usr/bin/python3 -m mrbench.cli"
    cmd = R.train_launcher(4, python="/usr/bin/python3")
    assert cmd.startswith("/usr/bin/python3 -m torch.distributed.run")
    assert "--nproc-per-node=4" in cmd and cmd.endswith("-m mrbench.cli")
