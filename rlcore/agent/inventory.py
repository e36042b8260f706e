"""What the inventory agents share (HDPO and its REINFORCE comparison): the policy classes of
the authors' neural_networks.py, a rollout through the simulator (rlcore.envs.inventory), and
the agent base that evaluates a policy's cost per period on a scenario set.

A policy maps the state {"stores" [B, n, K], "warehouse" [B, 1, Kw], "echelons" [B, E, Ke]}
to non-negative orders {"stores" [B, n], "warehouse" [B, 1], "echelons" [B, E]}.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.nn import functional as F

from rlcore.agent import Agent, Spec
from rlcore.agent.nets import MLP
from rlcore.envs.inventory import Dynamics, InventoryProblem, Scenarios, initial_state
from rlcore.errors import ConfigError

# The authors' per-policy defaults (config_files/policies_and_hyperparams/*.yml).
POLICY_DEFAULTS = {
    "vanilla": {"one_store": ([32, 32, 32], 3e-3), "serial": ([32, 32], 1e-2),
                "one_warehouse": ([512, 512, 512], 3e-4)},
    "base_stock": {"one_store": ([], 0.5)},
    "capped_base_stock": {"one_store": ([], 1.0)},
    "echelon_stock": {"serial": ([], 0.5)},
    "symmetry_aware": {"one_warehouse": ([32, 32], 1e-3)},
    "newsvendor": {"one_warehouse": ([], 0.0)},
}


def state_dim(problem: InventoryProblem) -> int:
    """The size of the flattened state: every location's inventory slots."""
    size = problem.n_stores * problem.store_slots
    if problem.has_warehouse:
        size += problem.warehouse_lead_time
    if problem.echelon_lead_time:
        size += len(problem.echelon_lead_time) * max(problem.echelon_lead_time)
    return size


def order_sizes(problem: InventoryProblem) -> dict[str, int]:
    """How many orders each kind of location places per period."""
    sizes = {"stores": problem.n_stores}
    if problem.has_warehouse:
        sizes["warehouse"] = 1
    if problem.echelon_lead_time:
        sizes["echelons"] = len(problem.echelon_lead_time)
    return sizes


def flat_state(state: dict) -> torch.Tensor:
    return torch.cat([state[k].flatten(1) for k in ("stores", "warehouse", "echelons") if k in state], 1)


def store_position(state: dict) -> torch.Tensor:
    """Each store's inventory position: on hand plus everything on its way [B, n]."""
    return state["stores"].sum(-1)


class Vanilla(nn.Module):
    """A fully connected network on the whole raw state (VanillaOneStore / VanillaSerial /
    VanillaOneWarehouse): one store softplus(net + 1); serial sigmoid x the upstream location's
    on hand (the top: 4 x mean demand); one warehouse a softmax share of the warehouse's on hand
    per store (an extra logit 1 keeps stock back) and sigmoid x 4 x mean demand for the warehouse."""

    def __init__(self, problem: InventoryProblem, hidden: list[int]):
        super().__init__()
        self.problem = problem
        outputs = {"one_store": 1, "serial": 2 + len(problem.echelon_lead_time),
                   "one_warehouse": problem.n_stores + 1}[problem.setting]
        self.net = MLP(state_dim(problem), hidden, outputs, activation=nn.ELU)
        self.upper = problem.upper_bound()

    def forward(self, state: dict) -> dict:
        x = self.net(flat_state(state))
        if self.problem.setting == "one_store":
            return {"stores": F.softplus(x + 1)}
        if self.problem.setting == "serial":   # [echelons (upstream first), warehouse, store]
            echelons = state["echelons"][:, :, 0]
            upstream = torch.cat([torch.full_like(echelons[:, :1], self.upper), echelons,
                                  state["warehouse"][:, :, 0]], 1)
            orders = torch.sigmoid(x) * upstream.clamp_min(0)
            return {"echelons": orders[:, :-2], "warehouse": orders[:, -2:-1], "stores": orders[:, -1:]}
        logits = torch.cat([x[:, :-1], torch.ones_like(x[:, :1])], 1)
        share = torch.softmax(logits, 1)[:, :-1]
        return {"stores": share * state["warehouse"][:, :, 0].clamp_min(0),
                "warehouse": torch.sigmoid(x[:, -1:]) * self.upper}


class BaseStock(nn.Module):
    """Order up to one learned level S = softplus(b), b initialised to 10: q = (S - position)^+.
    Optimal for the backlogged single store."""

    def __init__(self, problem: InventoryProblem, hidden: list[int]):
        super().__init__()
        self.level = nn.Parameter(torch.tensor([10.0]))

    def forward(self, state: dict) -> dict:
        return {"stores": (F.softplus(self.level) - store_position(state)).clamp_min(0)}


