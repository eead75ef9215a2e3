"""Build every table and figure of the report from stored records in one call.

All inputs are read and every table is computed before the first file is
written, so a bad record fails the whole report without touching the output
folders; each file is then written atomically (temp file + os.replace) so an
error mid-way never leaves a truncated file behind.
"""
from __future__ import annotations

import os
from pathlib import Path

from harness.report.experiments import run_experiments
from harness.report.figures import length_histograms, tradeoff_curves
from harness.report.load import PROTOCOLS, atomic_write_text, load_length_records, load_records, write_summary_frame
from harness.report.tables import DENSE_METHOD, baseline_table, length_table, write_table


def build_report(
    results_dir: str | os.PathLike[str], figures_dir: str | os.PathLike[str], experiments: dict | None = None
) -> list[str]:
    """Write summary.csv, the baseline and length tables and all figures; return the paths.

    - `<results_dir>/summary.csv`: every record, flattened and sorted.
    - `<results_dir>/tables/baseline.*`: only if `dense` records exist.
    - `<results_dir>/tables/length_stats.*` and `<figures_dir>/length_histograms.*`:
      only if length records exist.
    - `<figures_dir>/tradeoff_<protocol>.*`: one per protocol present.
    - the configured `experiments` (harness/experiments.py); those whose
      methods have no records are listed in tables/skipped_experiments.txt.
    Raises HarnessError (before writing anything) if records are missing or malformed.
    """
    df = load_records(results_dir)
    lengths = load_length_records(results_dir)
    baseline = baseline_table(df) if (df["method"] == DENSE_METHOD).any() else None
    lengths_tab = length_table(lengths) if lengths else None
    protocols = [p for p in PROTOCOLS if (df["protocol"] == p).any()]

    written = [write_summary_frame(df, Path(results_dir) / "summary.csv")]
    if baseline is not None:
        written += write_table(baseline, results_dir, "baseline")
    if lengths_tab is not None:
        written += write_table(lengths_tab, results_dir, "length_stats")
        written += length_histograms(lengths, figures_dir)
    for protocol in protocols:
        written += tradeoff_curves(df, figures_dir, protocol)
    done, skipped = run_experiments(df, experiments or {}, results_dir, figures_dir)
    written += done
    if skipped:
        written.append(str(atomic_write_text(Path(results_dir) / "tables" / "skipped_experiments.txt", "\n".join(skipped) + "\n")))
    return written
