"""Every shipped profile is one a user can run: its config validates, names only tasks, methods and seeds
that exist (the checks the Snakefile makes before planning), and its Snakemake profile folder points at it.

A profile nobody runs in the tests (claims, precision_long, students_glue, ...) would otherwise break
unseen until a user starts it."""
from __future__ import annotations

import pytest
import yaml

from harness.config import CONFIG_DIR, ROOT, load_config, profile_names
from harness.run import plan


@pytest.mark.parametrize("name", profile_names())
def test_profile_validates_and_plans(name):
    cfg = load_config(name)
    assert cfg["profile"] == name
    tasks, methods = plan.resolve_tasks(cfg), plan.resolve_methods(cfg)
    assert tasks and methods
    plan.check_task_methods(cfg, tasks, methods)
    plan.check_method_seeds(cfg, methods)
    plan.check_precision_methods(cfg, methods)


@pytest.mark.parametrize("name", [n for n in profile_names() if (ROOT / "profiles" / n).is_dir()])
def test_snakemake_profile_folder_names_its_config(name):
    settings = yaml.safe_load((ROOT / "profiles" / name / "config.yaml").read_text())
    if name == "default":  # the Snakefile's own default: no configfile
        assert "configfile" not in settings
        return
    assert settings["configfile"] == [str((CONFIG_DIR / f"{name}.yaml").relative_to(ROOT))]