class CappedBaseStock(nn.Module):
    """min((S - position)^+, cap), S and cap learned (softplus, both initialised from 10):
    near-optimal for lost sales (Xin, 2021)."""

    def __init__(self, problem: InventoryProblem, hidden: list[int]):
        super().__init__()
        self.params = nn.Parameter(torch.tensor([10.0, 10.0]))

    def forward(self, state: dict) -> dict:
        level, cap = F.softplus(self.params)
        return {"stores": torch.minimum((level - store_position(state)).clamp_min(0), cap)}


class EchelonStock(nn.Module):
    """Echelon base-stock for the serial system (optimal, Clark & Scarf). Levels are partial
    sums of softplus(x + 10), so upstream levels are never below downstream ones; location k
    orders (S_k - echelon position_k)^+, at most what its supplier holds."""

    def __init__(self, problem: InventoryProblem, hidden: list[int]):
        super().__init__()
        self.n_echelons = len(problem.echelon_lead_time)
        self.x = nn.Parameter(torch.zeros(2 + self.n_echelons))

    def levels(self) -> torch.Tensor:
        """Echelon levels, upstream first."""
        return torch.cumsum(F.softplus(self.x + 10.0), 0).flip(0)

    def forward(self, state: dict) -> dict:
        positions = torch.cat([state["echelons"].sum(-1), state["warehouse"].sum(-1),
                               state["stores"].sum(-1)], 1)          # upstream first
        echelon_position = positions.flip(1).cumsum(1).flip(1)       # everything at or below k
        orders = (self.levels() - echelon_position).clamp_min(0)
        supplier = torch.cat([torch.full_like(positions[:, :1], float("inf")),
                              state["echelons"][:, :, 0], state["warehouse"][:, :, 0]], 1)
        orders = torch.minimum(orders, supplier.clamp_min(0))
        return {"echelons": orders[:, :-2], "warehouse": orders[:, -2:-1], "stores": orders[:, -1:]}


class SymmetryAware(nn.Module):
    """The paper's architecture for one warehouse and n stores: a context vector from the whole
    state (one hidden layer of 256, sigmoid); one store network shared by all stores on (own
    inventory, mean, std, p, lead time, context) -> softplus request, rationed proportionally;
    a warehouse network on (own inventory, context) -> sigmoid x 4 x mean demand."""

    def __init__(self, problem: InventoryProblem, hidden: list[int]):
        super().__init__()
        self.context = nn.Sequential(MLP(state_dim(problem), [256], 256, activation=nn.ELU), nn.Sigmoid())
        self.store = MLP(problem.store_slots + 4 + 256, hidden, 1, activation=nn.ELU)
        self.warehouse = MLP(problem.warehouse_lead_time + 256, [16, 16], 1, activation=nn.ELU)
        params = np.stack([problem.mean, problem.std, problem.underage, problem.lead_time], 1)
        self.register_buffer("store_params", torch.as_tensor(params, dtype=torch.float32))
        self.upper = problem.upper_bound()

    def forward(self, state: dict) -> dict:
        context = self.context(flat_state(state))
        stores, warehouse = state["stores"], state["warehouse"]
        n = stores.shape[1]
        own = torch.cat([stores, self.store_params.expand(stores.shape[0], -1, -1),
                         context[:, None].expand(-1, n, -1)], -1)
        requests = F.softplus(self.store(own)[..., 0])
        w = torch.sigmoid(self.warehouse(torch.cat([warehouse[:, 0], context], -1)))
        return {"stores": requests, "warehouse": w * self.upper}


class Newsvendor(nn.Module):
    """The generalised-newsvendor heuristic for one warehouse (not learned): each store orders up
    to its newsvendor level over the L_i + 1 periods an order covers, z_i = Phi^-1(p_i/(p_i+h_i));
    the warehouse orders up to the sum of those levels plus its lead time's mean demand, in echelon
    terms (its own pipeline and every store's position). Short stock is rationed proportionally."""

    def __init__(self, problem: InventoryProblem, hidden: list[int]):
        super().__init__()
        z = stats.norm.ppf(problem.underage / (problem.underage + problem.holding))
        cover = problem.lead_time + 1
        levels = problem.mean * cover + z * problem.std * np.sqrt(cover)
        self.register_buffer("levels", torch.as_tensor(levels, dtype=torch.float32))
        self.echelon_level = float(levels.sum() + problem.mean.sum() * problem.warehouse_lead_time)

    def forward(self, state: dict) -> dict:
        stores = (self.levels - store_position(state)).clamp_min(0)
        position = state["warehouse"].sum((1, 2)) + store_position(state).sum(1)
        return {"stores": stores, "warehouse": (self.echelon_level - position).clamp_min(0)[:, None]}


