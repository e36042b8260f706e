"""The learning-curve figure of a run: the score per evaluation (D4RL normalized; the success
rate overall and per task for goal-conditioned runs; the success rate and the mean return for
Meta-World), and the training losses. On-policy runs: the return against environment steps
(each iteration's sampled episodes, and the evaluations) and the gradient and direction norms."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from rlcore.fileio import atomic_write  # noqa: E402


def save(fig, path: Path) -> Path:
    """Lay out, write atomically as PNG, close."""
    fig.tight_layout()
    atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=110, format="png"))
    plt.close(fig)
    return path


def plot_run(rows: list[dict], path: Path, title: str) -> Path:
    evals = [r for r in rows if r["kind"] == "eval"]
    train = [r for r in rows if r["kind"] == "train"]
    if train and "env_steps" in train[-1]:
        return plot_on_policy_run(train, evals, path, title)
    if evals and "cost" in evals[0]:
        return plot_cost_run(rows, path, title)
    losses = [k for k in (train[-1] if train else {}) if k.endswith("_loss")]
    fig, axes = plt.subplots(1, 1 + max(1, len(losses)), figsize=(5.5 * (1 + max(1, len(losses))), 4),
                             squeeze=False)
    axes = axes[0]
    ax = axes[0]
    goals = bool(evals) and "success_rate" in evals[0]
    tasks = sorted(k for k in (evals[0] if evals else {}) if k.startswith("success_task"))
    if evals:
        steps = [r["step"] for r in evals]
        mean = [r["score_mean"] for r in evals]
        ax.plot(steps, mean, marker="o", ms=3, label="all tasks" if tasks else None)
        if tasks:                        # one thin line per evaluation task
            for key in tasks:
                ax.plot(steps, [100 * r[key] for r in evals], lw=0.8, alpha=0.6,
                        label=key.removeprefix("success_"))
            ax.legend(fontsize=7)
        elif goals:                      # one task with a shaped reward: its return beside
            twin = ax.twinx()
            twin.plot(steps, [r["return_mean"] for r in evals], color="tab:gray", ls="--", lw=1)
            twin.set_ylabel("mean return (dashed)")
        else:
            std = [r["score_std"] for r in evals]
            ax.fill_between(steps, [m - s for m, s in zip(mean, std)],
                            [m + s for m, s in zip(mean, std)], alpha=0.25)
    ax.set(xlabel="updates", ylabel="success rate (%)" if goals else "D4RL normalized score",
           title=title)
    ax.grid(alpha=0.3)
    for ax, key in zip(axes[1:], losses):  # one panel each: losses differ in scale
        rows = [r for r in train if key in r]
        ax.plot([r["step"] for r in rows], [r[key] for r in rows])
        ax.set(xlabel="updates", ylabel="mean over log interval", title=key)
        ax.grid(alpha=0.3)
    return save(fig, path)


def plot_on_policy_run(train: list[dict], evals: list[dict], path: Path, title: str) -> Path:
    fig, (ax, norms) = plt.subplots(1, 2, figsize=(11, 4))
    rows = [r for r in train if "episode_return" in r]
    ax.plot([r["env_steps"] for r in rows], [r["episode_return"] for r in rows], lw=1,
            label="sampled episodes")
    if evals:
        ax.plot([r["env_steps"] for r in evals], [r["return_mean"] for r in evals], marker="o",
                ms=3, ls="--", label="evaluation (deterministic)")
    ax.set(xlabel="environment steps", ylabel="mean return", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    for key in ("grad_norm", "direction_norm", "correction_norm"):
        rows = [r for r in train if key in r]
        if rows:
            norms.plot([r["step"] for r in rows], [r[key] for r in rows], lw=1, label=key)
    norms.set(xlabel="iteration", ylabel="norm", yscale="log", title="||g_t||, ||d_t||")
    norms.legend(fontsize=8)
    norms.grid(alpha=0.3)
    return save(fig, path)


def plot_cost_run(rows: list[dict], path: Path, title: str) -> Path:
    """A simulator run: training and dev cost per period against gradient steps, the known
    optimum as a line and the kept policy's test cost as a star."""
    train = [r for r in rows if r["kind"] == "train" and "cost" in r]
    evals = [r for r in rows if r["kind"] == "eval"]
    test = [r for r in rows if r["kind"] == "test"]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    if train:
        ax.plot([r["step"] for r in train], [r["cost"] for r in train], lw=1, alpha=0.7,
                label="train batch (after warm-up)")
    ax.plot([r["step"] for r in evals], [r["cost"] for r in evals], marker="o", ms=2.5, label="dev")
    if test:
        last = test[-1]
        ax.plot([last.get("best_step", last["step"])], [last["test_cost"]], "*", ms=12,
                label=f"test {last['test_cost']:.3f} (kept policy)")
        if "optimum" in last:
            ax.axhline(last["optimum"], color="k", ls="--", lw=1,
                       label=f"optimum {last['optimum']:.3f} (gap {last['gap_pct']:.2f}%)")
    costs = [r["cost"] for r in evals] + [r["cost"] for r in train]
    if costs:                     # the start is often far above: show the end of the curve
        low = min(costs + ([test[-1]["optimum"]] if test and "optimum" in test[-1] else []))
        ax.set_ylim(low * 0.98, min(max(costs), low * 1.5))
    ax.set(xlabel="gradient steps", ylabel="cost per period and store", title=title)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return save(fig, path)
