"""A replay buffer that holds a whole dataset on the training device, one row per transition
(every key a view of its columns, so a batch is one gather).

Episode boundaries (terminals or timeouts) are kept, and every sampler draws its indices on
the device with its own generator, with no Python loop per sample:
  - `sample`            transitions (s, a, r, s', terminal)
  - `sample_nstep`      n-step returns truncated at the episode's end
  - `sample_segments`   fixed-length windows inside one episode; `sample_segment_pairs` two
  - `sample_goals`      transitions with a goal relabelled from the same episode's future
`add` appends transitions (online agents); when full it overwrites the oldest (FIFO).
"""
from __future__ import annotations

import torch
from tensordict import TensorDict

from rlcore.data import OfflineDataset

KEYS = ("observations", "actions", "rewards", "next_observations", "terminals", "timeouts")


class Buffer:
    def __init__(self, obs_dim: int, action_dim: int, capacity: int,
                 device: str | torch.device = "cpu", seed: int = 0):
        self.device = torch.device(device)
        self.capacity = int(capacity)
        widths = {"observations": obs_dim, "actions": action_dim, "rewards": 0,
                  "next_observations": obs_dim, "terminals": 0, "timeouts": 0}   # 0: a scalar
        self._columns, start = {}, 0
        for key in KEYS:
            self._columns[key] = (start, widths[key])
            start += max(widths[key], 1)
        self.rows = torch.zeros(capacity, start, dtype=torch.float32, device=self.device)
        self.storage = self._fields(self.rows)      # per-key views of the rows
        self.size = 0
        self._ptr = 0
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(seed)
        self._episodes_dirty = True
        self._segment_starts: dict[int, torch.Tensor] = {}
        self.subsets: dict[str, torch.Tensor] = {}   # name -> indices, e.g. "expert" transitions

    @classmethod
    def from_dataset(cls, dataset: OfflineDataset, device="cpu", seed: int = 0,
                     capacity: int | None = None, subsets: dict | None = None) -> "Buffer":
        buf = cls(dataset.obs_dim, dataset.action_dim, capacity or len(dataset), device, seed)
        buf.add({k: torch.as_tensor(v) for k, v in dataset.arrays().items()})
        for name, index in (subsets or {}).items():
            buf.subsets[name] = torch.as_tensor(index, dtype=torch.long, device=buf.device)
        return buf

    def __len__(self) -> int:
        return self.size

    # ---- writing ---------------------------------------------------------------------
    def add(self, transitions: dict | TensorDict) -> None:
        """Append a batch of transitions (every key of KEYS, leading dim = count)."""
        missing = [k for k in KEYS if k not in transitions.keys()]
        if missing:
            raise KeyError(f"transitions lack keys {missing}; a buffer stores {list(KEYS)}")
        n = len(transitions["rewards"])
        skip = max(0, n - self.capacity)          # more than fits: only the newest survive
        idx = (self._ptr + skip + torch.arange(n - skip, device=self.device)) % self.capacity
        for key in KEYS:
            value = torch.as_tensor(transitions[key])[skip:].to(self.device, torch.float32)
            self.storage[key][idx] = value.reshape(self.storage[key][idx].shape)
        self._ptr = (self._ptr + n) % self.capacity
        self.size = min(self.size + n, self.capacity)
        self._episodes_dirty = True

    # ---- episode bookkeeping (logical order: oldest transition first) -----------------
    def _physical(self, logical: torch.Tensor) -> torch.Tensor:
        origin = self._ptr if self.size == self.capacity else 0
        return (logical + origin) % self.capacity

    def _index_episodes(self) -> None:
        if not self._episodes_dirty:
            return
        order = self._physical(torch.arange(self.size, device=self.device))
        done = (self.storage["terminals"][order] + self.storage["timeouts"][order]) > 0
        episode = torch.cumsum(done.long(), 0) - done.long()   # episode id of each step
        ends = torch.nonzero(done).squeeze(-1) + 1              # exclusive ends
        if len(ends) == 0 or ends[-1] != self.size:
            ends = torch.cat([ends, ends.new_tensor([self.size])])
        self.episode_end = ends[episode]                        # [size], logical
        self._segment_starts = {}
        self._episodes_dirty = False

    def randint(self, high, shape) -> torch.Tensor:
        """Integers in [0, high) from the buffer's generator (samplers built on the buffer use it)."""
        return torch.randint(0, high, shape, device=self.device, generator=self.generator)

    def uniform(self, shape) -> torch.Tensor:
        return torch.rand(shape, device=self.device, generator=self.generator)

    def _fields(self, rows: torch.Tensor) -> TensorDict:
        """Each key as a view of `rows` ([..., width]): one gather fetches a whole transition."""
        return TensorDict({key: rows[..., a:a + w] if w else rows[..., a]
                           for key, (a, w) in self._columns.items()},
                          batch_size=rows.shape[:-1], device=self.device)

    def _rows(self, physical: torch.Tensor) -> TensorDict:
        return self._fields(self.rows[physical])

    def gather(self, logical: torch.Tensor) -> TensorDict:
        """The transitions at logical positions (any shape; oldest transition first)."""
        return self._rows(self._physical(logical))

    # ---- samplers ----------------------------------------------------------------------
    def sample(self, batch_size: int, subset: str | None = None) -> TensorDict:
        """Uniform transitions, from all of the buffer or from one of its `subsets`."""
        self._check_nonempty()
        if subset is None:
            return self._rows(self.randint(self.size, (batch_size,)))
        if subset not in self.subsets:
            raise KeyError(f"this buffer has no {subset!r} subset; it has {sorted(self.subsets) or 'none'}")
        index = self.subsets[subset]
        return self._rows(index[self.randint(len(index), (batch_size,))])

    def sample_nstep(self, batch_size: int, n: int, discount: float) -> TensorDict:
        """Transitions with `n_step_return` = sum_{k<m} discount^k r_{t+k}, where m <= n stops at
        the episode's end; `next_observations` is s_{t+m} and `bootstrap` = discount^m (1 - d)."""
        self._check_nonempty()
        self._index_episodes()
        start = self.randint(self.size, (batch_size,))
        end = self.episode_end[start][:, None]
        offsets = torch.arange(n, device=self.device)
        pos = start[:, None] + offsets                                  # [B, n]
        valid = pos < end
        rewards = self.storage["rewards"][self._physical(torch.minimum(pos, end - 1))] * valid
        powers = discount ** offsets.to(torch.float32)
        steps = valid.sum(1)                                            # m >= 1
        last = self._physical(start + steps - 1)
        batch = self.gather(start)
        batch["n_step_return"] = (rewards * powers).sum(1)
        batch["next_observations"] = self.storage["next_observations"][last]
        batch["terminals"] = self.storage["terminals"][last]
        batch["n_steps"] = steps
        batch["bootstrap"] = discount ** steps.to(torch.float32) * (1.0 - batch["terminals"])
        return batch

    def segment_starts(self, length: int) -> torch.Tensor:
        """Logical indices t with t + length <= end of t's episode."""
        self._index_episodes()
        if length not in self._segment_starts:
            t = torch.arange(self.size, device=self.device)
            starts = t[t + length <= self.episode_end]
            if len(starts) == 0:
                raise ValueError(f"no episode has {length} steps; the longest has "
                                 f"{int((self.episode_end - t).max())}")
            self._segment_starts[length] = starts
        return self._segment_starts[length]

    def sample_segments(self, batch_size: int, length: int) -> TensorDict:
        """[B, length] windows, each inside one episode (never across a terminal or timeout)."""
        self._check_nonempty()
        starts = self.segment_starts(length)
        start = starts[self.randint(len(starts), (batch_size,))]
        pos = start[:, None] + torch.arange(length, device=self.device)
        return self.gather(pos)

    def sample_segment_pairs(self, batch_size: int, length: int) -> TensorDict:
        """[B, 2, length]: two independent segments per row (for preference pairs)."""
        pair = torch.stack([self.sample_segments(batch_size, length),
                            self.sample_segments(batch_size, length)], dim=1)
        return pair

    def sample_goals(self, batch_size: int, strategy: str = "uniform", discount: float = 0.99,
                     goal_key: str = "next_observations") -> TensorDict:
        """Transitions with `goals` = goal_key at step j of the same episode, j >= t.

        With goal_key next_observations the goal is s_{j+1}: a state reached after s_t.
        uniform: j ~ U{t, ..., T-1}; geometric: j = min(t + k - 1, T-1), k ~ Geom(1 - discount).
        `goal_steps` = j - t + 1, the number of steps from s_t to the goal.
        """
        self._check_nonempty()
        self._index_episodes()
        start = self.randint(self.size, (batch_size,))
        last = self.episode_end[start] - 1
        if strategy == "uniform":
            span = (last - start + 1).to(torch.float32)
            j = start + (self.uniform((batch_size,)) * span).long().clamp_max(last - start)
        elif strategy == "geometric":
            k = torch.empty(batch_size, device=self.device).geometric_(
                1.0 - discount, generator=self.generator).long()
            j = torch.minimum(start + k - 1, last)
        else:
            raise ValueError(f"unknown goal strategy {strategy!r}; valid: uniform, geometric")
        batch = self.gather(start)
        batch["goals"] = self.storage[goal_key][self._physical(j)]
        batch["goal_steps"] = j - start + 1
        return batch

    def _check_nonempty(self) -> None:
        if self.size == 0:
            raise ValueError("cannot sample from an empty buffer")

    # ---- state for checkpoints ---------------------------------------------------------------
    def contents(self) -> dict[str, torch.Tensor]:
        """The stored transitions, oldest first, on the CPU (online runs checkpoint them)."""
        order = self._physical(torch.arange(self.size, device=self.device))
        return {key: self.storage[key][order].cpu() for key in KEYS}

    def rng_state(self) -> torch.Tensor:
        return self.generator.get_state()

    def set_rng_state(self, state: torch.Tensor) -> None:
        self.generator.set_state(state)
