"""The agents' results table: every (agent, dataset) trained with `seeds=K` in one process,
the last and the best evaluation's D4RL normalized score per seed, written as markdown tables, a
JSON file and a bar plot of the last scores. One --out holds one run length (--steps). Finished
cells are kept in the JSON and an unfinished one resumes from its newest checkpoint (taken at
every evaluation), so a killed report picks up where it was. Each seed's `run_dir` in the JSON
is relative to `--runs`, so the JSON does not name this machine.

    python benchmarks/report.py --steps 5000 --seeds 3 --datasets hopper-medium \
        --agents bc td3bc iql fdvl a2pr odice --imitation hopper-medium:1:hopper-random

Goal-conditioned datasets report OGBench's success rate over its 5 evaluation tasks, with
OGBench's published figures (1M updates, 8 seeds) beside them where it has them; an agent name
ending in `+aug` trains with the stitching paper's augmentation (`data.augment=temporal`):

    python benchmarks/report.py --steps 5000 --seeds 3 --out docs/goals-5k \
        --datasets pointmaze-medium-navigate pointmaze-medium-stitch cube-single-play \
        --agents gcbc gcbc+aug gcivl gciql hiql smore

Preference data take `NAME:dense` or `NAME:sparse` (env.labels) and report the success rate
with each cell's wall-clock beside it (CPL's claim is about compute):

    python benchmarks/report.py --steps 2000 --seeds 3 --episodes 25 --out docs/preferences-2k \
        --datasets metaworld-drawer-open-pref:dense metaworld-drawer-open-pref:sparse \
        --agents cpl sft bc_all piql

Several processes may fill one --out at once (say, one per dataset): each cell is merged into
the JSON under a lock when it finishes.

`--imitation EXPERT:K:SUBOPTIMAL` adds ReCOIL and BC on the mix of K expert episodes and the
suboptimal dataset; `--imitation EXPERT:K` adds O-DICE-IL and BC on the K expert episodes alone,
the data O-DICE's imitation script trains on (rewards unused by all of them: with no rewards and
no expert labels, O-DICE-IL has nothing that tells the expert apart inside a mix).
"""
from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
IMITATION_AGENTS = {"mix": ("bc", "recoil"), "expert": ("bc", "odice_il")}
AUGMENTED = "+aug"
# OGBench's published success rates (%, state-based, 1M updates, 8 seeds; the OGBench paper).
OGBENCH_PUBLISHED = {
    "pointmaze-medium-navigate": {"gcbc": "9±6", "gcivl": "63±6", "gciql": "53±8", "hiql": "79±5"},
    "pointmaze-large-navigate": {"gcbc": "29±6", "gcivl": "45±5", "gciql": "34±3", "hiql": "58±5"},
    "pointmaze-medium-stitch": {"gcbc": "23±18", "gcivl": "70±14", "gciql": "21±9", "hiql": "74±6"},
    "pointmaze-large-stitch": {"gcbc": "7±5", "gcivl": "12±6", "gciql": "31±2", "hiql": "13±6"},
    "cube-single-play": {"gcbc": "6±2", "gcivl": "53±4", "gciql": "68±6", "hiql": "15±3"},
    "cube-single-noisy": {"gcbc": "8±3", "gcivl": "71±9", "gciql": "99±1", "hiql": "41±6"},
}


def env_of(dataset: str) -> str:
    """The env config a dataset belongs to: the longest configs/env name it starts with."""
    names = [p.stem for p in (ROOT / "configs" / "env").glob("*.yaml")]
    matches = [n for n in names if dataset == n or dataset.startswith(n + "-")]
    if not matches:
        raise SystemExit(f"--datasets {dataset}: no env config fits it; envs: {', '.join(sorted(names))}")
    return max(matches, key=len)


def cell_key(agent: str, dataset: str) -> str:
    return f"{agent}@{dataset}"


def datasets_of(results: dict) -> list[str]:
    """The datasets of a report's cells, in the order they were first added."""
    return list(dict.fromkeys(k.split("@", 1)[1] for k in results))


def data_score(results: dict, dataset: str) -> float | None:
    """The behaviour data's own score, recorded with every cell of that dataset."""
    return next(c[0]["data_score"] for k, c in results.items() if k.endswith("@" + dataset))


