"""Goal-conditioned datasets made here by OGBench's own recipes (data_gen_scripts/), no network.

- `pointmaze-{medium,large}-navigate`: OGBench's oracle needs no learned policy. Each step the
  action is the unit vector toward the next cell of a breadth-first path to the goal
  (`env.unwrapped.get_oracle_subgoal`), plus N(0, 0.5^2) noise, clipped to [-1, 1]. Episodes of
  1,001 steps start in a random free cell; each time the goal is reached a new goal is drawn
  from the maze's vertex cells (corridor cells excluded), so one episode visits many goals.
- `pointmaze-{medium,large}-stitch`: episodes of 201 steps toward a goal 4 cells away (BFS
  distance) from a random start, which the point reaches and stays at. No episode crosses the
  maze: reaching the evaluation goals means stitching.
- `cube-single-play`: OGBench's CubePlanOracle (noise 0.1, smoothing 0.5) picks and places the
  cube at new targets for 1,001 steps; `cube-single-noisy`: CubeMarkovOracle (min_norm 0.4)
  with per-episode Gaussian action noise xi ~ U(0, 0.1) and 10% uniformly random actions.
- `<name>-val`: the validation split, a tenth of the size, from a separate seed stream (OGBench
  rolls its validation episodes after the training ones, same distribution).

Stored as OGBench stores them, converted as `ogbench.load_dataset(compact_dataset=False)` does:
an episode of T+1 observations gives T transitions (s_t, a_t, s_{t+1}); the last observation's
action has no next state and is dropped. Episode ends are time limits (`timeouts`), never
terminals: goal-conditioned agents compute their own rewards and masks from the sampled goals.
Sizes: OGBench's 1M transitions for the mazes (1,000 navigate episodes of 1,000 transitions;
5,000 stitch episodes of 200). The cube oracles run at about 1.6 ms per step here (27 min per
1M), so cube datasets default to 200,000 transitions (200 episodes): `--transitions 1000000`
(or `data.transitions=1000000`) makes OGBench's full size.
"""
from __future__ import annotations

import warnings
from collections import deque
from dataclasses import dataclass

import numpy as np

from rlcore.data import OfflineDataset, from_arrays
from rlcore.errors import UserError
from rlcore.logger import progress_bar
from rlcore.registry import register_dataset

VAL_SEED_OFFSET = 1_000_003


def import_ogbench():
    """ogbench, with its GL-less import warnings silenced (no display is needed for states), and
    its manipulation envs' float64 action bounds (rebuilt at every access) noted once, not at
    every oracle step."""
    warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32.*")
    warnings.filterwarnings("ignore", message=".*DISPLAY environment variable is missing.*")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            import ogbench  # noqa: F401  (registers the envs with Gymnasium)
        except ImportError:
            raise UserError("OGBench's goal-conditioned envs need the goals extra: "
                            "pip install -e \".[goals]\" (ogbench, dm_control==1.0.28, "
                            "scikit-learn)") from None
    return ogbench


def make_env(gym_id: str, **kwargs):
    import gymnasium as gym
    import_ogbench()
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*precision lowered.*")
        return gym.make(gym_id, **kwargs)


def episodes_to_dataset(name: str, episodes: list[tuple[np.ndarray, np.ndarray]],
                        metadata: dict) -> OfflineDataset:
    """[(observations [T+1, d], actions [T+1, a])] -> transitions, as ogbench.load_dataset."""
    obs = np.concatenate([o[:-1] for o, _ in episodes])
    nxt = np.concatenate([o[1:] for o, _ in episodes])
    actions = np.concatenate([a[:-1] for _, a in episodes])
    ends = np.zeros(len(obs), dtype=bool)
    ends[np.cumsum([len(o) - 1 for o, _ in episodes]) - 1] = True
    return from_arrays(name, {"observations": obs, "next_observations": nxt, "actions": actions,
                              "rewards": np.zeros(len(obs), np.float32),
                              "terminals": np.zeros(len(obs), bool), "timeouts": ends}, metadata)


