"""One loader for every `.ini` config: defaults, a config file on top, then `--section.key value`.

`configs/gardener.ini` is the schema: it defines every valid key and its type. Another config
file overrides some of its keys; command-line overrides come last. Unknown sections or keys fail
with a `ConfigError` that lists the valid ones.
"""
from __future__ import annotations

import ast
import configparser
import math
import re
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

DEFAULT_CONFIG = "gardener.ini"
DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
# `[env]` keys that configure the env object (batch size, logging) rather than the world.
ENV_OBJECT_KEYS = ("num_envs", "log_interval")


class ConfigError(ValueError):
    """A config file or override that does not fit the schema."""


Config = dict[str, dict[str, object]]


def bundled_config_path(name: str = DEFAULT_CONFIG) -> Path:
    """Path of a config shipped in `configs/` (e.g. 'quick.ini')."""
    return Path(str(resources.files("puffer_cluster.configs") / name))


def shipped_configs() -> list[str]:
    """Names of the configs shipped in `configs/` ('gardener', 'quick', ...)."""
    return sorted(Path(entry.name).stem for entry in resources.files("puffer_cluster.configs").iterdir()
                  if entry.name.endswith(".ini"))


def resolve_config_path(name: str | Path) -> Path:
    """A config file: a path to one, or a shipped config by name ('quick' or 'quick.ini'), found
    from any directory. A file at the path wins over a shipped config of the same name."""
    path = Path(name)
    if path.is_file():
        return path
    stem = path.name.removesuffix(".ini")
    if path.parent == Path(".") and stem in shipped_configs():
        return bundled_config_path(f"{stem}.ini")
    raise ConfigError(f"config not found: {str(name)!r} is no file, nor a shipped config "
                      f"(shipped: {', '.join(shipped_configs())})")


def _read_ini(path: Path) -> Config:
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    parser = configparser.ConfigParser(interpolation=None, inline_comment_prefixes=("#",))
    parser.optionxform = str  # keep key case
    try:
        parser.read(path, encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{path} is not a text config file (.ini with [section] headers)") from None
    except configparser.MissingSectionHeaderError as error:
        raise ConfigError(f"{path}: line {error.lineno} ({error.line.strip()[:60]!r}) comes before any "
                          "[section] header; every key belongs to a section such as [train]") from None
    except configparser.Error as error:
        raise ConfigError(f"{path}: {' '.join(str(error).split())}") from None
    return {section: {key: _literal(value) for key, value in parser[section].items()}
            for section in parser.sections()}


def _literal(text: str) -> object:
    """'1e-3' -> 0.001, '4_096' -> 4096, 'True' -> True, anything else stays a string."""
    try:
        return ast.literal_eval(text.strip())
    except (ValueError, SyntaxError):
        return text.strip()


def _coerce(value: object, default: object, where: str) -> object:
    """Give `value` the type of the schema's default (bool, int, float or str)."""
    if isinstance(value, str) and not isinstance(default, str):
        value = _literal(value)
    try:
        if isinstance(default, bool):
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "false"):
                return value.lower() == "true"
            raise ValueError
        if isinstance(default, int):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
                raise ValueError
            return int(value)
        if isinstance(default, float):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
                raise ValueError
            return float(value)
    except (ValueError, OverflowError):
        raise ConfigError(f"{where}: expected {type(default).__name__}, got {value!r}") from None
    return str(value)


def _check_key(schema: Config, section: str, key: str, source: str) -> None:
    if section not in schema:
        raise ConfigError(f"{source}: unknown section [{section}]; valid sections: "
                          + ", ".join(schema))
    if key not in schema[section]:
        raise ConfigError(f"{source}: unknown key '{key}' in [{section}]; valid keys: "
                          + ", ".join(schema[section]))


def parse_overrides(args: list[str]) -> list[tuple[str, str, str]]:
    """['--train.total-timesteps', '5e6', '--env.height=32'] -> [(section, key, value), ...]."""
    overrides = []
    i = 0
    while i < len(args):
        arg = args[i]
        if not arg.startswith("--") or "." not in arg:
            raise ConfigError(f"expected --section.key value, got {arg!r}")
        name, has_value, value = arg[2:].partition("=")
        if not has_value:
            if i + 1 >= len(args):
                raise ConfigError(f"{arg} needs a value")
            i += 1
            value = args[i]
        section, _, key = name.partition(".")
        overrides.append((section, key.replace("-", "_"), value))
        i += 1
    return overrides


def _apply_layers(config: Config, layers) -> Config:
    """`config` updated by (source, section, key, value) layers, each checked and typed."""
    schema = _read_ini(bundled_config_path())
    result = {section: dict(values) for section, values in config.items()}
    for source, section, key, value in layers:
        _check_key(schema, section, key, source)
        result[section][key] = _coerce(value, schema[section][key], f"{source}: {section}.{key}")
    return result


