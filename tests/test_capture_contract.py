"""The agent contract that CUDA-graph capture relies on, checked on the CPU for every registered
agent (so a new agent is checked the day it is registered, GPU or not):

- no host synchronisation inside sample + update: no .item(), float(), int(), Python branch
  on a tensor, no op whose output size depends on tensor values (nonzero, boolean-mask
  indexing, unique, masked_select), and no tensor made from host data (torch.tensor). A
  capture fails on them, or freezes what it read;
- Python-side state comes back to where it was after one update cycle (`update_cycle`),
  since a replayed graph cannot run the Python that would have changed it;
- under torch.compile, several updates compute what the eager ones compute.

The first two use rlcore.contract. What only a GPU can show (device copies inside an update,
the capture itself) is in tests/test_compile.py's CUDA tests.
"""
import pytest
import torch
from torch._inductor import config as inductor_config

from rlcore.agent import Spec
from rlcore.bench import synthetic_arrays
from rlcore.buffer import Buffer
from rlcore.compile import compiled_update
from rlcore.config import load_config
from rlcore.contract import HostSyncs, python_state
from rlcore.registry import AGENTS
from rlcore.trainer import build_agent

SMALL = {"odice": ["agent.policy_hidden=[32,32]", "agent.value_hidden=[32,32]"],
         "odice_il": ["agent.policy_hidden=[32,32]", "agent.value_hidden=[32,32]"],
         "a2pr": ["agent.actor_hidden=[32,32]", "agent.critic_hidden=[32,32]",
                  "agent.vae_hidden=[32,32]"]}         # every other agent: agent.hidden
OBS, ACT, N, BATCH = 11, 3, 2000, 64


def agent_and_buffer(name: str):
    """A small 2-seed agent (1 for online agents) and a buffer of synthetic transitions whose
    last tenth is the "expert" subset (imitation agents sample it)."""
    cfg = load_config([f"agent={name}", *SMALL.get(name, ["agent.hidden=[32,32]"])])
    arrays = synthetic_arrays(N, OBS, ACT)
    buffer = Buffer(OBS, ACT, N, "cpu")
    buffer.add({k: torch.as_tensor(v) for k, v in arrays.items()})
    buffer.subsets["expert"] = torch.arange(N * 9 // 10, N)
    seeds = [0, 1] if AGENTS.get(name).multi_seed else [0]
    return build_agent(cfg, Spec(OBS, ACT), torch.device("cpu"), seeds=seeds), buffer


def run_updates(agent, buffer, count: int) -> None:
    for _ in range(count):
        agent.update(agent.sample(buffer, BATCH))


@pytest.mark.parametrize("name", AGENTS.names())
def test_sample_and_update_never_wait_for_the_host(name):
    """Two update cycles after two cycles of warm-up (the capture's own warm-up calls)."""
    agent, buffer = agent_and_buffer(name)
    run_updates(agent, buffer, 2 * agent.update_cycle)
    with HostSyncs() as syncs:
        run_updates(agent, buffer, 2 * agent.update_cycle)
    assert not syncs.found, f"{name} synchronises with the host inside its update:\n" + \
        "\n".join(sorted(set(syncs.found)))


def test_the_host_sync_check_catches_a_read_a_branch_a_mask_and_host_data():
    x = torch.randn(8)
    with HostSyncs() as syncs:
        _ = x.sum().item()
    assert len(syncs.found) == 1 and "_local_scalar_dense" in syncs.found[0]
    assert f"{__file__}:" in syncs.found[0]              # names the caller's line
    with HostSyncs() as syncs:
        if x.max() > 0:
            pass
    assert len(syncs.found) == 1
    with HostSyncs() as syncs:
        _ = x[x > 0]
    assert len(syncs.found) == 1 and "aten.index" in syncs.found[0]
    with HostSyncs() as syncs:
        _ = x * torch.tensor(2.0)                          # host data: a copy on a GPU
    assert len(syncs.found) == 1 and "lift_fresh" in syncs.found[0]
    index = torch.tensor([1, 2])
    with HostSyncs() as syncs:
        _ = torch.where(x > 0, x, 0.0).sum() * x[index] + torch.full((2,), 3.0)
    assert syncs.found == []


@pytest.mark.parametrize("name", AGENTS.names())
def test_python_state_repeats_after_each_update_cycle(name):
    agent, buffer = agent_and_buffer(name)
    run_updates(agent, buffer, agent.update_cycle)       # attributes an update sets now exist
    before = python_state(agent)
    run_updates(agent, buffer, agent.update_cycle)
    assert python_state(agent) == before


def test_the_python_state_check_sees_a_python_counter():
    agent, buffer = agent_and_buffer("bc")
    update = agent.update

    def counting_update(batch):
        agent.calls = getattr(agent, "calls", 0) + 1     # what a replayed graph would not do
        return update(batch)

    agent.update = counting_update
    run_updates(agent, buffer, 1)
    before = python_state(agent)
    run_updates(agent, buffer, 1)
    assert python_state(agent) != before


# test_compile.py compares O-DICE (whose class odice_il shares), TD3+BC and A2PR, with their
# recompile checks; every other offline agent, a new one too, is compared here.
COMPARED_IN_TEST_COMPILE = ("odice", "odice_il", "td3bc", "a2pr")
COMPARED_HERE = [n for n in AGENTS.names()
                 if AGENTS.get(n).multi_seed and n not in COMPARED_IN_TEST_COMPILE]


@pytest.mark.slow
@pytest.mark.parametrize("name", COMPARED_HERE)
def test_compiled_updates_match_eager(name):
    """Two update cycles plus one, 2 seeds, the same batches: metrics and parameters agree up to
    rounding. Random draws inside an update (f-DVL's uniform actions) come from eager's
    generator under inductor's `fallback_random`, in the same order."""
    eager, buffer = agent_and_buffer(name)
    compiled, _ = agent_and_buffer(name)
    compiled.load_state_dict(eager.state_dict())
    update = compiled_update(compiled, "compile")
    with inductor_config.patch(fallback_random=True):
        for i in range(2 * eager.update_cycle + 1):
            batch = eager.sample(buffer, BATCH)
            torch.manual_seed(i)
            expected = eager.update(batch)
            torch.manual_seed(i)
            got = update(batch)
            assert got.keys() == expected.keys()
            for key in expected:
                torch.testing.assert_close(got[key], expected[key], rtol=1e-4, atol=1e-5,
                                           msg=lambda m, k=key, i=i: f"update {i}, {k}: {m}")
    for (path, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5, msg=path)
