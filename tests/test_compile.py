"""torch.compile of an update computes what the eager update computes (CPU)."""
import pytest
import torch
from torch._inductor import config as inductor_config

from rlcore.training.compile import (CapturedUpdates, batch_update, compiled_update, make_capturable,
                             resolve_mode, resolve_updates_per_call, update_step)
from rlcore.errors import ConfigError
from rlcore.registry import AGENTS
from tests.conftest import two_identical as identical_pair

# Random draws inside an update, off where two agents draw from one generator in turn (so each
# sees other numbers) and inductor's own random streams would differ from eager's.
NO_DRAWS = {"td3bc": ["agent.policy_noise=0"], "fdvl": ["agent.random_actions=0"]}


def two_identical(agent: str, device: torch.device, seeds: int = 1, draws: bool = False):
    return identical_pair(agent, device, seeds, overrides=() if draws else NO_DRAWS.get(agent, ()))


def test_auto_mode_compiles_on_cuda_and_long_cpu_runs_only(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    assert resolve_mode("auto", cpu, 1000) == "eager"
    assert resolve_mode("auto", cpu, 1_000_000) == "compile"
    assert resolve_mode("auto", cuda, 1000) == "cudagraphs"
    assert resolve_mode("compile", cuda, 10) == "compile"   # asked for
    assert resolve_mode("eager", cuda, 10**6) == "eager"
    with pytest.raises(ConfigError, match="valid: auto, eager, compile, cudagraphs"):
        resolve_mode("turbo", cpu, 10)
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        resolve_mode("cudagraphs", cpu, 10)
    monkeypatch.setattr("shutil.which", lambda name: None)   # no C++ compiler
    assert resolve_mode("auto", cpu, 1_000_000) == "eager"
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        resolve_mode("compile", cpu, 10)


def test_updates_per_call_fits_the_agent_cycle_and_the_trainer_intervals():
    intervals = [1_000_000, 0, 1000, 5000, 50000]      # steps left, start, log, eval, checkpoint
    assert resolve_updates_per_call("auto", "eager", 2, intervals) == 1
    assert resolve_updates_per_call("auto", "cudagraphs", 2, intervals) == 20
    assert resolve_updates_per_call("auto", "cudagraphs", 2, [30, 0, 100, 100, 100]) == 10
    assert resolve_updates_per_call(10, "cudagraphs", 2, intervals) == 10
    with pytest.raises(ConfigError, match="whole update cycles of this agent \\(2 updates"):
        resolve_updates_per_call(5, "cudagraphs", 2, intervals)
    with pytest.raises(ConfigError, match="\\[1000, 5000\\] are not multiples of 3\\); use a divisor of 1000"):
        resolve_updates_per_call(3, "eager", 1, [3000, 0, 1000, 5000, 3000])
    with pytest.raises(ConfigError, match="no common multiple of 3"):
        resolve_updates_per_call("auto", "cudagraphs", 3, [1000, 0, 1000, 1000, 1000])
    with pytest.raises(ConfigError, match="valid: auto or an integer >= 1"):
        resolve_updates_per_call(0, "eager", 1, intervals)


def test_several_updates_per_call_are_the_single_updates_averaged():
    """TD3+BC, 4 updates per call: the critic metric averages 4 updates, the delayed actor's
    the 2 that made one, and the parameters end where 8 single calls leave them."""
    (single, buffer_1), (grouped, buffer_4) = two_identical("td3bc", torch.device("cpu"))
    one = update_step(single, buffer_1, 128, "eager", 1)
    four = update_step(grouped, buffer_4, 128, "eager", 4)
    singles, groups = [one() for _ in range(8)], [four() for _ in range(2)]
    for i, group in enumerate(groups):
        block = singles[4 * i: 4 * i + 4]
        for key, value in group.items():
            made = [m[key] for m in block if key in m]
            assert len(made) == (4 if key == "critic_loss" else 2), key
            torch.testing.assert_close(value, torch.stack(made).mean(0), rtol=1e-5, atol=1e-7)
    for p, q in zip(single.parameters(), grouped.parameters()):
        assert torch.equal(p, q)


def check_compiled_matches_eager(mode: str, device: torch.device, seeds: int = 1, agent="odice",
                                 steps: int = 3, metric_atol: float = 1e-6, draws: bool = False):
    (eager, buffer), (compiled, _) = two_identical(agent, device, seeds, draws)
    batches = [eager.sample(buffer, 128) for _ in range(steps)]
    update = compiled_update(compiled, mode)
    with inductor_config.patch(fallback_random=True):   # random draws from eager's generator
        for i, batch in enumerate(batches):
            torch.manual_seed(i)
            m_eager = eager.update(batch)
            torch.manual_seed(i)
            m_compiled = update(batch)
            assert m_compiled.keys() == m_eager.keys()
            for key in m_eager:
                torch.testing.assert_close(
                    m_compiled[key], m_eager[key], rtol=1e-4, atol=metric_atol,
                    msg=lambda m, k=key, i=i: f"update {i}, {k}: {m}")
            if i == steps // 2:
                compiled_so_far = torch._dynamo.utils.counters["stats"]["unique_graphs"]
    if steps > 2:   # once every variant is seen, later updates reuse them (no recompile per call)
        assert torch._dynamo.utils.counters["stats"]["unique_graphs"] == compiled_so_far
    # every network took the same optimizer steps (a skipped step differs by ~lr = 2e-4)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5, msg=name)
    assert all(len(opt.state) > 0 for opt in compiled.optimizers().values())


@pytest.mark.slow
def test_compiled_odice_update_matches_eager():
    check_compiled_matches_eager("compile", torch.device("cpu"))


@pytest.mark.slow
def test_compiled_td3bc_matches_eager_through_both_phases_without_falling_back():
    """TD3's delayed actor: 12 compiled updates (both phases, Adam's first steps) agree with
    eager ones, compile nothing new after the first 6, and never fall back to eager."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    check_compiled_matches_eager("compile", torch.device("cpu"), agent="td3bc", steps=12)
    assert not any("recompile limit" in k for k in counters["unimplemented"])


@pytest.mark.slow
def test_compiled_a2pr_matches_eager_and_stops_compiling_once_both_phases_are_seen():
    """A2PR's delayed actor and its VAE's random latents (drawn from eager's generator)."""
    check_compiled_matches_eager("compile", torch.device("cpu"), agent="a2pr", steps=12)


# Compared above, with their phase and recompile checks: O-DICE (whose class odice_il shares),
# TD3+BC and A2PR. Every other offline agent, a new one too, is compared here.
COMPARED_ABOVE = ("odice", "odice_il", "td3bc", "a2pr")


@pytest.mark.slow
@pytest.mark.parametrize("agent", [n for n in AGENTS.names()
                                   if AGENTS.get(n).multi_seed and n not in COMPARED_ABOVE])
def test_compiled_update_matches_eager_for_every_other_offline_agent(agent):
    """3 updates, 2 seeds; f-DVL's uniform actions come from eager's generator."""
    check_compiled_matches_eager("compile", torch.device("cpu"), seeds=2, agent=agent,
                                 metric_atol=1e-5, draws=True)


needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@needs_cuda
def test_cuda_compiled_update_matches_eager_with_several_seeds():
    check_compiled_matches_eager("compile", torch.device("cuda"), seeds=4)


def compare_calls(one, graphed, calls: int, **tolerance) -> None:
    """Each call of `graphed` (2 updates) against two calls of `one` (1 update each)."""
    for call in range(calls):
        singles, group = [one(), one()], graphed()
        for key, value in group.items():
            made = torch.stack([m[key] for m in singles if key in m]).float().mean(0)
            torch.testing.assert_close(value, made, **tolerance,
                                       msg=lambda m, c=call, k=key: f"call {c}, {k}: {m}")


@needs_cuda
@pytest.mark.parametrize("agent", ["odice", "td3bc", "iql", "fdvl", "recoil"])
def test_captured_updates_replay_exactly_what_eager_updates_compute(agent):
    """Eager updates captured as a CUDA graph, 2 per call, 4 seeds: the warm-up calls, the
    capturing call and the replays draw the batches eager sampling draws and take the same
    optimizer steps, up to rounding. IQL, f-DVL and ReCOIL scale their actor's step by a
    device-side cosine schedule, which eager capture sees as it is (no compiler around it)."""
    (eager, buffer_e), (captured, buffer_c) = two_identical(agent, torch.device("cuda"), seeds=4)
    make_capturable(eager)                     # the same capturable Adam on both sides
    one = update_step(eager, buffer_e, 128, "eager", 1)
    graphed = CapturedUpdates(update_step(captured, buffer_c, 128, "eager", 2), captured,
                              generator=buffer_c.generator)
    compare_calls(one, graphed, 5, rtol=1e-5, atol=1e-6)   # 2 warm-up, 1 capture, 2 replays
    assert graphed.graph is not None
    for (name, p), q in zip(eager.named_parameters(), captured.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
    assert torch.equal(buffer_e.rng_state(), buffer_c.rng_state())   # replays advanced the sampler


@needs_cuda
@pytest.mark.parametrize("adam", ["fused", "foreach"])
@pytest.mark.parametrize("agent", ["odice", "td3bc", "recoil"])
def test_cudagraphs_mode_captures_the_compiled_update(agent, adam):
    (eager, buffer_e), (captured, buffer_c) = two_identical(agent, torch.device("cuda"), seeds=4)
    make_capturable(eager, adam)
    one = update_step(eager, buffer_e, 128, "eager", 1)
    graphed = update_step(captured, buffer_c, 128, "cudagraphs", 2, adam)
    compare_calls(one, graphed, 4, rtol=1e-4, atol=1e-5)
    assert graphed.graph is not None
    for (name, p), q in zip(eager.named_parameters(), captured.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5, msg=name)


@needs_cuda
@pytest.mark.parametrize("compiled", [False, True])
def test_captured_online_update_copies_each_batch_in_and_matches_eager(compiled):
    """SAC (online, its buffer grows): the update alone is captured; each call's batch, drawn
    outside, is copied into the graph's input. Reseeding before each call gives both sides
    the same action noise, so the replays must take the eager steps. Compiled, inductor must
    draw that noise with eager's generator (`fallback_random`), not its own."""
    (eager, buffer), (captured, _) = two_identical("sac", torch.device("cuda"))
    make_capturable(eager)
    graphed = (batch_update(captured, "cudagraphs") if compiled
               else CapturedUpdates(captured.update, captured))
    # (a context, not monkeypatch: undoing a monkeypatch of inductor's config deletes the option)
    with inductor_config.patch(fallback_random=compiled):
        for call in range(5):                      # 2 warm-up, 1 capture, 2 replays
            batch = eager.sample(buffer, 128)
            torch.cuda.manual_seed(call)
            expected = eager.update(batch)
            torch.cuda.manual_seed(call)
            got = graphed(batch)
            for key, value in expected.items():
                torch.testing.assert_close(got[key], value, rtol=1e-5, atol=1e-6,
                                           msg=lambda m, c=call, k=key: f"call {c}, {k}: {m}")
    assert graphed.graph is not None
    for (name, p), q in zip(eager.named_parameters(), captured.parameters()):
        torch.testing.assert_close(q, p, rtol=1e-5, atol=1e-6, msg=name)
