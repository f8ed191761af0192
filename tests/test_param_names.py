"""One vocabulary for shared networks: the NCSN++ generator, the time-conditioned discriminator
and the few-step diffusion take the same parameter names in every method; old names still work
for one release, with a warning, and build the same networks."""

from __future__ import annotations

import warnings

import pytest

from mrbench.config.resolve import ConfigError, check_config, method_spec_dict
from mrbench_methods import get_plugin
from mrbench_methods.base import RenamedParameterWarning

SHARED = {"unet_ch", "unet_mult", "unet_res_blocks", "unet_attn", "nz", "z_emb_dim", "n_mlp"}
SHARED |= {"tdis_ch", "tdis_t_emb", "tdis_down", "r1_gamma", "r1_every", "num_steps"}
SHARED |= {"beta_min", "beta_max"}


@pytest.mark.parametrize("plugin", ["syndiff", "disdiff"])
def test_adversarial_diffusion_methods_share_names(plugin: str) -> None:
    assert set(get_plugin(plugin).defaults) >= SHARED


def test_unet_methods_share_the_unet_names() -> None:
    assert {"unet_ch", "unet_mult", "unet_res_blocks", "unet_attn"} <= set(
        get_plugin("unit_ddpm").defaults
    )


OLD_SYNDIFF = {
    "nf": 8,
    "ch_mult": [1, 2],
    "num_res_blocks": 1,
    "attn_resolutions": [],
    "z_emb_dim": 16,
    "n_mlp": 1,
    "ngf_d": 4,
    "t_emb_dim": 16,
    "d_n_down": 2,
    "lazy_reg": 5,
    "num_timesteps": 2,
    "ngf_cycle": 4,
    "n_blocks_cycle": 1,
    "ndf_cycle": 4,
    "n_layers_cycle": 1,
}


def test_old_names_warn_and_build_the_same_networks() -> None:
    cls = get_plugin("syndiff")
    new = {cls.aliases.get(k, k): v for k, v in OLD_SYNDIFF.items()}
    with pytest.warns(RenamedParameterWarning, match="'d_n_down' is now 'tdis_down'"):
        old_model = cls(OLD_SYNDIFF, image_size=16)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new_model = cls(new, image_size=16)
    assert old_model.params == new_model.params
    assert old_model.params["r1_every"] == 5 and old_model.sampling_steps == 2
    assert old_model.num_parameters() == new_model.num_parameters()
    with pytest.raises(ValueError, match="both 'nf' and its new name 'unet_ch'"):
        cls({"nf": 8, "unet_ch": 8}, image_size=16)
    with pytest.warns(RenamedParameterWarning):
        assert get_plugin("disdiff").rename_params({"num_timesteps": 2}) == {"num_steps": 2}


def test_config_accepts_old_names_and_resolves_them() -> None:
    config = {
        "methods": {"s": {"plugin": "syndiff", "params": {"nf": 8, "lazy_reg": 3}}},
        "training": {},
    }
    check_config(config)
    with pytest.warns(RenamedParameterWarning, match="methods.s.params"):
        params = method_spec_dict(config, "s")["params"]
    assert params["unet_ch"] == 8 and params["r1_every"] == 3 and "nf" not in params
    config["methods"]["s"]["params"] = {"nff": 8}
    with pytest.raises(ConfigError, match="methods.s.params.nff"):
        check_config(config)