def maze_cells(maze_map: np.ndarray) -> tuple[list, list]:
    """(all free cells, vertex cells): generate_locomaze.py's lists; a vertex cell is a free
    cell that is not the middle of a straight corridor."""
    cells, vertices = [], []
    for i in range(maze_map.shape[0]):
        for j in range(maze_map.shape[1]):
            if maze_map[i, j] != 0:
                continue
            cells.append((i, j))
            vertical = (maze_map[i - 1, j] == 0 and maze_map[i + 1, j] == 0
                        and maze_map[i, j - 1] == 1 and maze_map[i, j + 1] == 1)
            horizontal = (maze_map[i, j - 1] == 0 and maze_map[i, j + 1] == 0
                          and maze_map[i - 1, j] == 1 and maze_map[i + 1, j] == 1)
            if not (vertical or horizontal):
                vertices.append((i, j))
    return cells, vertices


def cells_at_distance(maze_map: np.ndarray, start: tuple, steps: int) -> list:
    """Free cells exactly `steps` moves from `start` (breadth-first, 4-neighbourhood)."""
    dist = {start: 0}
    queue, found = deque([start]), []
    while queue:
        i, j = queue.popleft()
        for di, dj in ((-1, 0), (0, -1), (1, 0), (0, 1)):
            n = (i + di, j + dj)
            if (0 <= n[0] < maze_map.shape[0] and 0 <= n[1] < maze_map.shape[1]
                    and maze_map[n] == 0 and n not in dist):
                dist[n] = dist[(i, j)] + 1
                queue.append(n)
                if dist[n] == steps:
                    found.append(n)
    return found


class OGBenchRecipe:
    """What OGBench's recipes share: the env (OGBench's registration first), and rolling
    `episodes` episodes out with `one_episode(env, rng) -> (observations, actions)`."""
    name: str
    gym_id: str
    description: str

    @property
    def gym_kwargs(self) -> dict:
        return {}

    def make_env(self):
        return make_env(self.gym_id)

    def roll_out(self, env, episodes: int, one_episode, rng, progress: bool) -> OfflineDataset:
        bar = progress_bar(total=episodes, desc=f"making {self.name}", unit="ep", disable=not progress)
        rolled = []
        for _ in range(episodes):
            obs, actions = one_episode(env, rng)
            rolled.append((np.asarray(obs, np.float32), np.asarray(actions, np.float32)))
            bar.update(1)
        bar.close()
        env.close()
        return episodes_to_dataset(self.name, rolled, {"recipe": self.description})


