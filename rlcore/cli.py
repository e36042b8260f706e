"""`rlcore`: train, eval, list, data, bench, report. Overrides use Hydra's syntax (`key=value`, `-m a=1,2`)."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from rlcore.errors import UserError

EPILOG = """examples:
  rlcore train agent=odice env=hopper
  rlcore train agent=odice env=hopper env.dataset=/data/hopper_medium-v2.hdf5 seed=3
  rlcore train -m agent=odice env=hopper seed=0,1,2 trainer.steps=100000
  rlcore train agent=odice env=hopper seeds=8        # 8 seeds at once, one process
  rlcore train resume=runs/odice/hopper-pd-noisy/seed0-20261122-101500
  rlcore eval runs/odice/hopper-pd-noisy/seed0-20261122-101500 --episodes 20
  rlcore list
  rlcore data info hopper-pd-noisy
  rlcore bench agent=odice device=cpu
  rlcore report agents=[iql,odice] datasets=[hopper-medium] seeds=3 trainer.steps=100000
  rlcore report --from runs/report --out docs/report
"""


def cost_table(results) -> str:
    """Simulator runs: the kept policy's test cost per period, the known optimum and the gap."""
    header = (f"{'agent':<10} {'setting':<34} {'seed':>5} {'steps':>7} {'best dev':>9} "
              f"{'test cost':>10} {'optimum':>8} {'gap %':>7}")
    lines = [header, "-" * len(header)]
    for r in results:
        gap = 100 * (r.test_cost - r.optimum) / r.optimum if r.optimum == r.optimum else float("nan")
        lines.append(f"{r.agent:<10} {r.dataset:<34} {r.seed:>5} {r.steps:>7} {r.best_score:>9.4f} "
                     f"{r.test_cost:>10.4f} {r.optimum:>8.4f} {gap:>7.2f}")
    lines.append("cost per period and store; test: the policy with the best dev cost, warm-up "
                 "periods left out (nan: no known optimum for the setting)")
    return "\n".join(lines)


def results_table(results) -> str:
    """agent | dataset | seed | steps | last | best (| last return, for success-scored runs),
    plus mean +- std over seeds per group."""
    from rlcore.evaluation.scores import COST, RETURN, SUCCESS
    if results and all(r.reference == COST.source for r in results):
        return cost_table(results)
    returns = any(r.reference == SUCCESS.source for r in results)
    header = f"{'agent':<10} {'dataset':<24} {'seed':>6} {'steps':>9} {'last score':>11} {'best score':>11}"
    header += f" {'last return':>12}" if returns else ""
    lines = [header, "-" * len(header)]
    for r in results:
        lines.append(f"{r.agent:<10} {r.dataset:<24} {r.seed:>6} {r.steps:>9} "
                     f"{r.last_score:>11.1f} {r.best_score:>11.1f}"
                     + (f" {r.last_return:>12.1f}" if returns else ""))
    groups: dict[tuple, list] = {}
    for r in results:
        groups.setdefault((r.agent, r.dataset), []).append(r)
    for (agent, dataset), rs in groups.items():
        if len(rs) > 1:
            last, best = np.array([r.last_score for r in rs]), np.array([r.best_score for r in rs])
            ret = np.array([r.last_return for r in rs])
            lines.append(f"{agent:<10} {dataset:<24} {'n=' + str(len(rs)):>6} {'':>9} "
                         f"{last.mean():>5.1f}±{last.std():<5.1f} {best.mean():>5.1f}±{best.std():<5.1f}"
                         + (f" {ret.mean():>6.1f}±{ret.std():<5.1f}" if returns else ""))
    refs = sorted({r.reference for r in results})
    d4rl = [ref for ref in refs if ref not in (SUCCESS.source, RETURN.source)]
    if d4rl:
        lines.append(f"D4RL normalized score = 100 (R - ref_min) / (ref_max - ref_min); "
                     f"reference: {', '.join(d4rl)}")
    lines += [f"score = {ref}" for ref in (SUCCESS.source, RETURN.source) if ref in refs]
    return "\n".join(lines)


