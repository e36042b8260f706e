"""`rlcore eval <run dir>`: rebuild a run's agent from its checkpoint and evaluate it."""
from __future__ import annotations

import json
from pathlib import Path

from omegaconf import OmegaConf

from rlcore.agent import Spec
from rlcore.training.checkpoint import latest_checkpoint, load_checkpoint
from rlcore.config import resolve_device
from rlcore.errors import UserError
from rlcore.fileio import atomic_write_text
from rlcore.evaluation.scores import Reference
from rlcore.training.seeds import resolve_seeds
from rlcore.training.trainer import build_agent, dataset_label, make_evaluator


def run_config_and_checkpoint(run_dir: Path, checkpoint: str | None = None):
    """A run folder's config and its checkpoint (the newest unless one is named), or a clear error."""
    if not (run_dir / "config.yaml").exists():
        raise UserError(f"{run_dir} is not a run folder (no config.yaml)")
    path = Path(checkpoint) if checkpoint else latest_checkpoint(run_dir)
    if path is None or not path.exists():
        raise UserError(f"no checkpoint found in {run_dir / 'checkpoints'}")
    return OmegaConf.load(run_dir / "config.yaml"), path


def evaluate_run(run_dir: Path, episodes: int | None = None, checkpoint: str | None = None,
                 device: str = "auto", seed: int = 12345) -> dict:
    cfg, path = run_config_and_checkpoint(run_dir, checkpoint)
    dev = resolve_device(device)
    state = load_checkpoint(path, dev)
    agent = build_agent(cfg, Spec(**state["spec"]), dev)
    agent.load_state_dict(state["agent"])
    reference = Reference(**state["reference"])
    if agent.simulates:                  # the kept policy on the run's test scenarios
        from rlcore.training.simulation import kept_policy_cost
        loop = state.get("loop") or {}
        result = {"run_dir": str(run_dir), "checkpoint": path.name, "step": state["step"],
                  "agent": cfg.agent.name, "setting": dataset_label(cfg),
                  **kept_policy_cost(cfg, agent, loop.get("best_policy"), dev)}
        atomic_write_text(run_dir / f"eval-{path.stem}.json", json.dumps(result, indent=2))
        return result
    evaluator = make_evaluator(cfg, episodes or cfg.trainer.eval_episodes, reference, dev,
                               agent.spec)
    try:
        per_seed = evaluator(agent, seed)
    finally:
        evaluator.close()
    result = {"run_dir": str(run_dir), "checkpoint": path.name, "step": state["step"],
              "agent": cfg.agent.name, "dataset": str(cfg.env.get("dataset") or dataset_label(cfg)), "env_seed": seed,
              "reference": reference.source}
    if len(per_seed) == 1:
        result.update(per_seed[0])
    else:
        result["seeds"] = [{"seed": s, **r} for s, r in zip(resolve_seeds(cfg), per_seed)]
    atomic_write_text(run_dir / f"eval-{path.stem}.json", json.dumps(result, indent=2))
    return result
