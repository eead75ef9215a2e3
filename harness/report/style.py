"""One look per method in every figure: a colour, a marker and a line style.

The rule (`identities`):

* dense: black, a star, a solid line.
* a base method (a registered plugin): its own hue and its own filled marker,
  a solid line. The shipped plugins have fixed entries (`BASES`); any other
  name takes a hue from `EXTRA_HUES` and a marker from `BASE_MARKERS` chosen by
  a CRC-32 of its name, so a new plugin gets a look without editing this
  module, and the same look in every figure.
* a variant (a config `variants:` entry, whose `method:` names its base) or a
  series of one method (a `method_tradeoff` line per knob value): the base's
  hue, a hollow marker of another shape, a dashed line, a hatch for bars. The
  shipped variants have fixed entries (`VARIANTS`); any other name takes its
  shape from a CRC-32 of its name.
* within one figure the looks are settled together: should two bases' hashes
  give one hue, or two siblings' one marker, the later by name (fixed entries
  first) takes the next free one. The order is by name, never by plotting
  order, so a figure never shows two series alike, and a series looks the same
  in every figure whose other series do not collide with it (the fixed entries
  never do).

A series' base comes from the records (`base_method`, which the evaluate job
writes from the config's `variants:`) wherever the figure has it; a table that
carries only `method` falls back to the registered plugin whose name, plus
"_", starts the series' name (`ltp_short` -> `ltp`, but `ltp_manual` is a
plugin of its own).
"""
from __future__ import annotations

import zlib
from dataclasses import dataclass, replace
from typing import Any, Iterable, Mapping

DENSE = "dense"

# The shipped plugins: hue, filled marker. tab10 without its grey (dense's), and one navy.
BASES: dict[str, tuple[str, str]] = {
    "ltp": ("tab:blue", "o"),
    "lat": ("tab:orange", "s"),
    "spatten": ("tab:green", "^"),
    "power_bert": ("tab:red", "D"),
    "transkimmer": ("tab:purple", "P"),
    "cofi": ("tab:brown", "X"),
    "infor_coef": ("tab:pink", "p"),
    "fastbert": ("tab:olive", "h"),
    "ltp_manual": ("tab:cyan", "v"),
    "magic_pyramid": ("#000075", "<"),  # navy
}
# Hues for any other base method: teal, maroon, gold, magenta, lime.
EXTRA_HUES: tuple[str, ...] = ("#469990", "#800000", "#e6ab02", "#f032e6", "#7cb518")
HUES: tuple[str, ...] = EXTRA_HUES + tuple(dict.fromkeys(c for c, _ in BASES.values()))
BASE_MARKERS: tuple[str, ...] = ("o", "s", "^", "D", "v", "P", "X", "p", "h", "<", ">", "d")
# A variant's marker is hollow; its shape and dash come from here.
VARIANT_MARKERS: tuple[str, ...] = ("s", "^", "D", "v", "o", "P", "X", "p", "h", "<", ">", "d", "H", "8")
DASHES: tuple[Any, ...] = ("--", "-.", ":", (0, (5, 1, 1, 1, 1, 1)))
HATCHES: tuple[str, ...] = ("//", "\\\\", "xx", "..", "--", "++", "oo", "||")
# The shipped variants (config/*.yaml `variants:`): marker shape, dash.
VARIANTS: dict[str, tuple[str, Any]] = {
    "ltp_short": ("s", "--"),
    "lat_short": ("o", "--"),
    "lat_no_restore": ("^", "-."),
    "infor_coef_skim": ("s", "--"),
    "infor_coef_no_entropy": ("^", "-."),
    "infor_coef_no_norm": ("v", ":"),
    "infor_coef_dynamic": ("D", (0, (5, 1, 1, 1, 1, 1))),
}


@dataclass(frozen=True)
class Identity:
    """How one series is drawn."""

    color: str
    marker: str
    linestyle: Any = "-"
    filled: bool = True
    hatch: str | None = None  # bars: variants are hatched, hollow bars

    def line(self, **extra) -> dict:
        """Keyword arguments for `Axes.plot` / `Axes.errorbar`."""
        face = self.color if self.filled else "white"
        return {"color": self.color, "marker": self.marker, "linestyle": self.linestyle,
                "markerfacecolor": face, "markeredgecolor": self.color, **extra}

    def bar(self) -> dict:
        """Keyword arguments for `Axes.bar`."""
        if self.hatch is None:
            return {"color": self.color, "edgecolor": self.color}
        return {"facecolor": "white", "edgecolor": self.color, "hatch": self.hatch, "linewidth": 1.0}


