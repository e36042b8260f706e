"""Behaviour policies for generated datasets, picked from an online run's snapshots.

D4RL's recipe: `expert` is the fully trained policy, `medium` the same training early-stopped
at about a third of the expert's return. Both are picked from the snapshots an online run saves
at every evaluation (`<run dir>/policies/step_*.pt`), by their evaluation returns: expert the
best, medium the first that reaches the target (the nearest, if none does). A run too short to
reach expert level can still give a medium policy: `target_return` sets the target (e.g. a
third of D4RL's expert reference return, `rlcore.evaluation.scores`).
"""
from __future__ import annotations

from pathlib import Path

import torch
from omegaconf import OmegaConf

from rlcore.errors import UserError
from rlcore.fileio import atomic_write, load_torch_file

QUALITIES = ("medium", "expert")


def select_snapshot(run_dir: Path, quality: str,
                    target_return: float | None = None) -> tuple[Path, dict, float]:
    """(path, snapshot, best return): the best snapshot (expert), or for medium the first to
    reach `target_return` (default: best / 3), where training would have been early-stopped."""
    if quality not in QUALITIES:
        raise UserError(f"quality {quality!r}; valid: {', '.join(QUALITIES)}")
    paths = sorted((run_dir / "policies").glob("step_*.pt"))
    if not paths:
        raise UserError(f"{run_dir} has no policy snapshots (policies/step_*.pt); they are saved "
                        "at every evaluation of an online run (rlcore train agent=sac ...)")
    snapshots = [(p, load_torch_file(p, map_location="cpu")) for p in paths]
    expert_return = max(s["eval"]["return_mean"] for _, s in snapshots)
    target = expert_return if quality == "expert" else (
        expert_return / 3 if target_return is None else target_return)
    reached = [ps for ps in snapshots if ps[1]["eval"]["return_mean"] >= target]
    path, snapshot = reached[0] if reached else min(
        snapshots, key=lambda ps: abs(ps[1]["eval"]["return_mean"] - target))
    return path, snapshot, expert_return


def actor_state(snapshot: dict, half: bool = False) -> dict:
    """The SAC actor's tensors from a snapshot (float16 for the compact replay schedule)."""
    return {k.removeprefix("actor."): (v.half() if half else v) for k, v in snapshot["agent"].items()
            if k.startswith("actor.")}


def export_replay(run_dir: Path, medium_path: Path, out_dir: Path, every: int = 10_000) -> Path:
    """Write `<env>-medium-replay.pt`: the policies that filled the SAC buffer up to the medium
    snapshot, one every `every` steps (float16), and the length of the random-action phase.

    D4RL's medium-replay is that buffer itself (too large to ship); the `<env>-medium-replay`
    recipe re-creates its make-up by rolling each policy out for the steps it acted."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    medium = load_torch_file(medium_path, map_location="cpu")
    medium_step = medium["train_step"]
    random_steps = int(cfg.agent.start_steps)
    phases, steps = [], snapshot_steps(run_dir)
    for step in range(random_steps, medium_step, every):
        snapshot_step = max([s for s in steps if s <= step] or steps[:1])  # the policy acting then
        snapshot = load_torch_file(run_dir / "policies" / f"step_{snapshot_step:09d}.pt",
                                   map_location="cpu")
        phases.append({"steps": min(every, medium_step - step), "policy_step": snapshot_step,
                       "actor": actor_state(snapshot, half=True)})
    state = {"env": cfg.env.name, "hidden": list(cfg.agent.hidden), "random_steps": random_steps,
             "medium_step": medium_step, "phases": phases, "obs_dim": medium["obs_dim"],
             "action_dim": medium["action_dim"]}
    dest = out_dir / f"{cfg.env.name}-medium-replay.pt"
    atomic_write(dest, lambda tmp: torch.save(state, tmp))
    return dest


def snapshot_steps(run_dir: Path) -> list[int]:
    return sorted(int(p.stem.split("_")[1]) for p in (run_dir / "policies").glob("step_*.pt"))


def export_policy(run_dir: Path, quality: str, out_dir: Path,
                  target_return: float | None = None) -> Path:
    """Write `<env>-<quality>.pt` (the SAC actor and its evaluation) to `out_dir`."""
    cfg = OmegaConf.load(run_dir / "config.yaml")
    if cfg.agent.name != "sac":
        raise UserError(f"{run_dir} trained {cfg.agent.name!r}; behaviour policies come from sac runs")
    path, snapshot, expert_return = select_snapshot(run_dir, quality, target_return)
    state = {"actor": actor_state(snapshot), "obs_dim": snapshot["spec"]["obs_dim"],
             "action_dim": snapshot["spec"]["action_dim"], "hidden": list(cfg.agent.hidden),
             "env": cfg.env.name, "gym_id": cfg.env.gym_id, "quality": quality,
             "train_step": snapshot["step"], "eval": snapshot["eval"],
             "expert_return": expert_return, "target_return": target_return,
             "seed": int(cfg.seed), "snapshot": path.name}
    dest = out_dir / f"{cfg.env.name}-{quality}.pt"
    atomic_write(dest, lambda tmp: torch.save(state, tmp))
    return dest