POLICIES = {"vanilla": Vanilla, "base_stock": BaseStock, "capped_base_stock": CappedBaseStock,
            "echelon_stock": EchelonStock, "symmetry_aware": SymmetryAware, "newsvendor": Newsvendor}


def make_policy(name: str, problem: InventoryProblem, hidden: list[int] | None) -> tuple[nn.Module, float]:
    """The policy and the authors' learning rate for it in this setting."""
    if name not in POLICIES:
        raise ConfigError(f"agent.policy={name!r}; valid: {', '.join(POLICIES)}")
    defaults = POLICY_DEFAULTS[name]
    if problem.setting not in defaults:
        fits = [p for p, d in POLICY_DEFAULTS.items() if problem.setting in d]
        raise ConfigError(f"agent.policy={name} is for the {' and '.join(defaults)} setting(s); "
                          f"for {problem.setting} use one of {', '.join(fits)}")
    sizes, lr = defaults[problem.setting]
    return POLICIES[name](problem, list(hidden) if hidden else sizes), lr


def rollout(policy, dynamics: Dynamics, scenarios: Scenarios, integer: bool = False
            ) -> Iterator[tuple[dict, dict, torch.Tensor]]:
    """Simulate every scenario over its periods: yields (state, orders, cost [B]) per period.
    `integer` rounds the orders (test time, integer demand)."""
    state = initial_state(dynamics.problem, scenarios)
    for t in range(scenarios.periods):
        orders = policy(state)
        if integer:
            orders = {k: v.round() for k, v in orders.items()}
        next_state, cost = dynamics.step(state, orders, scenarios.demand_at(t))
        yield state, orders, cost
        state = next_state


class InventoryAgent(Agent):
    """An agent that learns from a differentiable simulator: `update(scenarios)` takes one
    gradient step on a batch of training scenarios; `cost(scenarios)` is the policy's cost per
    period and store, warm-up periods left out."""
    multi_seed = False       # one policy per process; seeds run as a sweep
    simulates = True         # the trainer's simulator loop (rlcore.training.simulation)

    def __init__(self, spec: Spec, cfg):
        super().__init__(spec, cfg)
        self.problem = InventoryProblem.from_dict(spec.problem)
        self.policy, authors_lr = make_policy(cfg.policy, self.problem, cfg.get("hidden"))
        self.lr = authors_lr if cfg.get("lr") is None else float(cfg.lr)
        params = list(self.policy.parameters())
        self.optimizer = torch.optim.Adam(params, lr=self.lr) if params and self.lr > 0 else None
        self._dynamics: Dynamics | None = None

    @property
    def dynamics(self) -> Dynamics:
        """The transition on the device the policy is on."""
        device = next(self.buffers()).device       # the observation normaliser's, always there
        if self._dynamics is None or self._dynamics.holding.device != device:
            self._dynamics = Dynamics(self.problem, device)
        return self._dynamics

    @property
    def trainable(self) -> bool:
        return self.optimizer is not None

    def optimizers(self) -> dict:
        return {"policy": self.optimizer} if self.optimizer is not None else {}

    def step(self, loss: torch.Tensor) -> torch.Tensor:
        """Adam on the loss, with the gradient norm clipped when agent.clip_grad_norm is set."""
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(params, self.cfg.clip_grad_norm or float("inf"))
        self.optimizer.step()
        return norm

    @torch.no_grad()
    def scenario_costs(self, scenarios: Scenarios, integer: bool = False) -> torch.Tensor:
        """Each scenario's cost per period and store over the periods after the warm-up [B]."""
        total = torch.zeros(scenarios.samples, device=scenarios.initial.device)
        for t, (_, _, cost) in enumerate(rollout(self.policy, self.dynamics, scenarios, integer)):
            if t >= scenarios.ignore:
                total += cost
        return total / ((scenarios.periods - scenarios.ignore) * self.problem.n_stores)

    def cost(self, scenarios: Scenarios, integer: bool = False) -> float:
        """Mean cost per period and store over the periods after the warm-up."""
        return float(self.scenario_costs(scenarios, integer).mean())

    def policy_action(self, obs, deterministic):
        raise NotImplementedError("inventory policies act on the simulator's state: use cost(scenarios)")
