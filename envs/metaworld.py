"""Meta-World v3 tasks (metaworld 3.1.1) and CPL's preference data, made here with no network.

Env `rlcore/MetaWorld-v3` (gym_kwargs `task`, `max_episode_steps`): one task from
`ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE`, with `_freeze_rand_vec = False` so every reset draws new
object and goal positions (as CPL's MetaWorldSawyerEnv). Episodes last 250 steps, CPL's horizon
(Meta-World's own limit is 500); nothing terminates early. `info["success"]` is Meta-World's
per-step flag; an episode succeeds when it is set at any step (CPL's evaluation keeps its max;
door-open's flag holds for a few steps only). Observations are Meta-World's 39-d (CPL drops the
previous frame's hand and gripper, 4 of them, for 35-d; the standard 39-d is kept here), actions
4-d in [-1, 1], rewards Meta-World v3's dense shaped reward in [0, 10] (CPL divides by 10; the
scale does not change a label or a success). CPL's wrapper also moves the hand to a random
start (uniform within +-(0.25, 0.15, 0.2) of Meta-World's) at each reset; here the arm starts
where Meta-World puts it, so starts vary by object and goal positions only.

Data `metaworld-<task>-pref`: episodes of the task's scripted expert
(`metaworld.policies.ENV_POLICY_MAP`) with Gaussian action noise N(0, 0.3^2), clipped to [-1, 1]:
CPL's recipe (`create_dataset.py --noise 0.3`, file `mw_<task>_ep2500_n0.3`) with the scripted
policy in place of CPL's SAC oracle, which is not public. 2,500 episodes (625,000 transitions) by
default, as CPL's file name says. Preference labels are made from these episodes by
rlcore.data.preferences, once per labelling, without rolling the env again.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass

import gymnasium as gym
import numpy as np

from rlcore.data import OfflineDataset, from_arrays
from rlcore.errors import UserError
from rlcore.logger import progress_bar
from rlcore.registry import register_dataset

GYM_ID = "rlcore/MetaWorld-v3"
HORIZON = 250
TASKS = ("drawer-open", "button-press-topdown", "plate-slide", "sweep-into", "door-open",
         "bin-picking")


def import_metaworld():
    """metaworld, or a UserError naming the extra that installs it."""
    warnings.filterwarnings("ignore", message=".*precision lowered by casting to float32.*")
    warnings.filterwarnings("ignore", message=".*Constant\\(s\\) may be too high.*")
    try:
        import metaworld  # noqa: F401
        import metaworld.policies  # noqa: F401
    except ImportError:
        raise UserError("Meta-World tasks need the prefs extra: pip install -e \".[prefs]\" "
                        "(metaworld==3.1.1, which pins mujoco 3.3.0)") from None
    return metaworld


class MetaWorldTask(gym.Env):
    """One Meta-World v3 task with randomised object and goal positions, `max_episode_steps`
    steps per episode, float32 observations and the success flag in `info`."""

    metadata = {"render_modes": []}

    def __init__(self, task: str = "drawer-open", max_episode_steps: int = HORIZON):
        import_metaworld()
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE as ENVS
        key = f"{task}-v3-goal-observable"
        if key not in ENVS:
            names = sorted(k.removesuffix("-v3-goal-observable") for k in ENVS)
            raise UserError(f"unknown Meta-World task {task!r}; valid: {', '.join(names)}")
        if not 1 <= int(max_episode_steps) <= 500:
            raise UserError(f"max_episode_steps={max_episode_steps}; Meta-World episodes last "
                            "1-500 steps")
        self.task, self.horizon = task, int(max_episode_steps)
        self._env = ENVS[key]()
        self._env._freeze_rand_vec = False
        self.observation_space = gym.spaces.Box(-np.inf, np.inf, (39,), np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self._t = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        obs, info = self._env.reset(seed=seed)
        self._t = 0
        return obs.astype(np.float32), info

    def step(self, action):
        obs, reward, _, _, info = self._env.step(np.asarray(action, np.float32))
        self._t += 1
        return obs.astype(np.float32), float(reward), False, self._t >= self.horizon, info

    def expert(self):
        """The task's scripted policy: obs [39] -> action [4]."""
        from metaworld.policies import ENV_POLICY_MAP
        return ENV_POLICY_MAP[f"{self.task}-v3"]().get_action

    def close(self):
        self._env.close()


gym.register(GYM_ID, entry_point="rlcore.envs.metaworld:MetaWorldTask", disable_env_checker=True)


@dataclass(frozen=True)
class MetaWorldPreferenceRecipe:
    """Noisy scripted-expert episodes of one task (the module docstring)."""
    name: str
    task: str
    noise: float = 0.3
    episode_steps: int = HORIZON
    gym_id: str = GYM_ID
    preference_labels: tuple = ("dense", "sparse")   # `rlcore data make` labels both (regret)

    @property
    def gym_kwargs(self) -> dict:
        return {"task": self.task, "max_episode_steps": self.episode_steps}

    @property
    def default_transitions(self) -> int:
        return 2500 * self.episode_steps

    @property
    def description(self) -> str:
        return (f"Meta-World v3 {self.task}: the scripted expert with N(0, {self.noise}^2) action "
                f"noise, clipped, {self.episode_steps}-step episodes (CPL's recipe)")

    def make(self, transitions: int, seed: int, progress: bool = True) -> OfflineDataset:
        env = MetaWorldTask(self.task, self.episode_steps)
        expert, rng = env.expert(), np.random.default_rng(seed)
        episodes = max(1, transitions // self.episode_steps)
        columns = {k: [] for k in ("observations", "actions", "rewards", "next_observations",
                                   "successes")}
        bar = progress_bar(total=episodes, desc=f"making {self.name}", unit="ep", disable=not progress)
        for _ in range(episodes):
            obs, _ = env.reset(seed=int(rng.integers(2 ** 31)))
            for _ in range(self.episode_steps):
                action = np.clip(expert(obs) + self.noise * rng.standard_normal(4), -1, 1)
                nxt, reward, _, _, info = env.step(action)
                for key, value in zip(columns, (obs, action, reward, nxt, info["success"])):
                    columns[key].append(value)
                obs = nxt
            bar.update(1)
        bar.close()
        env.close()
        arrays = {k: np.asarray(v, np.float32) for k, v in columns.items()}
        n = len(arrays["rewards"])
        timeouts = np.zeros(n, bool)
        timeouts[self.episode_steps - 1::self.episode_steps] = True
        success = arrays.pop("successes").reshape(episodes, -1).max(1).mean()
        return from_arrays(self.name, {**arrays, "terminals": np.zeros(n, bool), "timeouts": timeouts},
                           {"recipe": self.description, "episode_success_rate": float(success)})


for _task in TASKS:
    register_dataset(f"metaworld-{_task}-pref")(MetaWorldPreferenceRecipe(f"metaworld-{_task}-pref", _task))
