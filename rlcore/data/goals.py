"""Goals for goal-conditioned agents, sampled on the device from a dataset's own states.

OGBench's recipe (impls/utils/datasets.py, GCDataset and HGCDataset): a goal is the observation
at an index of the dataset, drawn per transition t from
  - the current state (index t),
  - the same trajectory's future, uniform in [min(t + 1, T), T] or geometric, min(t + k, T) with
    k ~ Geom(1 - discount), where T is the trajectory's last transition,
  - a random state of the dataset,
with the mix's probabilities. Rewards and masks follow from the value goal: success = (goal
index == t), reward = success - 1 ("0 if s == g else -1"), mask = 1 - success.

Temporal augmentation for stitching (Ghugare et al., ICLR 2024; utils/data.py of the authors'
code): the dataset's states are clustered with K-means; with probability `augment_prob` a
future-trajectory goal j of the actor is replaced by a goal on another trajectory: k is a random
state in j's cluster, the goal is uniform in [k, end of k's trajectory]. The swapped goal lies
on a trajectory passing near the waypoint j, so the policy learns to follow t's trajectory to
j and k's onward: a stitched path the data never shows in one piece. The authors apply it to
the goals the policy is cloned toward (RvS, DT), which here are the actor goals; value goals stay
as drawn (a swapped goal has no success index of its own to reward).

Everything is tensor ops with the buffer's generator: no host sync, so it captures in a graph.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tensordict import TensorDict

from rlcore.training.buffer import Buffer
from rlcore.data import DatasetError
from rlcore.errors import ConfigError


@dataclass(frozen=True)
class GoalMix:
    """Where one kind of goal comes from: current state, same trajectory or random state."""
    current: float
    trajectory: float
    random: float
    geometric: bool = False

    def __post_init__(self):
        total = self.current + self.trajectory + self.random
        if min(self.current, self.trajectory, self.random) < 0 or abs(total - 1.0) > 1e-6:
            raise ConfigError(f"goal probabilities current={self.current}, trajectory="
                              f"{self.trajectory}, random={self.random} must be >= 0 and sum to 1")

    @classmethod
    def from_config(cls, cfg) -> "GoalMix":
        """From `{current, trajectory, random, geometric}` in an agent's config."""
        return cls(float(cfg.current), float(cfg.trajectory), float(cfg.random), bool(cfg.geometric))


class StateClusters:
    """K-means clusters of the dataset's states (scikit-learn), stored on the device as each
    cluster's members, so a uniform member of a cluster is one gather."""

    def __init__(self, states: np.ndarray, clusters: int, seed: int, device: torch.device):
        try:
            from sklearn.cluster import KMeans
        except ImportError:
            raise ConfigError("data.augment=temporal clusters states with scikit-learn: "
                              "pip install -e \".[goals]\"") from None
        if not 1 <= clusters <= len(states):
            raise ConfigError(f"data.clusters={clusters}: needs 1 <= clusters <= {len(states)} states")
        labels = KMeans(n_clusters=clusters, n_init="auto", random_state=seed).fit(states).labels_
        order = np.argsort(labels, kind="stable")
        sizes = np.bincount(labels, minlength=clusters)
        self.labels = torch.as_tensor(labels, dtype=torch.long, device=device)
        self.members = torch.as_tensor(order, dtype=torch.long, device=device)
        self.starts = torch.as_tensor(np.concatenate([[0], np.cumsum(sizes)[:-1]]), device=device)
        self.sizes = torch.as_tensor(sizes, device=device)

    def random_member(self, cluster: torch.Tensor, uniform: torch.Tensor) -> torch.Tensor:
        """A uniform member of each cluster in `cluster` (`uniform` in [0, 1))."""
        size = self.sizes[cluster]
        offset = torch.minimum((uniform * size).long(), size - 1)
        return self.members[self.starts[cluster] + offset]


