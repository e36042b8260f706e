"""The training loop every agent shares, whatever its data source:

- a dataset (offline agents): each step samples a batch on the device -> agent.update;
- an environment's transitions (online off-policy, SAC): one env step into the buffer, then
  an update (rlcore.training.online);
- an environment's episodes (on-policy, the policy gradients): each step is one iteration of
  the method on episodes it samples (rlcore.training.onpolicy), logged against env steps;
- a simulator (HDPO): each step is a gradient step on a batch of simulated scenarios, the dev
  set's cost picks the policy kept and stops the run early, the test set reports it
  (rlcore.training.simulation).

Metrics are summed on the device. Every `log_every` steps the sums are read once (the only host
sync), every `eval_every` steps the policy is evaluated, every `checkpoint_every` steps the
whole state is saved atomically. With `seeds=K` one agent carries K seeds (rlcore.training.seeds);
each seed gets its own folder (<run>/seed<k>/: metrics, curve, summary) and result row.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch
from omegaconf import DictConfig, OmegaConf

from rlcore.agent import Agent, Spec
from rlcore.training.buffer import Buffer
from rlcore.training.checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from rlcore.training.compile import (DEFAULT_CAPTURED_ADAM, batch_update, check_captured_adam,
                            resolve_mode, resolve_updates_per_call, set_matmul_precision,
                            update_step)
from rlcore.config import resolve_device
from rlcore.data import DatasetError, OfflineDataset
from rlcore.data.datasets import load_dataset, locate
from rlcore.training.denormals import flush_denormals
from rlcore.errors import ConfigError
from rlcore.evaluation import Evaluator, GoalEvaluator
from rlcore.data.goals import GoalSampler
from rlcore.data.imitation import imitation_data
from rlcore.fileio import atomic_write, atomic_write_text
from rlcore.logger import RunLogger, progress_bar, read_metrics, truncate_metrics
from rlcore.plot import plot_run
from rlcore.data.preferences import Labelling, PreferenceSampler, dataset_preferences
from rlcore.data.transfer import Transfer, source_env_config, transferred_from_source
from rlcore.data.preprocess import transform_rewards
from rlcore.registry import AGENTS
from rlcore.evaluation.scores import COST, RETURN, Reference, reference_for
from rlcore.training.seeds import build_seeded, resolve_seeds


@dataclass
class Setup:
    """Everything one run trains with: agent, buffer (preprocessed data) and score reference."""
    cfg: DictConfig
    device: torch.device
    agent: Agent
    buffer: Buffer | None           # None for on-policy agents
    dataset: OfflineDataset | None  # None for online agents
    reference: Reference

    @property
    def online(self) -> bool:
        return self.dataset is None

    @property
    def on_policy(self) -> bool:
        return self.agent.on_policy

    @property
    def simulates(self) -> bool:
        return self.agent.simulates

    def evaluator(self, episodes: int | None = None) -> Evaluator:
        if self.simulates:                      # the dev set's cost per period
            from rlcore.evaluation.costs import CostEvaluator
            from rlcore.training.simulation import scenario_set
            return CostEvaluator(scenario_set(self.cfg, self.agent.problem, "dev", self.device))
        return make_evaluator(self.cfg, episodes or self.cfg.trainer.eval_episodes,
                              self.reference, self.device, self.agent.spec)

    def on_policy_loop(self):
        """An on-policy agent's iterations as the trainer runs them: `loop(t)` samples the
        episodes iteration t needs and steps; `loop.stats()` the returns and env steps."""
        from rlcore.training.onpolicy import OnPolicyLoop
        if not self.on_policy:
            raise TypeError(f"{self.cfg.agent.name} is not on-policy: it updates from its "
                            "buffer, agent.update(agent.sample(buffer, batch_size))")
        return OnPolicyLoop(self, horizon(self.cfg), gym_kwargs(self.cfg))

    def evaluate(self, episodes: int | None = None, seed: int = 0) -> dict | list[dict]:
        """Returns, lengths and D4RL scores: a dict, or one per seed for a K-seed agent."""
        evaluator = self.evaluator(episodes)
        try:
            results = evaluator(self.agent, seed)
        finally:
            evaluator.close()
        return results[0] if len(results) == 1 else results


def make_evaluator(cfg, episodes, reference, device, spec: Spec) -> Evaluator | GoalEvaluator:
    """Returns and D4RL scores, or OGBench's success rates for goal-conditioned envs."""
    if cfg.env.get("goal_tasks"):
        evaluator = GoalEvaluator(cfg.env.gym_id, episodes, device,
                                  list(range(1, cfg.env.goal_tasks + 1)), gym_kwargs(cfg), spec.seeds)
    else:
        evaluator = Evaluator(cfg.env.gym_id, episodes, reference, device, gym_kwargs(cfg), spec.seeds)
    obs_dim = spec.obs_dim
    if evaluator.obs_dim != obs_dim:
        evaluator.close()
        raise DatasetError(f"dataset {cfg.env.dataset!r} has {obs_dim}-dim observations but "
                           f"{cfg.env.gym_id} (env={cfg.env.name}) has {evaluator.obs_dim}; "
                           "pick the env the dataset was recorded in")
    return evaluator


