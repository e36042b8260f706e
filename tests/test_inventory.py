"""The inventory simulator, its known optima, and HDPO / REINFORCE on it (tiny sizes)."""
from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from rlcore.agent.inventory import BaseStock, EchelonStock, rollout
from rlcore.config import CONFIG_DIR, load_config
from rlcore.envs.inventory import (Dynamics, InventoryProblem, Scenarios, draw_scenarios,
                                   initial_state)
from rlcore.envs.inventory_optima import (backlogged_base_stock, clark_scarf, lost_sales_dp,
                                          optimum)
from rlcore.errors import ConfigError, UserError
from rlcore.training.trainer import train

TINY = ["env.scenarios.train.samples=64", "env.scenarios.train.batch_size=32",
        "env.scenarios.dev.samples=64", "env.scenarios.dev.periods=30", "env.scenarios.dev.ignore=10",
        "env.scenarios.test.samples=64", "env.scenarios.test.periods=40", "env.scenarios.test.ignore=10",
        "env.scenarios.train.periods=12", "env.scenarios.train.ignore=4",
        "trainer.eval_every=4", "trainer.log_every=4", "trainer.checkpoint_every=4",
        "trainer.progress=false"]


def problem(name: str, **overrides) -> InventoryProblem:
    env = OmegaConf.load(CONFIG_DIR / "env" / f"{name}.yaml")
    env.merge_with(overrides)
    return InventoryProblem.from_config(env)


def one_period(prob, stores, orders, demand, **upstream):
    dyn = Dynamics(prob, "cpu")
    state = {"stores": torch.tensor([[stores]], dtype=torch.float32), **upstream}
    return dyn.step(state, orders, torch.tensor([[demand]], dtype=torch.float32))


def test_one_period_lost_vs_backlogged_by_hand():
    # on hand 3, pipeline [2, 0, 4] (L = 4), order 5, demand 7: short 4
    lost = problem("inventory-one-store-lost", lead_time=4, p=9.0)
    state, cost = one_period(lost, [3.0, 2.0, 0.0, 4.0], {"stores": torch.tensor([[5.0]])}, 7.0)
    assert cost.item() == pytest.approx(9 * 4)
    assert state["stores"][0, 0].tolist() == [2.0, 0.0, 4.0, 5.0]   # lost: 0 + arrival 2
    back = problem("inventory-one-store-backlogged", lead_time=4, p=9.0)
    state, cost = one_period(back, [3.0, 2.0, 0.0, 4.0], {"stores": torch.tensor([[5.0]])}, 7.0)
    assert cost.item() == pytest.approx(9 * 4)
    assert state["stores"][0, 0].tolist() == [-2.0, 0.0, 4.0, 5.0]  # backlog 4 carried
    # a surplus pays h per unit left
    state, cost = one_period(back, [10.0, 0.0, 0.0, 0.0], {"stores": torch.tensor([[0.0]])}, 7.0)
    assert cost.item() == pytest.approx(1.0 * 3)


def test_an_order_is_on_hand_after_exactly_lead_time_periods():
    for lead in (1, 2, 4):
        prob = problem("inventory-one-store-lost", lead_time=lead)
        dyn = Dynamics(prob, "cpu")
        k = prob.store_slots
        state = {"stores": torch.zeros(1, 1, k)}
        zero = torch.zeros(1, 1)
        state, _ = dyn.step(state, {"stores": torch.tensor([[6.0]])}, zero)     # ordered in t = 0
        on_hand = []
        for _ in range(lead + 1):
            on_hand.append(state["stores"][0, 0, 0].item())
            state, _ = dyn.step(state, {"stores": zero}, zero)
        assert on_hand[lead - 1] == 6.0 and all(x == 0.0 for x in on_hand[:lead - 1])


