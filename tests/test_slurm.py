"""The workflow on a real SLURM scheduler (a single-node cluster on this machine,
tests/slurm_cluster.py), through Snakemake's SLURM executor and profiles/slurm.

One test, in the order a user lives it: the smoke workflow is submitted; one of
its jobs is killed mid-run with scancel; the run stops with no record and no
manifest of the killed job; the same command resumes it, rerunning the killed
job and nothing that had finished; and the records (metrics, FLOPs, predictions,
tokens per layer) equal those of the local smoke run.

Skipped, with the reason, where a cluster cannot be set up (not root, no
apt-get); under CI=true it must run, so there it fails instead.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest

from .slurm_cluster import LocalSlurm, install, unavailable_reason
from .workflow_run import ROOT, command, records, snakemake

# A method with no dependency, one that others start from and one that starts from it:
# the DAG's waits are exercised, in a few minutes
METHODS = ("dense", "ltp", "cofi", "infor_coef")
KILLED = ("evaluate", "ltp")  # the job scancel kills: rule, method
# one training seed (the local smoke run also has dense and LTP at seed 1; only seed 0's records are compared);
# Snakemake merges --config mappings into the profile's, so each of the profile's method_seeds is given
CONFIG = ("tasks=[mr]", "optional_tasks=[]", "seeds=[0]", "method_seeds={dense: [0], ltp: [0]}",
          f"methods=[{', '.join(METHODS)}]")
LIMIT_S = 900  # hard limit on each workflow run: the executor must never hang a CI job


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reason = unavailable_reason()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"the SLURM test must run in CI, but {reason}")
        pytest.skip(f"no local SLURM cluster: {reason}")
    install()
    with LocalSlurm(tmp_path_factory.mktemp("slurm")) as c:
        yield c


def _slurm_args(out: Path, retries: int) -> list[str]:
    # the node has the CPUs of this machine: train jobs ask for 2 CPUs, as the local smoke run's do
    # (same threads, same arithmetic); status checks start after 5 s instead of the profile's 10
    return ["--set-threads", "train=2", "train_point=2", "--retries", str(retries),
            "--slurm-init-seconds-before-status-checks", "5", "--slurm-logdir", str(out / "slurm_logs")]


def _popen(out: Path, cluster: LocalSlurm, retries: int) -> subprocess.Popen:
    cmd = command(out, *_slurm_args(out, retries), config=("profile=smoke", *CONFIG), profile="profiles/slurm")
    log = open(out / f"snakemake_retries{retries}.log", "w")
    return subprocess.Popen(cmd, cwd=ROOT, env=cluster.env, stdout=log, stderr=subprocess.STDOUT, text=True)


def _tail(out: Path, retries: int) -> str:
    return (out / f"snakemake_retries{retries}.log").read_text()[-4000:]


def _harness_running(rule: str, method: str) -> bool:
    """The job's own `python -m harness <rule> ... --method <method>` process is running (same machine)."""
    p = subprocess.run(["pgrep", "-f", "--", f"-m harness {rule} .*--method {method}( |$)"], capture_output=True)
    return p.returncode == 0


def _kill_mid_run(cluster: LocalSlurm, proc: subprocess.Popen, rule: str, method: str) -> str:
    """scancel the SLURM job of (rule, method) once its harness process runs; the job's id."""
    comment = f"rule_{rule}_wildcards_mr_{method}_0"  # the plugin joins wildcard values (task, method, seed) with "_"
    end = time.monotonic() + LIMIT_S
    while time.monotonic() < end and proc.poll() is None:
        if _harness_running(rule, method):
            for job in cluster.squeue():
                if job["comment"] == comment and job["state"] == "RUNNING" and cluster.scancel(job["id"]):
                    return job["id"]
        time.sleep(0.1)
    raise AssertionError(f"the {rule} job of {method} was never seen running")


def _wait(proc: subprocess.Popen, out: Path, retries: int) -> int:
    try:
        return proc.wait(timeout=LIMIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"the SLURM run did not end within {LIMIT_S} s:\n" + _tail(out, retries))
    finally:
        if proc.poll() is None:  # the executor ignores SIGTERM
            proc.kill()
            proc.wait()