def build_agent(cfg: DictConfig, spec: Spec, device: torch.device,
                seeds: list[int] | None = None) -> Agent:
    """The agent for `seeds` (default: the config's), each seed initialised as its own run."""
    if device.type == "cpu":
        # Subnormal floats from weighted-BC agents' idle Adam moments are ~100x slower on x86:
        # flush them to zero on this thread and every OpenMP worker (rlcore.training.denormals).
        flush_denormals()
    cls = AGENTS.get(cfg.agent.name)
    seeds = resolve_seeds(cfg) if seeds is None else seeds
    agent = build_seeded(lambda s: cls(s, cfg.agent), spec, seeds, cls.multi_seed).to(device)
    agent.begin_phase(0)
    return agent


def simulates(cfg: DictConfig) -> bool:
    """Whether the run learns from a simulator; a clear error when agent and env disagree."""
    agent_sim = AGENTS.get(cfg.agent.name).simulates
    env_sim = bool(cfg.env.get("simulator"))
    sim_agents = [n for n in AGENTS.names() if AGENTS.get(n).simulates]
    if agent_sim and not env_sim:
        raise ConfigError(f"agent={cfg.agent.name} learns from a simulator; env={cfg.env.name} is "
                          "not one. Use an inventory env: inventory-one-store-lost, "
                          "inventory-one-store-backlogged, inventory-serial, inventory-one-warehouse")
    if env_sim and not agent_sim:
        raise ConfigError(f"env={cfg.env.name} is a simulator (no dataset, no Gymnasium env); "
                          f"agent={cfg.agent.name} does not learn from one: use "
                          f"{', '.join(sim_agents)}")
    return agent_sim


def is_on_policy(cfg: DictConfig) -> bool:
    return bool(getattr(AGENTS.get(cfg.agent.name), "on_policy", False))


def on_policy_agents() -> str:
    return ", ".join(n for n in AGENTS.names() if AGENTS.get(n).on_policy)


def learns_online(cfg: DictConfig) -> bool:
    """From an environment rather than a dataset: online off-policy or on-policy agents."""
    return bool(cfg.agent.get("online")) or is_on_policy(cfg)


def horizon(cfg: DictConfig) -> int:
    """An on-policy agent's episode length limit: the env's `on_policy_horizon` (the
    policy-gradient papers' horizons) or its usual time limit."""
    return int(cfg.env.get("on_policy_horizon") or cfg.env.max_episode_steps)


def gym_kwargs(cfg: DictConfig) -> dict:
    kwargs = cfg.env.get("gym_kwargs")
    kwargs = OmegaConf.to_container(kwargs) if kwargs else {}
    if is_on_policy(cfg) and cfg.env.get("on_policy_horizon"):
        kwargs["max_episode_steps"] = horizon(cfg)     # evaluation over the training horizon
    return kwargs


