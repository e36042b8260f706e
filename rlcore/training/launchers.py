"""Where a sweep's cells train: processes on this machine, tasks on a Ray cluster, or SLURM jobs
through submitit. Every launcher runs the same function, `train_cell`, which is `rlcore train`
with the cell's overrides in the cell's own run folder, resuming it when it holds a checkpoint:
run folders, checkpoints, resume and errors stay exactly those of `rlcore train`, and the
results are read back from the folders, whichever engine ran them.

Existing engines are called directly rather than through Hydra's launcher plugins: the plugins
own the run folder and the job's working directory, which would bypass rlcore's folder naming,
its resume rule and its one-line errors.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

from rlcore.errors import ConfigError, UserError

LAUNCHERS = ("local", "ray", "slurm")


@dataclass(frozen=True)
class Cell:
    """One unit of work: an agent on a dataset, K seeds at once where the agent trains them so."""
    agent: str
    dataset: str
    overrides: tuple[str, ...]     # everything `rlcore train` needs, run_dir aside
    run_dir: str

    @property
    def finished(self) -> bool:
        return (Path(self.run_dir) / "summary.json").exists()


def train_cell(overrides: list[str], run_dir: str) -> str:
    """`rlcore train OVERRIDES run_dir=RUN_DIR`, resumed from the folder's newest checkpoint."""
    from rlcore.config import load_config
    from rlcore.training.checkpoint import latest_checkpoint
    from rlcore.training.trainer import train
    cfg = load_config([*overrides, f"run_dir={run_dir}", "trainer.progress=false"])
    if latest_checkpoint(Path(run_dir)) is not None:
        cfg.resume = run_dir
    train(cfg)
    return run_dir


def _failures(cells: list[Cell], errors: list[BaseException | None]) -> None:
    failed = [(c, e) for c, e in zip(cells, errors) if e is not None]
    if failed:
        lines = "; ".join(f"{c.agent} on {c.dataset} ({c.run_dir}): {e}" for c, e in failed)
        raise UserError(f"{len(failed)} of {len(cells)} cells failed: {lines}")


def launch(cells: list[Cell], launcher: dict) -> None:
    """Train every cell with the launcher's engine; finished cells are never handed out."""
    kind = launcher.get("name", "local")
    if kind not in LAUNCHERS:
        raise ConfigError(f"launcher={kind!r}; valid: {', '.join(LAUNCHERS)}")
    todo = [c for c in cells if not c.finished]
    print(f"{len(cells) - len(todo)} of {len(cells)} cells finished already; {len(todo)} to train "
          f"({kind})", file=sys.stderr, flush=True)
    if not todo:
        return
    {"local": run_local, "ray": run_ray, "slurm": run_slurm}[kind](todo, launcher)


def run_local(cells: list[Cell], launcher: dict) -> None:
    """`launcher.jobs` processes at once (1: in this process, one cell after another)."""
    jobs = int(launcher.get("jobs") or 1)
    if jobs < 1:
        raise ConfigError(f"launcher.jobs={jobs}: need at least 1")
    errors: list[BaseException | None] = []
    if jobs == 1:
        for i, cell in enumerate(cells):
            print(f"[{i + 1}/{len(cells)}] {cell.agent} on {cell.dataset}: {cell.run_dir}",
                  file=sys.stderr, flush=True)
            try:
                train_cell(list(cell.overrides), cell.run_dir)
                errors.append(None)
            except Exception as exc:                      # the other cells still train
                errors.append(exc)
        return _failures(cells, errors)
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(train_cell, list(c.overrides), c.run_dir) for c in cells]
        for future in futures:
            errors.append(future.exception())
    _failures(cells, errors)


def run_ray(cells: list[Cell], launcher: dict) -> None:
    """A Ray task per cell asking for `launcher.cpus` CPUs and `launcher.gpus` GPUs, on the
    cluster at `launcher.address` (auto: a running one; null: a local one started here)."""
    try:
        import ray
    except ImportError:
        raise UserError("launcher=ray needs Ray: pip install -e \".[ray]\"") from None
    started = not ray.is_initialized()
    if started:
        ray.init(address=launcher.get("address"), log_to_driver=False,
                 include_dashboard=False, ignore_reinit_error=True)
    try:
        task = ray.remote(num_cpus=float(launcher.get("cpus") or 1),
                          num_gpus=float(launcher.get("gpus") or 0), max_retries=0)(train_cell)
        refs = [task.remote(list(c.overrides), c.run_dir) for c in cells]
        errors = []
        for ref in refs:
            try:
                ray.get(ref)
                errors.append(None)
            except Exception as exc:
                errors.append(getattr(exc, "cause", None) or exc)
    finally:
        if started:
            ray.shutdown()
    _failures(cells, errors)


def run_slurm(cells: list[Cell], launcher: dict) -> None:
    """A SLURM job per cell through submitit (`launcher.cluster=local`: submitit's local
    executor, processes on this machine, the same code path without a cluster)."""
    try:
        import submitit
    except ImportError:
        raise UserError("launcher=slurm needs submitit: pip install -e \".[slurm]\"") from None
    folder = Path(cells[0].run_dir).parent.parent.parent / ".submitit"
    executor = submitit.AutoExecutor(folder=str(folder), cluster=launcher.get("cluster") or None)
    params = {"timeout_min": int(launcher.get("timeout_min") or 24 * 60),
              "cpus_per_task": int(launcher.get("cpus") or 1)}
    if executor.cluster == "slurm":
        params.update(slurm_partition=launcher.get("partition"),
                      gpus_per_node=int(launcher.get("gpus") or 0))
    executor.update_parameters(**{k: v for k, v in params.items() if v is not None})
    jobs = [executor.submit(train_cell, list(c.overrides), c.run_dir) for c in cells]
    errors = []
    for job in jobs:
        try:
            job.result()
            errors.append(None)
        except Exception as exc:
            errors.append(exc)
    _failures(cells, errors)
