"""Known optimal costs per period of the inventory settings (envs/inventory.py's timing), to
measure how far a learned policy is from the best any policy can do:

- one store, backlogged, Normal demand: base-stock is optimal; closed form;
- one store, lost sales, integer demand: average-cost dynamic programming over the pipeline;
- serial system, backlogged: echelon base-stock is optimal (Clark & Scarf); its levels and cost
  by the Clark-Scarf recursion on a fine demand grid.
"""
from __future__ import annotations

from dataclasses import dataclass
from math import sqrt

import numpy as np
from scipy import stats

from rlcore.envs.inventory import InventoryProblem


@dataclass
class Optimum:
    cost: float                     # per period (per store)
    how: str
    levels: tuple[float, ...] = ()  # the optimal base-stock levels, where the policy is one


def backlogged_base_stock(p: float, h: float, mean: float, std: float, lead_time: int) -> Optimum:
    """Newsvendor over the L + 1 periods an order covers: S* = F^-1(p / (p + h)) of D[L+1] and
    cost (p + h) sigma sqrt(L + 1) phi(z), z = Phi^-1(p / (p + h)) (Normal demand, unclipped)."""
    z = stats.norm.ppf(p / (p + h))
    sigma = std * sqrt(lead_time + 1)
    return Optimum(float((p + h) * sigma * stats.norm.pdf(z)),
                   "base-stock, closed form (Normal demand)", (float(mean * (lead_time + 1) + z * sigma),))


def poisson_pmf(mean: float, tail: float = 1e-12) -> np.ndarray:
    support = int(stats.poisson.ppf(1 - tail, mean)) + 1
    pmf = stats.poisson.pmf(np.arange(support + 1), mean)
    return pmf / pmf.sum()


def lost_sales_dp(pmf: np.ndarray, p: float, h: float, lead_time: int, max_on_hand: int,
                  max_order: int, tol: float = 1e-7, max_iter: int = 20_000) -> tuple[float, np.ndarray]:
    """Average cost of the optimal lost-sales policy by relative value iteration.

    State (I_0, I_1, ..., I_{L-1}): on hand at the start of the period after arrivals, then the
    orders arriving in 1..L-1 periods. Order q in {0..max_order}; demand d ~ pmf; cost
    p (d - I_0)^+ + h (I_0 - d)^+; next state (max(I_0 - d, 0) + I_1, I_2, ..., I_{L-1}, q).
    On hand is capped at max_on_hand (choose it above anything the optimal policy reaches).
    Returns the gain and the relative values V[I_0, I_1, ..., I_{L-1}, q] after ordering.
    """
    nx, nq = max_on_hand + 1, max_order + 1
    x = np.arange(nx)
    d = np.arange(len(pmf))
    short = np.clip(d[None, :] - x[:, None], 0, None)
    cost = (pmf * (p * short + h * np.clip(x[:, None] - d[None, :], 0, None))).sum(1)
    left = np.zeros((nx, nx))                   # left[x, m] = P(max(x - d, 0) = m)
    for xi in range(nx):
        for di, pd in enumerate(pmf):
            left[xi, max(xi - di, 0)] += pd
    arrive = np.minimum(x[:, None] + np.arange(nq)[None, :], nx - 1)   # m + I_1, capped
    # V over states after ordering: (I_0, I_1..I_{L-1}, q) -> the next period's start is
    # (max(I_0 - d, 0) + I_1, I_2, ..., q); W = min over the next order.
    shape = (nx,) + (nq,) * lead_time
    values = np.zeros(shape)
    gain = np.nan
    for _ in range(max_iter):
        start = values.min(axis=-1) if lead_time > 1 else None        # min over next q
        if lead_time == 1:
            # state after ordering (I_0, q): next start on hand max(I_0 - d, 0) + q
            best = values.min(axis=-1)                                 # [nx]: start-of-period value
            nxt = best[arrive]                                         # [m, q]
            new = cost[:, None] + left @ nxt
        else:
            nxt = start[arrive]                                        # [m, I_1, I_2.., q]
            new = cost.reshape((nx,) + (1,) * lead_time) + np.tensordot(left, nxt, axes=(1, 0))
        diff = new - values
        lo, hi = diff.min(), diff.max()
        values = new - new.flat[0]
        gain = 0.5 * (lo + hi)
        if hi - lo < tol:
            break
    else:
        raise RuntimeError(f"value iteration did not converge in {max_iter} iterations (span {hi - lo:.2e})")
    return float(gain), values


def lost_sales_poisson(p: float, h: float, mean: float, lead_time: int,
                       max_on_hand: int | None = None, max_order: int | None = None) -> Optimum:
    """The lost-sales optimum for Poisson demand, with caps well above the optimal policy's reach:
    orders up to mean + 5 sqrt(mean) + p-dependent slack, on hand up to (L + 1) x that."""
    pmf = poisson_pmf(mean)
    max_order = max_order or int(np.ceil(mean + 5 * sqrt(mean)))
    max_on_hand = max_on_hand or int(np.ceil((lead_time + 1) * mean + 6 * sqrt((lead_time + 1) * mean)))
    gain, _ = lost_sales_dp(pmf, p, h, lead_time, max_on_hand, max_order)
    return Optimum(gain, f"dynamic programming (on hand <= {max_on_hand}, orders <= {max_order})")