def env_spec(cfg: DictConfig) -> Spec:
    """The Spec of an environment an online agent learns in: a vector of actions, or the
    number of discrete ones (which only on-policy agents' softmax policies take)."""
    env = gym.make(cfg.env.gym_id, **gym_kwargs(cfg))
    obs_space, action_space = env.observation_space, env.action_space
    env.close()
    if isinstance(action_space, gym.spaces.Discrete):
        if not is_on_policy(cfg):
            raise ConfigError(f"env={cfg.env.name} ({cfg.env.gym_id}) has discrete actions; "
                              f"agent={cfg.agent.name} acts in continuous ones. Use an on-policy "
                              f"agent: {on_policy_agents()}")
        return Spec(int(np.prod(obs_space.shape)), int(action_space.n), discrete=True)
    return Spec(int(np.prod(obs_space.shape)), int(np.prod(action_space.shape)))


def online_reference(cfg: DictConfig) -> Reference:
    """D4RL's reference for the env's family, unless an on-policy agent's horizon differs from
    the one those returns were measured over: then the return itself."""
    if is_on_policy(cfg) and horizon(cfg) != int(cfg.env.max_episode_steps):
        return RETURN
    return reference_for(cfg.env.score)


def prepare(cfg: DictConfig, device: torch.device | None = None, progress: bool = True) -> Setup:
    """Load the dataset, apply the agent's preprocessing, build agent and buffer.

    Online agents (`agent.online: true`) get an empty buffer of `agent.buffer_size` instead.
    """
    device = device or resolve_device(cfg.device)
    dataset = None
    if simulates(cfg):
        from rlcore.envs.inventory import InventoryProblem
        problem = InventoryProblem.from_config(cfg.env)
        agent = build_agent(cfg, Spec(0, problem.n_stores, problem=problem.to_dict()), device)
        return Setup(cfg, device, agent, None, None, COST)
    if learns_online(cfg):
        spec = env_spec(cfg)
    else:
        dataset = load_dataset(str(cfg.env.dataset), cfg.data.transitions, cfg.data.seed,
                               cfg.data.dir, progress=progress)  # dir: where downloads are cached
        dataset, subsets = imitation_data(cfg, dataset, progress)   # unchanged unless asked
        goal_dim = dataset.obs_dim if check_goals(cfg) else 0      # OGBench's goals are states
        spec = Spec(dataset.obs_dim, dataset.action_dim, goal_dim)
    agent = build_agent(cfg, spec, device)
    if agent.on_policy:
        return Setup(cfg, device, agent, None, None, online_reference(cfg))
    if dataset is None:
        buffer = Buffer(spec.obs_dim, spec.action_dim, cfg.agent.buffer_size, device, cfg.seed)
        return Setup(cfg, device, agent, buffer, None, reference_for(cfg.env.score))
    data = dataset
    if cfg.agent.get("normalize_obs"):
        agent.obs_normalizer.fit(data.observations)
        data = agent.obs_normalizer.apply_numpy(data)
    if cfg.agent.get("reward_free"):                                  # imitation: no rewards
        data = replace(data, rewards=np.zeros_like(data.rewards))
    reward = (cfg.agent.get("reward") or {}).get(cfg.env.family, "none")
    data = transform_rewards(data, reward, cfg.env.max_episode_steps)
    buffer = Buffer.from_dataset(data, device, seed=cfg.seed, subsets=subsets)
    if spec.goal_dim:
        augment = cfg.data.get("augment") or "none"
        buffer.goals = GoalSampler(buffer, float(cfg.agent.get("discount", 0.99)), augment,
                                   cfg.data.augment_prob,
                                   cfg.data.get("clusters") or cfg.env.get("clusters") or 40, cfg.seed)
    if learns_from_preferences(cfg):
        buffer.preferences = preference_sampler(cfg, dataset, buffer, progress)
    agent.check_data(buffer)
    return Setup(cfg, device, agent, buffer, dataset, reference_for(cfg.env.score, dataset.metadata))


