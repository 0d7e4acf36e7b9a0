"""The config loader: `configs/gardener.ini` is the schema, a user file and `--section.key value`
overrides go on top; anything outside the schema fails with a ConfigError naming what is valid.

The shipped values are being tuned, so tests check types and the override mechanics, never the
default numbers themselves."""
import re

import pytest

from puffer_cluster.kernels.world import CONFIG_FIELDS, WorldParams, make_params
from puffer_cluster import ConfigError, GardenerEnv, GardenerGymEnv, load_config
from puffer_cluster.config import _coerce, config_section, env_defaults, parse_duration, settings_from


@pytest.fixture(scope="module")
def defaults():
    return load_config()


def keys_of_type(config, kind):
    return [(section, key) for section, values in config.items()
            for key, value in values.items() if type(value) is kind]


# --- types --------------------------------------------------------------------------------------

def test_defaults_are_typed(defaults):
    env = defaults["env"]
    assert type(env["oom_limit"]) is float  # oom_collapse_count's fraction of the nodes
    for name in CONFIG_FIELDS:
        kind = WorldParams.__annotations__[name]
        if kind is int:
            assert type(env[name]) is int, name
        else:
            assert type(env[name]) in (int, float), name
    for name in ("num_envs", "log_interval"):
        assert type(env[name]) is int
    assert keys_of_type({"env": env}, str) == [("env", "kernel")]
    assert isinstance(defaults["base"]["env_name"], str)
    params = make_params(env)
    assert isinstance(params.height, int) and isinstance(params.spike_rate, float)


def test_env_defaults_is_the_env_section(defaults):
    assert env_defaults() == defaults["env"]


# --- command-line overrides ---------------------------------------------------------------------

@pytest.mark.parametrize("args", [
    ["--env.height", "32"], ["--env.height=32"], ["--env.height", "3.2e1"], ["--env.height=32.0"],
])
def test_override_forms(args):
    config = load_config(overrides=args)
    assert config["env"]["height"] == 32 and type(config["env"]["height"]) is int


@pytest.mark.parametrize("args", [
    ["--env.red-queen-horizon", "100"], ["--env.red_queen_horizon", "100"],
    ["--env.red-queen-horizon=1e2"], ["--env.red_queen_horizon=100.0"],
])
def test_dashes_become_underscores_and_floats_accept_ints(args):
    value = load_config(overrides=args)["env"]["red_queen_horizon"]
    assert value == 100.0 and type(value) is float


def test_int_from_scientific_notation():
    config = load_config(overrides=["--env.max-steps", "5e3", "--env.num-envs", "4_096"])
    assert config["env"]["max_steps"] == 5000 and type(config["env"]["max_steps"]) is int
    assert config["env"]["num_envs"] == 4096


def test_train_total_timesteps_when_present(defaults):
    if "total_timesteps" not in defaults.get("train", {}):
        pytest.skip("no [train] total_timesteps key yet")
    value = load_config(overrides=["--train.total-timesteps", "5e6"])["train"]["total_timesteps"]
    assert value == 5_000_000 and type(value) is int


def test_several_overrides_and_last_wins(defaults):
    config = load_config(overrides=["--env.height", "8", "--env.width=9", "--env.height", "12",
                                    "--env.spike-rate", "0"])
    assert (config["env"]["height"], config["env"]["width"]) == (12, 9)
    assert config["env"]["spike_rate"] == 0.0 and type(config["env"]["spike_rate"]) is float
    untouched = {k: v for k, v in config["env"].items()
                 if k not in ("height", "width", "spike_rate")}
    assert untouched == {k: v for k, v in defaults["env"].items() if k in untouched}


def test_overrides_do_not_leak_into_later_loads(defaults):
    load_config(overrides=["--env.height", "77"])
    assert load_config() == defaults


@pytest.mark.parametrize("text, value", [
    ("true", True), ("True", True), ("TRUE", True), ("false", False), ("False", False),
])
def test_bool_parsing(text, value):
    assert _coerce(text, False, "x") is value
    assert _coerce(text, True, "x") is value


@pytest.mark.parametrize("text", ["yes", "1", "0", "maybe", ""])
def test_bool_parsing_rejects_other_text(text):
    with pytest.raises(ConfigError, match="bool"):
        _coerce(text, False, "x")


