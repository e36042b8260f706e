"""The policy-gradient family's learning curves and costs (Fatkhullin et al., ICML 2023).

    python benchmarks/policy_gradients.py --envs cartpole hopper halfcheetah \
        --agents pg nsgdm npg_igt harpg nharpg --seeds 0 1 2 3 4 --iterations 100 \
        --env-iterations hopper=200 halfcheetah=200 --out docs/policy-gradients \
        --override hopper/pg:agent.gamma_0=0.01

Trains every (env, agent, seed) cell as its own run (`rlcore train agent=A env=E seed=S
trainer.steps=ITERATIONS`), in run folders named by the cell and its overrides: a finished cell
is kept, a killed one resumes from its newest checkpoint. `--shard i/n` takes every n-th cell
from the i-th, so n processes can share one grid; `--plot-only` writes the outputs from the
finished runs. Outputs, from the runs' metrics:

- OUT-<env>.png: the mean return of each iteration's sampled episodes against environment
  steps (every batch counted: IGT's extrapolated one, HARPG's Hessian batch), the mean over
  seeds and a band of one standard deviation, each seed's curve interpolated onto one grid;
- OUT.md / OUT.json: per env and agent, the return over the last tenth of the run and over the
  whole run (the area under the curve: how fast it learns), the final deterministic evaluation,
  and wall-clock seconds per iteration, with the part spent in the environment.

`--timing N` instead runs every agent for N iterations per env, one after another in this one
process (seed 0, same overrides), and writes OUT-timing.md: seconds per iteration side by side,
split into sampling (every batch, HARPG's Hessian batch included) and the rest (gradients, the
Hessian-vector product, the baseline fit), undisturbed by other runs.

`--override` takes KEY=VALUE for every cell, AGENT:KEY=VALUE for one agent, ENV/AGENT:KEY=VALUE
for one agent on one env (a step size tuned per task).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
AGENTS = ["pg", "nsgdm", "npg_igt", "harpg", "nharpg"]
NAMES = {"pg": "Vanilla PG", "nsgdm": "NSGD-M", "npg_igt": "N-PG-IGT", "harpg": "HARPG",
         "nharpg": "N-HARPG"}


def overrides_for(env: str, agent: str, overrides: list[str]) -> list[str]:
    out = []
    for item in overrides:
        head, sep, rest = item.partition(":")
        if sep and "=" not in head:
            target_env, _, target_agent = head.rpartition("/")
            if target_agent == agent and target_env in ("", env):
                out.append(rest)
        else:
            out.append(item)
    return out


def iterations_for(env: str, args) -> int:
    per_env = dict(item.split("=", 1) for item in args.env_iterations)
    return int(per_env.get(env, args.iterations))


def run_dir(env: str, agent: str, seed: int, args) -> Path:
    name = f"seed{seed}-it{iterations_for(env, args)}"
    extra = overrides_for(env, agent, args.override)
    if extra:
        name += "-" + hashlib.sha256("\n".join(extra).encode()).hexdigest()[:8]
    return Path(args.runs) / agent / env / name


def cells(args) -> list[tuple[str, str, int]]:
    return [(env, agent, seed) for env in args.envs for agent in args.agents for seed in args.seeds]


def run_cell(env: str, agent: str, seed: int, args) -> None:
    from rlcore.agent.policy_gradient import TrainingDiverged
    from rlcore.config import load_config
    from rlcore.training.checkpoint import latest_checkpoint
    from rlcore.training.trainer import train
    folder = run_dir(env, agent, seed, args)
    if (folder / "summary.json").exists():
        return
    cfg = load_config([f"agent={agent}", f"env={env}", f"seed={seed}",
                       f"trainer.steps={iterations_for(env, args)}",
                       f"trainer.eval_episodes={args.episodes}", f"run_dir={folder}",
                       "trainer.progress=false", *overrides_for(env, agent, args.override)])
    if (folder / "diverged.json").exists():
        return
    if latest_checkpoint(folder) is not None:
        cfg.resume = str(folder)
    print(f"{env} {agent} seed {seed}: {folder}", file=sys.stderr)
    try:
        train(cfg)
    except TrainingDiverged as exc:              # a result: this step size is too large here
        (folder / "diverged.json").write_text(json.dumps({"message": str(exc)}))
        print(f"  {exc}", file=sys.stderr)


def read_run(folder: Path) -> dict | None:
    """A finished run's curve, or None; a diverged run is finished too (`diverged`: True)."""
    diverged = (folder / "diverged.json").exists()
    if not (folder / "summary.json").exists() and not diverged:
        return None
    rows = [json.loads(line) for line in open(folder / "metrics.jsonl")]
    train = [r for r in rows if r["kind"] == "train" and "episode_return" in r]
    evals = [r for r in rows if r["kind"] == "eval"]
    return {"env_steps": np.array([r["env_steps"] for r in train], dtype=float),
            "returns": np.array([r["episode_return"] for r in train]),
            "iteration_s": np.array([r["iteration_s"] for r in train]),
            "sample_s": np.array([r["sample_s"] for r in train]),
            "eval": evals[-1]["return_mean"] if evals else float("nan"), "diverged": diverged}


def mean_std(values) -> str:
    values = np.asarray(values, dtype=float)
    return f"{values.mean():.1f} ± {values.std():.1f}"


