"""Typed method settings: each plugin declares its knobs once, with defaults.

A plugin's `Settings` is a dataclass whose fields are its settings, each with
a type annotation and a default. `methods_config.<method>` (and a variant's
`config`) are checked against it when the config is checked, before anything
runs: an unknown or misspelled key, or a value of the wrong type, is one clear
error naming the key and the valid ones. Plugins read `ctx.settings`, an
instance with the profile's values on top of the defaults.

Supported annotations: bool, int, float, str, None, `X | Y`, `Literal[...]`,
`tuple[X, ...]` (YAML lists become tuples), `list[X]` and `dict[str, X]`.
Strings that look like numbers are read as numbers where the field asks for
one (`snakemake --config` passes nested values as strings).

`MethodSettings` holds what every method accepts: `train_max_length`, the
length filter of the training split (LTP's robustness setting, Table 3; the
value `eval_median` stands for the eval split's median token length), and
`restore_dropped`, whether a span head sees the tokens a method dropped
(applied to every operating point when it is evaluated).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Union

from harness.errors import HarnessError

EVAL_MEDIAN = "eval_median"
Length = Union[int, Literal["eval_median"]]


@dataclass(frozen=True)
class MethodSettings:
    """Settings every method accepts (plugins subclass this)."""

    train_max_length: Length | None = None  # drop longer training examples (None = keep all)
    # span tasks: write each dropped token's last state back for the span head (LAT's
    # Drop-and-Restore); false = a dropped token has no logit and cannot be the answer
    restore_dropped: bool = True


class _Invalid(Exception):
    pass


def _type_name(tp) -> str:
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if origin is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return f"a list of {_type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"a mapping to {_type_name(typing.get_args(tp)[1])}"
    return {type(None): "null", bool: "true/false", int: "an integer", float: "a number", str: "a string"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _number(value: str):
    try:
        return int(value)
    except ValueError:
        return float(value)


def _convert(value: Any, tp) -> Any:
    """`value` as type `tp`, or _Invalid."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(tp):
            try:
                return _convert(value, arg)
            except _Invalid:
                continue
        raise _Invalid
    if origin is Literal:
        if value in typing.get_args(tp):
            return value
        raise _Invalid
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            raise _Invalid
        item = typing.get_args(tp)[0]
        out = [_convert(v, item) for v in value]
        return tuple(out) if origin is tuple else out
    if origin is dict:
        if not isinstance(value, dict):
            raise _Invalid
        key_tp, val_tp = typing.get_args(tp)
        return {_convert(k, key_tp): _convert(v, val_tp) for k, v in value.items()}
    if tp is type(None):
        if value is None or value in ("null", "None"):
            return None
        raise _Invalid
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise _Invalid
    if tp in (int, float):
        if isinstance(value, str):
            try:
                value = _number(value)
            except ValueError:
                raise _Invalid from None
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise _Invalid
        if tp is int:
            if float(value) != int(value):
                raise _Invalid
            return int(value)
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise _Invalid
    raise TypeError(f"unsupported settings annotation {tp!r}")


def _hints(cls) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_names(cls) -> list[str]:
    return [f.name for f in dataclasses.fields(cls)]


def parse_settings(cls, values: dict | None, where: str):
    """An instance of the settings dataclass `cls` from `values` (defaults for
    the rest). `where` names the config section in error messages."""
    values = dict(values or {})
    names = field_names(cls)
    unknown = [k for k in values if k not in names]
    if unknown:
        raise HarnessError(
            f"unknown setting {unknown[0]!r} under {where}",
            f"use one of: {', '.join(names)} (the method's Settings, see `python -m harness list --settings`)",
        )
    hints = _hints(cls)
    out = {}
    for key, value in values.items():
        try:
            out[key] = _convert(value, hints[key])
        except _Invalid:
            raise HarnessError(
                f"invalid value {value!r} for setting {where}.{key}: expected {_type_name(hints[key])}",
                f"edit {where}.{key} in the profile or the override",
            ) from None
    try:
        settings = cls(**out)
    except ValueError as e:  # a plugin's own __post_init__ checks
        raise HarnessError(f"invalid settings under {where}: {e}", f"edit {where} in the profile") from None
    return settings


def describe(cls) -> list[tuple[str, str, Any]]:
    """(name, type, default) of every setting, for `python -m harness list --settings`."""
    hints = _hints(cls)
    rows = []
    for f in dataclasses.fields(cls):
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        rows.append((f.name, _type_name(hints[f.name]), default))
    return rows


def as_dict(settings) -> dict:
    """JSON-able view of a settings instance (for training logs)."""
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(settings).items()}