def test_bool_override_of_a_real_key(defaults):
    bools = keys_of_type(defaults, bool)
    if not bools:
        pytest.skip("the schema has no bool key yet")
    section, key = bools[0]
    flag = "--" + section + "." + key.replace("_", "-")
    for text in ("true", "False"):
        assert load_config(overrides=[flag, text])[section][key] is (text.lower() == "true")
    with pytest.raises(ConfigError):
        load_config(overrides=[flag, "1"])


@pytest.mark.parametrize("key, value", [
    ("height", "abc"), ("height", "3.5"), ("height", "True"), ("height", "[1]"),
    ("spike_rate", "abc"), ("spike_rate", "True"), ("spike_rate", "nan"), ("max_steps", "1e400"),
])
def test_type_errors(key, value):
    with pytest.raises(ConfigError, match=key):
        load_config(overrides=[f"--env.{key}", value])


def test_unknown_key_lists_valid_keys():
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["--env.bogus-key", "1"])
    message = str(error.value)
    assert "bogus_key" in message and "valid keys" in message
    assert "height" in message and "red_queen_horizon" in message


def test_unknown_section_lists_valid_sections():
    with pytest.raises(ConfigError) as error:
        load_config(overrides=["--nosuch.height", "1"])
    message = str(error.value)
    assert "nosuch" in message and "env" in message


@pytest.mark.parametrize("args", [
    ["--env.height"], ["env.height", "3"], ["--height", "3"], ["-env.height", "3"],
])
def test_malformed_overrides(args):
    with pytest.raises(ConfigError):
        load_config(overrides=args)


# --- user config files --------------------------------------------------------------------------

def test_user_file_overrides_keys(tmp_path, defaults):
    path = tmp_path / "mine.ini"
    path.write_text("[env]\nheight = 12\nspike_rate = 0.125  # comment\nmax_steps = 1e3\n")
    config = load_config(path)
    assert config["env"]["height"] == 12 and config["env"]["spike_rate"] == 0.125
    assert config["env"]["max_steps"] == 1000 and type(config["env"]["max_steps"]) is int
    assert config["env"]["width"] == defaults["env"]["width"]
    assert config["base"] == defaults["base"]
    # The command line goes on top of the file.
    assert load_config(str(path), ["--env.height", "20"])["env"]["height"] == 20


@pytest.mark.parametrize("text, match", [
    ("[env]\nbogus = 1\n", "bogus"),
    ("[nosuch]\nheight = 1\n", "nosuch"),
    ("[env]\nheight = abc\n", "height"),
    ("not an ini file\n", "bad.ini"),
])
def test_bad_user_file(tmp_path, text, match):
    path = tmp_path / "bad.ini"
    path.write_text(text)
    with pytest.raises(ConfigError, match=match):
        load_config(path)


