"""Learning curves from run folders: each run's D4RL score at every evaluation, the mean over
its seeds drawn as a line and their range shaded; one panel per dataset.

    python benchmarks/curves.py runs/report/*/halfcheetah-medium/seeds* --out curves.png \
        --hline "data=33.0"

A run folder is what `rlcore train` writes: its config.yaml, and metrics.jsonl in it (one seed)
or in its seed<k>/ folders (`seeds=K`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np


def read_run(run: Path) -> tuple[str, str, int, dict[int, list[float]]]:
    """(agent, dataset label, the run's length, {step: [each seed's score]}) of one run folder."""
    from omegaconf import OmegaConf

    from rlcore.training.trainer import dataset_label
    if not (run / "config.yaml").exists():
        raise SystemExit(f"{run}: no config.yaml there; give run folders made by `rlcore train`")
    cfg = OmegaConf.load(run / "config.yaml")
    scores: dict[int, list[float]] = {}
    for metrics in sorted(run.glob("seed*/metrics.jsonl")) or [run / "metrics.jsonl"]:
        for line in metrics.read_text().splitlines():
            record = json.loads(line)
            if record.get("kind") == "eval":
                scores.setdefault(record["step"], []).append(record["score_mean"])
    return cfg.agent.name, dataset_label(cfg), int(cfg.trainer.steps), scores


def plot(runs: list[Path], out: Path, hlines: dict[str, float] | None = None,
         labels: list[str] | None = None) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    curves = [read_run(run) for run in runs]
    datasets = list(dict.fromkeys(curve[1] for curve in curves))
    fig, axes = plt.subplots(1, len(datasets), figsize=(6 * len(datasets), 4), squeeze=False)
    panel = dict(zip(datasets, axes[0]))
    names = [name or curve[0] for curve, name in zip(curves, labels or [None] * len(curves))]
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    color = {name: cycle[i % len(cycle)] for i, name in enumerate(dict.fromkeys(names))}  # one per name, every panel
    for (agent, dataset, length, scores), name in zip(curves, names):
        steps = sorted(scores)
        if not steps:
            print(f"{agent} on {dataset}: no evaluations yet", file=sys.stderr)
            continue
        ax = panel[dataset]
        seeds = [np.array(scores[s]) for s in steps]
        label = f"{name}, {length:,}-update run ({len(seeds[-1])} seeds)"
        ax.plot(steps, [s.mean() for s in seeds], marker=".", label=label, color=color[name])
        ax.fill_between(steps, [s.min() for s in seeds], [s.max() for s in seeds],
                        color=color[name], alpha=0.15)
    for dataset, ax in panel.items():
        for label, score in (hlines or {}).items():
            ax.axhline(score, color="gray", linestyle="--", linewidth=1, label=label)
        ax.set_title(dataset)
        ax.set_xlabel("updates")
        ax.set_ylabel("D4RL normalized score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="run folders")
    p.add_argument("--out", type=Path, default=Path("curves.png"))
    p.add_argument("--hline", action="append", default=[], metavar="LABEL=SCORE",
                   help="a dashed reference level on every panel (e.g. the data's score)")
    p.add_argument("--labels", nargs="+", metavar="LABEL",
                   help="one legend name per run, in order (default: each run's agent), e.g. to "
                        "tell apart runs of one agent with other settings")
    args = p.parse_args(argv)
    if args.labels and len(args.labels) != len(args.runs):
        p.error(f"--labels gives {len(args.labels)} names for {len(args.runs)} runs; give one per run")
    hlines = {}
    for item in args.hline:
        label, _, score = item.rpartition("=")
        try:
            if not label:
                raise ValueError(item)
            hlines[label] = float(score)
        except ValueError:
            p.error(f"--hline {item!r}: give LABEL=SCORE, e.g. data=33.0")
    plot(args.runs, args.out, hlines, args.labels)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