def cmd_train(args) -> int:
    from rlcore.config import apply_overrides, expand_sweeps, load_config
    from rlcore.training.trainer import dataset_label, train

    resume = [o for o in args.overrides if o.startswith("resume=")]
    if resume:
        from omegaconf import OmegaConf
        run_dir = Path(resume[-1].split("=", 1)[1])
        if not (run_dir / "config.yaml").exists():
            raise UserError(f"resume={run_dir}: no config.yaml there; give a run folder "
                            "made by `rlcore train`")
        cfg = OmegaConf.load(run_dir / "config.yaml")
        defaults = load_config()   # a run made by an older rlcore lacks newer settings' keys
        for section in ("trainer", "data", "logger", "bench"):
            cfg[section] = OmegaConf.merge(defaults[section], cfg.get(section) or {})
        cfg = apply_overrides(cfg, [o for o in args.overrides if not o.startswith("resume=")])
        cfg.resume = str(run_dir)
        jobs = [cfg]
    elif args.multirun:
        jobs = [load_config(job) for job in expand_sweeps(args.overrides)]
    else:
        jobs = [load_config(args.overrides)]
    results = []
    for i, cfg in enumerate(jobs):
        if len(jobs) > 1:
            print(f"[job {i + 1}/{len(jobs)}] seed={cfg.seed} agent={cfg.agent.name} "
                  f"dataset={dataset_label(cfg)}", file=sys.stderr)
        results.extend(train(cfg))
    print(results_table(results))
    for r in results:
        print(f"run folder: {r.run_dir}  (config.yaml, metrics.jsonl, curve.png, checkpoints/)")
    return 0


def cmd_eval(args) -> int:
    from rlcore.evaluation.run import evaluate_run
    result = evaluate_run(Path(args.run_dir), args.episodes, args.checkpoint, args.device, args.seed)
    print(json.dumps(result, indent=2))
    return 0


def cmd_list(args) -> int:
    from rlcore.config import group_options
    from rlcore.registry import AGENTS
    what = args.what
    if what in ("all", "agents"):
        print("agents:   " + ", ".join(AGENTS.names()))
    if what in ("all", "envs"):
        print("envs:     " + ", ".join(group_options("env")))
    if what in ("all", "datasets"):
        print("datasets:")
        print_datasets()
    return 0


def print_datasets() -> None:
    from rlcore.data.datasets import cached_generated, data_dir
    from rlcore.registry import DATASETS
    from rlcore.data.sources import minari_root
    print(f"  generated here (stored as Minari datasets rlcore/<env>/..., in {minari_root()}):")
    for name in DATASETS.names():
        recipe = DATASETS.get(name)
        cached = cached_generated(name)
        state = ", ".join(p.name for p in cached) if cached else "not made yet"
        print(f"    {name:<22} {recipe.gym_id:<15} {recipe.description}  [{state}]")
    print("  D4RL (downloaded on first use): <hopper|halfcheetah|walker2d|ant>-<random|medium|"
          "expert|medium-replay|medium-expert|full-replay>-v2")
    for path in sorted((data_dir() / "d4rl").glob("*.hdf5")):
        print(f"    {path.stem:<22} [cached: {path}]")
    try:
        import minari
        local = sorted(k for k in minari.list_local_datasets() if not k.startswith("rlcore/"))
    except Exception:  # minari's folder unreadable: nothing to list
        local = []
    print("  Minari (local): " + (", ".join(local) if local else "none") +
          "; a remote id such as mujoco/hopper/medium-v0 is downloaded on first use")
    print("  OGBench (downloaded by ogbench on first use): e.g. cube-single-play-v0, "
          "pointmaze-large-stitch-v0; or its .npz file: env.dataset=/path/to/file.npz")
    for path in sorted((data_dir() / "ogbench").glob("*.npz")):
        print(f"    {path.stem:<22} [cached: {path}]")
    print("  or a path or URL to a D4RL-format .hdf5 file: env.dataset=/path/to/file.hdf5")