def _essentials(recs: list[dict]) -> dict:
    """What must not depend on where a job ran: metrics, FLOPs, predictions, trace."""
    keep = ("metrics", "validation_metrics", "flops_per_example", "macs_per_example", "tokens_per_layer",
            "exit_layer_mean", "structure")
    return {(r["task"], r["method"], r["operating_point"], r["protocol"]):
            {**{k: r[k] for k in keep},
             **{k: r["per_example"][k] for k in ("prediction", "flops", "length") if k in r["per_example"]}}
            for r in recs}


def test_smoke_workflow_on_slurm_survives_scancel_and_equals_local_run(cluster, smoke, tmp_path):
    out = tmp_path
    # 1. submit; kill one job mid-run; with no retries the run stops
    began = time.monotonic()
    proc = _popen(out, cluster, retries=0)
    try:
        killed = _kill_mid_run(cluster, proc, *KILLED)
    finally:
        rc = _wait(proc, out, 0)
    assert rc != 0, _tail(out, 0)
    assert f"SLURM-job '{killed}' failed, SLURM status is: 'CANCELLED'" in _tail(out, 0), _tail(out, 0)
    results = out / "results"
    task, method = "mr", KILLED[1]
    assert not (results / "manifests" / task / method / "seed0.json").exists()
    assert not list((results / "records" / task / method).rglob("*.json")), "a killed job left records"
    # what had finished: at least the train jobs the killed evaluate job waited for (dense, and the
    # method's points, each its own SLURM job, joined by a local gather)
    finished = {p: p.stat().st_mtime_ns for p in [*(results / "manifests").rglob("*.json"),
                                                   *(out / "work" / "models").rglob("*.json")]}
    # (models/<task>/<method>/seed<s>/done.json and .../seed<s>/points/<point>.json)
    assert {"dense", method} <= {p.parent.parent.name for p in finished if p.name == "done.json"}, finished
    points = [p for p in finished if p.parent.name == "points" and p.parent.parent.parent.name == method]
    assert len(points) > 1, "the method's points did not train as jobs of their own"

    # 2. the same command resumes: the killed job reruns, what finished stays
    rc = _wait(_popen(out, cluster, retries=2), out, 2)
    assert rc == 0, _tail(out, 2)
    wall = time.monotonic() - began
    assert (results / "manifests" / task / method / "seed0.json").exists()
    assert {p: p.stat().st_mtime_ns for p in finished} == finished, "the resume reran finished jobs"
    logs = [(out / f"snakemake_retries{r}.log").read_text() for r in (0, 2)]
    submitted = [text.count(" has been submitted") for text in logs]
    print(f"SLURM smoke run: {wall:.0f} s end to end, killed job {killed}, SLURM jobs submitted "
          f"{submitted[0]} then {submitted[1]} on resume; train_point jobs "
          f"{logs[0].count('rule train_point:')} then {logs[1].count('rule train_point:')}")

    # 3. the scheduler changes nothing a record measures
    slurm = _essentials(records(out))
    local = {k: v for k, v in _essentials([r for r in records(smoke) if r["seed"] == 0]).items()
             if k[0] == task and k[1] in METHODS}
    assert slurm.keys() == local.keys()
    for key in local:
        assert slurm[key] == local[key], key
    # and the report was built from them
    assert (out / "figures").exists() and any((out / "results" / "tables").iterdir())


def test_gpu_profile_dry_run_lists_jobs_and_resources(tmp_path):
    """profiles/slurm-gpu runs `paper`: every train and evaluate job asks for one GPU (gres), timing
    jobs a whole node; the dry run needs no scheduler."""
    p = snakemake(tmp_path, "-n", profile="profiles/slurm-gpu")
    text = p.stdout
    assert "rule train:" in text and "rule train_point:" in text and "rule evaluate:" in text
    blocks = text.split("\nrule ")
    train = [b for b in blocks if b.startswith(("train:", "train_point:"))]
    evaluate = [b for b in blocks if b.startswith("evaluate:")]
    assert train and evaluate
    counts = {rule: sum(b.startswith(rule + ":") for b in blocks) for rule in ("train", "train_point", "evaluate")}
    print(f"slurm-gpu dry run of paper: {len(blocks) - 1} jobs, {counts}")
    assert all("gres=gpu:1" in b and "slurm_partition=gpu" in b and "runtime=1440" in b for b in train)
    assert all("gres=gpu:1" in b and "slurm_extra=--exclusive" in b for b in evaluate)