def summarise(args) -> dict:
    out = {}
    for env in args.envs:
        for agent in args.agents:
            finished = [r for r in (read_run(run_dir(env, agent, s, args)) for s in args.seeds) if r]
            runs = [r for r in finished if not r["diverged"]]
            if not runs:
                continue
            tail = [r["returns"][-max(1, len(r["returns"]) // 10):].mean() for r in runs]
            out.setdefault(env, {})[agent] = {
                "seeds": len(runs), "diverged": len(finished) - len(runs),
                "iterations": iterations_for(env, args),
                "env_steps": float(np.mean([r["env_steps"][-1] for r in runs])),
                "final_return": [float(x) for x in tail],
                "mean_return": [float(r["returns"].mean()) for r in runs],
                "eval_return": [float(r["eval"]) for r in runs],
                "iteration_s": float(np.median(np.concatenate([r["iteration_s"] for r in runs]))),
                "sample_s": float(np.median(np.concatenate([r["sample_s"] for r in runs]))),
                "overrides": overrides_for(env, agent, args.override)}
    return out


def write_plot(env: str, args, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    for agent in args.agents:
        runs = [r for r in (read_run(run_dir(env, agent, s, args)) for s in args.seeds)
                if r and not r["diverged"]]
        if not runs:
            continue
        end = min(r["env_steps"][-1] for r in runs)
        grid = np.linspace(max(r["env_steps"][0] for r in runs), end, 200)
        curves = np.stack([np.interp(grid, r["env_steps"], r["returns"]) for r in runs])
        mean, std = curves.mean(0), curves.std(0)
        ax.plot(grid, mean, label=f"{NAMES.get(agent, agent)} (n={len(runs)})", lw=1.5)
        ax.fill_between(grid, mean - std, mean + std, alpha=0.18)
    ax.set(xlabel="environment steps", ylabel="mean return of the sampled episodes",
           title=f"{env}: mean ± std over seeds")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def label() -> str:
    from rlcore.report import label as run_label
    return run_label()


def write_table(summary: dict, args) -> str:
    lines = [f"Measured {label()}.", ""]
    for env, agents in summary.items():
        first = next(iter(agents.values()))
        lines += [f"### {env}: {first['iterations']} iterations, ~{first['env_steps']:,.0f} "
                  "environment steps", "",
                  "| agent | seeds | final return | mean return (AUC) | eval return | s / iteration "
                  "| of which sampling | overrides |", "|---|---|---|---|---|---|---|---|"]
        for agent, row in agents.items():
            seeds = f"{row['seeds']}" + (f" (+{row['diverged']} diverged)" if row["diverged"] else "")
            lines.append(f"| {NAMES.get(agent, agent)} | {seeds} | {mean_std(row['final_return'])} | "
                         f"{mean_std(row['mean_return'])} | {mean_std(row['eval_return'])} | "
                         f"{row['iteration_s']:.3f} | {row['sample_s']:.3f} | "
                         f"{' '.join(row['overrides']) or '-'} |")
        lines.append("")
    lines.append("final return: the sampled episodes' mean return over the last tenth of the "
                 "iterations; mean return: over all iterations; eval: the deterministic policy at "
                 "the end; mean ± std over the seeds that did not diverge (a diverged run stops with "
                 "a clear error when its direction leaves the finite numbers). Seconds per iteration: the median, one process "
                 "per run.")
    return "\n".join(lines)


def timing(args) -> str:
    import tempfile

    from rlcore.config import load_config
    from rlcore.training.trainer import train
    lines = [f"Measured {label()}: {args.timing} iterations per agent, seed 0, one process, "
             "agents one after another.", "",
             "| env | agent | s / iteration | sampling | the rest | env steps / iteration | overrides |",
             "|---|---|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for env in args.envs:
            for agent in args.agents:
                extra = overrides_for(env, agent, args.override)
                folder = Path(tmp) / env / agent
                train(load_config([f"agent={agent}", f"env={env}", f"trainer.steps={args.timing}",
                                   f"trainer.eval_every={10 * args.timing}", "trainer.eval_episodes=1",
                                   "trainer.progress=false", f"run_dir={folder}", *extra]))
                rows = [json.loads(line) for line in open(folder / "metrics.jsonl")]
                rows = [r for r in rows if r["kind"] == "train"]
                steps = np.diff([0] + [r["env_steps"] for r in rows]).mean()
                rows = rows[1:]                                          # the first warms up
                total = np.mean([r["iteration_s"] for r in rows])
                sampling = np.mean([r["sample_s"] for r in rows])
                lines.append(f"| {env} | {NAMES.get(agent, agent)} | {total:.3f} | {sampling:.3f} | "
                             f"{total - sampling:.3f} | {steps:.0f} | {' '.join(extra) or '-'} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--envs", nargs="+", default=["cartpole", "hopper", "halfcheetah"])
    parser.add_argument("--agents", nargs="+", default=AGENTS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    parser.add_argument("--iterations", type=int, default=100)
    parser.add_argument("--env-iterations", nargs="*", default=[], metavar="ENV=N")
    parser.add_argument("--episodes", type=int, default=10, help="evaluation episodes")
    parser.add_argument("--override", nargs="*", default=[])
    parser.add_argument("--runs", default="runs/policy-gradients")
    parser.add_argument("--out", default="policy-gradients")
    parser.add_argument("--shard", default="0/1", metavar="I/N")
    parser.add_argument("--plot-only", action="store_true")
    parser.add_argument("--timing", type=int, default=0, metavar="N")
    args = parser.parse_args(argv)
    if args.timing:
        table = timing(args)
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.with_name(f"{out.name}-timing.md").write_text(table + "\n")
        print(table)
        return 0
    if not args.plot_only:
        index, count = map(int, args.shard.split("/"))
        for k, (env, agent, seed) in enumerate(cells(args)):
            if k % count == index:
                run_cell(env, agent, seed, args)
    summary = summarise(args)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for env in summary:
        write_plot(env, args, out.with_name(f"{out.name}-{env}.png"))
    table = write_table(summary, args)
    out.with_name(f"{out.name}.md").write_text(table + "\n")
    out.with_name(f"{out.name}.json").write_text(json.dumps({"label": label(), "cells": summary}, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