def cmd_data(args) -> int:
    from rlcore.data import datasets as ds
    from rlcore.evaluation.scores import reference_for
    kwargs = dict(transitions=args.transitions, seed=args.seed)
    if args.action == "list":
        print_datasets()
        return 0
    if args.name is None:
        raise UserError(f"rlcore data {args.action} needs a dataset name (see rlcore data list)")
    if args.action == "export-policy":
        from rlcore.envs.mujoco import POLICY_DIR
        from rlcore.fileio import load_torch_file
        from rlcore.data.policies import export_policy
        dest = export_policy(Path(args.name), args.quality, Path(args.out or POLICY_DIR),
                             args.target_return)
        state = load_torch_file(dest)
        print(f"{dest}: {state['quality']} policy of {state['env']} from step {state['train_step']}, "
              f"eval return {state['eval']['return_mean']:.1f} ± {state['eval']['return_std']:.1f} "
              f"(best in the run {state['expert_return']:.1f})")
        if args.quality == "medium":
            from rlcore.data.policies import export_replay
            replay = export_replay(Path(args.name), dest, Path(args.out or POLICY_DIR))
            print(f"{replay}: the policies behind the buffer up to the medium snapshot (medium-replay)")
        return 0
    if args.action == "path":
        print(ds.locate(args.name, args.transitions, args.seed)[1])
        return 0
    dataset = ds.load_dataset(args.name, **kwargs)
    if args.action == "make":
        where = ds.locate(args.name, args.transitions, args.seed)[1]
        print(f"{args.name}: {len(dataset)} transitions at {where}")
        recipe = ds.DATASETS.get(args.name) if args.name in ds.DATASETS else None
        for labels in getattr(recipe, "preference_labels", ()):   # and its default labellings
            from rlcore.data.preferences import Labelling, dataset_preferences, preferences_path
            how = Labelling(labels=labels, seed=args.seed)
            prefs = dataset_preferences(dataset, where, how)
            print(f"  {labels} {prefs.metadata['labeller']} labels ({prefs.metadata['segments']} "
                  f"segments): {preferences_path(where, how)}")
        return 0
    info = dataset.summary()
    try:
        reference = reference_for(ds.score_family(args.name), dataset.metadata)
        info["score_mean"] = float(reference.normalize(info["return_mean"]))
        info["reference"] = reference.source
    except KeyError:  # no reference returns known for this family
        pass
    info["metadata"] = {k: v for k, v in dataset.metadata.items() if k != "env_spec"}
    print(json.dumps(info, indent=2, default=str))
    return 0


def cmd_report(args) -> int:
    from rlcore.report import run_report
    print(run_report(args.overrides, Path(args.out), Path(args.runs),
                     Path(args.from_dir) if args.from_dir else None))
    return 0


def cmd_bench(args) -> int:
    from rlcore.bench import run_bench
    run_bench(args.overrides)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rlcore", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG,
        description="Offline and goal-conditioned RL: train agents on D4RL-style datasets and "
                    "report D4RL normalized scores.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p = sub.add_parser("train", help="train an agent (Hydra-style overrides)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("-m", "--multirun", action="store_true", help="sweep over comma-separated values")
    p.add_argument("overrides", nargs="*", help="key=value, e.g. agent=odice env=hopper seed=3")
    p.set_defaults(func=cmd_train)
    p = sub.add_parser("eval", help="re-evaluate a run's checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--episodes", type=int, default=None, help="default: the run's eval_episodes")
    p.add_argument("--checkpoint", default=None, help="default: the run's newest checkpoint")
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=12345, help="evaluation env seed")
    p.set_defaults(func=cmd_eval)
    p = sub.add_parser("list", help="list agents, envs and datasets")
    p.add_argument("what", nargs="?", default="all", choices=["all", "agents", "envs", "datasets"])
    p.set_defaults(func=cmd_list)
    p = sub.add_parser("data", help="list, inspect, make or locate datasets; export a behaviour policy")
    p.add_argument("action", choices=["list", "info", "make", "path", "export-policy"])
    p.add_argument("name", nargs="?", help="generated name, D4RL name, Minari id, path or URL; "
                                           "for export-policy, an online (sac) run folder")
    p.add_argument("--quality", default="medium", help="export-policy: medium | expert")
    p.add_argument("--out", default=None, help="export-policy: folder (default: the package's)")
    p.add_argument("--target-return", type=float, default=None,
                   help="export-policy --quality medium: the snapshot nearest this return "
                        "(default: a third of the run's best)")
    p.add_argument("--transitions", type=int, default=None,
                   help="size of a generated dataset (default: the recipe's own, 1M for most)")
    p.add_argument("--seed", type=int, default=0, help="seed of a generated dataset")
    p.set_defaults(func=cmd_data)
    p = sub.add_parser("report", help="train a grid's missing cells, then write its results page",
                       description="Train the missing cells of agents x datasets x seeds (locally, on "
                       "Ray or SLURM), then write OUT.md/.json and plots from the run folders.")
    p.add_argument("overrides", nargs="*", help="agents=[iql,odice] datasets=[hopper-medium] seeds=3 "
                   "launcher=local|ray|slurm launcher.jobs=2 trainer.steps=100000 ...")
    p.add_argument("--out", default="report", help="writes OUT.md, OUT.json, OUT-curves.png, OUT-profile.png")
    p.add_argument("--runs", default="runs/report", help="where the cells' run folders go")
    p.add_argument("--from", dest="from_dir", default=None, help="report the finished runs under "
                   "this folder; train nothing")
    p.set_defaults(func=cmd_report)
    p = sub.add_parser("bench", help="updates/s of an agent's update (a benchmark, not a test)")
    p.add_argument("overrides", nargs="*", help="agent=odice device=cpu bench.batch_size=256 ...")
    p.set_defaults(func=cmd_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return args.func(args)
    except UserError as exc:
        print(f"rlcore: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
