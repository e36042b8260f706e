"""`rlcore report`: train the missing cells of an agents x datasets x seeds grid, then write a
results page from the run folders.

    rlcore report agents=[iql,td3bc,odice] datasets=[hopper-medium,walker2d-medium] seeds=5 \\
        trainer.steps=100000 launcher=local launcher.jobs=2 --out docs/report
    rlcore report --from runs/report --out docs/report      # finished runs only, no training

A cell is an agent on a dataset: K seeds at once (`seeds=K`) for agents that train them in one
process, one cell per seed otherwise. Its run folder, `<runs>/<agent>/<dataset>/<seeds>-<digest
of the other overrides>`, is where `rlcore train` writes; a finished cell (summary.json) is kept
and an unfinished one resumes from its newest checkpoint, so a killed report trains only what is
missing when run again. Cells go to the launcher (rlcore.training.launchers).

The page (OUT.md, OUT.json, OUT-curves.png, OUT-profile.png): per dataset, each agent's last and
best score (D4RL normalized, success rate, or for simulators the test cost beside the optimum)
as mean ± std with the number of seeds; across datasets on a percent scale, the interquartile
mean with a 95% stratified-bootstrap interval, performance profiles and the probability of
improvement of every pair (rlcore.evaluation.aggregate); learning curves per dataset.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np

from rlcore.errors import ConfigError, UserError
from rlcore.fileio import atomic_write_text
from rlcore.evaluation.scores import COST
from rlcore.training.launchers import Cell, launch

REPORT_KEYS = ("agents", "datasets", "seeds", "launcher")
PERCENT = ("success", "D4RL")       # score references on a common 0-100 scale


@dataclass
class ReportRequest:
    agents: list[str]
    datasets: list[str]
    seeds: int
    launcher: dict
    overrides: list[str] = field(default_factory=list)   # for every cell's `rlcore train`

    @classmethod
    def parse(cls, args: list[str]) -> "ReportRequest":
        values, launcher, rest = {}, {"name": "local"}, []
        for arg in args:
            key, sep, value = arg.partition("=")
            if not sep:
                raise ConfigError(f"{arg!r}: expected key=value (agents=[iql,odice], "
                                  "datasets=[hopper-medium], seeds=3, launcher=local, ...)")
            if key == "launcher":
                launcher["name"] = value
            elif key.startswith("launcher."):
                launcher[key.split(".", 1)[1]] = _scalar(value)
            elif key in REPORT_KEYS:
                values[key] = value
            elif key in ("seed", "run_dir", "resume", "agent", "env"):
                raise ConfigError(f"{key}= is set per cell by the report; give agents=[...], "
                                  "datasets=[...] and seeds=K")
            else:
                rest.append(arg)
        missing = [k for k in ("agents", "datasets") if k not in values]
        if missing:
            raise ConfigError(f"rlcore report needs {' and '.join(missing)}: e.g. "
                              "agents=[iql,odice] datasets=[hopper-medium] seeds=3")
        seeds = values.get("seeds", "3")
        if not seeds.isdigit() or int(seeds) < 1:
            raise ConfigError(f"seeds={seeds}: a number of seeds >= 1")
        return cls(_listed(values["agents"]), _listed(values["datasets"]), int(seeds), launcher, rest)


def _listed(value: str) -> list[str]:
    items = [v.strip() for v in value.strip().removeprefix("[").removesuffix("]").split(",")]
    return [v for v in items if v]


def _scalar(value: str):
    if value.lower() in ("null", "none"):
        return None
    try:
        return int(value)
    except ValueError:
        try:
            return float(value)
        except ValueError:
            return value


def env_for(dataset: str) -> list[str]:
    """`env=...` (and `env.dataset=...`, `env.labels=...`) for a dataset or env name: an env
    config's own name runs with its default data (or none: online, on-policy, simulators);
    otherwise the env whose name is the longest prefix of the dataset's."""
    from rlcore.config import group_options
    name, _, labels = dataset.partition(":")            # preference data: NAME:dense|sparse
    envs = group_options("env")
    extra = [f"env.labels={labels}"] if labels else []
    if name in envs:
        return [f"env={name}", *extra]
    matches = [e for e in envs if name.startswith(e + "-")]
    if not matches:
        raise ConfigError(f"datasets: {name!r} fits no env; give an env ({', '.join(envs)}) or a "
                          "dataset named after one (hopper-medium)")
    return [f"env={max(matches, key=len)}", f"env.dataset={name}", *extra]