def check_goals(cfg: DictConfig) -> bool:
    """Whether the run is goal-conditioned; a clear error when agent and env disagree."""
    agent_gc = getattr(AGENTS.get(cfg.agent.name), "goal_conditioned", False)
    env_gc = bool(cfg.env.get("goal_tasks"))
    goal_agents = [n for n in AGENTS.names() if getattr(AGENTS.get(n), "goal_conditioned", False)]
    if agent_gc and not env_gc:
        raise ConfigError(f"agent={cfg.agent.name} is goal-conditioned, but env={cfg.env.name} "
                          f"(dataset {cfg.env.dataset}) has no goals to condition on; use a "
                          "goal-conditioned env: env=pointmaze-medium, pointmaze-large or cube-single")
    if env_gc and not agent_gc:
        raise ConfigError(f"env={cfg.env.name} is goal-conditioned (its data carry no rewards) "
                          f"but agent={cfg.agent.name} is not; use one of {', '.join(goal_agents)}")
    if (cfg.data.get("augment") or "none") != "none" and not agent_gc:
        raise ConfigError(f"data.augment={cfg.data.augment} relabels goals; agent={cfg.agent.name} "
                          "is not goal-conditioned")
    return agent_gc


def learns_from_preferences(cfg: DictConfig) -> bool:
    """Whether the agent learns from segment pairs; a clear error when the env has no labels."""
    if not getattr(AGENTS.get(cfg.agent.name), "learns_from_preferences", False):
        if cfg.env.get("source"):
            learners = [n for n in AGENTS.names() if getattr(AGENTS.get(n), "learns_from_preferences", False)]
            raise ConfigError(f"env.source={cfg.env.source} transfers preference labels, and "
                              f"agent={cfg.agent.name} does not learn from them; use one of "
                              f"{', '.join(learners)}")
        return False
    if not cfg.env.get("labels"):
        raise ConfigError(f"agent={cfg.agent.name} learns from preference labels, but env="
                          f"{cfg.env.name} (dataset {cfg.env.dataset}) has none; use a Meta-World "
                          "env (env=metaworld-drawer-open), or add +env.labels=dense|sparse to label "
                          "this dataset's segments by its rewards (rlcore.data.preferences)")
    Labelling.from_config(cfg.env, cfg.data.seed)      # bad settings fail before any folder
    if cfg.env.get("source"):
        Transfer.from_config(cfg.env, cfg.data.seed)
        source_env_config(str(cfg.env.source))
    return True


def preference_sampler(cfg: DictConfig, dataset: OfflineDataset, buffer: Buffer,
                       progress: bool) -> PreferenceSampler:
    """The env's labelling of this dataset (made once, stored beside it) on the buffer."""
    how = Labelling.from_config(cfg.env, cfg.data.seed)
    where = locate(str(cfg.env.dataset), cfg.data.transitions, cfg.data.seed, cfg.data.dir)[1]
    if cfg.env.get("source"):                           # labels transferred from another task
        return PreferenceSampler(buffer, transferred_from_source(cfg, dataset, where, how, progress).prefs)
    prefs = dataset_preferences(dataset, where, how, progress)
    return PreferenceSampler(buffer, prefs, how.label_noise if how.labels == "dense" else 0.0)


def report_transfer(run_dir: Path, buffer: Buffer) -> None:
    """Transferred labels (env.source): their accuracy against the target's own, on stderr and
    in <run>/transfer.json."""
    transfer = getattr(getattr(buffer, "preferences", None), "metadata", {}).get("transfer")
    if transfer:
        atomic_write_text(run_dir / "transfer.json", json.dumps(transfer, indent=1, default=str))
        print(f"labels transferred from {transfer['source']} ({transfer['method']}): "
              f"{100 * transfer['accuracy']:.1f}% agree with the target's own (chance 50%)",
              file=sys.stderr)


@dataclass
class RunResult:
    run_dir: Path
    agent: str
    dataset: str
    seed: int
    steps: int
    last_score: float
    best_score: float
    reference: str
    last_return: float = float("nan")    # the mean return at the last evaluation
    test_cost: float = float("nan")      # simulators: the kept policy's cost on the test set
    optimum: float = float("nan")        # the setting's known optimal cost, where there is one


def dataset_label(cfg: DictConfig) -> str:
    """`hopper-pd-noisy`, a file's stem (`hopper_medium-v2`), or `hopper-online`."""
    if cfg.env.get("simulator"):
        return simulator_label(cfg.env)
    if learns_online(cfg):
        return f"{cfg.env.name}-online"
    label = Path(str(cfg.env.dataset)).stem
    if cfg.env.get("expert_episodes"):
        label += f"-{cfg.env.expert_episodes}ep"
        if cfg.env.get("suboptimal"):
            label += "+" + Path(str(cfg.env.suboptimal)).stem
    return label