def jobs(args) -> list[tuple[str, str, list[str]]]:
    """(agent, dataset label, overrides) for every cell of the table."""
    out = []
    for entry in args.datasets:
        dataset, _, labels = entry.partition(":")         # preference data: NAME:dense|sparse
        env = env_of(dataset)
        row = f"{dataset}-{labels}" if labels else dataset
        for label in args.agents:
            agent = label.removesuffix(AUGMENTED)
            extra = ["data.augment=temporal"] if label.endswith(AUGMENTED) else []
            extra += [f"env.labels={labels}"] if labels else []
            out.append((label, row, [f"agent={agent}", f"env={env}", f"env.dataset={dataset}", *extra]))
    for spec in args.imitation or []:
        parts = spec.split(":")
        if len(parts) not in (2, 3) or not parts[1].isdigit():
            raise SystemExit(f"--imitation {spec}: expected EXPERT:K (O-DICE-IL) or EXPERT:K:SUBOPTIMAL "
                             "(ReCOIL), e.g. hopper-expert:1 or hopper-expert:1:hopper-random")
        expert, k, *suboptimal = parts
        env = expert.split("-")[0]
        overrides = [f"env={env}", f"env.dataset={expert}", f"env.expert_episodes={k}"]
        label = f"{expert}-{k}ep"
        if suboptimal:
            overrides.append(f"env.suboptimal={suboptimal[0]}")
            label += f"+{suboptimal[0]}"
        for agent in IMITATION_AGENTS["mix" if suboptimal else "expert"]:
            out.append((agent, label, [f"agent={agent}", *overrides]))
    return out


def run_cell(agent: str, dataset: str, overrides: list[str], args) -> list[dict]:
    """Train one cell in a run folder named by the cell (and a digest of `--override`, so other
    settings never resume it), checkpointing at every evaluation: a report killed mid-cell
    resumes that cell from its newest checkpoint when run again."""
    from rlcore.config import load_config
    from rlcore.training.trainer import train
    name = f"seeds{args.seeds}-steps{args.steps}"
    extra = overrides_for(agent, args.override)
    if extra:
        name += "-" + hashlib.sha256("\n".join(extra).encode()).hexdigest()[:8]
    run_dir = Path(args.runs) / agent / dataset / name
    cfg = load_config([*overrides, f"seeds={args.seeds}", f"trainer.steps={args.steps}",
                       f"trainer.eval_every={max(args.steps // 4, 1)}",
                       "trainer.checkpoint_every=${trainer.eval_every}",
                       f"trainer.eval_episodes={args.episodes}",
                       f"run_dir={run_dir}", *extra])
    success = str(cfg.env.score) == "success"
    data = None if cfg.env.get("expert_episodes") or success else dataset_score(
        str(cfg.env.dataset), cfg.data.transitions, cfg.data.seed, str(cfg.env.score))
    start = time.perf_counter()
    results = train(cfg)
    wall = time.perf_counter() - start          # the cell's seeds train at once, in one process
    return [{"seed": r.seed, "steps": args.steps, "last": r.last_score, "best": r.best_score,
             "last_return": r.last_return, "wall_s": wall, "metric": str(cfg.env.score),
             "run_dir": Path(r.run_dir).resolve().relative_to(Path(args.runs).resolve()).as_posix(),
             "data_score": data} for r in results]


def overrides_for(agent: str, overrides: list[str]) -> list[str]:
    """`--override` entries for this agent: KEY=VALUE for every agent, AGENT:KEY=VALUE for one."""
    out = []
    for item in overrides:
        head, sep, rest = item.partition(":")
        if sep and "=" not in head:
            if head == agent:
                out.append(rest)
        else:
            out.append(item)
    return out


@functools.cache
def dataset_score(name: str, transitions: int, seed: int, family: str) -> float:
    """The dataset's own mean normalized score (the behaviour policy's level); loaded once per
    dataset in a report, not once per agent."""
    from rlcore.data.datasets import load_dataset
    from rlcore.evaluation.scores import reference_for
    ds = load_dataset(name, transitions, seed, progress=False)
    return float(reference_for(family, ds.metadata).normalize(ds.episode_returns().mean()))


def scored_by_success(results: dict, dataset: str | None = None) -> bool:
    """Whether the cells (of one dataset, or all) report a success rate as their score."""
    return all(c[0].get("metric") == "success" for k, c in results.items()
               if dataset is None or k.endswith("@" + dataset))


def check_steps(results: dict, steps: int) -> None:
    """A table is for one run length: refuse cells the JSON records at another."""
    other = {k: c[0]["steps"] for k, c in results.items() if c[0].get("steps", steps) != steps}
    if other:
        cells = ", ".join(f"{k} ({n:,})" for k, n in other.items())
        raise SystemExit(f"{cells} in this --out were trained for other update counts than "
                         f"--steps {steps:,}: pass their --steps, or another --out")


