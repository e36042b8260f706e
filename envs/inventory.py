"""A batched, differentiable inventory simulator (Alvo, Russo & Kanoria, "Neural inventory control
in networks via hindsight differentiable policy optimization", arXiv 2306.11246; the authors'
environment.py and data_handling.py).

Every location keeps an inventory vector [on-hand, arriving in 1 period, ..., in K-1 periods].
A period, for a batch of scenarios at once (environment.py's timing):

1. the policy sees the state and orders: each store from the warehouse (or the outside
   supplier when there is none), the warehouse from the last extra echelon (or outside), each
   extra echelon from the one upstream of it (the first from outside);
2. demand D_t is realised at the stores; store cost p (D - I_0)^+ + h (I_0 - D)^+; lost demand
   clips the post-demand on-hand at 0, backlogged demand keeps it negative;
3. upstream locations ship what was ordered from them and pay h on what is left on hand;
4. the pipeline shifts one period and each order joins it L - 1 slots ahead of on-hand,
   so it is on hand at the start of period t + L (L = 1: the next period).

The dynamics are torch operations with gradients everywhere (clipping is relu), so the cost of a
scenario is differentiable in the orders: HDPO's pathwise gradient. Demands are exogenous and
drawn up front (scenario sets), the authors' "hindsight" view.

One departure, named here: a location cannot ship more than it holds. The authors' networks
enforce it themselves (softmax or proportional rationing); here the simulator rations
proportionally too, so any policy (REINFORCE's noisy one, a hand-written heuristic) is admissible.
It changes nothing for a policy that already respects it.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from rlcore.errors import ConfigError

SETTINGS = ("one_store", "serial", "one_warehouse")
DISTRIBUTIONS = ("poisson", "normal")


@dataclass
class InventoryProblem:
    """One inventory network: its topology, costs, lead times and demand distribution.

    Per-store arrays have one entry per store. Upstream locations of the serial system are
    ordered from the most upstream extra echelon down to the warehouse, as in the authors'
    echelon_stock policy.
    """
    setting: str
    lost_demand: bool
    distribution: str
    mean: np.ndarray                 # [n] demand mean per store
    std: np.ndarray                  # [n] demand std (normal); sqrt(mean) for Poisson
    correlation: float               # between stores' demands (normal)
    holding: np.ndarray              # [n] store holding cost per unit left on hand
    underage: np.ndarray             # [n] store cost per unit short (lost or backlogged)
    lead_time: np.ndarray            # [n] store lead times
    inventory_periods: int           # initial store inventory slots (at least the lead time)
    warehouse_holding: float | None = None
    warehouse_lead_time: int | None = None
    echelon_holding: tuple[float, ...] = ()
    echelon_lead_time: tuple[int, ...] = ()

    @property
    def n_stores(self) -> int:
        return len(self.mean)

    @property
    def has_warehouse(self) -> bool:
        return self.warehouse_lead_time is not None

    @property
    def store_slots(self) -> int:
        return max(self.inventory_periods, int(self.lead_time.max()))

    @property
    def integer_demand(self) -> bool:
        return self.distribution == "poisson"

    def upper_bound(self, mult: float = 4.0) -> float:
        """The most the top of the network may order per period: mult x the mean total demand
        (the authors' warehouse_upper_bound_mult, 4)."""
        return float(mult * self.mean.sum())

    def to_dict(self) -> dict:
        """Plain values (a checkpoint's Spec carries it and loads with weights_only)."""
        out = {}
        for key, value in vars(self).items():
            out[key] = value.tolist() if isinstance(value, np.ndarray) else (
                list(value) if isinstance(value, tuple) else value)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "InventoryProblem":
        arrays = ("mean", "std", "holding", "underage", "lead_time")
        return cls(**{k: (np.asarray(v, dtype=np.int64 if k == "lead_time" else np.float64)
                          if k in arrays else tuple(v) if k.startswith("echelon") else v)
                      for k, v in d.items()})

    @classmethod
    def from_config(cls, env: DictConfig) -> "InventoryProblem":
        """The env config's setting (configs/env/inventory-*.yaml), checked."""
        setting = env.get("setting")
        if setting not in SETTINGS:
            raise ConfigError(f"env.setting={setting!r}: unknown inventory setting; valid: "
                              f"{', '.join(SETTINGS)}")
        demand = env.demand
        if demand.distribution not in DISTRIBUTIONS:
            raise ConfigError(f"env.demand.distribution={demand.distribution!r}; valid: "
                              f"{', '.join(DISTRIBUTIONS)}")
        if setting == "one_warehouse":
            return _one_warehouse(env)
        for key in ("p", "h"):
            if not float(env[key]) > 0:
                raise ConfigError(f"env.{key}={env[key]}: a cost per unit must be > 0")
        lead = _lead_time("env.lead_time", env.lead_time)
        mean = float(demand.mean)
        std = float(demand.get("std") or np.sqrt(mean)) if demand.distribution == "normal" else np.sqrt(mean)
        problem = cls(setting, bool(env.lost_demand), demand.distribution, np.array([mean]),
                      np.array([std]), 0.0, np.array([float(env.h)]), np.array([float(env.p)]),
                      np.array([lead]), int(env.initial_inventory_periods))
        if setting == "serial":
            if problem.lost_demand:
                raise ConfigError("the serial system is backlogged (echelon base-stock is optimal "
                                  "there); set env.lost_demand=false")
            w = env.warehouse
            problem.warehouse_holding = float(w.holding)
            problem.warehouse_lead_time = _lead_time("env.warehouse.lead_time", w.lead_time)
            e = env.echelons
            if len(e.holding) != len(e.lead_time) or not len(e.holding):
                raise ConfigError(f"env.echelons: holding {list(e.holding)} and lead_time "
                                  f"{list(e.lead_time)} need one entry per extra echelon")
            problem.echelon_holding = tuple(float(x) for x in e.holding)
            problem.echelon_lead_time = tuple(_lead_time("env.echelons.lead_time", x)
                                              for x in e.lead_time)
        return problem


def _lead_time(name: str, value) -> int:
    if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
        raise ConfigError(f"{name}={value}: a lead time is a whole number of periods >= 1 "
                          "(an order placed in period t is on hand at the start of t + L)")
    return int(value)


def _one_warehouse(env: DictConfig) -> InventoryProblem:
    """One warehouse, n stores, lost demand: per-store parameters drawn once with the authors'
    seeds (data_handling.py), so `stores=n` is the paper's instance."""
    n = int(env.stores)
    if n < 1:
        raise ConfigError(f"env.stores={n}: need at least one store")
    seeds, demand = env.parameter_seeds, env.demand

    def uniform(seed, bounds, size):
        return np.random.RandomState(seed).uniform(*bounds, size)
    mean = uniform(seeds.mean, demand.mean_range, n).round(3)
    std = (mean * uniform(seeds.coef_of_var, demand.coef_of_var_range, n)).round(3)
    low, high = env.store_lead_time_range
    lead = np.random.RandomState(seeds.lead_time).randint(low, high, n)   # high excluded
    if (lead < 1).any():
        raise ConfigError(f"env.store_lead_time_range={list(env.store_lead_time_range)}: lead "
                          "times must be >= 1")
    problem = InventoryProblem(
        "one_warehouse", True, demand.distribution, mean, std, float(demand.correlation),
        uniform(seeds.holding, env.holding_range, n), uniform(seeds.underage, env.p_range, n),
        lead, int(env.initial_inventory_periods),
        float(env.warehouse.holding), _lead_time("env.warehouse.lead_time", env.warehouse.lead_time))
    return problem


# ---- scenarios: demand paths and initial inventories, drawn up front with their own seed ----

@dataclass
class Scenarios:
    """`samples` demand paths over `periods` (the first `ignore` are warm-up, left out of the
    reported cost) and the initial store inventories; upstream locations start empty."""
    demands: torch.Tensor            # [N, n, T]
    initial: torch.Tensor            # [N, n, K]
    ignore: int

    @property
    def samples(self) -> int:
        return self.initial.shape[0]

    @property
    def periods(self) -> int:
        return self.demands.shape[2]

    def demand_at(self, t: int) -> torch.Tensor:
        return self.demands[:, :, t]

    def subset(self, index: torch.Tensor) -> "Scenarios":
        return Scenarios(self.demands[index], self.initial[index], self.ignore)


class StreamedScenarios(Scenarios):
    """A long scenario set (the test set's 32,768 x 5,000 periods is 650 MB of demands) drawn
    `chunk` periods at a time from its own generator, the same demands on every pass."""

    def __init__(self, problem: "InventoryProblem", initial: torch.Tensor, periods: int, ignore: int,
                 seed: int, chunk: int = 100):
        super().__init__(initial.new_zeros(initial.shape[0], initial.shape[1], 0), initial, ignore)
        self.problem, self.total, self.seed, self.chunk = problem, periods, seed, chunk
        self.gen, self.start = None, None

    @property
    def periods(self) -> int:
        return self.total

    def demand_at(self, t: int) -> torch.Tensor:
        if t == 0 or self.gen is None:
            self.gen, self.start = torch.Generator().manual_seed(self.seed), None
        if self.start is None or t >= self.start + self.demands.shape[2]:
            self.start = 0 if self.start is None else self.start + self.chunk
            if t != self.start:
                raise ValueError("a streamed scenario set is read period by period from 0")
            size = min(self.chunk, self.total - self.start)
            self.demands = draw_demands(self.problem, self.samples, size, self.gen).to(self.initial.device)
        return self.demands[:, :, t - self.start]


def draw_demands(problem: InventoryProblem, samples: int, periods: int,
                 generator: torch.Generator) -> torch.Tensor:
    """[samples, n, periods] demands, clipped at 0 (data_handling.py): Poisson, or Normal with
    the stores' correlation."""
    n = problem.n_stores
    mean = torch.as_tensor(problem.mean, dtype=torch.float32)
    if problem.distribution == "poisson":
        rate = mean[None, :, None].expand(samples, n, periods).contiguous()
        return torch.poisson(rate, generator=generator)
    std = torch.as_tensor(problem.std, dtype=torch.float32)
    corr = torch.full((n, n), problem.correlation).fill_diagonal_(1.0)
    chol = torch.linalg.cholesky(corr * std[:, None] * std[None, :])
    z = torch.randn(samples, periods, n, generator=generator)
    return (mean + z @ chol.T).clamp_min(0).transpose(1, 2).contiguous()


STREAM_ABOVE = 2 ** 25   # demand entries (128 MB) above which a set is streamed


def draw_scenarios(problem: InventoryProblem, samples: int, periods: int, ignore: int, seed: int,
                   device: torch.device | str = "cpu") -> Scenarios:
    """A scenario set, the same for a seed on every device (drawn on the CPU, then moved).
    Initial inventory: U[0, 1] x the mean demand in each slot (range_mult [0, 1])."""
    if not 0 <= ignore < periods:
        raise ConfigError(f"a scenario set of {periods} periods cannot leave out the first "
                          f"{ignore} (need 0 <= ignore < periods)")
    gen = torch.Generator().manual_seed(int(seed))
    mean = torch.as_tensor(problem.mean, dtype=torch.float32)
    initial = mean[None, :, None] * torch.rand(samples, problem.n_stores, problem.store_slots, generator=gen)
    if samples * problem.n_stores * periods > STREAM_ABOVE:
        return StreamedScenarios(problem, initial.to(device), periods, ignore, int(seed) + 1)
    demands = draw_demands(problem, samples, periods, gen)
    return Scenarios(demands.to(device), initial.to(device), ignore)


# ---- dynamics ----

State = dict  # "stores" [B, n, K]; "warehouse" [B, 1, Kw]; "echelons" [B, E, Ke]


def initial_state(problem: InventoryProblem, scenarios: Scenarios) -> State:
    state = {"stores": scenarios.initial}
    batch, zeros = scenarios.samples, scenarios.initial.new_zeros
    if problem.has_warehouse:
        state["warehouse"] = zeros(batch, 1, problem.warehouse_lead_time)
    if problem.echelon_lead_time:
        state["echelons"] = zeros(batch, len(problem.echelon_lead_time), max(problem.echelon_lead_time))
    return state


def ration(requests: torch.Tensor, available: torch.Tensor) -> torch.Tensor:
    """Scale requests [B, m] down proportionally when they exceed what the supplier holds [B]
    (neural_networks.py's apply_proportional_allocation)."""
    scale = (available.clamp_min(0) / (requests.sum(1) + 1e-10)).clamp_max(1.0)
    return requests * scale[:, None]


def advance(inventory: torch.Tensor, on_hand: torch.Tensor, orders: torch.Tensor,
            lead_time: torch.Tensor) -> torch.Tensor:
    """Shift the pipeline one period (arrivals join the on-hand) and add each order L - 1 slots
    ahead (environment.py's update_inventory_for_heterogeneous_lead_times)."""
    if inventory.shape[-1] == 1:                 # lead time 1, no pipeline
        return (on_hand + orders)[..., None]
    shifted = torch.cat([(on_hand + inventory[..., 1])[..., None], inventory[..., 2:],
                         torch.zeros_like(inventory[..., :1])], dim=-1)
    slot = torch.nn.functional.one_hot(lead_time - 1, inventory.shape[-1]).to(inventory.dtype)
    return shifted + orders[..., None] * slot


class Dynamics:
    """The problem's transition and cost as tensors on one device."""

    def __init__(self, problem: InventoryProblem, device: torch.device | str):
        as_t = lambda x, dtype=torch.float32: torch.as_tensor(np.asarray(x), dtype=dtype, device=device)  # noqa: E731
        self.problem = problem
        self.holding, self.underage = as_t(problem.holding), as_t(problem.underage)
        self.lead_time = as_t(problem.lead_time, torch.long)
        if problem.has_warehouse:
            self.warehouse_lead = as_t([problem.warehouse_lead_time], torch.long)
        if problem.echelon_lead_time:
            self.echelon_holding = as_t(problem.echelon_holding)
            self.echelon_lead = as_t(problem.echelon_lead_time, torch.long)

    def step(self, state: State, orders: dict, demand: torch.Tensor) -> tuple[State, torch.Tensor]:
        """One period: orders {"stores": [B, n], "warehouse": [B, 1], "echelons": [B, E]}
        (non-negative), demand [B, n] -> next state and each scenario's cost [B]."""
        p = self.problem
        stores = state["stores"]
        store_orders = orders["stores"]
        if p.has_warehouse:
            store_orders = ration(store_orders, state["warehouse"][:, 0, 0])
        on_hand = stores[..., 0] - demand
        cost = (self.underage * (-on_hand).clamp_min(0) + self.holding * on_hand.clamp_min(0)).sum(1)
        if p.lost_demand:
            on_hand = on_hand.clamp_min(0)
        new = {"stores": advance(stores, on_hand, store_orders, self.lead_time)}
        if p.has_warehouse:
            warehouse = state["warehouse"]
            w_orders = orders["warehouse"]
            if p.echelon_lead_time:
                w_orders = ration(w_orders, state["echelons"][:, -1, 0])
            w_on_hand = warehouse[:, :, 0] - store_orders.sum(1, keepdim=True)
            cost = cost + p.warehouse_holding * w_on_hand.clamp_min(0).sum(1)
            new["warehouse"] = advance(warehouse, w_on_hand, w_orders, self.warehouse_lead)
        if p.echelon_lead_time:
            echelons = state["echelons"]
            e_orders = orders["echelons"]     # [B, E]: echelon k orders from k - 1 (0: outside)
            upstream = echelons[:, :-1, 0]
            e_orders = torch.cat([e_orders[:, :1], torch.minimum(e_orders[:, 1:], upstream.clamp_min(0))], 1)
            shipped = torch.cat([e_orders[:, 1:], w_orders], 1)    # what each echelon sends down
            e_on_hand = echelons[:, :, 0] - shipped
            cost = cost + (self.echelon_holding * e_on_hand.clamp_min(0)).sum(1)
            new["echelons"] = advance(echelons, e_on_hand, e_orders, self.echelon_lead)
        return new, cost
