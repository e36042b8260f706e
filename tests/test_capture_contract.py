"""The agent contract that CUDA-graph capture relies on, checked on the CPU for every registered
agent (so a new agent is checked the day it is registered, GPU or not):

- no host synchronisation inside sample + update: no .item(), float(), int(), Python branch
  on a tensor, no op whose output size depends on tensor values (nonzero, boolean-mask
  indexing, unique, masked_select), and no tensor made from host data (torch.tensor). A
  capture fails on them, or freezes what it read;
- Python-side state comes back to where it was after one update cycle (`update_cycle`),
  since a replayed graph cannot run the Python that would have changed it.

Both use rlcore.training.contract. That every offline agent's compiled update computes what its eager
one does is tests/test_compile.py's; so is what only a GPU can show (device copies inside an
update, the capture itself).
"""
import pytest
import torch

from rlcore.training.contract import HostSyncs, python_state
from rlcore.registry import AGENTS
from tests.conftest import agent_and_buffer

BATCH = 64
# on-policy agents learn in iterate(sample) between environment episodes: no captured update
UPDATES_FROM_BATCHES = [n for n in AGENTS.names()
                        if not (AGENTS.get(n).on_policy or AGENTS.get(n).simulates)]


def agent_on_cpu(name: str):
    """A small agent of 2 seeds (1 for online agents, which hold one) and its buffer."""
    return agent_and_buffer(name, torch.device("cpu"), 2 if AGENTS.get(name).multi_seed else 1)


def run_updates(agent, buffer, count: int) -> None:
    for _ in range(count):
        agent.update(agent.sample(buffer, BATCH))


@pytest.mark.parametrize("name", UPDATES_FROM_BATCHES)
def test_sample_and_update_never_wait_for_the_host(name):
    """Two update cycles after two cycles of warm-up (the capture's own warm-up calls)."""
    agent, buffer = agent_on_cpu(name)
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


@pytest.mark.parametrize("name", UPDATES_FROM_BATCHES)
def test_python_state_repeats_after_each_update_cycle(name):
    agent, buffer = agent_on_cpu(name)
    run_updates(agent, buffer, agent.update_cycle)       # attributes an update sets now exist
    before = python_state(agent)
    run_updates(agent, buffer, agent.update_cycle)
    assert python_state(agent) == before


def test_the_python_state_check_sees_a_python_counter():
    agent, buffer = agent_on_cpu("bc")
    update = agent.update

    def counting_update(batch):
        agent.calls = getattr(agent, "calls", 0) + 1     # what a replayed graph would not do
        return update(batch)

    agent.update = counting_update
    run_updates(agent, buffer, 1)
    before = python_state(agent)
    run_updates(agent, buffer, 1)
    assert python_state(agent) != before
