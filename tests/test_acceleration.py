"""Speed-ups keep the function: each fast path against the plain one, and the trainer's switches."""

from __future__ import annotations

import copy
import csv
import math
from pathlib import Path

import pytest
import torch
from conftest import seeded, tiny_training

from mrbench.training import acceleration, loop
from mrbench.training.settings import resolve_training
from mrbench_methods import registry
from mrbench_methods.nets import ncsnpp

TRAINABLE = sorted(n for n, c in registry().items() if c.trainable)


@pytest.mark.parametrize("taps", [(1, 3, 3, 1), (1, 2, 5, 1), (1, 2, 1), (1, 1)])
@pytest.mark.parametrize("factor", [2, 3])
def test_fir_resampling_equals_upfirdn(taps: tuple[float, ...], factor: int) -> None:
    """Transposed/strided depthwise convolutions give upfirdn2d's output (zero insertion,
    padding, filtering, decimation), asymmetric taps included, with equal gradients."""
    k = ncsnpp.fir_kernel_2d(taps)
    x = torch.randn(2, 5, 12, 12, dtype=torch.float64, requires_grad=True)
    ku = k * factor**2
    p = ku.shape[0] - factor
    ref = ncsnpp.upfirdn2d(x, ku, up=factor, pad=((p + 1) // 2 + factor - 1, p // 2))
    fast = ncsnpp.fir_upsample_2d(x, k, factor)
    assert fast.shape == ref.shape == (2, 5, 12 * factor, 12 * factor)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(ref)
    g_ref = torch.autograd.grad((ref * w).sum(), x)[0]
    g_fast = torch.autograd.grad((fast * w).sum(), x)[0]
    torch.testing.assert_close(g_fast, g_ref, rtol=1e-12, atol=1e-12)
    p = k.shape[0] - factor
    if p >= 0:
        ref = ncsnpp.upfirdn2d(x, k, down=factor, pad=((p + 1) // 2, p // 2))
        torch.testing.assert_close(ncsnpp.fir_downsample_2d(x, k, factor), ref)


def test_fir_conv_down_equals_padded_blur() -> None:
    torch.manual_seed(0)
    block = ncsnpp.FIRConvDown(3, 4, (1, 3, 3, 1))
    x = torch.randn(2, 3, 16, 16)
    ref = block.conv(ncsnpp.upfirdn2d(x, block.fir, pad=(2, 2)))
    torch.testing.assert_close(block(x), ref, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("impl", ["fused", "foreach"])
def test_optimizer_impl_matches_default_adam(impl: str) -> None:
    torch.manual_seed(0)
    nets = [torch.nn.Sequential(torch.nn.Linear(20, 30), torch.nn.Tanh(), torch.nn.Linear(30, 5))]
    nets.append(copy.deepcopy(nets[0]))
    opts = [torch.optim.Adam(n.parameters(), lr=1e-2, betas=(0.5, 0.9)) for n in nets]
    assert acceleration.use_optimizer_impl({"o": opts[1]}, impl) == ["o"]
    x = torch.randn(16, 20)
    for _ in range(5):
        for n, o in zip(nets, opts, strict=True):
            o.zero_grad()
            n(x).pow(2).mean().backward()
            o.step()
    for a, b in zip(nets[0].parameters(), nets[1].parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    state = opts[1].state_dict()["param_groups"][0]
    assert state["fused"] is (impl == "fused")
    with pytest.raises(ValueError, match="optimizer_impl"):
        acceleration.use_optimizer_impl({"o": opts[1]}, "turbo")


def test_syndiff_step_runs_each_cycle_generator_twice() -> None:
    """The non-diffusive estimates are shared by the three updates: per step each cycle
    generator runs once on a real image and once on the other's estimate (was: three times)."""
    cls = registry()["syndiff"]
    torch.manual_seed(0)
    model = cls(dict(cls.tiny_params), image_size=16)
    calls = {"a": 0, "b": 0}
    model.cyc_a_to_b.register_forward_hook(lambda *a: calls.__setitem__("a", calls["a"] + 1))
    model.cyc_b_to_a.register_forward_hook(lambda *a: calls.__setitem__("b", calls["b"] + 1))
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    before = [p.clone() for p in model.cyc_a_to_b.parameters()]
    losses = model.train_step({"a": x, "b": -x}, 0)
    assert calls == {"a": 2, "b": 2}
    assert all(math.isfinite(v) for v in losses.values())
    after = list(model.cyc_a_to_b.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))


def test_compile_networks_keeps_outputs_and_names() -> None:
    cls = registry()["cyclegan"]
    torch.manual_seed(0)
    model = cls(dict(cls.tiny_params), image_size=16).eval()
    x = torch.rand(2, 1, 16, 16) * 2 - 1
    ref = model.translate(x, "a_to_b")
    keys = list(model.state_dict())
    assert acceleration.compile_networks(model, "aot_eager") >= 2
    torch.testing.assert_close(model.translate(x, "a_to_b"), ref, rtol=1e-5, atol=1e-6)
    assert list(model.state_dict()) == keys
    assert acceleration.compile_networks(model, False) == 0


def test_autocast_is_bfloat16_on_cpu() -> None:
    lin = torch.nn.Linear(4, 4)
    with acceleration.autocast(torch.device("cpu"), True):
        assert lin(torch.randn(2, 4)).dtype == torch.bfloat16
    with acceleration.autocast(torch.device("cpu"), False):
        assert lin(torch.randn(2, 4)).dtype == torch.float32


@pytest.mark.parametrize("name", TRAINABLE)
def test_bf16_autocast_trains_every_method_on_cpu(
    name: str, phantom_store: Path, tmp_path: Path
) -> None:
    """``amp: true`` trains a tiny model through the trainer on the CPU without NaN (the
    trainer stops on a non-finite loss) and validates to finite scores."""
    cls = registry()[name]
    training = tiny_training(2, 2, amp=True)
    spec = {"method": name, "plugin": name, "params": dict(cls.tiny_params), "training": training}
    loop.train(spec, phantom_store, tmp_path / name, seed=0, log=lambda m: None)
    with (tmp_path / name / "val_log.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert rows and math.isfinite(float(rows[-1]["psnr"]))
    with (tmp_path / name / "train_log.csv").open() as f:
        logged = list(csv.DictReader(f))
    assert logged


def test_training_keys_are_validated() -> None:
    cls = registry()["cyclegan"]
    t = resolve_training(cls, {"optimizer_impl": "foreach", "compile": "aot_eager"})
    assert t["optimizer_impl"] == "foreach" and t["compile"] == "aot_eager"
    assert resolve_training(cls, {})["optimizer_impl"] == "fused"
    with pytest.raises(Exception, match="optimizer_impl"):
        resolve_training(cls, {"optimizer_impl": "fast"})
    assert resolve_training(cls, {})["memory_format"] == "contiguous"
    t = resolve_training(cls, {"memory_format": "channels_last"})
    assert t["memory_format"] == "channels_last"
    with pytest.raises(Exception, match="memory_format"):
        resolve_training(cls, {"memory_format": "nhwc"})


def test_disdiff_shared_decoder_block_gives_the_plain_decode() -> None:
    """DisDiff's step runs the decoders' shared block once per content map: its cross-modal
    images and reconstructions equal ``Disentangler.decode`` (the plain path)."""
    cls = registry()["disdiff"]
    torch.manual_seed(0)
    model = cls(dict(cls.tiny_params), image_size=16)
    model.disentangler.content_noise = 0.0
    x = {"a": torch.rand(2, 1, 16, 16) * 2 - 1, "b": torch.rand(2, 1, 16, 16) * 2 - 1}
    calls = []
    model.disentangler.dec_share.register_forward_hook(lambda *a: calls.append(1))
    out = model._disentangle(x)
    assert len(calls) == 4  # z_c of both inputs, z_c of both cross-modal images
    net = model.disentangler
    for i, j in (("a", "b"), ("b", "a")):
        torch.testing.assert_close(out["fake"][j], net.decode(out["zc"][i], out["za"][j], j))
        torch.testing.assert_close(out["recon"][i], net.decode(out["zc"][i], out["za"][i], i))


@pytest.mark.parametrize("size", [(32, 32), (8, 8), (16, 16)])
def test_ncsnpp_condition_projection_commutes_with_resizing(size: tuple[int, int]) -> None:
    """Projecting the content map before enlarging it gives the resize-then-project result."""
    torch.manual_seed(0)
    net = ncsnpp.NCSNpp(
        in_ch=1, image_size=32, nf=8, ch_mult=(1, 2, 2, 2), num_res_blocks=1,
        attn_resolutions=(), nz=4, z_emb_dim=8, n_mlp=1, cond_channels=6,
    )  # fmt: skip
    torch.nn.init.normal_(net.cond_proj["0"].bias)
    cond = torch.randn(2, 6, 16, 16, dtype=torch.float64)
    net = net.double()
    got = net._cond_at(cond, 0, size)
    shrink = size[1] < 16
    plain = torch.nn.functional.interpolate(
        cond, size=size, mode="bilinear", align_corners=False, antialias=shrink
    )
    torch.testing.assert_close(got, net.cond_proj["0"](plain), rtol=1e-12, atol=1e-12)


def test_ncsnpp_shrinking_condition_runs_under_bf16_autocast() -> None:
    """Levels smaller than the content map resize it with antialiasing, which has no bfloat16
    CPU kernel: under autocast the condition is resized in float32."""
    torch.manual_seed(0)
    net = ncsnpp.NCSNpp(
        in_ch=1, image_size=16, nf=8, ch_mult=(1, 2, 2), num_res_blocks=1,
        attn_resolutions=(), nz=4, z_emb_dim=8, n_mlp=1, cond_channels=3,
    )  # fmt: skip
    x, t, z = torch.randn(2, 1, 16, 16), torch.tensor([0, 3]), torch.randn(2, 4)
    cond = torch.randn(2, 3, 16, 16).to(torch.bfloat16)  # as a bf16 encoder would give it
    with acceleration.autocast(torch.device("cpu"), True):
        out = net(x, t, z, cond=cond)
    assert out.shape == (2, 1, 16, 16) and torch.isfinite(out.float()).all()


@pytest.mark.parametrize("name", ["syndiff", "disdiff", "cyclegan"])
def test_channels_last_step_equals_contiguous(name: str) -> None:
    """One training step in the channels-last layout gives the contiguous step's losses and
    updated weights (float rounding), and the weights stay channels-last through it."""
    cls = registry()[name]
    torch.manual_seed(0)
    ref = cls(dict(cls.tiny_params), image_size=16)
    fast = copy.deepcopy(ref)
    for m in (ref, fast):
        m.train()
        acceleration.use_optimizer_impl(m.optimizers(), "fused")
        # Adam's first update is lr * g / (|g| + eps): for a convolution bias followed by an
        # instance norm g is pure rounding noise, which eps 1e-8 would blow up to +-lr; a
        # larger eps compares the updates where the gradients carry information
        for opt in m.optimizers().values():
            for group in opt.param_groups:
                group["eps"] = 1e-3
    assert acceleration.use_memory_format(fast, "channels_last") > 0
    g = torch.Generator().manual_seed(1)
    x = torch.rand(2, 1, 16, 16, generator=g) * 2 - 1
    batch = {"a": x, "b": -x.flip(-1), "mask_a": torch.ones_like(x)}
    batch["mask_b"] = torch.ones_like(x)
    state = torch.get_rng_state()
    losses_ref = ref.train_step(batch, 0)
    torch.set_rng_state(state)
    losses_fast = fast.train_step(batch, 0)
    assert losses_fast.keys() == losses_ref.keys()
    for k, v in losses_ref.items():
        assert losses_fast[k] == pytest.approx(v, rel=1e-4, abs=1e-5), k
    named = dict(fast.named_parameters())
    for k, p in ref.named_parameters():
        torch.testing.assert_close(named[k], p, rtol=1e-4, atol=1e-5, msg=k)
        if p.dim() == 4:
            assert named[k].is_contiguous(memory_format=torch.channels_last), k
    with torch.no_grad():
        ref.eval()
        fast.eval()
        out_ref, out_fast = (seeded(2, m.translate, x, "a_to_b") for m in (ref, fast))
    torch.testing.assert_close(out_fast, out_ref, rtol=1e-4, atol=1e-5)


def test_channels_last_aligns_loaded_optimizer_states() -> None:
    """A fused Adam state written in the contiguous layout is reordered on load: otherwise the
    fused kernel would pair the moments with the wrong weights."""
    torch.manual_seed(0)
    nets = [torch.nn.Conv2d(3, 4, 3), None]
    nets[1] = copy.deepcopy(nets[0])
    opts = [torch.optim.Adam(n.parameters(), lr=0.1, fused=True) for n in nets]
    x = torch.randn(2, 3, 8, 8)
    for n, o in zip(nets, opts, strict=True):
        n(x).pow(2).mean().backward()
        o.step()
        o.zero_grad()
    saved = opts[1].state_dict()
    holder = torch.nn.Module()
    holder.net = nets[1]
    holder.optimizers = lambda: {"o": opts[1]}
    assert acceleration.use_memory_format(holder, "channels_last") == 1
    opts[1].load_state_dict(saved)
    moment = opts[1].state[nets[1].weight]["exp_avg"]
    assert moment.is_contiguous(memory_format=torch.channels_last)
    for n, o in zip(nets, opts, strict=True):
        n(x).pow(2).mean().backward()
        o.step()
    torch.testing.assert_close(nets[1].weight, nets[0].weight, rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="memory_format"):
        acceleration.use_memory_format(holder, "nhwc")


@pytest.mark.parametrize("affine", [False, True])
def test_channels_last_instance_norm_equals_instance_norm(affine: bool) -> None:
    """The group-norm form of instance norm on channels-last inputs gives torch's instance
    norm (outputs and gradients), and keeps the layout."""
    torch.manual_seed(0)
    ref = torch.nn.InstanceNorm2d(6, affine=affine)
    if affine:
        torch.nn.init.normal_(ref.weight)
        torch.nn.init.normal_(ref.bias)
    net = torch.nn.Sequential(copy.deepcopy(ref))
    assert acceleration.use_memory_format(net, "channels_last") == 0  # nothing 4-D to reorder
    norm = net[0]
    assert isinstance(norm, acceleration.ChannelsLastInstanceNorm2d)
    x = torch.randn(3, 6, 9, 7, dtype=torch.float64) * 3 + 1
    xs = [x.clone().requires_grad_(), x.contiguous(memory_format=torch.channels_last)]
    xs[1].requires_grad_()
    ref, norm = ref.double(), norm.double()
    out_ref, out = ref(xs[0]), norm(xs[1])
    assert out.is_contiguous(memory_format=torch.channels_last) and not out.is_contiguous()
    torch.testing.assert_close(out, out_ref, rtol=1e-10, atol=1e-10)
    w = torch.randn_like(out_ref)
    params = list(ref.parameters())
    g_ref = torch.autograd.grad((out_ref * w).sum(), [xs[0], *params])
    g = torch.autograd.grad((out * w).sum(), [xs[1], *norm.parameters()])
    for a, b in zip(g, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(norm(x), ref(x))  # contiguous input: the plain path