@dataclass(frozen=True)
class PointMazeRecipe(OGBenchRecipe):
    """generate_locomaze.py for the point agent (navigate or stitch)."""
    name: str
    maze: str                    # medium | large
    kind: str                    # navigate | stitch
    noise: float = 0.5
    val: bool = False

    @property
    def gym_id(self) -> str:
        return f"pointmaze-{self.maze}-v0"

    @property
    def episode_steps(self) -> int:
        return 1001 if self.kind == "navigate" else 201

    @property
    def default_transitions(self) -> int:
        return 100_000 if self.val else 1_000_000

    @property
    def description(self) -> str:
        what = ("a new vertex-cell goal each time one is reached" if self.kind == "navigate"
                else "a goal 4 cells from the start")
        return (f"OGBench's {self.kind} recipe on {self.gym_id}: BFS-subgoal direction + "
                f"N(0, {self.noise}^2) noise, {self.episode_steps}-step episodes, {what}"
                + ("; validation split" if self.val else ""))

    def make(self, transitions: int, seed: int, progress: bool = True) -> OfflineDataset:
        env = make_env(self.gym_id, terminate_at_goal=False, max_episode_steps=self.episode_steps)
        u = env.unwrapped
        rng = np.random.default_rng(seed + (VAL_SEED_OFFSET if self.val else 0))
        cells, vertices = maze_cells(u.maze_map)

        def one_episode(env, rng):
            init = cells[rng.integers(len(cells))]
            if self.kind == "navigate":
                goal = vertices[rng.integers(len(vertices))]
            else:
                near = cells_at_distance(u.maze_map, init, 4)
                goal = near[rng.integers(len(near))] if near else init
            ob, _ = env.reset(seed=int(rng.integers(2**31)),
                              options=dict(task_info=dict(init_ij=init, goal_ij=goal)))
            obs, actions, done = [], [], False
            while not done:
                subgoal, _ = u.get_oracle_subgoal(u.get_xy(), u.cur_goal_xy)
                direction = subgoal - u.get_xy()
                direction = direction / (np.linalg.norm(direction) + 1e-6)
                action = np.clip(direction + rng.normal(0, self.noise, 2), -1, 1)
                obs.append(ob)
                actions.append(action)
                ob, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
                if info["success"] and self.kind == "navigate":
                    u.set_goal(vertices[rng.integers(len(vertices))])
            return obs, actions

        return self.roll_out(env, max(1, transitions // (self.episode_steps - 1)), one_episode,
                             rng, progress)


@dataclass(frozen=True)
class CubeRecipe(OGBenchRecipe):
    """generate_manipspace.py for cube-single: play (plan oracle) or noisy (Markov oracle)."""
    name: str
    kind: str                    # play | noisy
    val: bool = False
    episode_steps: int = 1001
    gym_id: str = "cube-single-v0"

    @property
    def default_transitions(self) -> int:
        return 20_000 if self.val else 200_000

    @property
    def description(self) -> str:
        oracle = ("CubePlanOracle (noise 0.1, smoothing 0.5)" if self.kind == "play" else
                  "CubeMarkovOracle (min_norm 0.4, noise xi ~ U(0, 0.1), 10% random actions)")
        return (f"OGBench's {self.kind} recipe on {self.gym_id}: {oracle}, {self.episode_steps}-step "
                "episodes, a new target each time one is done" + ("; validation split" if self.val else ""))

    def make(self, transitions: int, seed: int, progress: bool = True) -> OfflineDataset:
        import_ogbench()
        with warnings.catch_warnings():          # GLFW's no-display notice: states need none
            warnings.simplefilter("ignore")
            from ogbench.manipspace.oracles.markov.cube_markov import CubeMarkovOracle
            from ogbench.manipspace.oracles.plan.cube_plan import CubePlanOracle
        env = make_env(self.gym_id, terminate_at_goal=False, mode="data_collection",
                       max_episode_steps=self.episode_steps)
        seed = seed + (VAL_SEED_OFFSET if self.val else 0)
        np.random.seed(seed)                     # the oracles draw from numpy's global generator
        rng = np.random.default_rng(seed)
        env.action_space.seed(seed)
        if self.kind == "play":
            oracle, p_random, noise = CubePlanOracle(env=env, noise=0.1, noise_smoothing=0.5), 0.0, 0.0
        else:
            oracle, p_random, noise = CubeMarkovOracle(env=env, min_norm=0.4), 0.1, 0.1

        def one_episode(env, rng):
            ob, info = env.reset(seed=int(rng.integers(2**31)))
            xi = rng.uniform(0, noise)
            oracle.reset(ob, info)
            obs, actions, done = [], [], False
            while not done:
                if rng.random() < p_random:
                    action = env.action_space.sample()
                else:
                    action = np.array(oracle.select_action(ob, info))
                    if self.kind == "noisy":
                        action = action + rng.normal(0, [xi, xi, xi, xi * 3, xi * 10], action.shape)
                action = np.clip(action, -1, 1)
                obs.append(ob)
                actions.append(action)
                ob, _, terminated, truncated, info = env.step(action)
                done = terminated or truncated
                if oracle.done:
                    new_ob, new_info = env.unwrapped.set_new_target(p_stack=0.0)
                    oracle.reset(new_ob, new_info)
            return obs, actions

        return self.roll_out(env, max(1, transitions // (self.episode_steps - 1)), one_episode,
                             rng, progress)


for maze in ("medium", "large"):
    for kind in ("navigate", "stitch"):
        for val in (False, True):
            name = f"pointmaze-{maze}-{kind}" + ("-val" if val else "")
            register_dataset(name)(PointMazeRecipe(name, maze, kind, val=val))
for kind in ("play", "noisy"):
    for val in (False, True):
        name = f"cube-single-{kind}" + ("-val" if val else "")
        register_dataset(name)(CubeRecipe(name, kind, val=val))