class GoalSampler:
    """Goal-relabelled batches from a buffer that holds a goal-conditioned dataset."""

    def __init__(self, buffer: Buffer, discount: float = 0.99, augment: str | None = None,
                 augment_prob: float = 0.5, clusters: int = 40, seed: int = 0):
        if buffer.size < 2:
            raise DatasetError("a goal-conditioned dataset needs at least 2 transitions")
        buffer._index_episodes()
        self.buffer, self.discount = buffer, discount
        self.final = buffer.episode_end - 1                       # T of each t's trajectory
        self.augment_prob = float(augment_prob)
        self.clusters = None
        if augment not in (None, "none", "temporal"):
            raise ConfigError(f"data.augment={augment!r}; valid: none, temporal")
        if augment == "temporal":
            states = buffer.storage["observations"][: buffer.size].cpu().numpy()
            self.clusters = StateClusters(states, clusters, seed, buffer.device)

    # -- indices ------------------------------------------------------------------------------
    def random_indices(self, n: int) -> torch.Tensor:
        return self.buffer.randint(self.buffer.size, (n,))

    def trajectory_goals(self, t: torch.Tensor, geometric: bool) -> torch.Tensor:
        """A later state of t's trajectory (t itself only when t is the trajectory's last)."""
        final = self.final[t]
        if geometric:
            k = torch.empty(len(t), device=t.device).geometric_(
                1.0 - self.discount, generator=self.buffer.generator).long()
            return torch.minimum(t + k, final)
        d = self.buffer.uniform((len(t),))
        return torch.round(torch.minimum(t + 1, final) * d + final * (1 - d)).long()

    def goal_indices(self, t: torch.Tensor, mix: GoalMix, augment: bool = False) -> torch.Tensor:
        """OGBench's sample_goals: trajectory or random, then the current state over both."""
        n = len(t)
        goal = self.trajectory_goals(t, mix.geometric)
        if augment and self.clusters is not None:
            goal = self.swap_trajectory(goal)
        if mix.current < 1.0:
            use_trajectory = self.buffer.uniform((n,)) < mix.trajectory / (1.0 - mix.current)
            goal = torch.where(use_trajectory, goal, self.random_indices(n))
        return torch.where(self.buffer.uniform((n,)) < mix.current, t, goal)

    def swap_trajectory(self, waypoint: torch.Tensor) -> torch.Tensor:
        """With probability augment_prob: a uniform state in [k, end of k's trajectory] for a
        random k in the waypoint's cluster (the stitching paper's augmentation)."""
        n = len(waypoint)
        k = self.clusters.random_member(self.clusters.labels[waypoint], self.buffer.uniform((n,)))
        span = (self.final[k] - k + 1).to(torch.float32)
        stitched = k + torch.minimum((self.buffer.uniform((n,)) * span).long(), self.final[k] - k)
        return torch.where(self.buffer.uniform((n,)) < self.augment_prob, stitched, waypoint)

    def states(self, index: torch.Tensor) -> torch.Tensor:
        return self.buffer.storage["observations"][self.buffer._physical(index)]

    # -- batches ------------------------------------------------------------------------------
    def sample(self, n: int, value: GoalMix | None, actor: GoalMix | None) -> TensorDict:
        """GCDataset.sample: transitions with `value_goals`, `rewards` and `masks` (with a value
        mix) and `actor_goals` (with an actor mix)."""
        t = self.random_indices(n)
        batch = self._with_value_goals(t, value)
        if actor is not None:
            batch["actor_goals"] = self.states(self.goal_indices(t, actor, augment=True))
        return batch

    def _with_value_goals(self, t: torch.Tensor, value: GoalMix | None) -> TensorDict:
        batch = self.buffer.gather(t)
        if value is None:
            return batch
        value_goal = self.goal_indices(t, value)
        success = (value_goal == t).float()
        batch["value_goals"] = self.states(value_goal)
        batch["rewards"] = success - 1.0
        batch["masks"] = 1.0 - success
        return batch

    def sample_hierarchical(self, n: int, value: GoalMix, actor: GoalMix,
                            subgoal_steps: int) -> TensorDict:
        """HGCDataset.sample (HIQL): value goals, and `low_actor_goals` (the state subgoal_steps
        ahead), `high_actor_goals` (same trajectory, or random with actor.random) and
        `high_actor_targets` (the state subgoal_steps toward the high goal, within the
        trajectory). The augmentation swaps the high goal's trajectory."""
        t = self.random_indices(n)
        batch = self._with_value_goals(t, value)
        final = self.final[t]
        batch["low_actor_goals"] = self.states(torch.minimum(t + subgoal_steps, final))
        high_goal = self.trajectory_goals(t, actor.geometric)
        high_target = torch.minimum(t + subgoal_steps, high_goal)
        if self.clusters is not None:
            high_goal = self.swap_trajectory(high_goal)
        pick_random = self.buffer.uniform((n,)) < actor.random
        high_goal = torch.where(pick_random, self.random_indices(n), high_goal)
        high_target = torch.where(pick_random, torch.minimum(t + subgoal_steps, final), high_target)
        batch["high_actor_goals"] = self.states(high_goal)
        batch["high_actor_targets"] = self.states(high_target)
        return batch

    def sample_contexts(self, n: int, context: int, tries: int = 8) -> TensorDict:
        """Windows of `context` consecutive transitions with one goal (the stitching paper's
        MinariEpisodicTrajectoryDataset, for its goal-conditioned DT): `observations` and
        `actions` [n, context, ...], `goals` [n, state].

        Plain: a window t..t+C-1 inside one trajectory and a goal uniform among the states after
        it, [t + C, T]. Augmented (probability augment_prob): a waypoint j uniform in [t + 1, T]
        and k a random state of j's cluster; when j - t < C the window is stitched, rows
        t..j-1 then k..k + C - (j - t) - 1, and the goal is uniform in [k + C - (j - t), T_k];
        else the window is t..t+C-1 and the goal uniform in [k, T_k]. The authors redraw until
        k's trajectory is long enough; here `tries` candidates are drawn at once and the first
        that fits is kept (the plain sample where none does), which keeps it free of host syncs;
        and t is drawn among the windows that fit plainly for both. States after T (the trajectory's very last state, which has no action) are not goals:
        windows need one state after them."""
        starts = self.context_starts(context)
        t = starts[self.buffer.randint(len(starts), (n,))]
        final = self.final[t]
        span = (final - (t + context) + 1).to(torch.float32)
        goal = t + context + torch.minimum((self.buffer.uniform((n,)) * span).long(),
                                           final - t - context)
        offsets = torch.arange(context, device=t.device)
        rows = t[:, None] + offsets                                         # [n, C]
        if self.clusters is not None:
            rows, goal = self._stitched_contexts(t, rows, goal, context, tries)
        batch = TensorDict({"observations": self.states(rows),
                            "actions": self.buffer.storage["actions"][self.buffer._physical(rows)],
                            "goals": self.states(goal)}, batch_size=[n])
        return batch

    def context_starts(self, context: int) -> torch.Tensor:
        """Rows t whose trajectory has C transitions from t and one more state after them: the
        buffer's segment starts for C + 1 (computed once per length)."""
        return self.buffer.segment_starts(context + 1)

    def _stitched_contexts(self, t, rows, goal, context: int, tries: int):
        n = len(t)
        final = self.final[t][:, None]
        tt = t[:, None].expand(n, tries)
        span = (final - tt).to(torch.float32)                               # j in [t + 1, T]
        j = tt + 1 + torch.minimum((self.buffer.uniform((n, tries)) * span).long(), final - tt - 1)
        j = torch.minimum(j, final)
        k = self.clusters.random_member(self.clusters.labels[j], self.buffer.uniform((n, tries)))
        k_final = self.final[k]
        gap = j - tt                                                        # rows from t's own
        first_goal = torch.where(gap < context, k + context - gap, k)
        fits = first_goal <= k_final
        pick = torch.argmax(fits.to(torch.int8), dim=1)                     # first that fits
        use = fits.any(1) & (self.buffer.uniform((n,)) < self.augment_prob)
        take = lambda x: x.gather(1, pick[:, None]).squeeze(1)              # noqa: E731
        gap, k, k_final, first_goal = take(gap), take(k), take(k_final), take(first_goal)
        offsets = torch.arange(context, device=t.device)
        stitched = torch.where(offsets < gap[:, None], t[:, None] + offsets,
                               k[:, None] + offsets - gap[:, None])
        stitched = torch.where((gap >= context)[:, None], t[:, None] + offsets, stitched)
        span = (k_final - first_goal + 1).to(torch.float32)
        stitched_goal = first_goal + torch.minimum((self.buffer.uniform((n,)) * span).long(),
                                                   k_final - first_goal)
        return (torch.where(use[:, None], stitched, rows),
                torch.where(use, stitched_goal, goal))

    def sample_goal_transitions(self, n: int) -> TensorDict:
        """SMORe's goal-transition batch (dataset_utils.py, 'HER_goal_entry_distribution'): a
        goal state k drawn as a uniform future state of a random transition, and the transition
        (s_{k-1}, a_{k-1}, s_k) that enters it, with `value_goals` = s_k. (The code's other 20%,
        states where the achieved goal met the dataset's commanded goal, has no counterpart in
        data whose goals are its own states: those are future states too.)"""
        t = self.random_indices(n)
        entering = torch.maximum(self.trajectory_goals(t, geometric=False) - 1, t)
        batch = self.buffer.gather(entering)
        batch["value_goals"] = batch["next_observations"]
        return batch
