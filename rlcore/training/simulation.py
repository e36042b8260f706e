"""The simulator loop: an agent that learns from a differentiable simulator (HDPO) takes each
training step on a batch of training scenarios, drawn up front with the env's train seed and
visited in a fresh random order every epoch (the authors' shuffled DataLoader). The dev set's
cost, at every evaluation, picks the policy kept (the best so far) and stops the run after
`agent.patience` steps without improvement; at the end the kept policy is tested on the test set.
"""
from __future__ import annotations

import copy
import json
from functools import lru_cache

import torch

from rlcore.envs.inventory import InventoryProblem, Scenarios, draw_scenarios


def scenario_set(cfg, problem: InventoryProblem, which: str, device) -> Scenarios:
    """The env's `which` set (train | dev | test): its own seed, offset by data.seed."""
    spec = cfg.env.scenarios[which]
    return draw_scenarios(problem, int(spec.samples), int(spec.periods), int(spec.ignore),
                          int(spec.seed) + 1_000_003 * int(cfg.data.seed), device)


@lru_cache(maxsize=None)
def known_optimum(problem_key: str):
    from rlcore.envs.inventory_optima import optimum
    return optimum(InventoryProblem.from_dict(json.loads(problem_key)))


def kept_policy_cost(cfg, agent, best_policy: dict | None, device) -> dict:
    """The kept policy (the best dev cost's, else the agent's own) on the test set: cost per
    period and store (warm-up left out, orders rounded for integer demand) with its standard
    error over scenarios, the setting's known optimum and the gap to it in percent."""
    if best_policy is not None:
        agent.policy.load_state_dict(best_policy)
    test = scenario_set(cfg, agent.problem, "test", device)
    costs = agent.scenario_costs(test, integer=agent.problem.integer_demand)
    out = {"test_cost": float(costs.mean()), "test_cost_se": float(costs.std() / len(costs) ** 0.5)}
    optimum = known_optimum(json.dumps(agent.problem.to_dict()))
    if optimum is not None:
        out.update(optimum=optimum.cost, gap_pct=100 * (out["test_cost"] - optimum.cost) / optimum.cost,
                   optimum_how=optimum.how)
    return out


class SimulationLoop:
    def __init__(self, setup):
        cfg = setup.cfg
        self.agent, self.device, self.cfg = setup.agent, setup.device, cfg
        self.problem = setup.agent.problem
        self.train_set = scenario_set(cfg, self.problem, "train", setup.device)
        self.batch_size = min(int(cfg.env.scenarios.train.batch_size), self.train_set.samples)
        self.generator = torch.Generator().manual_seed(int(cfg.seed))
        self.order, self.position, self.epochs = None, 0, 0
        self.best_cost, self.best_step, self.best_policy = float("inf"), 0, None
        self.patience = int(cfg.agent.patience)
        self.stopped = False

    def __call__(self, step: int) -> dict[str, torch.Tensor] | None:
        if not self.agent.trainable:
            return None
        if self.order is None or self.position >= len(self.order):
            self.order = torch.randperm(self.train_set.samples, generator=self.generator)
            self.position, self.epochs = 0, self.epochs + 1       # epochs begun
        index = self.order[self.position:self.position + self.batch_size].to(self.device)
        self.position += self.batch_size
        return self.agent.update(self.train_set.subset(index))

    def after_eval(self, step: int, results: list[dict]) -> None:
        """Keep the policy with the best dev cost; stop after `patience` steps without one."""
        cost = results[0]["cost"]
        if cost < self.best_cost:
            self.best_cost, self.best_step = cost, step
            self.best_policy = copy.deepcopy(self.agent.policy.state_dict())
        if not self.agent.trainable or step - self.best_step >= self.patience:
            self.stopped = True

    def test(self) -> dict:
        out = kept_policy_cost(self.cfg, self.agent, self.best_policy, self.device)
        return {**out, "best_dev_cost": self.best_cost, "best_step": self.best_step}

    def stats(self) -> dict:
        return {"epochs": self.epochs, "best_dev_cost": self.best_cost}

    def state_dict(self) -> dict:
        return {"order": self.order, "position": self.position, "epochs": self.epochs,
                "generator": self.generator.get_state(), "best_cost": self.best_cost,
                "best_step": self.best_step, "best_policy": self.best_policy, "stopped": self.stopped}

    def load_state_dict(self, state: dict) -> None:
        self.order, self.position, self.epochs = state["order"], state["position"], state["epochs"]
        self.generator.set_state(state["generator"])
        self.best_cost, self.best_step = state["best_cost"], state["best_step"]
        self.best_policy, self.stopped = state["best_policy"], state["stopped"]

    def close(self) -> None:
        pass