def write_table(results: dict, args) -> str:
    """Two tables, as the field reports runs: the last evaluation's score and the best one's, a
    row per dataset (the behaviour data's own score beside it) and a column per agent."""
    datasets = datasets_of(results)
    agents = list(dict.fromkeys(k.split("@", 1)[0] for k in results))
    goals = any(d in OGBENCH_PUBLISHED or d.removesuffix("-v0") in OGBENCH_PUBLISHED for d in datasets)
    success = scored_by_success(results)                                     # Meta-World
    if goals:
        what, note = ("success rate (%, OGBench's 5 evaluation tasks x 10 episodes per seed)",
                      "*OGBench* rows: the published figures (1M updates, 8 seeds).")
    elif success:
        what, note = (f"success rate (%, {args.episodes} episodes per seed, success at any step)",
                      "in brackets the cell's wall-clock (its seeds at once in one process, "
                      "evaluations included).")
    else:
        what, note = ("D4RL normalized score (10 episodes per seed)",
                      "*data* is the behaviour data's mean score.")
    lines = [f"{what}, mean ± std over {args.seeds} seeds trained at once (`seeds={args.seeds}`), "
             f"{args.steps:,} updates; {note}"]
    data_column = [] if goals or success else ["*data*"]     # goal data has no score of its own
    for which, title in (("last", "Last evaluation"), ("best", "Best evaluation")):
        lines += ["", f"{title}:", "", "| " + " | ".join(["dataset", *data_column, *agents]) + " |",
                  "|---|" + "---|" * (len(agents) + len(data_column))]
        for dataset in datasets:
            data = data_score(results, dataset)
            row = [] if goals or success else ["" if data is None else f"*{data:.1f}*"]
            for agent in agents:
                cell = results.get(cell_key(agent, dataset))
                scores = np.array([c[which] for c in cell or []])
                wall = f" ({cell[0]['wall_s'] / 60:.0f} min)" if cell and success else ""
                row.append(f"{scores.mean():.1f} ± {scores.std():.1f}{wall}" if cell else "")
            lines.append(f"| {dataset} | " + " | ".join(row) + " |")
            published = OGBENCH_PUBLISHED.get(dataset.removesuffix("-v0"))
            if published and which == "last" and any(a in published for a in agents):
                lines.append("| *OGBench, 1M updates* | " + " | ".join(
                    f"*{published[a]}*" if a in published else "" for a in agents) + " |")
    return "\n".join(lines) + "\n"


def write_plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    datasets = datasets_of(results)
    cols = min(len(datasets), 3)
    rows = -(-len(datasets) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.4 * rows), squeeze=False)
    for ax in axes.flat[len(datasets):]:
        ax.set_visible(False)
    for ax, dataset in zip(axes.flat, datasets):
        cells = [(k.split("@")[0], np.array([c["last"] for c in v]))
                 for k, v in results.items() if k.endswith("@" + dataset)]
        names = [n for n, _ in cells]
        ax.bar(names, [s.mean() for _, s in cells], yerr=[s.std() for _, s in cells], capsize=3)
        for i, (_, s) in enumerate(cells):
            ax.scatter([i] * len(s), s, color="k", s=8, zorder=3)
        data = data_score(results, dataset)
        if data is not None:
            ax.axhline(data, color="grey", linestyle="--", linewidth=1, label="data")
            ax.legend(fontsize=7, loc="upper right")
        ax.set_title(dataset, fontsize=9)
        ax.set_ylabel("success rate (%)" if scored_by_success(results, dataset) or dataset.removesuffix("-v0") in OGBENCH_PUBLISHED
                      else "D4RL normalized score")
        ax.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--agents", nargs="+", default=["bc", "td3bc", "iql", "fdvl", "a2pr", "odice"])
    p.add_argument("--datasets", nargs="*", default=["hopper-medium"])
    p.add_argument("--imitation", nargs="*", default=None, help="EXPERT:K:SUBOPTIMAL (ReCOIL) or EXPERT:K (O-DICE-IL)")
    p.add_argument("--steps", type=int, default=5000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--episodes", type=int, default=10, help="evaluation episodes per seed")
    p.add_argument("--runs", default="runs/report")
    p.add_argument("--out", default=str(ROOT / "docs" / "agents"), help="writes OUT.md/.json/.png")
    p.add_argument("--override", nargs="*", default=[], help="extra key=value for every run, or agent:key=value for one agent's runs")
    p.add_argument("--table-only", action="store_true", help="rewrite the table and plot from the "
                   "JSON without training the missing cells")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    # OUT + extension, never with_suffix: a dotted name (runs-lam0.4) would lose its tail
    store, table_file, plot_file = (out.with_name(out.name + ext) for ext in (".json", ".md", ".png"))
    from rlcore.fileio import atomic_write_text, file_lock

    def load() -> dict:
        return json.loads(store.read_text()) if store.exists() else {}

    results = load()
    check_steps(results, args.steps)
    for agent, dataset, overrides in jobs(args):
        key = cell_key(agent, dataset)
        if key in results or args.table_only:
            continue
        print(f"== {key}: {args.seeds} seeds x {args.steps} updates", file=sys.stderr, flush=True)
        cell = run_cell(agent, dataset, overrides, args)
        with file_lock(Path(args.runs) / ".report.lock"):         # other processes' cells kept
            results = {**load(), key: cell}
            atomic_write_text(store, json.dumps(results, indent=2))
    table = write_table(results, args)
    atomic_write_text(table_file, table)
    write_plot(results, plot_file)
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
