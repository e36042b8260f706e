import numpy as np
import pytest
import torch

from rlcore.agent import Spec
from rlcore.bench import synthetic_arrays
from rlcore.training.buffer import Buffer
from rlcore.config import load_config
from rlcore.data import from_arrays
from rlcore.registry import AGENTS
from rlcore.training.trainer import build_agent


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path, monkeypatch):
    """Generated and downloaded datasets go to a per-test folder, never the user's cache."""
    monkeypatch.setenv("RLCORE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(tmp_path / "minari"))
    torch.manual_seed(0)


def episodes_dataset(lengths, obs_dim=3, action_dim=2, terminal_last=None, seed=0, name="toy"):
    """Episodes of the given lengths; observation[:, 0] holds the global step index and
    observation[:, 1] the episode index, so tests can check where samples came from."""
    rng = np.random.default_rng(seed)
    n = sum(lengths)
    obs = rng.standard_normal((n, obs_dim)).astype(np.float32)
    obs[:, 0] = np.arange(n)
    obs[:, 1] = np.repeat(np.arange(len(lengths)), lengths)
    nxt = obs.copy()
    nxt[:, 0] += 0.5  # s' of step t is tagged t + 0.5
    terminals = np.zeros(n, bool)
    timeouts = np.zeros(n, bool)
    ends = np.cumsum(lengths) - 1
    for k, end in enumerate(ends):
        if terminal_last is not None and terminal_last[k]:
            terminals[end] = True
        else:
            timeouts[end] = True
    return from_arrays(name, {"observations": obs, "next_observations": nxt,
                              "actions": rng.uniform(-1, 1, (n, action_dim)).astype(np.float32),
                              "rewards": rng.standard_normal(n).astype(np.float32),
                              "terminals": terminals, "timeouts": timeouts})


def bandit_dataset(n: int = 2000):
    """One-step episodes: half take a = +0.5 (r = 1), half a = -0.5 (r = 0), from 4-dim states.
    Cloning answers the mean action 0; an agent that uses the rewards moves toward +0.5."""
    g = torch.Generator().manual_seed(0)
    good = torch.rand(n, generator=g) < 0.5
    obs = torch.randn(n, 4, generator=g)
    actions = torch.where(good, 0.5, -0.5)[:, None].expand(n, 2).contiguous()
    return from_arrays("bandit", {"observations": obs.numpy(), "next_observations": obs.numpy(),
                                  "actions": actions.numpy(), "rewards": good.float().numpy(),
                                  "terminals": torch.ones(n, dtype=torch.bool).numpy()})


# Small networks for tests that build agents by name; an agent not named here gets its defaults.
SMALL = {"odice": ["agent.policy_hidden=[64,64]", "agent.value_hidden=[64,64]"],
         "odice_il": ["agent.policy_hidden=[64,64]", "agent.value_hidden=[64,64]"],
         "a2pr": ["agent.actor_hidden=[64,64]", "agent.critic_hidden=[64,64]",
                  "agent.vae_hidden=[64,64]"],
         **{name: ["agent.hidden=[64,64]"]
            for name in ("td3bc", "recoil", "iql", "fdvl", "bc", "sac", "smore", "rvs")},
         "gcbc": ["agent.actor_hidden=[64,64]"],
         # CPL's stage after 3 updates; dropout off (inductor's dropout draws from its own generator)
         "cpl": ["agent.hidden=[64,64]", "agent.dropout=0.0", "agent.bc_steps=3", "agent.batch_size=8"],
         "sft": ["agent.hidden=[64,64]", "agent.dropout=0.0", "agent.batch_size=8"],
         "bc_all": ["agent.hidden=[64,64]", "agent.dropout=0.0", "agent.batch_size=8"],
         "piql": ["agent.hidden=[64,64]", "agent.batch_size=8"],
         "pearl": ["agent.hidden=[64,64]", "agent.batch_size=8"],
         # dropout off: inductor's dropout draws from its own generator, not eager's
         "gcdt": ["agent.embed_dim=32", "agent.blocks=2", "agent.dropout=0.0"],
         **{name: ["agent.actor_hidden=[64,64]", "agent.value_hidden=[64,64]"]
            for name in ("gcivl", "gciql", "hiql")}}


def agent_and_buffer(agent: str, device: torch.device, seeds: int = 1, transitions: int = 2000,
                     overrides=()):
    """A small agent of `seeds` seeds and a buffer of synthetic Hopper-shaped transitions whose
    last tenth is the "expert" subset (imitation agents sample it)."""
    cfg = load_config([f"agent={agent}", *SMALL.get(agent, []), *overrides])
    buffer = Buffer(11, 3, transitions, device)
    buffer.add({k: torch.as_tensor(v) for k, v in synthetic_arrays(transitions, 11, 3).items()})
    buffer.subsets["expert"] = torch.arange(transitions * 9 // 10, transitions, device=device)
    goal_dim = 11 if getattr(AGENTS.get(agent), "goal_conditioned", False) else 0  # goals: states
    if getattr(AGENTS.get(agent), "learns_from_preferences", False):    # 8-step segments, by return
        from rlcore.data.preferences import Labelling, PreferenceSampler, make_preferences
        data = from_arrays("synthetic", synthetic_arrays(transitions, 11, 3))
        prefs = make_preferences(data, Labelling(labeller="return", segments=200, segment_length=8),
                                 progress=False)
        buffer.preferences = PreferenceSampler(buffer, prefs)
    return build_agent(cfg, Spec(11, 3, goal_dim), device, seeds=list(range(seeds))), buffer


def two_identical(agent: str, device: torch.device, seeds: int = 1, transitions: int = 2000,
                  overrides=()):
    """Two agents with the same parameters, each with its own copy of one buffer (same seed)."""
    pairs = [agent_and_buffer(agent, device, seeds, transitions, overrides) for _ in range(2)]
    pairs[1][0].load_state_dict(pairs[0][0].state_dict())
    return pairs
