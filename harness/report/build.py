"""Build every table and figure of the report from stored records in one call.

`planned_outputs` says, from the config alone, which files the report writes
(the workflow declares them as outputs and wraps them in Snakemake's
`report()`); `build_report` writes exactly those, the results page (`harness.report.page`)
last. summary.csv lists every
record (one row per training seed); the tables and figures read one row per
point, the mean over the training seeds (`harness.report.seeds.over_seeds`). All records are read and
checked before the first file is written, so a bad record fails the whole
report without touching the output folders; each file is written atomically
(temp file + os.replace) so an error mid-way never leaves a truncated file.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from harness.report.experiments import KINDS, figure_stems, planned, run_experiments, wanted_methods
from harness.report.figures import length_histograms, tradeoff_curves
from harness.report.load import load_length_records, load_records, write_summary_frame
from harness.report.seeds import over_seeds
from harness.report.tables import baseline_table, length_table, write_table
from harness.report.timings import unreliable_table
from harness.report.floors import floors_table
from harness.report.page import PAGE, results_page
from harness.storage import atomic_write_text

TABLE_FORMATS = ("csv", "md", "tex")
FIGURE_FORMATS = ("png", "pdf")


@dataclass(frozen=True)
class Output:
    path: str
    category: str  # the report's section
    caption: str  # a caption file name under rules/captions (without .rst)


def planned_outputs(cfg: dict, methods: list[str]) -> list[Output]:
    """Every file `build_report` writes for this config and these methods."""
    r, f = Path(cfg["results_dir"]), Path(cfg["figures_dir"])
    out = [Output(str(r / "summary.csv"), "Records", "summary"),
           Output(str(r / "tables" / "skipped_experiments.txt"), "Records", "skipped")]
    out += [Output(str(r / "tables" / f"baseline.{x}"), "Dense baseline", "baseline") for x in TABLE_FORMATS]
    out += [Output(str(r / "tables" / f"unreliable_timings.{x}"), "Records", "unreliable_timings")
            for x in TABLE_FORMATS]
    out += [Output(str(r / "tables" / f"length_stats.{x}"), "Lengths", "length_stats") for x in TABLE_FORMATS]
    out += [Output(str(f / f"length_histograms.{x}"), "Lengths", "length_histograms") for x in FIGURE_FORMATS]
    for p in cfg["eval"]["protocols"]:
        out += [Output(str(f / f"tradeoff_{p}.{x}"), "Trade-offs", "tradeoff") for x in FIGURE_FORMATS]
    verdicts = []
    for name, spec in planned(cfg.get("experiments"), methods).items():
        kind = KINDS[spec["kind"]]
        files = [Output(str(r / "tables" / f"{name}.{x}"), name, spec["kind"]) for x in TABLE_FORMATS] if kind.table else []
        files += [Output(str(f / f"{stem}.{x}"), name, spec["kind"])
                  for stem in figure_stems(name, kind, cfg["eval"]["protocols"]) for x in FIGURE_FORMATS]
        if spec["kind"] == "claims":
            verdicts += files
        else:
            out += files
    floors = [Output(str(r / "tables" / f"dense_floors.{x}"), "Dense baseline", "dense_floors") for x in TABLE_FORMATS]
    page = [Output(str(r / PAGE), "Records", "results_page")]  # every table and figure above on one page
    return floors + verdicts + out + page  # the report opens on the dense floors, then the verdicts resting on them


def build_report(cfg: dict, methods: list[str]) -> list[str]:
    """Write summary.csv, the baseline and length tables, the trade-off figures
    and every planned experiment; return the paths (see `planned_outputs`).
    Raises HarnessError (before writing anything) if records are missing or malformed."""
    results_dir, figures_dir = cfg["results_dir"], cfg["figures_dir"]
    records = load_records(results_dir)  # one row per record: per training seed and precision
    every = over_seeds(records)  # one row per point: the mean over seeds (harness.report.seeds)
    full = records[records["precision"] == "fp32"]
    df = every[every["precision"] == "fp32"]  # the tables below the experiments read full precision
    lengths = load_length_records(results_dir)
    baseline = baseline_table(df)
    lengths_tab = length_table(lengths)

    written = [write_summary_frame(records, Path(results_dir) / "summary.csv")]
    written += write_table(floors_table(df, cfg), results_dir, "dense_floors")
    written += write_table(baseline, results_dir, "baseline")
    written += write_table(unreliable_table(records, cfg), results_dir, "unreliable_timings")
    written += write_table(lengths_tab, results_dir, "length_stats")
    written += length_histograms(lengths, figures_dir)
    for protocol in cfg["eval"]["protocols"]:
        written += tradeoff_curves(df, figures_dir, protocol, per_seed=full)
    # the claims read each task's dense floor (harness.report.floors), a profile setting
    experiments = {name: ({**spec, "dense_floors": cfg.get("dense_floors") or {}} if spec.get("kind") == "claims"
                          else spec) for name, spec in (cfg.get("experiments") or {}).items()}
    written += run_experiments(every, experiments, methods, results_dir, figures_dir, cfg["eval"]["protocols"])
    building = planned(cfg.get("experiments"), methods)
    skipped = [f"{name}: the profile runs none of {wanted_methods(spec)}"
               for name, spec in (cfg.get("experiments") or {}).items() if name not in building]
    written.append(atomic_write_text(Path(results_dir) / "tables" / "skipped_experiments.txt",
                                     "".join(f"{line}\n" for line in skipped)))
    written.append(atomic_write_text(Path(results_dir) / PAGE, results_page(cfg, records, planned_outputs(cfg, methods))))
    return written
