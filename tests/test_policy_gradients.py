"""The policy-gradient family (Fatkhullin et al., ICML 2023): the Hessian-vector product, the
methods' steps and schedules against their formulas, the episode sampler and baseline against
garage's definitions, and the on-policy loop end to end on CartPole (learning, resume, errors)."""
import json
import math

import numpy as np
import pytest
import torch

from rlcore.agent.policy_gradient import LinearFeatureBaseline, discounted_returns
from rlcore.config import load_config
from rlcore.data.episodes import EpisodeBatch, EpisodeSampler
from rlcore.errors import ConfigError
from rlcore.training.checkpoint import latest_checkpoint, load_checkpoint
from rlcore.training.trainer import build_agent, env_spec, train

CPU = torch.device("cpu")
TINY = ["agent.discrete_hidden=[8]", "agent.hidden=[8]"]


def make(agent: str, env: str = "cartpole", *overrides):
    cfg = load_config([f"agent={agent}", f"env={env}", *TINY, *overrides])
    return build_agent(cfg, env_spec(cfg), CPU)


def cartpole_batch(agent, steps: int = 300, seed: int = 0) -> EpisodeBatch:
    sampler = EpisodeSampler("CartPole-v1", 200, CPU)
    try:
        return sampler(agent.explore, steps, seed)
    finally:
        sampler.close()


def in_double(agent, batch: EpisodeBatch):
    agent.double()
    batch.observations, batch.rewards = batch.observations.double(), batch.rewards.double()
    return agent, batch


# -- the Hessian-vector product --------------------------------------------------------------------

def test_hessian_vector_product_matches_a_finite_difference_and_double_backward():
    agent, batch = in_double(*(lambda a: (a, cartpole_batch(a)))(make("nharpg", "cartpole",
                                                                       "agent.likelihood_term=none")))
    theta = agent.theta
    v = torch.randn(theta.shape, dtype=theta.dtype, generator=torch.Generator().manual_seed(1))
    hv = agent.hessian_vector_product(batch, theta, v)
    eps = 1e-5
    finite = (agent.gradient(batch, theta + eps * v) - agent.gradient(batch, theta - eps * v)) / (2 * eps)
    assert torch.allclose(hv, finite, rtol=1e-6, atol=1e-9)
    leaf = theta.clone().requires_grad_(True)
    g, = torch.autograd.grad(agent.surrogate(leaf, batch, agent.advantages(batch))[0], leaf,
                             create_graph=True)
    twice, = torch.autograd.grad(g @ v, leaf)
    assert torch.allclose(hv, twice, rtol=1e-10, atol=1e-12)
    assert hv.norm() > 0


@pytest.mark.parametrize("term", ["batch_mean", "trajectory", "authors"])
def test_the_likelihood_term_of_B_by_autograd(term):
    """batch_mean: grad Phi <grad mean log pi, v>; authors: minus that; trajectory:
    1/n sum_i grad Phi_i <grad log p(tau_i), v>, each Phi_i scaled like Phi."""
    agent, batch = in_double(*(lambda a: (a, cartpole_batch(a)))(make("nharpg", "cartpole",
                                                                       f"agent.likelihood_term={term}")))
    theta = agent.theta
    v = torch.randn(theta.shape, dtype=theta.dtype, generator=torch.Generator().manual_seed(2))
    leaf = theta.clone().requires_grad_(True)
    advantages = agent.advantages(batch)
    phi, logp = agent.surrogate(leaf, batch, advantages)
    g, = torch.autograd.grad(phi, leaf, create_graph=True)
    hessian_part, = torch.autograd.grad(g @ v, leaf, retain_graph=True)
    mask = batch.mask
    if term == "trajectory":
        expected = sum(torch.autograd.grad((logp[i] * advantages[i] * mask[i]).sum() / mask.sum(), leaf,
                                           retain_graph=True)[0]
                       * (torch.autograd.grad((logp[i] * mask[i]).sum(), leaf, retain_graph=True)[0] @ v)
                       for i in range(batch.episodes))
    else:
        slope = torch.autograd.grad((logp * mask).sum() / mask.sum(), leaf, retain_graph=True)[0] @ v
        expected = (1 if term == "batch_mean" else -1) * slope * g.detach()
    assert batch.episodes > 1
    out = agent.hessian_vector_product(batch, theta, v)
    assert torch.allclose(out - hessian_part, expected, rtol=1e-9, atol=1e-12)


# -- the methods' steps --------------------------------------------------------------------------

