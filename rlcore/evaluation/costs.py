"""Evaluation of a policy that acts in a simulator: its cost per period and store on a fixed
scenario set (the dev set during training), warm-up periods left out."""
from __future__ import annotations

from rlcore.envs.inventory import Scenarios


class CostEvaluator:
    def __init__(self, scenarios: Scenarios):
        self.scenarios = scenarios

    def __call__(self, agent, seeds) -> list[dict]:
        cost = agent.cost(self.scenarios)
        return [{"score_mean": cost, "cost": cost}]

    def close(self) -> None:
        pass
