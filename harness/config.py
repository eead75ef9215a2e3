"""Profiles: load, extend, override, validate, hash.

A profile is `config/<name>.yaml`, validated against `config/schema.yaml`
(the Snakefile validates the same way). A profile may start from another
(`extends: default`): its values are deep-merged over that one's, so profiles
share their common settings instead of copying them. Overrides are
`dotted.key=value` strings whose values are parsed as YAML; strings where the
schema asks for a number or a boolean are read as one (`snakemake --config`
passes nested values as strings). The data directory comes from the config's
`data_dir`, else from `$HARNESS_DATA_DIR`. A claims experiment may name its list of
claims by file (`claims: claims/papers.yaml`, under config/). Two seeds: `split_seed`
(splits, caps, bootstrap resamples) and `seeds` (a list of training seeds, each
its own train and evaluate jobs); the deprecated `seed: N` is read as
`split_seed: N, seeds: [N]`. The config hash (SHA-256 of the
canonical JSON of the resolved config) goes into every result record.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import yaml

from harness.errors import HarnessError

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
SCHEMA_PATH = CONFIG_DIR / "schema.yaml"


def profile_names() -> list[str]:
    return sorted(p.stem for p in CONFIG_DIR.glob("*.yaml") if p.stem != "schema")


def _read_yaml(path: Path) -> dict:
    try:
        with open(path) as f:
            data = yaml.safe_load(f)
    except yaml.YAMLError as e:
        raise HarnessError(f"config file {path} is not valid YAML: {e}", "fix the YAML syntax") from None
    if not isinstance(data, dict):
        raise HarnessError(f"config file {path} does not hold a mapping", "write key: value pairs")
    return data


def load_profile(name: str, _seen: tuple[str, ...] = ()) -> dict:
    """config/<name>.yaml with what it `extends` resolved."""
    path = CONFIG_DIR / f"{name}.yaml"
    if not path.is_file():
        raise HarnessError(f"unknown profile {name!r}", f"use one of: {', '.join(profile_names())}")
    return extend(_read_yaml(path), _seen + (name,))


def extend(cfg: dict, _seen: tuple[str, ...] = ()) -> dict:
    """`cfg` deep-merged over the profile it `extends` (if any)."""
    parent = cfg.get("extends")
    if parent is None:
        return cfg
    if parent in _seen:
        raise HarnessError(f"profiles extend each other in a loop: {' -> '.join(_seen + (parent,))}",
                           "remove one of the `extends:` keys")
    return merge(load_profile(parent, _seen), {k: v for k, v in cfg.items() if k != "extends"})


def resolve_workflow_config(config: dict) -> dict:
    """The Snakefile's config: the profile named by `profile` (default
    `default`), with what Snakemake loaded and was given on top."""
    top = {k: v for k, v in config.items() if k != "extends"}
    return validate(merge(load_profile(config.get("profile", "default")), top))


def merge(base: dict, top: dict) -> dict:
    """Deep-merge `top` over `base` (mappings merge, everything else replaces)."""
    out = copy.deepcopy(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def apply_override(cfg: dict, assignment: str) -> None:
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise HarnessError(f"override {assignment!r} is not key=value", "write e.g. train.epochs=1")
    value = yaml.safe_load(raw) if raw else None
    node = cfg
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise HarnessError(f"override {assignment!r}: {p} is not a section", "override a leaf key")
    node[parts[-1]] = value


def _schema() -> dict:
    return _read_yaml(SCHEMA_PATH)


def _types(schema: dict) -> set[str]:
    t = schema.get("type", [])
    return {t} if isinstance(t, str) else set(t)


def _coerce(value, schema: dict):
    """Strings read as numbers/booleans/null where `schema` wants one (and no string)."""
    types = _types(schema)
    if isinstance(value, str) and types and "string" not in types and types & {"number", "integer", "boolean", "null"}:
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        if isinstance(parsed, str):
            try:
                parsed = float(parsed)  # YAML 1.1 reads 1e-3 as a string
            except ValueError:
                return value
        if (parsed is None and "null" in types) or isinstance(parsed, (bool, int, float)):
            return parsed
        return value
    if isinstance(value, str) and "array" in types and "string" not in types:  # `seeds="[0,1]"`
        try:
            parsed = yaml.safe_load(value)
        except yaml.YAMLError:
            return value
        value = parsed if isinstance(parsed, list) else value
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [_coerce(v, schema["items"]) for v in value]
    if isinstance(value, dict):
        props = schema.get("properties", {})
        extra = schema.get("additionalProperties")
        return {k: _coerce(v, props.get(k, extra if isinstance(extra, dict) else {})) for k, v in value.items()}
    return value


def _fill_defaults(schema: dict, cfg: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in cfg and "default" in sub:
            cfg[key] = copy.deepcopy(sub["default"])
        if isinstance(cfg.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(sub, cfg[key])


def _include_claims(cfg: dict) -> dict:
    """`claims: <file>` in a claims experiment reads the list from
    config/<file>, so profiles share one declaration of the papers' claims."""
    for name, spec in (cfg.get("experiments") or {}).items():
        ref = spec.get("claims") if isinstance(spec, dict) else None
        if isinstance(ref, str):
            path = CONFIG_DIR / ref
            try:
                data = yaml.safe_load(path.read_text()) if path.is_file() else None
            except yaml.YAMLError as e:
                raise HarnessError(f"claims file {path} is not valid YAML: {e}", "fix the YAML syntax") from None
            if not isinstance(data, list):
                raise HarnessError(f"experiments.{name}.claims names {path}, which "
                                   + ("does not exist" if not path.is_file() else "does not hold a list of claims"),
                                   "name a YAML file under config/ holding a list of claims (e.g. claims/papers.yaml)")
            spec["claims"] = data
    return cfg