class FixedBatches:
    """A sampler that returns one fixed batch and records the parameters it was asked at."""

    def __init__(self, agent, batch):
        self.agent, self.batch, self.points, self.sizes = agent, batch, [], []

    def __call__(self, batch_steps: int) -> EpisodeBatch:
        self.points.append(self.agent.theta.clone())
        self.sizes.append(batch_steps)
        return self.batch


@pytest.mark.parametrize("agent, gammas, etas", [
    ("pg", [0.1 * (2 / (t + 2)) ** (2 / 3) for t in range(3)], None),
    ("nsgdm", [0.1, 0.1 * 2 / 3, 0.1 / 2], [1.0, (2 / 3) ** (2 / 3), 0.5 ** (2 / 3)]),
    ("npg_igt", [0.1, 0.1 * 2 / 3, 0.1 / 2], [1.0, (2 / 3) ** 0.8, 0.5 ** 0.8]),
    ("harpg", [0.1, 0.1 * (2 / 3) ** 0.5, 0.1 * 0.5 ** 0.5], [1.0, 2 / 3, 0.5]),
    ("nharpg", [0.1, 0.1 * 2 / 3, 0.1 / 2], [1.0, 2 / 3, 0.5]),
])
def test_each_schedule_s_first_values(agent, gammas, etas):
    """gamma_0 = 0.1, eta_0 = 1 (run_PG.py's defaults); t = 0, 1, 2."""
    a = make(agent)
    sampler = FixedBatches(a, cartpole_batch(a))
    for t in range(3):
        metrics = a.iterate(sampler)
        assert a.step_size(t) == pytest.approx(gammas[t], rel=1e-14)
        assert float(metrics["step_size"]) == pytest.approx(gammas[t], rel=1e-6)   # as float32
        if etas is not None:
            assert a.momentum(t) == pytest.approx(etas[t], rel=1e-14)
            assert float(metrics["momentum"]) == pytest.approx(etas[t], rel=1e-6)


def test_the_normalised_step_is_gamma_along_d_over_all_parameters():
    """theta_1 - theta_0 = gamma_0 g / ||g||: one scale for every tensor, ||step|| = gamma_0."""
    a = make("nsgdm")
    batch = cartpole_batch(a)
    theta0 = a.theta
    g = a.gradient(batch)
    a.iterate(FixedBatches(a, batch))
    step = a.theta - theta0
    assert step.norm().item() == pytest.approx(0.1, rel=1e-5)
    assert torch.allclose(step, 0.1 * g / g.norm(), atol=1e-7)
    per_tensor = [p.norm() for p in a.unflatten(g).values()]
    assert len(per_tensor) > 2 and max(per_tensor) < g.norm()     # one norm over all of them


def test_igt_samples_at_the_extrapolation_with_the_previous_eta():
    """theta~_t = theta_t + ((1 - eta_{t-1}) / eta_{t-1}) (theta_t - theta_{t-1}): the authors'
    off-by-one (eta_0 = 0.5 so that every extrapolation moves)."""
    a = make("npg_igt", "cartpole", "agent.eta_0=0.5")
    sampler = FixedBatches(a, cartpole_batch(a))
    thetas = []
    for _ in range(4):
        thetas.append(a.theta)
        a.iterate(sampler)
    eta = [0.5 * (2 / (t + 2)) ** 0.8 for t in range(4)]
    assert torch.equal(sampler.points[0], thetas[0])                  # t = 0: no previous eta
    for t in (1, 2, 3):
        previous = thetas[t] + (1 - eta[t - 1]) / eta[t - 1] * (thetas[t] - thetas[t - 1])
        current = thetas[t] + (1 - eta[t]) / eta[t] * (thetas[t] - thetas[t - 1])
        assert torch.allclose(sampler.points[t], previous, atol=1e-6)
        assert not torch.allclose(sampler.points[t], current, atol=1e-4)


