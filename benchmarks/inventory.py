"""HDPO's tables: learned policies against the known optima of the inventory settings.

    python benchmarks/inventory.py --out docs/inventory --shard 0/2 &
    python benchmarks/inventory.py --out docs/inventory --shard 1/2; wait
    python benchmarks/inventory.py --out docs/inventory --plot-only

Every cell is one run (`rlcore train agent=hdpo env=... ...`) in a run folder named by the cell:
a finished cell is kept, a killed one resumes from its newest checkpoint; `--shard i/n` takes
every n-th cell so n processes share the grid. Cells:

- lost: one store, lost sales, Poisson(5): p in {4, 9, 19, 39} x L in {1, 2, 3, 4}, the vanilla
  network and capped base-stock, against the dynamic-programming optimum;
- backlogged: one store, Normal(5, 1.6): base-stock on the same p x L in {1, 4}, the vanilla
  network at p = 9, L = 4, against the closed form;
- serial: echelon stock and the vanilla network against the Clark-Scarf optimum;
- warehouse: one warehouse and `--stores` stores: symmetry-aware and vanilla networks beside the
  newsvendor heuristic;
- reinforce: REINFORCE beside HDPO (the vanilla network, same steps) on both single-store
  settings at p = 9, L = 4: dev cost against training seconds.

`--scale` sets the CPU-sized protocol every cell shares (batch, set sizes); the steps per policy
are in STEPS. Writes OUT.md, OUT.json and OUT-reinforce.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
P_GRID, LOST_L, BACKLOGGED_L = [4, 9, 19, 39], [1, 2, 3, 4], [1, 4]
STEPS = {"vanilla": 1000, "capped_base_stock": 400, "base_stock": 300, "echelon_stock": 600,
         "symmetry_aware": 300, "newsvendor": 1}
# One warehouse's networks are the costly ones on a CPU (seconds per step at batch 1,024): the
# vanilla network's three layers of 512 get fewer steps than the symmetry-aware one.
WAREHOUSE_STEPS = {"vanilla": 150}
COST = {"vanilla": 1.0, "capped_base_stock": 0.15, "base_stock": 0.1, "echelon_stock": 0.3,
        "symmetry_aware": 3.0, "newsvendor": 0.0}       # relative seconds per step, for sharding
SCALE = ["env.scenarios.train.batch_size=1024", "env.scenarios.dev.samples=8192",
         "env.scenarios.test.samples=8192", "env.scenarios.test.periods=3000",
         "env.scenarios.test.ignore=1000", "trainer.checkpoint_every=200"]


def cells(args) -> list[tuple[str, str, list[str]]]:
    """(group, name, overrides) for every run of the grid."""
    out = []
    for p in P_GRID:
        for lead in LOST_L:
            for policy in ("vanilla", "capped_base_stock"):
                out.append(("lost", f"lost-p{p}-L{lead}-{policy}",
                            ["agent=hdpo", "env=inventory-one-store-lost", f"env.p={p}",
                             f"env.lead_time={lead}", f"agent.policy={policy}"]))
        for lead in BACKLOGGED_L:
            out.append(("backlogged", f"backlogged-p{p}-L{lead}-base_stock",
                        ["agent=hdpo", "env=inventory-one-store-backlogged", f"env.p={p}",
                         f"env.lead_time={lead}", "agent.policy=base_stock"]))
        # L = 1: the initial inventory's later slots make the warm-up costly; the loss without it
        out.append(("backlogged", f"backlogged-p{p}-L1-base_stock-nowarmup",
                    ["agent=hdpo", "env=inventory-one-store-backlogged", f"env.p={p}",
                     "env.lead_time=1", "agent.policy=base_stock", "agent.warmup_in_loss=false"]))
    out.append(("backlogged", "backlogged-p9-L4-vanilla",
                ["agent=hdpo", "env=inventory-one-store-backlogged", "agent.policy=vanilla"]))
    for policy in ("echelon_stock", "vanilla"):
        out.append(("serial", f"serial-{policy}", ["agent=hdpo", "env=inventory-serial",
                                                    f"agent.policy={policy}"]))
    for policy in ("symmetry_aware", "vanilla", "newsvendor"):
        out.append(("warehouse", f"warehouse-{args.stores}-{policy}",
                    ["agent=hdpo", "env=inventory-one-warehouse", f"env.stores={args.stores}",
                     f"agent.policy={policy}"]))
    for env in ("lost", "backlogged"):
        for agent in ("hdpo", "reinforce"):
            out.append(("reinforce", f"{agent}-{env}-p9-L4",
                        [f"agent={agent}", f"env=inventory-one-store-{env}", "agent.policy=vanilla"]))
    return out


def policy_of(overrides: list[str]) -> str:
    return next(o.split("=", 1)[1] for o in overrides if o.startswith("agent.policy="))


def steps_of(overrides: list[str]) -> int:
    policy = policy_of(overrides)
    if "env=inventory-one-warehouse" in overrides:
        return WAREHOUSE_STEPS.get(policy, STEPS[policy])
    return STEPS[policy]


def expected_cost(cell) -> float:
    group, _, overrides = cell
    policy = policy_of(overrides)
    weight = 12.0 if group == "warehouse" and policy == "vanilla" else COST[policy]
    return steps_of(overrides) * weight


def run_cell(name: str, overrides: list[str], args) -> None:
    from rlcore.config import load_config
    from rlcore.training.checkpoint import latest_checkpoint
    from rlcore.training.trainer import train
    folder = Path(args.runs) / name
    if (folder / "summary.json").exists():
        return
    cfg = load_config([*overrides, *SCALE, f"trainer.steps={steps_of(overrides)}",
                       f"run_dir={folder}", "trainer.progress=false", *args.override])
    if latest_checkpoint(folder) is not None:
        cfg.resume = str(folder)
    print(f"{name}: {folder}", file=sys.stderr)
    train(cfg)


def read_cell(name: str, args) -> dict | None:
    folder = Path(args.runs) / name
    if not (folder / "summary.json").exists():
        return None
    rows = [json.loads(line) for line in open(folder / "metrics.jsonl")]
    train = [r for r in rows if r["kind"] == "train"]
    steps = np.diff([0] + [r["step"] for r in train])
    seconds = np.cumsum(steps / np.array([r["updates_per_s"] for r in train])) if train else []
    evals = [r for r in rows if r["kind"] == "eval"]
    test = json.loads((folder / "test.json").read_text())
    by_step = dict(zip([r["step"] for r in train], seconds))
    return {**test, "seconds": float(seconds[-1]) if len(seconds) else 0.0,
            "curve": [(by_step.get(r["step"], np.nan), r["cost"]) for r in evals]}


def label() -> str:
    from rlcore.report import label as run_label
    return run_label()


def fmt(x, digits=3) -> str:
    return "—" if x is None or x != x else f"{x:.{digits}f}"


def cost_se(r: dict) -> str:
    """The test cost with its standard error over scenarios."""
    if not r:
        return "—"
    se = r.get("test_cost_se")
    return f"{r['test_cost']:.3f}" + (f" ± {se:.3f}" if se is not None else "")


def write_tables(results: dict, args) -> str:
    lines = ["# Inventory control: HDPO against known optima", "",
             f"{label()}. Protocol: {' '.join(SCALE)}; steps per policy {STEPS} (one warehouse: "
             f"{WAREHOUSE_STEPS}). Cost per period and store on the test set (its own seed), "
             "warm-up periods left out, orders rounded for Poisson demand, ± its standard error "
             "over the test scenarios; the policy kept is the one with the best dev cost.", ""]
    lines += ["## One store, lost sales (Poisson 5, h = 1): test cost, optimum (DP), gap %", "",
              "| p | L | optimum | vanilla network | gap % | capped base-stock | gap % |",
              "|---|---|---|---|---|---|---|"]
    for p in P_GRID:
        for lead in LOST_L:
            v = results.get(f"lost-p{p}-L{lead}-vanilla") or {}
            c = results.get(f"lost-p{p}-L{lead}-capped_base_stock") or {}
            opt = v.get("optimum", c.get("optimum"))
            lines.append(f"| {p} | {lead} | {fmt(opt)} | {cost_se(v)} | "
                         f"{fmt(v.get('gap_pct'), 2)} | {cost_se(c)} | {fmt(c.get('gap_pct'), 2)} |")
    lines += ["", "## One store, backlogged (Normal 5, 1.6, h = 1): base-stock against the closed form", "",
              "| p | L | optimum | policy | test cost | gap % |", "|---|---|---|---|---|---|"]
    def by_p_and_lead(item):
        _, p, lead, policy = item[0].split("-", 3)
        return int(p[1:]), int(lead[1:]), policy
    for name, r in sorted(((k, v) for k, v in results.items() if k.startswith("backlogged-")),
                          key=by_p_and_lead):
        if r:
            _, p, lead, policy = name.split("-", 3)
            policy = policy.replace("-nowarmup", " (loss after the warm-up)")
            lines.append(f"| {p[1:]} | {lead[1:]} | {fmt(r.get('optimum'))} | {policy} | "
                         f"{cost_se(r)} | {fmt(r.get('gap_pct'), 2)} |")
    lines += ["", "## Serial system (store, warehouse, two echelons; backlogged)", "",
              "| policy | test cost | optimum (Clark-Scarf) | gap % |", "|---|---|---|---|"]
    for policy in ("echelon_stock", "vanilla"):
        r = results.get(f"serial-{policy}") or {}
        lines.append(f"| {policy} | {cost_se(r)} | {fmt(r.get('optimum'))} | {fmt(r.get('gap_pct'), 2)} |")
    lines += ["", f"## One warehouse, {args.stores} stores (lost demand): no known optimum", "",
              "| policy | steps | test cost | vs newsvendor % |", "|---|---|---|---|"]
    base = (results.get(f"warehouse-{args.stores}-newsvendor") or {}).get("test_cost")
    for policy in ("symmetry_aware", "vanilla", "newsvendor"):
        r = results.get(f"warehouse-{args.stores}-{policy}") or {}
        rel = 100 * (r["test_cost"] - base) / base if r and base else None
        lines.append(f"| {policy} | {steps_of(['env=inventory-one-warehouse', f'agent.policy={policy}'])} | "
                     f"{cost_se(r)} | {fmt(rel, 2)} |")
    lines += ["", "## REINFORCE beside HDPO (vanilla network, p = 9, L = 4)", "",
              "| setting | agent | steps | training s | test cost | gap % |", "|---|---|---|---|---|---|"]
    for env in ("lost", "backlogged"):
        for agent in ("hdpo", "reinforce"):
            r = results.get(f"{agent}-{env}-p9-L4") or {}
            lines.append(f"| {env} | {agent} | {STEPS['vanilla']} | {fmt(r.get('seconds'), 0)} | "
                         f"{cost_se(r)} | {fmt(r.get('gap_pct'), 2)} |")
    lines += ["", f"Dev cost against training seconds: {Path(args.out).name}-reinforce.png"]
    return "\n".join(lines) + "\n"


def write_plot(results: dict, path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, env in zip(axes, ("lost", "backlogged")):
        for agent in ("hdpo", "reinforce"):
            r = results.get(f"{agent}-{env}-p9-L4")
            if r:
                t, c = zip(*r["curve"])
                ax.plot(t, c, marker="o", ms=2, label=agent)
                opt = r.get("optimum")
        if results.get(f"hdpo-{env}-p9-L4", {}).get("optimum"):
            ax.axhline(opt, color="k", ls="--", lw=1, label=f"optimum {opt:.3f}")
            ax.set_ylim(opt * 0.98, opt * 1.4)
        ax.set(xlabel="training seconds (evaluation excluded)", ylabel="dev cost per period",
               title=f"one store, {env}, p = 9, L = 4")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="inventory")
    parser.add_argument("--runs", default="runs/inventory-bench")
    parser.add_argument("--stores", type=int, default=5)
    parser.add_argument("--shard", default="0/1")
    parser.add_argument("--groups", nargs="*", default=None, help="lost backlogged serial warehouse reinforce")
    parser.add_argument("--override", nargs="*", default=[], help="KEY=VALUE for every cell")
    parser.add_argument("--plot-only", action="store_true")
    args = parser.parse_args(argv)
    todo = [c for c in cells(args) if args.groups is None or c[0] in args.groups]
    if not args.plot_only:
        i, n = (int(x) for x in args.shard.split("/"))
        todo.sort(key=expected_cost, reverse=True)      # round-robin over the costliest first
        for group, name, overrides in todo[i::n]:
            run_cell(name, overrides, args)
    results = {name: read_cell(name, args) for _, name, _ in cells(args)}
    results = {k: v for k, v in results.items() if v is not None}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".md").write_text(write_tables(results, args))
    out.with_suffix(".json").write_text(json.dumps({"label": label(), "results": results}, indent=1))
    write_plot(results, out.with_name(out.name + "-reinforce.png"))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
