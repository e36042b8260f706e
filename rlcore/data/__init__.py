"""Offline datasets as flat transition arrays with episode boundaries (D4RL's layout).

Keys: observations, actions, rewards, next_observations, terminals, timeouts.
`terminals` marks a true end (no bootstrap); `timeouts` marks a time-limit cut. Either ends
an episode. Files are read and written in D4RL's hdf5 format, so a D4RL file and a dataset
made here load the same way. Unlike d4rl.qlearning_dataset, a time-limit step is kept when the
file carries next_observations (its s' is known); without them it is dropped, as there.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from rlcore.errors import UserError
from rlcore.fileio import atomic_write

REQUIRED_KEYS = ("observations", "actions", "rewards", "terminals")
FLOAT_KEYS = ("observations", "actions", "rewards", "next_observations")


class DatasetError(UserError, ValueError):
    """A dataset that cannot be used as it is; the message says what is wrong."""


@dataclass
class OfflineDataset:
    name: str
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminals: np.ndarray
    timeouts: np.ndarray
    metadata: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rewards)

    @property
    def obs_dim(self) -> int:
        return self.observations.shape[1]

    @property
    def action_dim(self) -> int:
        return self.actions.shape[1]

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in
                ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")}

    def episode_ends(self) -> np.ndarray:
        """Exclusive end index of each episode; a trailing unfinished episode ends at len."""
        done = np.flatnonzero(self.terminals | self.timeouts) + 1
        if len(done) == 0 or done[-1] != len(self):
            done = np.append(done, len(self))
        return done

    def episode_starts(self) -> np.ndarray:
        """Start index of each episode (as episode_ends, the unfinished trailing one included)."""
        return np.concatenate([[0], self.episode_ends()[:-1]]).astype(np.int64)

    def episode_returns(self, complete_only: bool = True) -> np.ndarray:
        """Undiscounted return of each episode (the unfinished trailing one dropped)."""
        starts = self.episode_starts()
        sums = np.add.reduceat(self.rewards.astype(np.float64), starts) if len(self) else np.zeros(0)
        if complete_only and len(self) and not (self.terminals[-1] or self.timeouts[-1]):
            sums = sums[:-1]
        return sums

    def returns_to_go(self, discount: float) -> np.ndarray:
        """G_t = r_t + discount (1 - terminal_t) G_{t+1} within each episode: the discounted
        Monte-Carlo return from every transition (cut short where a time limit ended it)."""
        out = np.zeros(len(self))
        last = np.zeros(len(self), bool)
        last[self.episode_ends() - 1] = True
        acc = 0.0
        for t in range(len(self) - 1, -1, -1):
            acc = float(self.rewards[t]) + (0.0 if last[t] else discount * acc)
            out[t] = acc
        return out

    def summary(self) -> dict:
        returns = self.episode_returns()
        return {"name": self.name, "transitions": len(self), "episodes": len(self.episode_ends()),
                "obs_dim": self.obs_dim, "action_dim": self.action_dim,
                "return_mean": float(returns.mean()) if len(returns) else float("nan"),
                "return_min": float(returns.min()) if len(returns) else float("nan"),
                "return_max": float(returns.max()) if len(returns) else float("nan")}


def from_arrays(name: str, arrays: dict, metadata: dict | None = None) -> OfflineDataset:
    """Validate raw arrays (D4RL keys) and build a dataset; errors name the problem."""
    missing = [k for k in REQUIRED_KEYS if k not in arrays]
    if missing:
        raise DatasetError(f"dataset {name!r} lacks keys {missing}; D4RL format needs "
                           f"{list(REQUIRED_KEYS)} plus timeouts and next_observations")
    obs = np.asarray(arrays["observations"], dtype=np.float32)
    n = len(obs)
    if obs.ndim != 2 or n == 0:
        raise DatasetError(f"dataset {name!r}: observations must be a non-empty [N, obs_dim] "
                           f"array, got shape {obs.shape}")
    actions = np.asarray(arrays["actions"], dtype=np.float32)
    if actions.ndim == 1:
        actions = actions[:, None]
    out = {"observations": obs, "actions": actions,
           "rewards": np.asarray(arrays["rewards"], dtype=np.float32).reshape(-1),
           "terminals": np.asarray(arrays["terminals"]).astype(bool).reshape(-1),
           "timeouts": (np.asarray(arrays["timeouts"]).astype(bool).reshape(-1)
                        if "timeouts" in arrays else np.zeros(n, dtype=bool))}
    if "next_observations" in arrays:
        out["next_observations"] = np.asarray(arrays["next_observations"], dtype=np.float32)
    lengths = {k: len(v) for k, v in out.items()}
    if len(set(lengths.values())) != 1:
        raise DatasetError(f"dataset {name!r}: keys have different lengths {lengths}")
    if "next_observations" not in out:
        out = _next_from_following(out)
    if out["next_observations"].shape != out["observations"].shape:
        raise DatasetError(f"dataset {name!r}: next_observations shape "
                           f"{out['next_observations'].shape} != observations shape {obs.shape}")
    n = len(out["rewards"])
    for key in FLOAT_KEYS:
        bad = ~np.isfinite(out[key])
        if bad.any():
            rows = np.flatnonzero(bad.reshape(n, -1).any(axis=1))
            raise DatasetError(f"dataset {name!r}: {key} has {len(rows)} rows with NaN or inf "
                               f"(first at index {rows[0]})")
    return OfflineDataset(name=name, metadata=dict(metadata or {}), **out)


def concatenate(name: str, parts: list[OfflineDataset], metadata: dict | None = None) -> OfflineDataset:
    """The parts' transitions one after another (episode boundaries kept: each part's last
    transition ends an episode or is cut where the part was)."""
    arrays = {k: np.concatenate([getattr(p, k) for p in parts]) for k in parts[0].arrays()}
    return from_arrays(name, arrays, metadata)


def _next_from_following(out: dict) -> dict:
    """Files without next_observations (D4RL v0): s' = s_{t+1}, as d4rl.qlearning_dataset.

    A step cut by a timeout (and an unfinished last step) has no next state in the file: it
    is dropped, and the step before it becomes the episode's timeout.
    """
    n = len(out["rewards"])
    drop = out["timeouts"] & ~out["terminals"]
    drop[-1] |= not out["terminals"][-1]
    prev = np.flatnonzero(drop) - 1
    prev = prev[(prev >= 0) & ~drop[np.clip(prev, 0, None)] & ~out["terminals"][np.clip(prev, 0, None)]]
    timeouts = out["timeouts"].copy()
    timeouts[prev] = True
    nxt = np.concatenate([out["observations"][1:], out["observations"][-1:]], axis=0)
    keep = ~drop
    result = {k: v[keep] for k, v in out.items() if k != "timeouts"}
    result["timeouts"] = timeouts[keep]
    result["next_observations"] = nxt[keep]
    if not keep.any():
        raise DatasetError(f"no usable transitions among {n}: every step is an episode cut")
    return result


def save_hdf5(dataset: OfflineDataset, path: str | Path) -> Path:
    """Write in D4RL's hdf5 layout, atomically; metadata goes to a JSON attribute."""
    def write(tmp: str) -> None:
        with h5py.File(tmp, "w") as f:
            for key, value in dataset.arrays().items():
                f.create_dataset(key, data=value)
            f.attrs["rlcore_metadata"] = json.dumps({"name": dataset.name, **dataset.metadata})
    return atomic_write(path, write)


def load_hdf5(path: str | Path, name: str | None = None) -> OfflineDataset:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"no dataset file at {path}")
    try:
        with h5py.File(path, "r") as f:
            arrays = {k: f[k][()] for k in f.keys() if isinstance(f[k], h5py.Dataset)}
            meta = json.loads(f.attrs.get("rlcore_metadata", "{}"))
    except OSError as exc:  # truncated or not hdf5
        raise DatasetError(f"{path} is not a readable hdf5 file ({exc})") from exc
    meta.setdefault("source", str(path))
    stored_name = meta.pop("name", None)
    return from_arrays(name or stored_name or path.stem, arrays, meta)