def plan(request: ReportRequest, runs: Path) -> list[Cell]:
    """Every cell of the grid, with its run folder."""
    from rlcore.registry import AGENTS
    digest = hashlib.sha256("\n".join(sorted(request.overrides)).encode()).hexdigest()[:8]
    cells = []
    for dataset in request.datasets:
        env = env_for(dataset)
        label = dataset.replace(":", "-")
        for agent in request.agents:
            together = AGENTS.get(agent).multi_seed
            groups = [list(range(request.seeds))] if together else [[s] for s in range(request.seeds)]
            for seeds in groups:
                seed_args = ([f"seeds={len(seeds)}", "seed=0"] if len(seeds) > 1 else [f"seed={seeds[0]}"])
                tag = f"seeds{len(seeds)}" if len(seeds) > 1 else f"seed{seeds[0]}"
                run_dir = (runs / agent / label / f"{tag}-{digest}").resolve()
                cells.append(Cell(agent, label, (f"agent={agent}", *env, *seed_args, *request.overrides),
                                  str(run_dir)))
    return cells


# ---- reading finished runs ----

def read_run(run_dir: Path) -> list[dict]:
    """One record per seed of a finished run folder: its scores, reference and curve."""
    from omegaconf import OmegaConf
    from rlcore.training.trainer import dataset_label
    summary = json.loads((run_dir / "summary.json").read_text())
    cfg = OmegaConf.load(run_dir / "config.yaml")
    rows = summary if isinstance(summary, list) else [summary]
    records = []
    for row in rows:
        seed_dir = run_dir if len(rows) == 1 else run_dir / f"seed{row['seed']}"
        curve = [(r["step"], r["score_mean"]) for r in map(json.loads, open(seed_dir / "metrics.jsonl"))
                 if r["kind"] == "eval"]
        records.append({"agent": row["agent"], "dataset": dataset_label(cfg), "seed": row["seed"],
                        "steps": row["steps"], "last": row["last_score"], "best": row["best_score"],
                        "reference": row["reference"], "test_cost": row.get("test_cost"),
                        "optimum": row.get("optimum"), "curve": curve,
                        "run_dir": str(run_dir)})
    return records


def collect(folders: list[Path], root: Path) -> list[dict]:
    """The records of the finished folders, each run folder named relative to `root` (so the
    page's JSON does not name this machine)."""
    records = [r for folder in folders if (folder / "summary.json").exists() for r in read_run(folder)]
    for r in records:
        r["run_dir"] = os.path.relpath(r["run_dir"], root.resolve())
    return records


def finished_runs(root: Path) -> list[Path]:
    """Every finished run folder under root (a K-seed run's seed<k>/ folders are part of it)."""
    if not root.exists():
        raise UserError(f"--from {root}: no such folder")
    found = sorted(p.parent for p in root.rglob("summary.json") if (p.parent / "config.yaml").exists())
    if not found:
        raise UserError(f"--from {root}: no finished run folders (config.yaml + summary.json) in it")
    return found


# ---- the page ----

def label() -> str:
    import torch
    root = Path(__file__).resolve().parents[1]
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True,
                            text=True).stdout.strip() or "unknown"
    cpu = platform.processor() or platform.machine()
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                   if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{date.today().isoformat()}, commit {commit}, {cpu} ({os.cpu_count()} cores, {gpu}), "
            f"torch {torch.__version__}")


