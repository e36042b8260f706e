"""torch.compile of an update computes what the eager update computes (CPU)."""
import pytest
import torch

from rlcore.agent import Spec
from rlcore.bench import synthetic_arrays
from rlcore.buffer import Buffer
from rlcore.compile import compiled_update, resolve_mode
from rlcore.config import load_config
from rlcore.errors import ConfigError
from rlcore.trainer import build_agent


def test_auto_mode_compiles_on_cuda_and_long_cpu_runs_only(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    monkeypatch.setattr("shutil.which", lambda name: "/usr/bin/" + name)
    assert resolve_mode("auto", cpu, 1000) == "eager"
    assert resolve_mode("auto", cpu, 1_000_000) == "compile"
    assert resolve_mode("auto", cuda, 1000) == "compile"
    assert resolve_mode("eager", cuda, 10**6) == "eager"
    with pytest.raises(ConfigError, match="valid: auto, eager, compile, cudagraphs"):
        resolve_mode("turbo", cpu, 10)
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        resolve_mode("cudagraphs", cpu, 10)
    monkeypatch.setattr("shutil.which", lambda name: None)   # no C++ compiler
    assert resolve_mode("auto", cpu, 1_000_000) == "eager"
    with pytest.raises(ConfigError, match="needs a C\\+\\+ compiler"):
        resolve_mode("compile", cpu, 10)


SMALL = {"odice": ["agent.policy_hidden=[64,64]", "agent.value_hidden=[64,64]"],
         "td3bc": ["agent.hidden=[64,64]", "agent.policy_noise=0"]}  # compiled RNG streams differ


def check_compiled_matches_eager(mode: str, device: torch.device, seeds: int = 1, agent="odice",
                                 steps: int = 3):
    cfg = load_config([f"agent={agent}", *SMALL[agent]])
    arrays = synthetic_arrays(2000, 11, 3)
    buffer = Buffer(11, 3, 2000, device)
    buffer.add({k: torch.as_tensor(v) for k, v in arrays.items()})
    eager = build_agent(cfg, Spec(11, 3), device, seeds=list(range(seeds)))
    compiled = build_agent(cfg, Spec(11, 3), device, seeds=list(range(seeds)))
    compiled.load_state_dict(eager.state_dict())
    batches = [eager.sample(buffer, 128) for _ in range(steps)]
    update = compiled_update(compiled, mode)
    for i, batch in enumerate(batches):
        m_eager, m_compiled = eager.update(batch), update(batch)
        for key in m_eager:
            torch.testing.assert_close(m_compiled[key], m_eager[key], rtol=1e-4, atol=1e-6)
    # every network took the same optimizer steps (a skipped step differs by ~lr = 2e-4)
    for (name, p), q in zip(eager.named_parameters(), compiled.parameters()):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-5, msg=name)
    assert all(len(opt.state) > 0 for opt in compiled.optimizers().values())


@pytest.mark.slow
def test_compiled_odice_update_matches_eager():
    check_compiled_matches_eager("compile", torch.device("cpu"))


@pytest.mark.slow
def test_compiled_td3bc_matches_eager_through_both_phases_without_falling_back():
    """TD3's delayed actor: 12 compiled updates (both phases, Adam's first steps) stay compiled
    (no recompile-limit fallback to eager) and agree with eager ones."""
    from torch._dynamo.utils import counters
    torch._dynamo.reset()
    counters.clear()
    check_compiled_matches_eager("compile", torch.device("cpu"), agent="td3bc", steps=12)
    assert not any("recompile limit" in k for k in counters["unimplemented"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA graphs need a GPU")
@pytest.mark.parametrize("mode", ["compile", "cudagraphs"])
def test_cuda_update_matches_eager_with_several_seeds(mode):
    check_compiled_matches_eager(mode, torch.device("cuda"), seeds=4)