def simulator_label(env: DictConfig) -> str:
    """`inventory-one-store-lost-p9-L4`, `inventory-one-warehouse-5stores`."""
    if env.get("setting") == "one_warehouse":
        return f"{env.name}-{env.stores}stores"
    return f"{env.name}-p{env.p:g}-L{env.lead_time}"


def seed_label(seeds: list[int]) -> str:
    return f"seed{seeds[0]}" if len(seeds) == 1 else "seeds" + "_".join(map(str, seeds))


def seed_dirs(run_dir: Path, seeds: list[int]) -> list[Path]:
    """Where each seed's metrics, curve and summary go: the run folder itself for one seed."""
    return [run_dir] if len(seeds) == 1 else [run_dir / f"seed{s}" for s in seeds]


def default_run_dir(cfg: DictConfig) -> Path:
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    base = (Path(cfg.runs_root) / cfg.agent.name / dataset_label(cfg)
            / f"{seed_label(resolve_seeds(cfg))}-{stamp}")
    path, i = base, 1
    while path.exists():
        path, i = base.with_name(f"{base.name}-{i}"), i + 1
    return path


def capture_state(step: int, evals: list, setup: Setup, loop=None) -> dict:
    """Everything an exact resume needs: networks, optimizers, every random state, and the
    data loop's own state (an on-policy run's environment steps)."""
    cuda = setup.device.type == "cuda"
    buffer = setup.buffer
    return {"step": step, "evals": evals, "agent": setup.agent.state_dict(),
            "spec": vars(setup.agent.spec), "reference": vars(setup.reference),
            "buffer_rng": buffer.rng_state() if buffer is not None else None,
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state(setup.device) if cuda else None,
            "buffer": buffer.contents() if setup.online and buffer is not None else None,
            "loop": loop.state_dict() if hasattr(loop, "state_dict") else None}


def restore_state(state: dict, setup: Setup) -> tuple[int, list]:
    setup.agent.begin_phase(state["step"])       # a stage's fresh optimizer, then its saved state
    setup.agent.load_state_dict(state["agent"])
    if state.get("buffer") is not None:
        setup.buffer.add(state["buffer"])
    if setup.buffer is not None:
        setup.buffer.set_rng_state(state["buffer_rng"].cpu())
    torch.set_rng_state(state["torch_rng"].cpu())
    if setup.device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"].cpu(), setup.device)
    evals = state["evals"]
    if evals and isinstance(evals[0], dict):  # written before seeds=K: one seed's history
        evals = [evals]
    return state["step"], evals


def save_policy_snapshot(run_dir: Path, step: int, agent: Agent, result: dict) -> None:
    state = {"step": step, "agent": agent.state_dict()["modules"], "eval": result,
             "spec": vars(agent.spec)}
    atomic_write(run_dir / "policies" / f"step_{step:09d}.pt", lambda tmp: torch.save(state, tmp))