def grouped(records: list[dict]) -> dict[tuple[str, str], list[dict]]:
    out: dict[tuple[str, str], list[dict]] = {}
    for r in records:
        out.setdefault((r["dataset"], r["agent"]), []).append(r)
    return out


def mean_std(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.1f} ± {values.std():.1f}"


def percent_scale(reference: str) -> bool:
    return reference.startswith(PERCENT)


def aggregates(records: list[dict]) -> dict:
    """IQM [95% CI], mean and median over datasets and seeds, and P(row > column), for the
    agents that ran every percent-scale dataset (last scores, the same seed count per task)."""
    from rlcore.evaluation.aggregate import (iqm, probability_of_improvement,
                                             probability_of_improvement_ci, stratified_bootstrap)
    cells = grouped([r for r in records if percent_scale(r["reference"])])
    datasets = sorted({d for d, _ in cells})
    agents = sorted({a for _, a in cells if all((d, a) in cells for d in datasets)})
    if not datasets or not agents:
        return {}
    runs = min(len(cells[(d, a)]) for d in datasets for a in agents)
    matrix = {a: np.array([[r["last"] for r in sorted(cells[(d, a)], key=lambda r: r["seed"])[:runs]]
                           for d in datasets]).T for a in agents}      # [runs, tasks]
    out = {"datasets": datasets, "runs_per_dataset": runs, "agents": {}}
    for a, scores in matrix.items():
        low, high = stratified_bootstrap(scores, iqm)
        out["agents"][a] = {"iqm": iqm(scores), "iqm_ci": [low, high], "mean": float(scores.mean()),
                            "median": float(np.median(scores.mean(0)))}
    out["improvement"] = {f"{a}>{b}": {"p": probability_of_improvement(matrix[a], matrix[b]),
                                       "ci": list(probability_of_improvement_ci(matrix[a], matrix[b]))}
                          for a in agents for b in agents if a != b}
    out["matrix"] = {a: m.tolist() for a, m in matrix.items()}
    return out


