"""Names and knobs of operating points that more than one method gives.

Why in the core: a point's name and knobs are what tables, claims and the
records select by, so two methods that must line up share one definition.
`ltp`, `ltp_manual` and `magic_pyramid` name their points by a knob written
with `format_knob` (`lambda=0.1`), and `magic_pyramid` finds `ltp`'s models by
those names; `cofi` and `infor_coef` name and knob a point by the sparsity its
structurally pruned model reached (`point_identity`), so that a row asking
for CoFi at 95% gets Infor-Coef and CoFi points at the same sparsity.
"""
from __future__ import annotations

SPARSITY_EPSILON = 0.01  # how far a model may miss its target and still count as at it (cf. the reference)


def format_knob(x: float) -> str:
    """A knob value as it appears in point names: `%g` of the float (0.1, 1e-05, 2)."""
    return f"{float(x):g}"


def point_identity(target: float, achieved: float, epsilon: float = SPARSITY_EPSILON) -> tuple[str, dict]:
    """(name, knobs) of a point trained for `target` whose materialized model
    reached `achieved`. Within `epsilon` of its target the point stands for
    its target; further off (either side) it is flagged and stands only for what
    it reached, rounded to 0.01, so that a table row or a claim asking for
    "CoFi at 95%" never gets a model pruned to, say, 90%. The name carries both
    numbers (and the flag) so every table shows them; it is unique because
    the targets are. The reference's own guard is one-sided and earlier: it
    saves a best model only once the masks' expected sparsity is at least
    target - sparsity_epsilon (an argument defaulting to 0)."""
    off = abs(float(achieved) - float(target)) > epsilon + 1e-9
    name = f"sparsity={achieved:.3f}_target={target:g}" + ("_off_target" if off else "")
    return name, {"sparsity": round(float(achieved), 2) if off else float(target),
                  "target_sparsity": float(target), "off_target": off}