def test_harpg_corrects_at_a_point_between_the_last_two_iterates(monkeypatch):
    """d_t = (1 - eta_t)(d_{t-1} + B(theta^) (theta_t - theta_{t-1})) + eta_t g_t, theta^ on the
    segment, its batch of hessian_batch_steps sampled there."""
    a = make("harpg", "cartpole", "agent.hessian_batch_steps=32")
    batch = cartpole_batch(a)
    sampler = FixedBatches(a, batch)
    calls = []
    real = a.hessian_vector_product

    def recorded(b, point, v):
        out = real(b, point, v)
        calls.append((point.clone(), v.clone(), out.clone()))
        return out

    monkeypatch.setattr(a, "hessian_vector_product", recorded)
    a.iterate(sampler)
    theta0, d0 = sampler.points[0], a.direction.clone()
    theta1 = a.theta
    g1 = a.gradient(batch)
    a.iterate(sampler)
    assert sampler.sizes == [1000, 1000, 32]
    point, v, correction = calls[0]
    assert torch.allclose(v, theta1 - theta0)
    q = ((point - theta0) @ v / (v @ v)).item()
    assert 0 <= q <= 1 and torch.allclose(point, theta0 + q * v, atol=1e-6)
    assert torch.allclose(sampler.points[2], point)                  # the Hessian batch's point
    eta = 2 / 3
    assert torch.allclose(a.direction, (1 - eta) * (d0 + correction) + eta * g1, atol=1e-6)


def test_a_diverged_direction_stops_the_run_with_what_to_change():
    from rlcore.agent.policy_gradient import TrainingDiverged
    a = make("harpg")
    a.direction.fill_(float("inf"))
    with pytest.raises(TrainingDiverged, match="lower agent.gamma_0"):
        a.ascend(0.1, normalized=False)


def test_an_on_policy_agent_has_no_batch_update():
    with pytest.raises(TypeError, match="on-policy"):
        make("pg").update(None)


# -- episodes and the baseline -------------------------------------------------------------------

def test_the_sampler_returns_whole_episodes_reaching_the_batch_and_repeats_from_its_seed():
    agent = make("pg")
    sampler = EpisodeSampler("CartPole-v1", 200, CPU, max_envs=4)
    try:
        for steps in (32, 700):
            torch.manual_seed(0)                    # the actions' draws
            batch = sampler(agent.explore, steps, seed=5)
            lengths = batch.lengths
            assert batch.steps >= steps and int(lengths.max()) <= 200
            assert torch.equal(batch.mask, torch.arange(batch.mask.shape[1]) < lengths[:, None])
            torch.manual_seed(0)
            again = sampler(agent.explore, steps, seed=5)
            assert torch.equal(again.observations, batch.observations)
        assert sampler.envs_for(32) == 1 and sampler.envs_for(700) == 3
        one_env = sampler(agent.explore, 32, seed=7)       # one env: garage's sequential sampler
        assert one_env.steps - int(one_env.lengths[-1]) < 32
    finally:
        sampler.close()


def test_discounted_returns_and_garage_s_linear_baseline():
    rewards = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 0.0]])
    mask = torch.tensor([[True, True, True], [True, True, False]])
    obs = torch.randn(2, 3, 2, generator=torch.Generator().manual_seed(0)) * 8
    batch = EpisodeBatch(obs, torch.zeros(2, 3, 1), rewards, mask)
    returns = discounted_returns(batch, 0.5)
    assert torch.allclose(returns, torch.tensor([[1 + 1 + 0.75, 2 + 1.5, 3.0], [4 + 2.5, 5.0, 0.0]]))
    baseline = LinearFeatureBaseline(2)
    assert torch.equal(baseline(batch), torch.zeros(2, 3))            # unfitted: 0
    baseline.fit(batch, returns)
    rows = []                                # garage: [o, o^2, t/100, (t/100)^2, (t/100)^3, 1]
    for i, n in enumerate((3, 2)):
        o = np.clip(obs[i, :n].numpy().astype(np.float64), -10, 10)
        t = np.arange(n)[:, None] / 100.0
        rows.append(np.concatenate([o, o ** 2, t, t ** 2, t ** 3, np.ones((n, 1))], 1))
    x = np.concatenate(rows)
    y = np.concatenate([returns[0].numpy(), returns[1, :2].numpy()])
    coeffs = np.linalg.lstsq(x.T @ x + 1e-5 * np.eye(x.shape[1]), x.T @ y, rcond=-1)[0]
    assert np.allclose(baseline.coeffs.numpy(), coeffs, rtol=1e-6, atol=1e-8)
    assert baseline(batch)[1, 2] == 0                                 # padding stays 0


# -- the on-policy loop ----------------------------------------------------------------------------

def run(tmp_path, agent: str, *overrides):
    cfg = load_config([f"agent={agent}", "env=cartpole", f"run_dir={tmp_path}",
                       "trainer.progress=false", "trainer.eval_episodes=3", *overrides])
    return train(cfg)


def metrics(run_dir) -> list[dict]:
    return [json.loads(line) for line in open(run_dir / "metrics.jsonl")]