def test_upstream_locations_ship_no_more_than_they_hold():
    prob = problem("inventory-one-warehouse", stores=3)
    dyn = Dynamics(prob, "cpu")
    state = {"stores": torch.zeros(1, 3, prob.store_slots),
             "warehouse": torch.tensor([[[6.0, 0.0, 0.0]]])}
    new, cost = dyn.step(state, {"stores": torch.tensor([[4.0, 4.0, 4.0]]),
                                 "warehouse": torch.tensor([[0.0]])}, torch.zeros(1, 3))
    shipped = new["stores"].sum().item()
    assert shipped == pytest.approx(6.0)                    # rationed 6 of the 12 asked for
    assert new["warehouse"][0, 0, 0].item() == pytest.approx(0.0)


def test_gradient_through_the_dynamics_matches_finite_differences():
    prob = problem("inventory-one-store-backlogged", lead_time=2)
    scenarios = draw_scenarios(prob, 16, 12, 0, seed=3)
    policy = BaseStock(prob, [])
    dyn = Dynamics(prob, "cpu")

    def total(level):
        with torch.no_grad():
            policy.level.fill_(level)
        return sum(c.sum() for _, _, c in rollout(policy, dyn, scenarios))

    x0 = 2.6                                    # softplus(2.6) ~ 2.67: orders every period
    policy.level.data.fill_(x0)
    cost = sum(c.sum() for _, _, c in rollout(policy, dyn, scenarios))
    (grad,) = torch.autograd.grad(cost, policy.level)
    eps = 1e-3
    numeric = (total(x0 + eps) - total(x0 - eps)) / (2 * eps)
    assert grad.item() != 0
    assert grad.item() == pytest.approx(numeric.item(), rel=2e-2)


def stationary_cost(pmf, p, h, policy, nx):
    """Exact average cost of a deterministic policy I_0 -> q (lead time 1, on hand capped)."""
    P, c = np.zeros((nx, nx)), np.zeros(nx)
    for x in range(nx):
        for d, pd in enumerate(pmf):
            P[x, min(max(x - d, 0) + policy[x], nx - 1)] += pd
            c[x] += pd * (p * max(d - x, 0) + h * max(x - d, 0))
    w, v = np.linalg.eig(P.T)
    pi = np.real(v[:, np.argmin(abs(w - 1))])
    return float((pi / pi.sum()) @ c)


def test_lost_sales_dp_matches_enumerating_every_policy():
    pmf = np.array([0.3, 0.5, 0.2])
    nx, max_order = 5, 2
    gain, _ = lost_sales_dp(pmf, 4.0, 1.0, 1, nx - 1, max_order, tol=1e-10)
    best = min(stationary_cost(pmf, 4.0, 1.0, pol, nx)
               for pol in itertools.product(range(max_order + 1), repeat=nx))
    assert gain == pytest.approx(best, abs=1e-6)


def test_lost_sales_dp_policy_in_the_simulator_costs_the_dp_value():
    """The DP and the simulator share one timing: the DP's optimal policy, simulated, costs the
    DP's value (Poisson(5), p = 4, L = 2)."""
    from rlcore.envs.inventory_optima import poisson_pmf
    pmf = poisson_pmf(5.0)
    gain, values = lost_sales_dp(pmf, 4.0, 1.0, 2, 30, 14)
    table = torch.as_tensor(values.argmin(-1), dtype=torch.float32)     # [I_0, I_1] -> q
    prob = problem("inventory-one-store-lost", lead_time=2, p=4.0, initial_inventory_periods=2)

    def policy(state):
        s = state["stores"].long().clamp(max=30)
        return {"stores": table[s[..., 0].clamp(max=30), s[..., 1].clamp(max=14)]}
    scenarios = draw_scenarios(prob, 2048, 600, 100, seed=5)
    costs = [c.mean().item() for t, (_, _, c) in enumerate(rollout(policy, Dynamics(prob, "cpu"), scenarios))
             if t >= 100]
    assert np.mean(costs) == pytest.approx(gain, rel=0.01)


