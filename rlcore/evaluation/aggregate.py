"""Aggregate metrics across tasks, as Agarwal et al. (NeurIPS 2021, "Deep RL at the edge of the
statistical precipice"; the rliable library) ask for them: the interquartile mean (IQM) with
stratified-bootstrap confidence intervals, performance profiles and the probability of
improvement. Scores come as one [runs, tasks] array per agent, on a common scale (D4RL
normalized scores or success rates, in percent).

Written here in numpy (a few lines each) rather than taken from rliable, whose dependencies
(arch, seaborn) would weigh on every install; tests/test_report.py checks them by hand.
"""
from __future__ import annotations

import numpy as np
from scipy import stats


def iqm(scores: np.ndarray) -> float:
    """The mean of the middle 50% of all runs' scores on all tasks (25% trimmed each side)."""
    return float(stats.trim_mean(np.asarray(scores, dtype=float).ravel(), 0.25))


def stratified_bootstrap(scores: np.ndarray, metric, reps: int = 2000, seed: int = 0,
                         level: float = 0.95) -> tuple[float, float]:
    """A percentile confidence interval of `metric`: runs resampled with replacement within each
    task (the stratum), as rliable's StratifiedBootstrap."""
    scores = np.asarray(scores, dtype=float)
    rng = np.random.default_rng(seed)
    runs, tasks = scores.shape
    values = np.empty(reps)
    for i in range(reps):
        idx = rng.integers(0, runs, size=(runs, tasks))
        values[i] = metric(np.take_along_axis(scores, idx, axis=0))
    low, high = np.percentile(values, [100 * (1 - level) / 2, 100 * (1 + level) / 2])
    return float(low), float(high)


def performance_profile(scores: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The fraction of runs (over all tasks) whose score exceeds each threshold tau."""
    flat = np.asarray(scores, dtype=float).ravel()
    return np.array([(flat > tau).mean() for tau in thresholds])


def probability_of_improvement(x: np.ndarray, y: np.ndarray) -> float:
    """P(X > Y): per task, the Mann-Whitney statistic over all pairs of X's and Y's runs (ties
    count half), averaged over tasks."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    per_task = [((xi[:, None] > yi[None, :]) + 0.5 * (xi[:, None] == yi[None, :])).mean()
                for xi, yi in zip(x.T, y.T)]
    return float(np.mean(per_task))


def probability_of_improvement_ci(x: np.ndarray, y: np.ndarray, reps: int = 2000,
                                  seed: int = 0) -> tuple[float, float]:
    """Its stratified-bootstrap interval: both agents' runs resampled within each task."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    rng = np.random.default_rng(seed)
    values = np.empty(reps)
    for i in range(reps):
        ix = rng.integers(0, x.shape[0], size=x.shape)
        iy = rng.integers(0, y.shape[0], size=y.shape)
        values[i] = probability_of_improvement(np.take_along_axis(x, ix, 0), np.take_along_axis(y, iy, 0))
    low, high = np.percentile(values, [2.5, 97.5])
    return float(low), float(high)