def test_missing_user_file(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.ini")


# --- the envs use the config --------------------------------------------------------------------

def test_envs_reject_unknown_keys():
    with pytest.raises(ConfigError, match="valid keys"):
        GardenerEnv(bogus=1)
    with pytest.raises(ConfigError, match="bogus"):
        GardenerGymEnv(bogus=1)


def test_env_overrides_take_effect():
    env = GardenerEnv(num_envs=3, height=5, width=7, max_steps=9, log_interval=2)
    assert (env.params.height, env.params.width, env.params.max_steps) == (5, 7, 9)
    assert env.num_agents == 3 and env.log_interval == 2
    assert env.state.nodes.shape[:2] == (3, 35)
    with pytest.raises(ConfigError):
        GardenerEnv(num_envs=0)


@pytest.mark.parametrize("height, width", [(3, 16), (16, 3), (257, 16), (16, 257), (0, 0)])
def test_grid_size_outside_4_to_256_is_rejected(height, width):
    with pytest.raises(ValueError, match="4x4"):
        make_params({**env_defaults(), "height": height, "width": width})
    with pytest.raises(ValueError):
        GardenerEnv(num_envs=1, height=height, width=width)


@pytest.mark.parametrize("height, width", [(4, 4), (4, 256), (256, 256)])
def test_grid_size_limits_are_accepted(height, width):
    params = make_params({**env_defaults(), "height": height, "width": width})
    assert (params.height, params.width) == (height, width)


def test_oom_limit_is_a_fraction_of_the_nodes():
    base = env_defaults()
    assert make_params({**base, "height": 8, "width": 8, "oom_limit": 0.25}).oom_collapse_count == 16
    assert make_params({**base, "height": 4, "width": 5, "oom_limit": 0.5}).oom_collapse_count == 10
    assert make_params({**base, "height": 4, "width": 4, "oom_limit": 0.001}).oom_collapse_count == 1


def test_agents_per_grid_must_be_positive():
    with pytest.raises(ValueError, match="agents_per_grid"):
        make_params({**env_defaults(), "agents_per_grid": 0})


@pytest.mark.parametrize("override, message", [
    ({"budget_init": 2.0}, "budget_init = 2.0 must be within [0, 1]"),
    ({"leak_min": -0.05}, "leak_min = -0.05 must be >= 0"),
    ({"leak_min": 0.01, "leak_max": 0.001}, "leak_min = 0.01 must not exceed leak_max = 0.001"),
    ({"spike_fade": float("nan")}, "spike_fade = nan is not finite"),
    ({"cap_max": 100.0}, "cap_max must be within [1, 64]"),
    ({"oom_limit": 0.0}, "oom_limit = 0.0 must be a fraction"),
    ({"cap_max": 0.5}, "cap_max must be within [1, 64]"),
    ({"max_steps": 0}, "max_steps = 0 must be at least 1"),
    ({"red_queen_horizon": 0.0}, "red_queen_horizon must be > 0"),
])
def test_world_parameters_out_of_range_are_config_errors(override, message):
    from puffer_cluster import ConfigError, GardenerEnv, GardenerGymEnv
    with pytest.raises(ConfigError, match=re.escape(message)):
        GardenerEnv(num_envs=2, **override)
    with pytest.raises(ConfigError, match=re.escape(message)):
        GardenerGymEnv(**override)


def test_batched_step_before_reset_is_refused():
    import gymnasium
    import numpy as np
    from puffer_cluster import GardenerEnv
    env = GardenerEnv(num_envs=2)
    with pytest.raises(gymnasium.error.ResetNeeded):
        env.step(np.zeros(2, dtype=np.int32))


# ---------------------------------------------------------------- settings from the schema


def test_a_settings_class_takes_its_defaults_and_types_from_the_schema():
    @config_section("simkube", shared={"virtual_ns_prefix": "replay"})
    class Simkube:
        driver_image: str
        driver_namespace: str
        driver_port: int
        virtual_ns_prefix: str
        trace_dir: str
        image_pull_delay: int
        image_pull_jitter: int
        pod_startup_delay: int
        pod_startup_jitter: int
        observe_interval: float
        timeout_grace: float
        request_timeout: float

    config = load_config(overrides=["--simkube.driver-port", "9000",
                                    "--replay.virtual-ns-prefix", "sim"])
    assert Simkube().driver_port == load_config()["simkube"]["driver_port"]
    settings = settings_from(Simkube, config)
    assert (settings.driver_port, settings.virtual_ns_prefix) == (9000, "sim")
    assert settings_from(Simkube, {"driver_port": "8080"}).driver_port == 8080
    updated = settings_from(Simkube, settings, observe_interval=3)
    assert updated.observe_interval == 3.0 and isinstance(updated.observe_interval, float)
    assert updated.driver_port == 9000  # the rest kept
    with pytest.raises(ConfigError, match=r"\[simkube\] driver_port: expected int"):
        settings_from(Simkube, {"driver_port": "x"})
    with pytest.raises(ConfigError, match="unknown simkube keys"):
        settings_from(Simkube, {"colour": "red"})


def test_a_settings_class_must_declare_the_schemas_keys_and_types():
    with pytest.raises(TypeError, match="schema has"):
        @config_section("eval")
        class Missing:
            episodes: int
    with pytest.raises(TypeError, match="episodes"):
        @config_section("eval")
        class WrongType:
            greedy: bool
            episodes: float
            seed: int


@pytest.mark.parametrize("text, seconds", [
    ("300", 300.0), ("90s", 90.0), ("+5m", 300.0), ("1h30m", 5400.0), ("1.5h", 5400.0),
    ("2d", 172800.0), (" 5 m ", 300.0), (12, 12.0), (0, 0.0)])
def test_one_duration_grammar(text, seconds):
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "5x", "m5", "-3", "1h30", "5 minutes", "inf", "1..5m", -1])
def test_bad_durations(text):
    with pytest.raises(ConfigError, match="duration"):
        parse_duration(text)