def train(cfg: DictConfig) -> list[RunResult]:
    """Train one agent (one result) or `seeds=K` agents at once (one result per seed)."""
    device = resolve_device(cfg.device)
    if not simulates(cfg) and not learns_online(cfg):                  # an unknown dataset fails before any folder exists
        if not cfg.env.get("dataset"):
            raise ConfigError(f"env={cfg.env.name} has no dataset for agent={cfg.agent.name} to "
                              f"learn from; it is for agents that learn online: "
                              f"{on_policy_agents()} (or give env.dataset=...)")
        check_goals(cfg)
        learns_from_preferences(cfg)
        for name in (cfg.env.dataset, cfg.env.get("suboptimal")):
            if name:
                locate(str(name), cfg.data.transitions, cfg.data.seed, cfg.data.dir)
    run_dir = Path(cfg.resume or cfg.run_dir or default_run_dir(cfg))
    run_dir.mkdir(parents=True, exist_ok=True)
    cfg = OmegaConf.merge(cfg, {"run_dir": str(run_dir)})
    atomic_write_text(run_dir / "config.yaml", OmegaConf.to_yaml(cfg, resolve=True))
    t, seeds = cfg.trainer, resolve_seeds(cfg)
    setup = prepare(cfg, device, progress=t.progress)
    agent, buffer = setup.agent, setup.buffer
    report_transfer(run_dir, buffer)
    evaluator = setup.evaluator(t.eval_episodes)
    looped = setup.on_policy or setup.simulates     # the agent runs its own data between steps
    mode = "eager" if looped else resolve_mode(t.compile, device, t.steps)
    if looped and t.compile not in ("auto", "eager"):
        what = ("is on-policy: its iteration runs episodes in the environment" if setup.on_policy
                else "learns from a simulator: its step runs simulations")
        raise ConfigError(f"trainer.compile={t.compile}: agent={cfg.agent.name} {what}, not a "
                          "batch update; use auto or eager")
    adam = t.get("captured_adam", DEFAULT_CAPTURED_ADAM)   # run folders from before the option
    check_captured_adam(adam)
    set_matmul_precision(t.get("matmul_precision", "highest"))

    start, evals = 0, [[] for _ in seeds]       # evals[k]: seed k's evaluations
    phase_starts = set(agent.phase_starts())
    dirs = seed_dirs(run_dir, seeds)
    checkpoint, restored = latest_checkpoint(run_dir), None
    if checkpoint is not None:                  # before any capture: it replaces optimizer state
        restored = load_checkpoint(checkpoint, device)
        start, evals = restore_state(restored, setup)
        for d in dirs:
            truncate_metrics(d, start)
    elif cfg.resume:
        print(f"no checkpoint in {run_dir}: starting from step 0", file=sys.stderr)

    if looped:
        per_call = 1                            # one iteration per training step
        if setup.simulates:
            from rlcore.training.simulation import SimulationLoop
            step_fn = SimulationLoop(setup)
        else:
            step_fn = setup.on_policy_loop()
        if restored is not None and restored.get("loop"):
            step_fn.load_state_dict(restored["loop"])
    elif setup.online:
        from rlcore.training.online import OnlineCollector
        per_call = 1                            # one update per environment step
        if t.get("updates_per_call") not in (None, "auto", 1):
            raise ConfigError(f"trainer.updates_per_call={t.updates_per_call}: an online agent "
                              "takes one update per environment step; leave it at auto")
        step_fn = OnlineCollector(setup, batch_update(agent, mode, adam))
    else:
        per_call = resolve_updates_per_call(
            t.get("updates_per_call"), mode, agent.update_cycle,
            [t.steps - start, start, t.log_every, t.eval_every, t.checkpoint_every,
             *(s for s in phase_starts if s > 0)])
        run_updates = update_step(agent, buffer, cfg.agent.batch_size, mode, per_call, adam)

        def step_fn(step: int) -> dict:
            return run_updates()

    for d in dirs:
        d.mkdir(parents=True, exist_ok=True)
    loggers = [RunLogger(d, cfg) for d in dirs]
    seed_text = f"seed {seeds[0]}" if len(seeds) == 1 else f"{len(seeds)} seeds"
    title = f"{cfg.agent.name} on {dataset_label(cfg)}, {seed_text}"
    if mode != "eager":
        how = "torch.compile" + (f", {per_call} updates per CUDA graph" if mode == "cudagraphs" else "")
        print(f"{title}: compiling the update ({how}; the first steps wait for it)", file=sys.stderr)
    bar = progress_bar(total=t.steps, initial=start, desc=title,
                       unit="it" if setup.on_policy else "upd", disable=not t.progress)
    if evals[0]:
        bar.set_postfix(score=mean_score([e[-1] for e in evals]))
    sums: dict[str, torch.Tensor] = {}
    counts: dict[str, int] = {}   # a metric's updates: TD3's actor metrics come every 2nd one
    tested: dict = {}                 # a simulator run's test cost, optimum and gap
    count, updates, tick = 0, 0, time.perf_counter()
    try:
        for step in range(start + per_call, t.steps + 1, per_call):
            if getattr(step_fn, "stopped", False):   # early stopping (a simulator's dev cost)
                break
            metrics = step_fn(step)  # None while an online agent only collects
            if step in phase_starts and not setup.online:   # a new stage: a new compiled update
                agent.begin_phase(step)
                run_updates = update_step(agent, buffer, cfg.agent.batch_size, mode, per_call, adam)
            if metrics is not None:  # per_call updates, each metric averaged over them
                for key, value in metrics.items():
                    sums[key] = sums[key] + value if key in sums else value.clone()
                    counts[key] = counts.get(key, 0) + 1
                updates += per_call
            count += per_call
            if step % t.log_every == 0 or step == t.steps:
                per_seed = [{} for _ in seeds]
                if sums:  # one sync: [metrics] or [metrics, seeds]
                    means = torch.stack([sums[k].float() / counts[k] for k in sums])
                    means = means.reshape(len(sums), -1).expand(len(sums), len(seeds)).T.tolist()
                    per_seed = [dict(zip(sums, row)) for row in means]
                rate = updates / (time.perf_counter() - tick)
                extra = getattr(step_fn, "stats", dict)()
                for logger, values in zip(loggers, per_seed):
                    logger.log("train", step, {**values, "updates_per_s": rate, **extra})
                sums, counts, count, updates = {}, {}, 0, 0
            if step % t.eval_every == 0 or step == t.steps:
                results = evaluator(agent, [s * 1_000_003 + step for s in seeds])
                progress = getattr(step_fn, "progress", dict)()   # on-policy: env steps so far
                results = [{**r, **progress} for r in results]
                for logger, history, result in zip(loggers, evals, results):
                    history.append({"step": step, **result})
                    logger.log("eval", step, result)
                bar.set_postfix(score=mean_score(results))
                if hasattr(step_fn, "after_eval"):        # keeps the best dev policy; may stop
                    step_fn.after_eval(step, results)
                if setup.online and not looped:           # behaviour-policy snapshots (SAC)
                    save_policy_snapshot(run_dir, step, agent, results[0])
            stopping = getattr(step_fn, "stopped", False)
            if step % t.checkpoint_every == 0 or step == t.steps or stopping:
                save_checkpoint(run_dir, step, capture_state(step, evals, setup, step_fn),
                                t.keep_checkpoints)
            if count == 0:
                tick = time.perf_counter()  # updates/s excludes evaluation and saving
            bar.update(per_call)
            if stopping:
                bar.write(f"early stopping at step {step}: no better dev cost since step "
                          f"{step_fn.best_step}")
        if setup.simulates:                     # the kept policy on the test set
            tested = step_fn.test()
            for logger in loggers:
                logger.log("test", t.steps, tested)
            atomic_write_text(run_dir / "test.json", json.dumps(tested, indent=1))
    finally:
        bar.close()
        for logger in loggers:
            logger.close()
        evaluator.close()
        if setup.online:
            step_fn.close()

    results = []
    for seed, d, history in zip(seeds, dirs, evals):
        plot_run(read_metrics(d), d / "curve.png", f"{cfg.agent.name} on {dataset_label(cfg)}, seed {seed}")
        scores = [e["score_mean"] for e in history]
        best = min if setup.reference.lower_is_better else max
        result = RunResult(d, cfg.agent.name, dataset_label(cfg), int(seed),
                           int(history[-1]["step"]) if setup.simulates and history else int(t.steps),
                           scores[-1] if scores else float("nan"),
                           best(scores) if scores else float("nan"), setup.reference.source,
                           history[-1].get("return_mean", float("nan")) if history else float("nan"),
                           tested.get("test_cost", float("nan")), tested.get("optimum", float("nan")))
        write_summary(d / "summary.json", result)
        results.append(result)
    if len(seeds) > 1:
        write_summary(run_dir / "summary.json", *results)
    return results


def mean_score(results: list[dict]) -> str:
    return f"{np.mean([r['score_mean'] for r in results]):.1f}"


def write_summary(path: Path, *results: RunResult) -> None:
    rows = [{k: str(v) if isinstance(v, Path) else v for k, v in vars(r).items()} for r in results]
    atomic_write_text(path, json.dumps(rows[0] if len(rows) == 1 else rows, indent=2))
