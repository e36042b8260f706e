"""Preference data: segments cut from a dataset's episodes, scored by a labeller, compared in
pairs, stored once per labelling, and sampled on the training device (CPL's FeedbackBuffer,
jhejna/cpl research/datasets/feedback_buffer.py and scripts/add_pref_labels.py).

Labellers (`env.labeller`):
- `regret` (CPL's `rl_sum`): score(sigma) = sum_{t<L-1} r_t + V(s_{L-1}) - V(s_0), the sum of the
  oracle's advantages r_t + V(s_{t+1}) - V(s_t) over the segment (the regret preference model,
  CPL eq. 4 with gamma 1, as the authors' script sums it). CPL's V was its SAC oracle's critic,
  averaged over 64 sampled actions. There is no oracle here, so V is fitted on the data's true
  rewards (`fit_value`): TD with an expectile (0.9) over the data's actions, V(s) <- r +
  gamma V'(s'), gamma 0.99. On Meta-World's deterministic dynamics a high expectile tracks the
  best action the data tried in each state, which is what an optimal critic's V would give.
- `discounted_regret` (the code's `rl_dis_sum`): sum_t gamma^t (r_t + gamma V(s_{t+1}) - V(s_t)),
  CPL eq. 2 exactly. `regret` sums the same advantages without discounting and with V(s_{t+1})
  in place of gamma V(s_{t+1}): it adds (1 - gamma) sum_t V(s_{t+1}), which favours segments in
  high-value states. On near-optimal data every labeller leans that way: on drawer-open (1,000
  noisy-expert episodes) the correlation of a segment's score with its start time in the
  episode is 0.85 for `regret`, 0.72 for `discounted_regret` and 0.84 for `return`.
- `return`: score = sum_t r_t, the partial-return (Bradley-Terry on summed reward) model.

Comparisons (`env.labels`):
- `dense` (CPL's `mode: rank`): `env.segments` segments (2,500); every batch row compares a
  uniformly drawn segment with another uniformly drawn one, labelled from their scores.
- `sparse` (`mode: comparison`): `env.pairs` fixed pairs (10,000: 20,000 segments), each
  segment in one pair.
A label y = 1 prefers the second segment (score_2 > score_1), 0 the first, 0.5 a tie (the
authors' convention). `env.label_noise` = p flips a label with probability p: a fixed pair's
once, when the labels are made; a dense comparison's each time it is drawn.

Segments start anywhere an episode has L steps left: none crosses an episode's end.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict

from rlcore.agent import Agent
from rlcore.training.buffer import Buffer
from rlcore.data import OfflineDataset
from rlcore.errors import ConfigError
from rlcore.fileio import atomic_write, file_lock
from rlcore.logger import progress_bar

LABELLERS = ("regret", "discounted_regret", "return")
ORACLE_DISCOUNT = 0.99
COMPARISONS = ("dense", "sparse")


@dataclass(frozen=True)
class Labelling:
    """How a dataset's preferences are made (the env config's keys of the same names)."""
    labels: str = "dense"
    labeller: str = "regret"
    segments: int = 2500        # dense
    pairs: int = 10000          # sparse
    segment_length: int = 64
    label_noise: float = 0.0
    oracle_steps: int = 20000   # regret: updates of the fitted V
    seed: int = 0

    def __post_init__(self):
        if self.labels not in COMPARISONS:
            raise ConfigError(f"env.labels={self.labels!r}; valid: {', '.join(COMPARISONS)}")
        if self.labeller not in LABELLERS:
            raise ConfigError(f"env.labeller={self.labeller!r}; valid: {', '.join(LABELLERS)}")
        if not 0.0 <= self.label_noise < 1.0:
            raise ConfigError(f"env.label_noise={self.label_noise}: the fraction of labels flipped "
                              "must be in [0, 1)")
        if self.segment_length < 2:
            raise ConfigError(f"env.segment_length={self.segment_length}: a segment needs >= 2 steps")
        if min(self.segments, self.pairs) < 1:
            raise ConfigError(f"env.segments={self.segments}, env.pairs={self.pairs}: both must be >= 1")

    @property
    def count(self) -> int:
        """Segments to cut: `segments` (dense) or two per pair (sparse)."""
        return self.segments if self.labels == "dense" else 2 * self.pairs

    @property
    def key(self) -> str:
        oracle = f"-o{self.oracle_steps}" if self.labeller != "return" else ""
        return (f"{self.labeller}{oracle}-{self.labels}-n{self.count}-L{self.segment_length}"
                f"-noise{self.label_noise:g}-s{self.seed}")

    @classmethod
    def from_config(cls, env_cfg, seed: int) -> "Labelling":
        keys = [k for k in asdict(cls()) if k != "seed"]
        return cls(**{k: env_cfg[k] for k in keys if env_cfg.get(k) is not None}, seed=int(seed))


@dataclass
class Preferences:
    starts: np.ndarray              # [M] dataset index of each segment's first step
    scores: np.ndarray              # [M] the labeller's score
    length: int
    first: np.ndarray | None = None   # sparse: [P] segment index of each pair's first segment
    second: np.ndarray | None = None  # sparse: [P]
    labels: np.ndarray | None = None  # sparse: [P] 0, 0.5 or 1 (after noise)
    metadata: dict | None = None
    matrix: np.ndarray | None = None  # dense, made elsewhere: [M, M] label of every pair
                                      # (rlcore.data.transfer's soft labels; scores then unused)


def preference_label(first: np.ndarray | torch.Tensor, second):
    """1 where the second segment scores higher, 0 where lower, 0.5 on ties."""
    return (second > first) * 1.0 + (second == first) * 0.5


def segment_starts(dataset: OfflineDataset, length: int) -> np.ndarray:
    """Every index t whose episode has `length` steps from t on."""
    ends = dataset.episode_ends()
    end_of = np.repeat(ends, np.diff(np.concatenate([[0], ends])))
    starts = np.flatnonzero(np.arange(len(dataset)) + length <= end_of)
    if len(starts) == 0:
        raise ConfigError(f"env.segment_length={length}: no episode of {dataset.name} is that "
                          f"long (the longest has {int(np.diff(np.concatenate([[0], ends])).max())} steps)")
    return starts


def segment_sums(values: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    """sum_{t<length} values[start + t] for each start."""
    cumulative = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    return cumulative[starts + length] - cumulative[starts]


def regret_scores(dataset: OfflineDataset, starts: np.ndarray, length: int,
                  values: np.ndarray, discount: float = 1.0) -> np.ndarray:
    """sum_{t<L-1} g^t r_t + g^(L-1) V(s_{L-1}) - V(s_0) per segment; `values` holds V of every
    observation. g = 1 is add_pref_labels.py's `rl_sum`; g = gamma is `rl_dis_sum`, which
    telescopes to sum_t gamma^t (r_t + gamma V(s_{t+1}) - V(s_t)), CPL eq. 2's discounted sum of
    advantages."""
    weights = discount ** np.arange(length - 1)
    rewards = dataset.rewards.astype(np.float64)[starts[:, None] + np.arange(length - 1)]
    return (rewards @ weights + discount ** (length - 1) * values[starts + length - 1]
            - values[starts])


def fit_value(dataset: OfflineDataset, steps: int, seed: int, discount: float = ORACLE_DISCOUNT,
              expectile: float = 0.9, batch_size: int = 1024,
              progress: bool = True) -> tuple[np.ndarray, float]:
    """V(s) fitted on the data's rewards by expectile TD (256x256 ReLU MLP, Adam 3e-4, a Polyak
    target at 0.005): V of every observation of the dataset, and the last loss."""
    from rlcore.agent.nets import MLP, polyak_update
    from rlcore.agent.objectives import expectile_loss
    generator = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    value = MLP(dataset.obs_dim, [256, 256], 1, squeeze=True)
    target = MLP(dataset.obs_dim, [256, 256], 1, squeeze=True).requires_grad_(False)
    target.load_state_dict(value.state_dict())
    opt = torch.optim.Adam(value.parameters(), lr=3e-4)
    obs, nxt = torch.as_tensor(dataset.observations), torch.as_tensor(dataset.next_observations)
    reward, done = torch.as_tensor(dataset.rewards), torch.as_tensor(dataset.terminals).float()
    bar = progress_bar(total=steps, desc="fitting the labeller's V", unit="upd", disable=not progress)
    loss = torch.zeros(())
    for _ in range(steps):
        i = torch.randint(0, len(obs), (batch_size,), generator=generator)
        with torch.no_grad():
            y = reward[i] + discount * (1 - done[i]) * target(nxt[i])
        loss = expectile_loss(y - value(obs[i]), expectile).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        polyak_update(target, value, 0.005)
        bar.update(1)
    bar.close()
    with torch.no_grad():
        values = torch.cat([value(chunk) for chunk in obs.split(65536)]).numpy()
    return values.astype(np.float64), loss.item()


def oracle_values(dataset: OfflineDataset, where: Path | None, steps: int, seed: int,
                  progress: bool = True) -> tuple[np.ndarray, float]:
    """fit_value, stored beside the dataset (every labelling of it shares one fit)."""
    path = None if where is None else preferences_folder(where) / f"oracle-v-o{steps}-s{seed}.npz"
    if path is not None and path.exists():
        with np.load(path) as f:
            if len(f["values"]) == len(dataset):
                return f["values"], float(f["loss"])
    with torch.random.fork_rng(devices=[]):      # made or read, a run's random stream is the same
        values, loss = fit_value(dataset, steps, seed, progress=progress)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)

        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.savez(f, values=values, loss=np.asarray(loss))
        atomic_write(path, write)
    return values, loss


def make_preferences(dataset: OfflineDataset, how: Labelling, progress: bool = True,
                     where: Path | None = None) -> Preferences:
    """Cut, score and (sparse) pair the segments; the module docstring says how. `where` (the
    dataset's location) keeps the regret labeller's fitted V for the next labelling."""
    if not np.any(dataset.rewards):
        raise ConfigError(f"dataset {dataset.name} has no rewards to label segments by")
    rng = np.random.default_rng(how.seed)
    valid = segment_starts(dataset, how.segment_length)
    starts = np.sort(rng.choice(valid, how.count, replace=how.count > len(valid)))
    rng.shuffle(starts)
    rewards = dataset.rewards.astype(np.float64)
    meta = {"labeller": how.labeller, "labels": how.labels, "segments": int(how.count),
            "segment_length": how.segment_length, "label_noise": how.label_noise,
            "seed": how.seed, "dataset": dataset.name, "transitions": len(dataset)}
    returns = segment_sums(rewards, starts, how.segment_length)
    if how.labeller == "return":
        scores = returns
    else:
        values, loss = oracle_values(dataset, where, how.oracle_steps, how.seed, progress)
        discount = ORACLE_DISCOUNT if how.labeller == "discounted_regret" else 1.0
        scores = regret_scores(dataset, starts, how.segment_length, values, discount)
        meta.update(oracle={"fit": "expectile TD, expectile 0.9, discount 0.99, 256x256",
                            "steps": how.oracle_steps, "last_loss": loss})
    prefs = Preferences(starts.astype(np.int64), scores.astype(np.float64), how.segment_length)
    if how.labels == "sparse":
        prefs.first, prefs.second = np.arange(how.pairs), np.arange(how.pairs, 2 * how.pairs)
        clean = preference_label(scores[prefs.first], scores[prefs.second])
        flip = rng.random(how.pairs) < how.label_noise
        prefs.labels = np.where(flip, 1.0 - clean, clean)
        meta["flipped"] = int(flip.sum())
        by_return = preference_label(returns[prefs.first], returns[prefs.second])
        meta["agreement_with_return_labels"] = float((prefs.labels == by_return).mean())
    prefs.metadata = meta
    return prefs


def save_preferences(prefs: Preferences, path: Path) -> Path:
    arrays = {k: v for k, v in (("starts", prefs.starts), ("scores", prefs.scores),
                                ("first", prefs.first), ("second", prefs.second),
                                ("labels", prefs.labels)) if v is not None}
    arrays["length"] = np.asarray(prefs.length)
    arrays["metadata"] = np.asarray(json.dumps(prefs.metadata))

    def write(tmp: str) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    return atomic_write(path, write)


def load_preferences(path: Path) -> Preferences:
    with np.load(path) as f:
        get = {k: f[k] for k in f.files}
    return Preferences(get["starts"], get["scores"], int(get["length"]), get.get("first"),
                       get.get("second"), get.get("labels"), json.loads(str(get["metadata"])))


def preferences_folder(where: Path) -> Path:
    """Beside the dataset: <minari folder>/preferences/, or <file>.preferences/."""
    return where / "preferences" if where.is_dir() else where.with_name(where.name + ".preferences")


def preferences_path(where: Path, how: Labelling) -> Path:
    return preferences_folder(where) / f"{how.key}.npz"


def dataset_preferences(dataset: OfflineDataset, where: Path, how: Labelling,
                        progress: bool = True) -> Preferences:
    """The stored labelling of this dataset, made (atomically, under a lock) when missing or made
    from other data. A second labelling reuses the episodes: nothing is rolled out again."""
    path = preferences_path(where, how)
    path.parent.mkdir(parents=True, exist_ok=True)
    fingerprint = hashlib.sha256(dataset.rewards.tobytes()).hexdigest()[:16]
    with file_lock(path.with_suffix(".lock")):
        if path.exists():
            prefs = load_preferences(path)
            if prefs.metadata.get("rewards_sha256") == fingerprint:
                return prefs
        prefs = make_preferences(dataset, how, progress, where)
        prefs.metadata["rewards_sha256"] = fingerprint
        save_preferences(prefs, path)
    return prefs


class PreferenceSampler:
    """Pairs of segments on the buffer's device: `sample(n)` -> TensorDict [n] whose keys are
    [n, 2, L, ...] (observations, actions, rewards, next_observations, terminals, timeouts) and
    `labels` [n] (1: the second segment is preferred)."""

    def __init__(self, buffer: Buffer, prefs: Preferences, label_noise: float = 0.0):
        if len(buffer) <= int(prefs.starts.max()) + prefs.length - 1:
            raise ConfigError("the preference labels index past the dataset: they were made from "
                              "other data")
        device = buffer.device
        self.buffer, self.length, self.noise = buffer, prefs.length, float(label_noise)
        self.starts = torch.as_tensor(prefs.starts, device=device)
        self.scores = torch.as_tensor(prefs.scores, dtype=torch.float32, device=device)
        self.dense, self.metadata = prefs.labels is None, prefs.metadata or {}
        self.matrix = None if prefs.matrix is None else torch.as_tensor(
            prefs.matrix, dtype=torch.float32, device=device)
        if not self.dense:
            self.pairs = torch.as_tensor(np.stack([prefs.first, prefs.second], 1), device=device)
            self.labels = torch.as_tensor(prefs.labels, dtype=torch.float32, device=device)
        self.offsets = torch.arange(self.length, device=device)

    def sample(self, n: int) -> TensorDict:
        buffer = self.buffer
        if self.dense:
            pair = buffer.randint(len(self.starts), (n, 2))
            labels = (preference_label(self.scores[pair[:, 0]], self.scores[pair[:, 1]])
                      if self.matrix is None else self.matrix[pair[:, 0], pair[:, 1]])
            if self.noise:
                labels = torch.where(buffer.uniform((n,)) < self.noise, 1.0 - labels, labels)
        else:
            k = buffer.randint(len(self.labels), (n,))
            pair, labels = self.pairs[k], self.labels[k]
        positions = self.starts[pair][..., None] + self.offsets               # [n, 2, L]
        batch = buffer.gather(positions)
        return TensorDict({**batch.to_dict(), "labels": labels}, batch_size=[n], device=buffer.device)


class PreferenceAgent(Agent):
    """An agent that learns from segment pairs and labels (buffer.preferences)."""
    learns_from_preferences = True

    def check_data(self, buffer: Buffer) -> None:
        if getattr(buffer, "preferences", None) is None:
            raise ConfigError(f"agent={self.cfg.name} learns from preference labels and this "
                              "buffer has none (buffer.preferences: a PreferenceSampler); "
                              "Meta-World envs set env.labels, others take +env.labels=dense|sparse")

    def sample(self, buffer: Buffer, batch_size: int) -> TensorDict:
        """[S, B] pairs: each seed its own draws."""
        pairs = buffer.preferences.sample(self.spec.seeds * batch_size)
        return pairs.reshape(self.spec.seeds, batch_size)


def preference_policy(spec, cfg):
    """CPL's state-config actor (ContinuousMLPActor): `cfg.hidden` ReLU layers with dropout
    `cfg.dropout` after each hidden linear layer, a tanh output, orthogonal init (gain 1)."""
    from rlcore.agent.nets import DeterministicPolicy
    return DeterministicPolicy(spec.obs_dim, spec.action_dim, cfg.hidden, seeds=spec.seeds,
                               dropout=cfg.dropout, orthogonal_init=1.0)


def segment_log_prob(policy, batch: TensorDict) -> torch.Tensor:
    """log pi(a_t|s_t) of a deterministic policy read as a unit-variance Gaussian, up to its
    constant: -||pi(s_t) - a_t||^2, per step: [S, B, 2, L]."""
    return -(policy(batch["observations"]) - batch["actions"]).pow(2).sum(-1)


def preferred_mean(values: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Per seed, the mean of [S, B, 2, L] values over the preferred segments' steps (both
    segments on a tie), as the authors select them (`label <= 0.5`: the first)."""
    weight = torch.stack([labels <= 0.5, labels >= 0.5], -1).float()[..., None].expand_as(values)
    return (weight * values).flatten(1).sum(1) / weight.flatten(1).sum(1)