def write_page(records: list[dict], out: Path, command: str) -> str:
    cells = grouped(records)
    datasets = list(dict.fromkeys(r["dataset"] for r in records))
    lines = ["# Results", "", f"{label()}.", "", f"Made by `{command}`.", ""]
    for dataset in datasets:
        agents = [a for d, a in cells if d == dataset]
        reference = cells[(dataset, agents[0])][0]["reference"]
        cost = reference == COST.source                # a simulator: test cost and optimum
        what = f"D4RL normalized score (reference returns: {reference})" if reference.startswith("D4RL") else reference
        lines += [f"## {dataset}", "", f"Score: {what}; mean ± std over seeds, n seeds.", ""]
        if cost:
            lines += ["| agent | n | test cost | optimum | gap % | best dev cost |", "|---|---|---|---|---|---|"]
        else:
            lines += ["| agent | n | steps | last | best |", "|---|---|---|---|---|"]
        for agent in agents:
            rs = cells[(dataset, agent)]
            if cost:
                test = np.array([r["test_cost"] for r in rs])
                optimum = rs[0].get("optimum")
                gap = (f"{100 * (test.mean() - optimum) / optimum:.2f}"
                       if optimum is not None and optimum == optimum else "—")
                lines.append(f"| {agent} | {len(rs)} | {test.mean():.4f} ± {test.std():.4f} | "
                             f"{'—' if optimum is None or optimum != optimum else f'{optimum:.4f}'} | "
                             f"{gap} | {mean_std([r['best'] for r in rs])} |")
            else:
                lines.append(f"| {agent} | {len(rs)} | {rs[0]['steps']:,} | "
                             f"{mean_std([r['last'] for r in rs])} | {mean_std([r['best'] for r in rs])} |")
        lines.append("")
    agg = aggregates(records)
    if agg and len(agg["agents"]) > 1:
        lines += ["## Across datasets", "",
                  f"Last scores on {', '.join(agg['datasets'])}, {agg['runs_per_dataset']} seeds "
                  "each (Agarwal et al., 2021): interquartile mean with a 95% stratified-bootstrap "
                  f"interval (2,000 resamples), mean, median of the per-dataset means. Performance "
                  f"profiles: {out.name}-profile.png.", "",
                  "| agent | IQM | 95% CI | mean | median |", "|---|---|---|---|---|"]
        for a, m in sorted(agg["agents"].items(), key=lambda kv: -kv[1]["iqm"]):
            lines.append(f"| {a} | {m['iqm']:.1f} | [{m['iqm_ci'][0]:.1f}, {m['iqm_ci'][1]:.1f}] | "
                         f"{m['mean']:.1f} | {m['median']:.1f} |")
        names = sorted(agg["agents"])
        lines += ["", "Probability of improvement P(row > column), with its 95% interval:", "",
                  "| | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for a in names:
            row = [("—" if a == b else
                    f"{agg['improvement'][f'{a}>{b}']['p']:.2f} "
                    f"[{agg['improvement'][f'{a}>{b}']['ci'][0]:.2f}, {agg['improvement'][f'{a}>{b}']['ci'][1]:.2f}]")
                   for b in names]
            lines.append(f"| {a} | " + " | ".join(row) + " |")
        lines.append("")
    lines.append(f"Learning curves (mean ± std over seeds): {out.name}-curves.png.")
    page = "\n".join(lines) + "\n"
    atomic_write_text(out.with_name(out.name + ".md"), page)
    atomic_write_text(out.with_name(out.name + ".json"),
                      json.dumps({"label": label(), "command": command, "records": records,
                                  "aggregates": agg}, indent=1, default=float))
    write_curves(cells, datasets, out.with_name(out.name + "-curves.png"))
    if agg and len(agg["agents"]) > 1:
        write_profiles(agg, out.with_name(out.name + "-profile.png"))
    return page


def write_curves(cells: dict, datasets: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    cols = min(len(datasets), 3)
    rows = -(-len(datasets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.8 * cols, 3.5 * rows), squeeze=False)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets):
        for (d, agent), rs in sorted(cells.items()):     # agents in name order, as the profiles
            if d != dataset or not rs[0]["curve"]:
                continue
            steps = sorted({s for r in rs for s, _ in r["curve"]})
            values = np.array([[dict(r["curve"]).get(s, np.nan) for s in steps] for r in rs])
            mean, std = np.nanmean(values, 0), np.nanstd(values, 0)
            ax.plot(steps, mean, label=agent)
            ax.fill_between(steps, mean - std, mean + std, alpha=0.2)
        ax.set(title=dataset, xlabel="training steps", ylabel="score")
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_profiles(agg: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rlcore.evaluation.aggregate import performance_profile
    top = max(max(max(row) for row in m) for m in agg["matrix"].values())
    taus = np.linspace(0, max(top, 1.0), 101)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    for agent, m in agg["matrix"].items():
        ax.plot(taus, performance_profile(np.array(m), taus), label=agent)
    ax.set(xlabel="score tau", ylabel="fraction of runs with score > tau",
           title="performance profiles (last scores)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_report(args: list[str], out: Path, runs: Path, from_dir: Path | None = None) -> str:
    """Train what is missing (unless reading `from_dir`), then write the page."""
    if from_dir is not None:
        if args:
            raise ConfigError("--from reads finished runs only: give no grid with it")
        folders = finished_runs(from_dir)
        command = f"rlcore report --from {from_dir}"
    else:
        request = ReportRequest.parse(args)
        cells = plan(request, runs)
        from rlcore.config import load_config
        for cell in cells:                  # every cell's config checked before any training
            load_config([*cell.overrides, f"run_dir={cell.run_dir}"])
        launch(cells, request.launcher)
        folders = [Path(c.run_dir) for c in cells]
        command = "rlcore report " + " ".join(args)
    records = collect(folders, from_dir if from_dir is not None else runs)
    if not records:
        raise UserError("no finished runs to report")
    out.parent.mkdir(parents=True, exist_ok=True)
    return write_page(records, out, command)