@pytest.mark.slow
def test_pg_learns_cartpole_and_logs_return_against_environment_steps(tmp_path):
    """15 iterations of 1000 steps: the sampled episodes' mean return must at least double."""
    result, = run(tmp_path, "pg", "trainer.steps=15", "trainer.eval_every=15", "seed=1")
    rows = [r for r in metrics(tmp_path) if r["kind"] == "train"]
    assert len(rows) == 15
    steps = [r["env_steps"] for r in rows]
    assert steps[0] >= 1000 and all(b - a >= 1000 for a, b in zip(steps, steps[1:]))
    first, last = rows[0]["episode_return"], np.mean([r["episode_return"] for r in rows[-3:]])
    assert last > 2 * first, (first, last)
    assert result.last_score == result.last_return > first         # score: the return itself
    assert (tmp_path / "curve.png").stat().st_size > 10_000
    from rlcore.evaluation.run import evaluate_run                  # `rlcore eval` of the folder
    again = evaluate_run(tmp_path, episodes=3, device="cpu")
    assert again["dataset"] == "cartpole-online" and 0 < again["length_mean"] <= 200   # horizon


@pytest.mark.slow
@pytest.mark.parametrize("agent", ["npg_igt", "nharpg"])
def test_a_resumed_on_policy_run_repeats_the_uninterrupted_one(tmp_path, agent):
    """Same episodes (env seeds per iteration), same random points, same baseline: exact."""
    common = ["trainer.eval_every=100", "trainer.checkpoint_every=2", "agent.batch_steps=300"]
    run(tmp_path / "straight", agent, "trainer.steps=4", *common)
    run(tmp_path / "cut", agent, "trainer.steps=2", *common)
    cfg = load_config([f"agent={agent}", "env=cartpole", "trainer.progress=false", "trainer.steps=4",
                       "trainer.eval_episodes=3", *common])
    cfg.resume = str(tmp_path / "cut")
    train(cfg)
    a = load_checkpoint(latest_checkpoint(tmp_path / "straight"))
    b = load_checkpoint(latest_checkpoint(tmp_path / "cut"))
    assert a["loop"] == b["loop"] and a["step"] == b["step"] == 4
    for key, value in a["agent"]["modules"].items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(value, b["agent"]["modules"][key]), key
    returns = [[r["episode_return"] for r in metrics(tmp_path / d) if r["kind"] == "train"]
               for d in ("straight", "cut")]
    assert returns[0] == returns[1]


@pytest.mark.parametrize("overrides, message", [
    (["agent=iql", "env=cartpole"], "has no dataset for agent=iql"),
    (["agent=sac", "env=cartpole"], "discrete actions"),
    (["agent=pg", "env=cartpole", "trainer.compile=compile"], "on-policy"),
    (["agent=harpg", "env=cartpole", "agent.likelihood_term=sum"], "agent.likelihood_term='sum'"),
    (["agent=pg", "env=cartpole", "agent.gamma_0=-1"], "agent.gamma_0=-1"),
])
def test_bad_settings_get_a_clear_error(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        train(load_config([*overrides, f"run_dir={tmp_path}", "trainer.progress=false"]))


def test_the_python_api_runs_an_on_policy_agent_s_iterations():
    import rlcore
    setup = rlcore.make("npg_igt", "cartpole", *TINY, "agent.batch_steps=200")
    assert setup.buffer is None
    loop = setup.on_policy_loop()
    try:
        before = setup.agent.theta
        for t in (1, 2):
            metrics = loop(t)
        stats = loop.stats()
    finally:
        loop.close()
    assert not torch.equal(before, setup.agent.theta) and set(metrics) >= {"grad_norm", "momentum"}
    assert stats["env_steps"] >= 400 and stats["episode_return"] > 0
    assert setup.evaluate(episodes=2)["return_mean"] > 0
    with pytest.raises(TypeError, match="not on-policy"):
        rlcore.make("sac", "hopper").on_policy_loop()


def test_halfcheetah_s_shorter_horizon_is_scored_by_its_return_and_hopper_by_d4rl():
    from rlcore.training.trainer import horizon, online_reference
    cheetah = load_config(["agent=pg", "env=halfcheetah"])
    hopper = load_config(["agent=pg", "env=hopper"])
    assert horizon(cheetah) == 500 and online_reference(cheetah).source.startswith("the undiscounted")
    assert horizon(hopper) == 1000 and online_reference(hopper).source == "D4RL hopper"
    assert math.isclose(online_reference(hopper).normalize(3234.3), 100.0)