def test_base_stock_closed_form_matches_a_long_simulation():
    prob = problem("inventory-one-store-backlogged", lead_time=4, p=9.0)
    opt = backlogged_base_stock(9.0, 1.0, 5.0, 1.6, 4)
    assert opt.cost == pytest.approx(6.28, abs=0.01)        # (p + h) 1.6 sqrt(5) phi(z)
    policy = BaseStock(prob, [])
    policy.level.data.fill_(float(np.log(np.expm1(opt.levels[0]))))
    scenarios = draw_scenarios(prob, 2048, 1500, 300, seed=1)
    with torch.no_grad():
        costs = [c.mean().item() for t, (_, _, c) in enumerate(rollout(policy, Dynamics(prob, "cpu"), scenarios))
                 if t >= 300]
    assert np.mean(costs) == pytest.approx(opt.cost, rel=0.01)


def test_clark_scarf_levels_simulated_cost_the_recursions_value():
    prob = problem("inventory-serial")
    opt = clark_scarf(prob, step=0.05)
    policy = EchelonStock(prob, [])
    increments = np.diff([0.0, *opt.levels])                 # store first
    policy.x.data.copy_(torch.as_tensor(np.log(np.expm1(increments)) - 10.0, dtype=torch.float32))
    assert policy.levels().flip(0).tolist() == pytest.approx(list(opt.levels), abs=1e-3)
    scenarios = draw_scenarios(prob, 2048, 1200, 300, seed=2)
    with torch.no_grad():
        costs = [c.mean().item() for t, (_, _, c) in enumerate(rollout(policy, Dynamics(prob, "cpu"), scenarios))
                 if t >= 300]
    assert np.mean(costs) == pytest.approx(opt.cost, rel=0.01)


def test_bad_settings_get_clear_errors():
    with pytest.raises(ConfigError, match="lead time"):
        problem("inventory-one-store-lost", lead_time=-1)
    with pytest.raises(ConfigError, match="unknown inventory setting"):
        problem("inventory-one-store-lost", setting="two_stores")
    with pytest.raises(ConfigError, match="ignore"):
        draw_scenarios(problem("inventory-one-store-lost"), 4, 10, 10, seed=0)
    with pytest.raises(UserError, match="base_stock"):
        train(load_config(["agent=hdpo", "env=inventory-serial", "agent.policy=base_stock", *TINY]))
    with pytest.raises(UserError, match="simulator"):
        train(load_config(["agent=hdpo", "env=hopper"]))
    with pytest.raises(UserError, match="hdpo"):
        train(load_config(["agent=iql", "env=inventory-one-store-lost"]))


def test_hdpo_run_reports_test_cost_optimum_and_gap_and_resumes_exactly(tmp_path):
    args = ["agent=hdpo", "env=inventory-one-store-lost", "env.lead_time=2",
            "agent.policy=capped_base_stock", "trainer.steps=8", *TINY]
    full = train(load_config([*args, f"run_dir={tmp_path / 'full'}"]))[0]
    assert full.optimum == pytest.approx(optimum(problem("inventory-one-store-lost", lead_time=2)).cost)
    assert full.test_cost > 0.99 * full.optimum
    tested = json.loads((tmp_path / "full" / "test.json").read_text())
    assert tested["gap_pct"] == pytest.approx(100 * (full.test_cost - full.optimum) / full.optimum)
    assert (tmp_path / "full" / "curve.png").exists()
    from rlcore.evaluation.run import evaluate_run     # `rlcore eval`: the kept policy, tested again
    assert evaluate_run(tmp_path / "full", device="cpu")["test_cost"] == pytest.approx(full.test_cost)
    half = load_config([*args, "trainer.steps=4", f"run_dir={tmp_path / 'half'}"])
    train(half)
    resumed = load_config([*args, f"resume={tmp_path / 'half'}"])
    resumed.run_dir = str(tmp_path / "half")
    again = train(resumed)[0]
    assert again.test_cost == full.test_cost and again.best_score == full.best_score


def test_early_stopping_and_a_fixed_heuristic(tmp_path):
    result = train(load_config(["agent=hdpo", "env=inventory-one-warehouse", "env.stores=3",
                                "agent.policy=newsvendor", "trainer.steps=40", *TINY,
                                f"run_dir={tmp_path}"]))[0]
    assert result.steps == 4                   # nothing to learn: stops at the first dev cost
    assert np.isnan(result.optimum) and result.test_cost > 0
    frozen = train(load_config(["agent=hdpo", "env=inventory-one-store-lost", "agent.policy=base_stock",
                                "agent.lr=1e-12", "agent.patience=8", "trainer.steps=40", *TINY,
                                f"run_dir={tmp_path / 'frozen'}"]))[0]
    assert frozen.steps == 12                  # best at 4; no better dev cost by 4 + 8