DENSE_IDENTITY = Identity("black", "*", "-")


def _crc(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _rotated(items: tuple, start: int) -> list:
    start %= len(items)
    return list(items[start:] + items[:start])


def _plugins() -> list[str]:
    from harness.plugin.registry import method_names

    return method_names()


def base_of(name: str, bases: Mapping[str, str] | None = None) -> str:
    """The method whose hue `name` takes: follow `bases` (series -> method ->
    base method, e.g. from records' `base_method`) while it names another;
    then, for a name neither a plugin nor a known base, the registered plugin
    whose name plus "_" starts it (the longest), else the name itself."""
    bases = bases or {}
    seen = {name}
    while bases.get(name, name) != name and bases[name] not in seen:
        name = bases[name]
        seen.add(name)
    if name == DENSE or name in BASES or name in bases:
        return name
    plugins = _plugins()
    if name in plugins:
        return name
    owners = [p for p in plugins if p != DENSE and name.startswith(f"{p}_")]
    return max(owners, key=len) if owners else name


def identities(names: Iterable[str], bases: Mapping[str, str] | None = None) -> dict[str, Identity]:
    """The look of each of `names` (see the module doc), settled together so
    no two differ in neither colour nor marker. `bases` maps a series to the
    method it belongs to (a variant to its base, a knob series to its method)."""
    names = list(dict.fromkeys(names))
    root = {n: base_of(n, bases) for n in names}
    out: dict[str, Identity] = {}
    looks: dict[str, tuple[str, str]] = {}  # base -> (hue, marker)
    taken: set[tuple[str, str]] = set()
    for b in sorted({r for r in root.values() if r != DENSE}, key=lambda r: (r not in BASES, r)):
        if b in BASES:
            looks[b] = BASES[b]
        else:
            h = _crc(b)
            marker = BASE_MARKERS[h % len(BASE_MARKERS)]
            hues = _rotated(EXTRA_HUES, h) + [c for c in HUES if c not in EXTRA_HUES]
            used = {c for c, _ in looks.values()}
            hue = next((c for c in hues if c not in used), None)
            if hue is None:  # more bases than hues: the hash's hue, another marker
                hue = hues[0]
                marker = next(m for m in _rotated(BASE_MARKERS, h) if (hue, m) not in taken)
            looks[b] = (hue, marker)
        taken.add(looks[b])
    for b, (hue, marker) in looks.items():
        siblings = sorted((n for n in names if root[n] == b and n != b), key=lambda n: (n not in VARIANTS, n))
        shapes = {marker}
        for n in siblings:
            if n in VARIANTS and VARIANTS[n][0] not in shapes:
                shape, dash = VARIANTS[n]
            else:
                h = _crc(n)
                shape = next((m for m in _rotated(VARIANT_MARKERS, h) if m not in shapes), VARIANT_MARKERS[0])
                dash = DASHES[(h // len(VARIANT_MARKERS)) % len(DASHES)]
            shapes.add(shape)
            hatch = HATCHES[VARIANT_MARKERS.index(shape) % len(HATCHES)]
            out[n] = Identity(hue, shape, dash, filled=False, hatch=hatch)
        if b in names:
            out[b] = Identity(hue, marker)
    for n in names:
        if root[n] == DENSE:
            out[n] = DENSE_IDENTITY if n == DENSE else replace(DENSE_IDENTITY, linestyle="--", filled=False)
    return {n: out[n] for n in names}


def legend_order(names: Iterable[str], bases: Mapping[str, str] | None = None) -> list[str]:
    """`names` with each base method followed by its variants (dense first)."""
    names = list(dict.fromkeys(names))
    root = {n: base_of(n, bases) for n in names}
    return sorted(names, key=lambda n: (root[n] != DENSE, root[n], n != root[n], n))


def bases_from(table, series: str = "method") -> dict[str, str]:
    """series -> method -> base method from a table's columns, where it has
    them: `series` (a knob series) -> `method` -> `base_method`."""
    out: dict[str, str] = {}
    cols = getattr(table, "columns", ())
    if "base_method" in cols:
        out.update({str(m): str(b) for m, b in zip(table["method"], table["base_method"]) if isinstance(b, str)})
    if series != "method" and series in cols:
        out.update({str(s): str(m) for s, m in zip(table[series], table["method"]) if s != m})
    return out
