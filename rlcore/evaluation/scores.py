"""D4RL normalized scores: 100 * (R - ref_min) / (ref_max - ref_min).

Reference returns are D4RL's (d4rl/infos.py @ 89141a68); v1/v2 datasets reuse v0's.
A dataset that carries its own `ref_min_score`/`ref_max_score` (Minari) uses those.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Families keyed by the first dash-separated token of a D4RL dataset name.
D4RL_FAMILY_REFS = {
    "hopper": (-20.272305, 3234.3),
    "halfcheetah": (-280.178953, 12135.0),
    "walker2d": (1.629008, 4592.3),
    "ant": (-325.6, 3879.7),
    "antmaze": (0.0, 1.0),
    "kitchen": (0.0, 4.0),
    "pen": (96.262799, 3076.8331017826877),
    "door": (-56.512833, 2880.5693087298737),
    "hammer": (-274.856578, 12794.134825156867),
    "relocate": (-6.425911, 4233.877797728884),
}
# maze2d has one reference per maze, keyed by dataset name without its version.
D4RL_MAZE2D_REFS = {
    "maze2d-open": (0.01, 20.66),
    "maze2d-umaze": (23.85, 161.86),
    "maze2d-medium": (13.13, 277.39),
    "maze2d-large": (6.7, 273.99),
    "maze2d-open-dense": (11.17817, 27.166538620695782),
    "maze2d-umaze-dense": (68.537689, 193.66285642381482),
    "maze2d-medium-dense": (44.264742, 297.4552547777125),
    "maze2d-large-dense": (30.569041, 303.4857382709002),
}


@dataclass(frozen=True)
class Reference:
    ref_min: float
    ref_max: float
    source: str  # e.g. "D4RL hopper" or "dataset metadata"
    lower_is_better: bool = False   # a cost

    def normalize(self, returns) -> np.ndarray:
        returns = np.asarray(returns, dtype=np.float64)
        return 100.0 * (returns - self.ref_min) / (self.ref_max - self.ref_min)


def d4rl_reference(name: str) -> Reference:
    """Reference returns for a D4RL family (`hopper`) or dataset name (`hopper-medium-v2`)."""
    base = name.rsplit("-v", 1)[0] if "-v" in name else name
    if base in D4RL_MAZE2D_REFS:
        return Reference(*D4RL_MAZE2D_REFS[base], source=f"D4RL {base}")
    family = name.split("-", 1)[0]
    if family in D4RL_FAMILY_REFS:
        return Reference(*D4RL_FAMILY_REFS[family], source=f"D4RL {family}")
    valid = sorted(D4RL_FAMILY_REFS) + sorted(D4RL_MAZE2D_REFS)
    raise KeyError(f"no D4RL reference returns for {name!r}; known: {', '.join(valid)}")


SUCCESS = Reference(0.0, 1.0, "success rate (%) of the evaluation episodes (success at any step; "
                              "goal-conditioned envs: over their evaluation tasks)")


COST = Reference(0.0, 100.0, "cost per period and store on the dev scenarios (lower is better)",
                 lower_is_better=True)


RETURN = Reference(0.0, 100.0, "the undiscounted return (no reference returns for this env "
                               "or horizon)")


def reference_for(score_family: str, metadata: dict | None = None) -> Reference:
    """The dataset's own references when it carries them, else D4RL's for the family; the
    success rate for goal-conditioned envs (`score: success`); the return itself for envs
    without reference returns (`score: return`)."""
    if score_family == "success":
        return SUCCESS
    if score_family == "return":
        return RETURN
    metadata = metadata or {}
    if metadata.get("ref_min_score") is not None and metadata.get("ref_max_score") is not None:
        ref_min, ref_max = float(metadata["ref_min_score"]), float(metadata["ref_max_score"])
        d4rl = D4RL_FAMILY_REFS.get(score_family)
        same = d4rl is not None and np.allclose((ref_min, ref_max), d4rl, rtol=1e-6, atol=1e-6)
        return Reference(ref_min, ref_max, f"D4RL {score_family}" if same else "dataset metadata")
    return d4rl_reference(score_family)
