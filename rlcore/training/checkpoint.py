"""Checkpoints: written atomically, the newest few kept, the newest found for resume."""
from __future__ import annotations

from pathlib import Path

import torch

from rlcore.fileio import atomic_write, load_torch_file

PATTERN = "step_*.pt"


def checkpoint_dir(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def save_checkpoint(run_dir: Path, step: int, state: dict, keep: int) -> Path:
    directory = checkpoint_dir(run_dir)
    path = atomic_write(directory / f"step_{step:09d}.pt", lambda tmp: torch.save(state, tmp))
    for old in sorted(directory.glob(PATTERN))[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def latest_checkpoint(run_dir: Path) -> Path | None:
    found = sorted(checkpoint_dir(run_dir).glob(PATTERN))
    return found[-1] if found else None


def load_checkpoint(path: Path, device: torch.device | str = "cpu") -> dict:
    return load_torch_file(path, map_location=device)