def _override_layers(overrides: list[str] | None):
    return [("command line", s, k, v) for s, k, v in parse_overrides(overrides or [])]


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """The defaults of `configs/gardener.ini`, updated by the config `path` (a file, or a shipped
    config's name: see `resolve_config_path`) then by CLI `overrides`."""
    defaults = _read_ini(bundled_config_path())
    layers = []
    if path is not None:
        path = resolve_config_path(path)
    if path is not None and path.resolve() != bundled_config_path().resolve():
        layers = [(str(path), s, k, v) for s, values in _read_ini(path).items()
                  for k, v in values.items()]
    return _apply_layers(defaults, layers + _override_layers(overrides))


def env_defaults() -> dict[str, object]:
    """The shipped `[env]` section."""
    return load_config()["env"]


def world_config(config: Config) -> dict[str, object]:
    """The `[env]` keys that describe the world itself."""
    return {k: v for k, v in config["env"].items() if k not in ENV_OBJECT_KEYS}


def save_config(config: Config, path: str | Path) -> None:
    """Write a resolved config as an .ini that `load_config` reads back to the same values."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    for section, values in config.items():
        parser[section] = {key: repr(value) if isinstance(value, str) else str(value)
                           for key, value in values.items()}
    with open(path, "w") as f:
        parser.write(f)


def apply_overrides(config: Config, overrides: list[str]) -> Config:
    """A copy of `config` with command-line overrides applied (checked against the schema)."""
    return _apply_layers(config, _override_layers(overrides))


def config_section(section: str, *, shared: dict[str, str] | None = None):
    """Class decorator: a frozen dataclass whose fields are the keys of `[section]` of the
    schema, with the schema's values as defaults. The class declares each key with its type
    (checked against the schema) and keeps only its semantic checks; `shared` maps a field to
    the other section that holds its key. `settings_from` builds one from a config."""
    def decorate(cls):
        schema = _read_ini(bundled_config_path())
        sources = {key: section for key in schema[section]} | (shared or {})
        declared = cls.__dict__.get("__annotations__", {})
        if set(declared) != set(sources):
            raise TypeError(f"{cls.__name__} declares {sorted(declared)}; the schema has "
                            f"{sorted(sources)}")
        for name, annotation in declared.items():
            default = schema[sources[name]][name]
            if getattr(annotation, "__name__", annotation) != type(default).__name__:
                raise TypeError(f"{cls.__name__}.{name}: declared {annotation}, the schema's "
                                f"[{sources[name]}] {name} is a {type(default).__name__}")
            setattr(cls, name, default)
        cls.config_section, cls.config_sources = section, sources
        return dataclass(frozen=True)(cls)
    return decorate


def settings_from(cls, config=None, **overrides):
    """A `config_section` class from a loaded config (its sections), a dict of its section's
    keys, or an instance, updated by `overrides`. Missing keys keep the schema's defaults (a
    checkpoint's config may predate a key); values are typed as the schema's (`_coerce`)."""
    section = cls.config_section
    if isinstance(config, cls):
        base, values = config, {}
    else:
        base, config = cls(), dict(config or {})
        if isinstance(config.get(section), dict):
            values = dict(config[section])
            values.update((name, config[source][name]) for name, source in cls.config_sources.items()
                          if source != section and name in config.get(source, {}))
        else:
            values = config
    values.update(overrides)
    unknown = sorted(set(values) - set(cls.config_sources))
    if unknown:
        raise ConfigError(f"unknown {section} keys {unknown}; valid keys: "
                          + ", ".join(cls.config_sources))
    return replace(base, **{name: _coerce(value, getattr(cls, name),
                                          f"[{cls.config_sources[name]}] {name}")
                            for name, value in values.items()})


def parse_duration(text: str | float | int) -> float:
    """Seconds >= 0 from a number or '300', '90s', '5m', '1h30m', '2d', '+5m' (the relative
    durations of SimKube's skctl --duration)."""
    if isinstance(text, (int, float)) and not isinstance(text, bool):
        seconds = float(text)
    else:
        rest = str(text).strip().lower().replace(" ", "").removeprefix("+")
        parts = re.findall(r"(\d+(?:\.\d+)?)([smhd])", rest)
        if re.fullmatch(r"\d+(\.\d+)?", rest):
            seconds = float(rest)
        elif parts and "".join(number + unit for number, unit in parts) == rest:
            seconds = sum(float(number) * DURATION_UNITS[unit] for number, unit in parts)
        else:
            raise ConfigError(f"duration {text!r}: use seconds or e.g. 90s, 5m, 1h30m, 2d")
    if not math.isfinite(seconds) or seconds < 0:
        raise ConfigError(f"duration {text!r} must be a finite number of seconds >= 0")
    return seconds
