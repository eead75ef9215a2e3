"""A real single-node SLURM cluster on this machine, for the SLURM workflow test.

Debian's `slurm-wlm` and `munge` (installed with apt-get when missing), a
slurm.conf for localhost written into a temporary folder (SLURM_CONF points the
clients here at it; /etc/slurm is left alone), munged, slurmctld and slurmd
started as root, and stopped afterwards by the PIDs of the daemons this module
started. The cluster runs configless: inside a job, Snakemake's jobstep drops
SLURM_CONF from the environment, so its `srun` finds the configuration through
slurmd (which fetched it from slurmctld), not through the variable. No accounting database: status comes from squeue, so
MinJobAge keeps finished jobs visible for 10 minutes.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

PACKAGES = ("slurm-wlm", "munge")
DAEMONS = ("/usr/sbin/munged", "/usr/sbin/slurmctld", "/usr/sbin/slurmd")


def unavailable_reason() -> str | None:
    """Why a local SLURM cluster cannot be set up here, or None when it can."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return "needs root to install and start SLURM's daemons"
    if not all(Path(d).exists() for d in DAEMONS) and shutil.which("apt-get") is None:
        return "SLURM is not installed and there is no apt-get to install it"
    if (os.cpu_count() or 1) < 2:
        return "needs at least 2 CPUs (the smoke run's train jobs ask for 2)"
    if _memory_mb() < 10_000:
        return "needs 10 GB of memory (profiles/slurm asks 8 GB for a train or evaluate job)"
    return None


def install(timeout: float = 600) -> None:
    """apt-get install slurm-wlm and munge, unless their daemons are already there."""
    if all(Path(d).exists() for d in DAEMONS):
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env, timeout=timeout, capture_output=True)
    subprocess.run(["apt-get", "install", "-y", "-qq", *PACKAGES], check=True, env=env, timeout=timeout,
                   capture_output=True)


def _memory_mb() -> int:
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024
    raise RuntimeError("no MemTotal in /proc/meminfo")


def slurm_conf(root: Path, host: str, cpus: int, memory_mb: int) -> str:
    return "\n".join([
        "ClusterName=harness-test",
        "SlurmctldParameters=enable_configless",
        f"SlurmctldHost={host}(127.0.0.1)",
        "AuthType=auth/munge",
        "CredType=cred/munge",
        "ProctrackType=proctrack/linuxproc",
        "TaskPlugin=task/none",
        "SelectType=select/cons_tres",
        "SelectTypeParameters=CR_Core_Memory",
        "AccountingStorageType=accounting_storage/none",
        "JobAcctGatherType=jobacct_gather/none",
        "MinJobAge=600",
        "ReturnToService=2",
        "SlurmUser=root",
        "SlurmctldPort=6817",
        "SlurmdPort=6818",
        f"StateSaveLocation={root}/state",
        f"SlurmdSpoolDir={root}/spool",
        f"SlurmctldPidFile={root}/slurmctld.pid",
        f"SlurmdPidFile={root}/slurmd.pid",
        f"SlurmctldLogFile={root}/slurmctld.log",
        f"SlurmdLogFile={root}/slurmd.log",
        f"NodeName={host} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN",
        f"PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP",
        "",
    ])


def _munge_works() -> bool:
    try:
        enc = subprocess.run(["munge", "-n"], capture_output=True, timeout=10)
        return enc.returncode == 0 and subprocess.run(["unmunge"], input=enc.stdout, capture_output=True,
                                                      timeout=10).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def _pid(path: Path, timeout: float = 15) -> int:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if path.exists() and path.read_text().strip():
            return int(path.read_text().split()[0])
        time.sleep(0.1)
    raise RuntimeError(f"{path} did not appear: the daemon did not start")


def _alive(pid: int) -> bool:
    """Running, not a zombie (a daemon's parent may be a container's init that never reaps)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return not any(line.startswith("State:") and "Z" in line.split()[1] for line in status.splitlines())


class LocalSlurm:
    """Context manager: a running single-node cluster; `env` carries SLURM_CONF."""

    def __init__(self, root: Path):
        self.root = Path(root)
        self.host = socket.gethostname()
        self.conf = self.root / "slurm.conf"
        self.env = {**os.environ, "SLURM_CONF": str(self.conf)}
        self.started: list[tuple[str, int]] = []  # (daemon, pid), only those this object started

    def __enter__(self) -> "LocalSlurm":
        for sub in ("state", "spool"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        self.conf.write_text(slurm_conf(self.root, self.host, os.cpu_count() or 2, int(_memory_mb() * 0.9)))
        try:
            if not _munge_works():
                run = Path("/run/munge")
                run.mkdir(parents=True, exist_ok=True)
                shutil.chown(run, "munge", "munge")
                subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True, timeout=30)
                self.started.append(("munged", _pid(run / "munged.pid")))
            subprocess.run(["/usr/sbin/slurmctld", "-f", str(self.conf)], check=True, env=self.env, timeout=30)
            self.started.append(("slurmctld", _pid(self.root / "slurmctld.pid")))
            subprocess.run(["/usr/sbin/slurmd", "--conf-server", "127.0.0.1:6817"], check=True, env=self.env,
                           timeout=30)
            self.started.append(("slurmd", _pid(self.root / "slurmd.pid")))
            self._wait_idle()
        except BaseException:
            self.__exit__()
            raise
        return self

    def _wait_idle(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        state = ""
        while time.monotonic() < end:
            p = subprocess.run(["sinfo", "-h", "-o", "%T"], capture_output=True, text=True, env=self.env)
            state = p.stdout.strip()
            if state == "idle":
                return
            time.sleep(0.5)
        raise RuntimeError(f"the node did not become idle in {timeout} s (sinfo: {state!r}); "
                           f"see {self.root}/slurmctld.log and slurmd.log")

    def squeue(self) -> list[dict]:
        """Jobs the controller knows (running, pending and recently finished)."""
        p = subprocess.run(["squeue", "-h", "-t", "all", "-o", "%i|%T|%k"], capture_output=True, text=True,
                           env=self.env, check=True)
        rows = [line.split("|", 2) for line in p.stdout.splitlines() if line.strip()]
        return [{"id": r[0], "state": r[1], "comment": r[2]} for r in rows]

    def scancel(self, job_id: str) -> bool:
        """Cancel a job; False when SLURM refused (e.g. the job had just ended)."""
        return subprocess.run(["scancel", job_id], env=self.env, capture_output=True).returncode == 0

    def __exit__(self, *exc) -> None:
        if any(name == "slurmctld" for name, _ in self.started):  # leave no job step of ours behind
            subprocess.run(["scancel", "--user", "root"], env=self.env, capture_output=True, timeout=30)
            time.sleep(1)
        for _, pid in reversed(self.started):  # slurmd, slurmctld, then munged
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            end = time.monotonic() + 30
            while time.monotonic() < end and _alive(pid):
                time.sleep(0.1)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        self.started = []