def _desugar_seed(cfg: dict) -> None:
    """The old single `seed: N` (before `split_seed` and `seeds`) read as
    `split_seed: N, seeds: [N]`: the data, caps and training it always meant.
    Refused beside either new key, where it would be ambiguous."""
    if "seed" not in cfg:
        return
    clash = [k for k in ("split_seed", "seeds") if k in cfg]
    if clash:
        raise HarnessError(
            f"the config gives the deprecated `seed` ({cfg['seed']}) and {' and '.join(clash)}",
            "drop `seed`: `split_seed` sets the splits and caps, `seeds` (a list) the training runs",
        )
    n = cfg.pop("seed")
    cfg["split_seed"], cfg["seeds"] = n, [n]


def validate(cfg: dict) -> dict:
    """Validate against the schema, fill defaults and resolve the data dir."""
    import jsonschema

    schema = _schema()
    cfg = _coerce(_include_claims(copy.deepcopy(cfg)), schema)
    errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(cfg), key=lambda e: list(e.path))
    if errors:
        e = errors[0]
        where = ".".join(str(p) for p in e.path) or "(top level)"
        raise HarnessError(
            f"invalid config value at {where}: {e.message}",
            f"edit config/{cfg.get('profile', '<profile>')}.yaml or the override for {where}"
            " (config/schema.yaml lists what is allowed)",
        )
    _desugar_seed(cfg)
    _fill_defaults(schema, cfg)
    if not cfg.get("data_dir"):
        cfg["data_dir"] = os.environ.get("HARNESS_DATA_DIR") or None
    if cfg["data_dir"]:
        cfg["data_dir"] = str(Path(cfg["data_dir"]).expanduser().resolve())
        if not Path(cfg["data_dir"]).is_dir():
            raise HarnessError(
                f"data directory {cfg['data_dir']} does not exist",
                "point data_dir (or HARNESS_DATA_DIR) at a folder in the official layout, or unset it",
            )
    return cfg


def load_config(profile: str = "default", overrides: list[str] | None = None, configfile: str | None = None) -> dict:
    cfg = extend(_read_yaml(Path(configfile))) if configfile else load_profile(profile)
    for o in overrides or []:
        apply_override(cfg, o)
    return validate(cfg)


def config_hash(cfg: dict) -> str:
    return hashlib.sha256(json.dumps(cfg, sort_keys=True, default=str).encode()).hexdigest()[:16]
