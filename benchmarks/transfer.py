"""PEARL's tables: cross-task preference transfer between Meta-World tasks.

    python benchmarks/transfer.py --steps 2000 --seeds 3 --episodes 10 --noise 0 0.2 \
        --pairs drawer-open:button-press-topdown plate-slide:button-press-topdown \
                button-press-topdown:plate-slide --out docs/pearl-2k \
        --override data.transitions=250000 agent.hidden=[128,128] agent.batch_size=16

For each SOURCE:TARGET pair and source-label noise level:
1. Label accuracy against the target's own (regret) labels, over every pair of the target's
   dense segments: CPA over `--seeds` transfer seeds (each its own source subsample and blocks),
   the direct-transfer reward model's (from the downstream run's transfer.json), and chance.
2. Downstream success rate (`--seeds` seeds at once per cell, as benchmarks/report.py trains
   them): P-IQL on the target's own labels (the ceiling, noise-free), P-IQL on the direct
   transfer's labels, P-IQL (a plain Bradley-Terry reward) on CPA's labels, and PEARL (RRL on
   CPA's labels).
3. A plot of the coupling: per pair, each target segment's true score rank against the mean
   score rank of the source segments it took its labels from (CPA, seed 0, noise-free).

Finished cells are kept in OUT.json, so a killed run resumes; several processes may fill one
--out at once (each cell merges in under a lock).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from report import overrides_for, run_cell  # noqa: E402

VARIANTS = {            # column: (agent, run folder tag, uses the source, env overrides)
    "P-IQL, target labels (ceiling)": ("piql", "own-labels", False, []),
    "P-IQL, direct transfer": ("piql", "direct", True, ["env.transfer=direct"]),
    "P-IQL (BT) on CPA labels": ("piql", "cpa", True, []),
    "PEARL (RRL on CPA labels)": ("pearl", "cpa", True, []),
}


def pairs_of(args) -> list[tuple[str, str]]:
    out = []
    for item in args.pairs:
        source, sep, target = item.partition(":")
        if not sep:
            raise SystemExit(f"--pairs {item}: expected SOURCE:TARGET, e.g. drawer-open:button-press-topdown")
        out.append((source, target))
    return out


def noisy_pairs(args) -> int:
    """How many of the pairs, from the first, run the noisy levels."""
    return len(args.pairs) if args.noisy_pairs is None else args.noisy_pairs


def label_accuracy_cells(source: str, target: str, noise: float, args) -> dict:
    """CPA's accuracy over transfer seeds, on the run's data (data.transitions from --override)."""
    from rlcore.config import load_config
    from rlcore.data.datasets import load_dataset, locate
    from rlcore.data.preferences import Labelling, dataset_preferences
    from rlcore.data.transfer import Transfer, transfer_preferences
    cfg = load_config([f"env=metaworld-{target}", "agent=pearl", *overrides_for("pearl", args.override)])
    how = Labelling.from_config(cfg.env, 0)
    data = {}
    for task in (source, target):
        name = str(load_config([f"env=metaworld-{task}"]).env.dataset)
        dataset = load_dataset(name, cfg.data.transitions, 0, progress=False)
        where = locate(name, cfg.data.transitions, 0)[1]
        data[task] = dataset, dataset_preferences(dataset, where, how, progress=False)
    out, coupling = [], None
    for seed in range(args.seeds):
        made = transfer_preferences(data[target][0], data[target][1], data[source][0],
                                    data[source][1], noise, Transfer(f"metaworld-{source}", seed=seed),
                                    progress=False)
        out.append(made.prefs.metadata["transfer"]["accuracy"])
        if seed == 0:
            source_rank = rank(made.source_scores)
            coupling = {"target_rank": np.round(rank(data[target][1].scores), 4).tolist(),
                        "source_rank": np.round(made.q @ source_rank, 4).tolist()}
    return {"cpa": out, "coupling": coupling}


def rank(x: np.ndarray) -> np.ndarray:
    """Ranks scaled to [0, 1]."""
    return np.argsort(np.argsort(x)) / max(len(x) - 1, 1)


def cell_name(source: str, target: str, noise: float) -> str:
    return f"{source} -> {target}, noise {noise:g}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", nargs="+", required=True, help="SOURCE:TARGET Meta-World task names")
    p.add_argument("--noise", nargs="+", type=float, default=[0.0], help="source label flip rates")
    p.add_argument("--noisy-pairs", type=int, default=None, help="run the noisy levels on the first "
                   "N pairs only (default: all)")
    p.add_argument("--noisy-variants", nargs="+", default=["direct", "cpa"], choices=["direct", "cpa"],
                   help="which transferred-label cells run under source noise")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--episodes", type=int, default=10)
    p.add_argument("--runs", default="runs/transfer")
    p.add_argument("--out", default=str(ROOT / "docs" / "pearl"))
    p.add_argument("--override", nargs="*", default=[], help="key=value for every run, agent:key=value for one agent's")
    p.add_argument("--table-only", action="store_true")
    args = p.parse_args(argv)
    from rlcore.fileio import atomic_write_text, file_lock
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    store = out.with_name(out.name + ".json")
    Path(args.runs).mkdir(parents=True, exist_ok=True)

    def load() -> dict:
        return json.loads(store.read_text()) if store.exists() else {}

    def save(key: str, value) -> None:
        with file_lock(Path(args.runs) / ".transfer.lock"):
            atomic_write_text(store, json.dumps({**load(), key: value}, indent=1))

    for number, (source, target) in enumerate(pairs_of(args)):
        for noise in args.noise:
            name = cell_name(source, target, noise)
            if args.table_only or (noise > 0 and number >= noisy_pairs(args)):
                continue
            if f"labels@{name}" not in load():
                print(f"== {name}: label accuracy", file=sys.stderr, flush=True)
                save(f"labels@{name}", label_accuracy_cells(source, target, noise, args))
            for column, (agent, tag, uses_source, extra) in VARIANTS.items():
                if noise > 0 and (not uses_source or tag not in args.noisy_variants):
                    continue                           # the ceiling has no source labels
                key = f"{column}@{name if uses_source else target}"
                if key in load():
                    continue
                print(f"== {key}: {args.seeds} seeds x {args.steps} updates", file=sys.stderr, flush=True)
                overrides = [f"agent={agent}", f"env=metaworld-{target}", "env.labels=dense", *extra]
                folder = f"{target}-{tag}"
                if uses_source:
                    overrides += [f"env.source=metaworld-{source}", f"env.label_noise={noise}"]
                    folder += f"-from-{source}-noise{noise:g}"
                cell = run_cell(agent, folder, overrides, args)
                for c in cell:                      # the labels' accuracy, as the run made them
                    run_dir = Path(args.runs) / c["run_dir"]
                    made = [d / "transfer.json" for d in (run_dir, run_dir.parent)
                            if (d / "transfer.json").exists()]
                    if made:
                        c["label_accuracy"] = json.loads(made[0].read_text())["accuracy"]
                save(key, cell)
    results = load()
    table = write_tables(results, args)
    atomic_write_text(out.with_name(out.name + ".md"), table)
    write_coupling_plot(results, args, out.with_name(out.name + ".png"))
    print(table)
    return 0


def mean_std(values) -> str:
    v = np.asarray(values, float)
    return f"{v.mean():.1f} ± {v.std():.1f}" if len(v) else ""


def write_tables(results: dict, args) -> str:
    rows = [(s, t, n) for i, (s, t) in enumerate(pairs_of(args)) for n in args.noise
            if n == 0 or i < noisy_pairs(args)]
    lines = [f"Label accuracy (%) against the target's own regret labels, over every pair of its "
             f"2,500 dense segments; CPA: mean ± std over {args.seeds} transfer seeds; direct: the "
             "transfer its downstream run made (seed 0).", "",
             "| source → target | source noise | chance | direct transfer | CPA |", "|---|---|---|---|---|"]
    for s, t, n in rows:
        labels = results.get(f"labels@{cell_name(s, t, n)}")
        direct = results.get(f"P-IQL, direct transfer@{cell_name(s, t, n)}") or []
        made = [100 * c["label_accuracy"] for c in direct[:1] if "label_accuracy" in c]
        lines.append(f"| {s} → {t} | {n:.0%} | 50.0 | {f'{made[0]:.1f}' if made else ''} | "
                     f"{mean_std([100 * a for a in labels['cpa']]) if labels else ''} |")
    lines += ["", f"Downstream success rate (%, {args.episodes} episodes per seed, success at any "
              f"step), last evaluation, mean ± std over {args.seeds} seeds trained at once, "
              f"{args.steps:,} updates; in brackets the cell's wall-clock.", "",
              "| source → target | source noise | " + " | ".join(VARIANTS) + " |",
              "|---|---|" + "---|" * len(VARIANTS)]
    for s, t, n in rows:
        cells = []
        for column, (_, _, uses_source, _) in VARIANTS.items():
            cell = results.get(f"{column}@{cell_name(s, t, n) if uses_source else t}")
            cells.append(f"{mean_std([c['last'] for c in cell])} ({cell[0]['wall_s'] / 60:.0f} min)"
                         if cell else "")
        lines.append(f"| {s} → {t} | {n:.0%} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_coupling_plot(results: dict, args, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    pairs = [(s, t) for s, t in pairs_of(args) if f"labels@{cell_name(s, t, 0.0)}" in results]
    if not pairs:
        return
    fig, axes = plt.subplots(1, len(pairs), figsize=(4 * len(pairs), 3.8), squeeze=False)
    for ax, (s, t) in zip(axes.flat, pairs):
        coupling = results[f"labels@{cell_name(s, t, 0.0)}"]["coupling"]
        x, y = np.array(coupling["target_rank"]), np.array(coupling["source_rank"])
        rho = np.corrcoef(rank(x), rank(y))[0, 1]
        ax.scatter(x, y, s=3, alpha=0.4)
        ax.set_title(f"{s} → {t}\nSpearman ρ = {rho:.2f}", fontsize=9)
        ax.set_xlabel("target segment: rank of its true score")
        ax.set_ylabel("rank of the source segments it took labels from")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