@pytest.mark.parametrize("policy", ["vanilla", "symmetry_aware"])
def test_networks_for_one_warehouse_learn(policy, tmp_path):
    rows = []
    cfg = load_config(["agent=hdpo", "env=inventory-one-warehouse", "env.stores=3",
                       f"agent.policy={policy}", "trainer.steps=24", *TINY,
                       f"run_dir={tmp_path}"])
    train(cfg)
    rows = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    dev = [r["cost"] for r in rows if r["kind"] == "eval"]
    assert min(dev[1:]) < dev[0]


def test_reinforce_differentiates_the_likelihood_not_the_dynamics(tmp_path):
    cfg = load_config(["agent=reinforce", "env=inventory-one-store-lost", "env.lead_time=1",
                       "trainer.steps=4", *TINY, f"run_dir={tmp_path}"])
    from rlcore.training.trainer import prepare
    agent = prepare(cfg, torch.device("cpu"), progress=False).agent
    scenarios = draw_scenarios(agent.problem, 8, 6, 0, seed=0)
    costs = [c for _, _, c in rollout(agent.explore, agent.dynamics, scenarios)]
    assert all(c.grad_fn is None for c in costs)
    assert len(agent.explore.log_probs) == 6 and agent.explore.log_probs[0].requires_grad
    agent.explore.log_probs.clear()
    before = [p.detach().clone() for p in agent.explore.parameters()]
    metrics = agent.update(scenarios)
    assert torch.isfinite(metrics["grad_norm"])
    assert any(not torch.equal(a, b) for a, b in zip(before, agent.explore.parameters()))


def test_scenario_sets_are_fixed_by_their_seed_and_streamed_sets_repeat():
    prob = problem("inventory-one-store-lost")
    a, b = draw_scenarios(prob, 8, 20, 5, seed=7), draw_scenarios(prob, 8, 20, 5, seed=7)
    assert torch.equal(a.demands, b.demands) and torch.equal(a.initial, b.initial)
    assert not torch.equal(a.demands, draw_scenarios(prob, 8, 20, 5, seed=8).demands)
    from rlcore.envs import inventory
    old = inventory.STREAM_ABOVE
    inventory.STREAM_ABOVE = 10
    try:
        s = draw_scenarios(prob, 8, 250, 5, seed=7)
    finally:
        inventory.STREAM_ABOVE = old
    first = torch.stack([s.demand_at(t) for t in range(250)])
    second = torch.stack([s.demand_at(t) for t in range(250)])
    assert s.periods == 250 and torch.equal(first, second)
    assert first.mean().item() == pytest.approx(5.0, rel=0.1)
    assert isinstance(initial_state(prob, Scenarios(a.demands, a.initial, 5))["stores"], torch.Tensor)


def test_hdpo_loss_counts_the_warm_up_unless_told_not_to():
    from rlcore.training.trainer import prepare
    for warmup, counted in ((True, slice(None)), (False, slice(4, None))):
        cfg = load_config(["agent=hdpo", "env=inventory-one-store-backlogged", "agent.policy=base_stock",
                           f"agent.warmup_in_loss={str(warmup).lower()}", "agent.lr=0", *TINY])
        agent = prepare(cfg, torch.device("cpu"), progress=False).agent
        agent.optimizer = torch.optim.Adam(agent.policy.parameters(), lr=0.0)
        scenarios = draw_scenarios(agent.problem, 16, 12, 4, seed=1)
        with torch.no_grad():
            costs = torch.stack([c for _, _, c in rollout(agent.policy, agent.dynamics, scenarios)])
        assert agent.update(scenarios)["loss"].item() == pytest.approx(costs[counted].mean().item(), rel=1e-6)