def clipped_normal_pmf(mean: float, std: float, step: float) -> np.ndarray:
    """max(N(mean, std^2), 0) on the grid k * step: cell masses, the negative tail at 0."""
    top = mean + 10 * std
    edges = (np.arange(int(np.ceil(top / step)) + 2) - 0.5) * step
    cdf = stats.norm.cdf(edges, mean, std)
    cdf[0] = 0.0
    pmf = np.diff(cdf)
    return pmf / pmf.sum()


def clark_scarf(problem: InventoryProblem, step: float = 0.02) -> Optimum:
    """Optimal echelon base-stock levels and cost of the backlogged serial system.

    Stages j = 1 (store) .. J (most upstream), local holding h_j, echelon holding
    h'_j = h_j - h_{j+1}, lead time L_j. With D[n] the demand over n periods:
        G_1(y) = h'_1 E[y - D[L_1 + 1]] + (p + h_1) E[(D[L_1 + 1] - y)^+]
        G_j(y) = h'_j E[y - D[L_j + 1]] + E[G_{j-1}(min(S_{j-1}, y - D[L_j]))]
        S_j = argmin G_j;   echelon cost G_J(S_J).
    The simulator charges on-hand stock only, not stock in transit between stages, which the
    echelon accounting charges at the upstream stage's h: the cost per period is
    G_J(S_J) - E[D] sum_{j<J} h_{j+1} L_j. Levels are echelon levels, store first.
    """
    p = float(problem.underage[0])
    holding = [float(problem.holding[0]), float(problem.warehouse_holding),
               *reversed(problem.echelon_holding)]
    leads = [int(problem.lead_time[0]), int(problem.warehouse_lead_time),
             *reversed(problem.echelon_lead_time)]
    echelon_h = [holding[j] - (holding[j + 1] if j + 1 < len(holding) else 0.0)
                 for j in range(len(holding))]
    pmf1 = clipped_normal_pmf(float(problem.mean[0]), float(problem.std[0]), step)
    mu = float((pmf1 * np.arange(len(pmf1)) * step).sum())

    def demand_over(n: int) -> np.ndarray:
        out = np.array([1.0])
        for _ in range(n):
            out = np.convolve(out, pmf1)
        return out

    low = -(sum(leads) + len(leads)) * (len(pmf1) - 1)   # grid indices: y = i * step
    high = int(np.ceil((sum(leads) + len(leads)) * (mu + 8 * float(problem.std[0])) / step))
    y = np.arange(low, high + 1) * step
    prev, levels, valid = None, [], 0      # g is exact from grid index `valid` on
    for hj, lj in zip(echelon_h, leads):
        cover = demand_over(lj + 1)
        g = hj * (y - mu * (lj + 1))
        if prev is None:
            mean_cover = (cover * np.arange(len(cover)) * step).sum()
            tail = np.concatenate([np.cumsum((cover * np.arange(len(cover)) * step)[::-1])[::-1], [0]])
            mass = np.concatenate([np.cumsum(cover[::-1])[::-1], [0]])
            k = np.clip(np.floor(y / step + 1e-9).astype(int) + 1, 0, len(cover))
            over = np.where(y < 0, mean_cover - y, tail[k] - y * mass[k])   # E[(D - y)^+]
            g = g + (p + holding[0]) * over
        else:
            capped = np.where(y < levels[-1], prev, prev[np.searchsorted(y, levels[-1])])
            capped[:valid] = capped[valid]
            lag = demand_over(lj)
            g = g + np.convolve(capped, lag)[: len(y)]      # E[capped(y - D[L_j])]
            valid += len(lag) - 1
        g[:valid] = np.inf
        levels.append(float(y[int(np.argmin(g))]))
        prev = g
    transit = mu * sum(holding[j + 1] * leads[j] for j in range(len(leads) - 1))
    cost = float(prev.min() - transit)
    return Optimum(cost, "echelon base-stock, Clark-Scarf recursion", tuple(levels))


def optimum(problem: InventoryProblem) -> Optimum | None:
    """The setting's known optimum, or None (one warehouse with many stores has none)."""
    p, h = float(problem.underage[0]), float(problem.holding[0])
    lead, mean, std = int(problem.lead_time[0]), float(problem.mean[0]), float(problem.std[0])
    if problem.setting == "one_store" and not problem.lost_demand and problem.distribution == "normal":
        return backlogged_base_stock(p, h, mean, std, lead)
    if problem.setting == "one_store" and problem.lost_demand and problem.distribution == "poisson":
        return lost_sales_poisson(p, h, mean, lead)
    if problem.setting == "serial":
        return clark_scarf(problem)
    return None
