"""Cross-task preference transfer: labels for a target task's segment pairs made from another
task's labelled segments, with no target label seen (PEARL's Cross-task Preference Alignment,
Liu, Du, Bai, Lyu, Li, ICML 2024, section 4.1; and the direct-transfer baseline).

CPA, as the paper states it:
1. Intra-domain distance matrices over segments, C^S_{ii'} = d(x_i, x_i') for the source's
   segments and C^T_{jj'} = d(y_j, y_j') for the target's.
2. A Gromov-Wasserstein coupling with square loss and uniform marginals,
   T* = argmin_{T in Pi(u, v)} sum_{i,i',j,j'} (C^S_{ii'} - C^T_{jj'})^2 T_{ij} T_{i'j'}
   (POT's `ot.gromov.gromov_wasserstein`, or the entropic version with `epsilon`).
3. Transferred soft labels z^T(y_j, y_k) = sum_{i,l} A^{jk}_{il} z^S(x_i, x_l), with
   A^{jk}_{il} proportional to T*_{ij} T*_{lk} and normalised to sum to 1 over the source pairs
   that have a label. Without the normalisation a label is scaled by the mass the two columns
   of T* put on labelled pairs (1/n^2 for a permutation coupling) and shrinks toward 0.

There is no public code; what the paper leaves open is chosen here, and configurable (env keys):
- `transfer_features`: a segment is the flat vector of its L steps of (state, action)
  (`state_action`, default), states or actions only, each coordinate standardised by the
  dataset's mean and std (so no coordinate's scale dominates d); d is Euclidean; each C is
  divided by its largest entry (GW compares distances across domains, so their scales must
  agree).
- `transfer_solver`: `exact` (conditional gradient, default) or `entropic` (`transfer_epsilon`).
- `transfer_block`: GW costs O(m^2 n + n^2 m) per iteration (2,500 x 2,500 took 33 s here and did
  not converge; 500 x 500 0.3 s). The source is subsampled to `block` segments (dense labels:
  at random; sparse: `block`/2 labelled pairs, both of each pair's segments) and the target's
  segments are split at random into blocks of at most `block`, each coupled with that one source
  subsample. Every target segment j then has a distribution q_j over the same source segments
  (its column of T*, normalised), so a pair (j, k) from two blocks gets its label as one from a
  single block does: z = q_j^T (Z * M) q_k / q_j^T M q_k, with Z the source labels and M where
  they exist.
- Source labels: dense labelling compares every pair of source segments by the labeller's
  scores (the scripted teacher labels any pair); sparse labelling has its fixed pairs only.
  `env.label_noise` = p flips each source label with probability p, once (the robustness study).
- A target pair whose columns put no mass on a labelled source pair (possible with sparse
  source labels) gets 0.5: no information, counted in the metadata as uncovered.

Direct transfer (`env.transfer=direct`, the paper's baseline): a Bradley-Terry reward model fitted
on the source's labelled pairs scores the target's segments; a target pair's label is
sigmoid(R(y_k) - R(y_j)) with R the summed reward.

The target's true labels are never used to make the transferred ones; they give the accuracy
reported beside them (`accuracy`: the transferred label on the preferred side of 0.5 where the
true label is not a tie; 0.5 counts as half right).
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass

import numpy as np
import torch
from omegaconf import OmegaConf

from rlcore.data import OfflineDataset
from rlcore.errors import ConfigError
from rlcore.logger import progress_bar
from rlcore.data.preferences import Preferences, preference_label

METHODS = ("cpa", "direct")
SOLVERS = ("exact", "entropic")
FEATURES = ("state_action", "state", "action")


@dataclass(frozen=True)
class Transfer:
    """How target labels are made from the source task's (the env keys `source`, `transfer_*`)."""
    source: str
    method: str = "cpa"
    block: int = 500
    solver: str = "exact"
    epsilon: float = 5e-3
    features: str = "state_action"
    steps: int = 2000           # direct: updates of the source reward model
    seed: int = 0

    def __post_init__(self):
        for key, value, valid in (("transfer", self.method, METHODS),
                                  ("transfer_solver", self.solver, SOLVERS),
                                  ("transfer_features", self.features, FEATURES)):
            if value not in valid:
                raise ConfigError(f"env.{key}={value!r}; valid: {', '.join(valid)}")
        if self.block < 2:
            raise ConfigError(f"env.transfer_block={self.block}: a GW block needs >= 2 segments")
        if not self.epsilon > 0:
            raise ConfigError(f"env.transfer_epsilon={self.epsilon}: must be > 0")

    @classmethod
    def from_config(cls, env_cfg, seed: int) -> "Transfer":
        keys = {"method": "transfer", "block": "transfer_block", "solver": "transfer_solver",
                "epsilon": "transfer_epsilon", "features": "transfer_features",
                "steps": "transfer_steps"}
        given = {k: env_cfg[v] for k, v in keys.items() if env_cfg.get(v) is not None}
        return cls(source=str(env_cfg.source), seed=int(seed), **given)


def source_env_config(name: str):
    """The shipped env config `name` (configs/env/<name>.yaml), checked to carry labels."""
    from rlcore.config import CONFIG_DIR, group_options
    configs = {n: OmegaConf.load(CONFIG_DIR / "env" / f"{n}.yaml") for n in group_options("env")}
    labelled = [n for n, c in configs.items() if c.get("labels")]
    if name not in labelled:
        raise ConfigError(f"env.source={name!r} is not an env with preference labels; valid: "
                          f"{', '.join(labelled)}")
    return configs[name]


# -- segments and their geometry (CPA step 1) --------------------------------------------------

def segment_features(dataset: OfflineDataset, starts: np.ndarray, length: int,
                     features: str = "state_action") -> torch.Tensor:
    """[M, L * D] flat standardised segments."""
    parts = {"state": [dataset.observations], "action": [dataset.actions],
             "state_action": [dataset.observations, dataset.actions]}[features]
    steps = np.concatenate(parts, 1).astype(np.float32)
    mean, std = steps.mean(0), np.maximum(steps.std(0), 1e-3)
    window = starts[:, None] + np.arange(length)
    return torch.as_tensor((steps[window] - mean) / std).flatten(1)


def distance_matrix(x: torch.Tensor) -> np.ndarray:
    """Euclidean distances between rows, divided by the largest (float64 for POT)."""
    d = torch.cdist(x.double(), x.double())
    return (d / d.max().clamp_min(1e-12)).numpy()


# -- the coupling (CPA step 2) -------------------------------------------------------------------

def gw_coupling(cs: np.ndarray, ct: np.ndarray, solver: str = "exact",
                epsilon: float = 5e-3) -> tuple[np.ndarray, float]:
    """T* [m, n], the square-loss Gromov-Wasserstein coupling with uniform marginals, and its
    GW discrepancy."""
    try:
        import ot
    except ImportError as e:
        raise ConfigError("cross-task preference alignment solves Gromov-Wasserstein with POT: "
                          "pip install -e \".[prefs]\" (or pip install pot)") from e
    p, q = ot.unif(len(cs)), ot.unif(len(ct))
    if solver == "exact":
        coupling, log = ot.gromov.gromov_wasserstein(cs, ct, p, q, "square_loss", log=True)
    else:
        coupling, log = ot.gromov.entropic_gromov_wasserstein(cs, ct, p, q, "square_loss",
                                                              epsilon=epsilon, log=True)
    return coupling, float(log["gw_dist"])


def source_labels(prefs: Preferences, subset: np.ndarray, noise: float,
                  rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Z, M [s, s] over the source subset: Z[i, l] = z^S(x_i, x_l) (1: x_l preferred), M = 1
    where the pair has a label; both orientations, Z[l, i] = 1 - Z[i, l]."""
    s = len(subset)
    if prefs.labels is None:                                     # dense: every pair compared
        scores = prefs.scores[subset]
        z = preference_label(scores[:, None], scores[None, :])
        mask = 1.0 - np.eye(s)
        flip = np.triu(rng.random((s, s)) < noise, 1)
        z = np.where(flip | flip.T, 1.0 - z, z)
        return z, mask
    position = np.full(len(prefs.starts), -1)
    position[subset] = np.arange(s)
    first, second = position[prefs.first], position[prefs.second]
    inside = (first >= 0) & (second >= 0)
    z, mask = np.full((s, s), 0.5), np.zeros((s, s))
    z[first[inside], second[inside]] = prefs.labels[inside]      # already flipped when made
    z[second[inside], first[inside]] = 1.0 - prefs.labels[inside]
    mask[first[inside], second[inside]] = mask[second[inside], first[inside]] = 1.0
    return z, mask


def source_subset(prefs: Preferences, block: int, rng: np.random.Generator) -> np.ndarray:
    """At most `block` source segments: at random (dense), or whole labelled pairs (sparse)."""
    m = len(prefs.starts)
    if prefs.labels is None:
        return np.sort(rng.choice(m, min(block, m), replace=False))
    pairs = rng.choice(len(prefs.labels), min(max(block // 2, 1), len(prefs.labels)), replace=False)
    return np.sort(np.concatenate([prefs.first[pairs], prefs.second[pairs]]))


def target_blocks(n: int, block: int, rng: np.random.Generator) -> list[np.ndarray]:
    """The target's segments split at random into ceil(n / block) blocks of near-equal size."""
    return np.array_split(rng.permutation(n), -(-n // block))


# -- the transferred labels (CPA step 3) ---------------------------------------------------------

def transported_labels(q_first: torch.Tensor, q_second: torch.Tensor, z: torch.Tensor,
                       mask: torch.Tensor, every_pair: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """z^T(y_j, y_k) = sum_il q_j(i) q_k(l) Z_il M_il / sum_il q_j(i) q_k(l) M_il (A^{jk}
    normalised over the labelled source pairs), 0.5 where the denominator is 0, and whether it
    was not. Rows of q_first [P, s] and q_second [P, s] pair up, or with `every_pair` every row
    of q_first meets every row of q_second: [P, P']."""
    z, mask = z.to(q_first.dtype), mask.to(q_first.dtype)
    labelled, weight = q_first @ (z * mask), q_first @ mask
    if every_pair:
        labelled, total = labelled @ q_second.T, weight @ q_second.T
    else:
        labelled, total = (labelled * q_second).sum(1), (weight * q_second).sum(1)
    covered = total > 1e-12
    return torch.where(covered, labelled / total.clamp_min(1e-300), 0.5), covered


def transport_columns(source_x: torch.Tensor, target_x: torch.Tensor, how: Transfer,
                      rng: np.random.Generator, progress: bool = True) -> tuple[np.ndarray, dict]:
    """Q [n, s]: each target segment's distribution over the source subsample (its column of
    the block's T*, normalised to sum to 1), and the solve's statistics."""
    cs = distance_matrix(source_x)
    blocks = target_blocks(len(target_x), how.block, rng)
    q = np.zeros((len(target_x), len(source_x)))
    bar = progress_bar(total=len(blocks), desc="aligning segments (Gromov-Wasserstein)",
                       unit="block", disable=not progress)
    began, gw = time.perf_counter(), []
    for block in blocks:
        ct = distance_matrix(target_x[torch.as_tensor(block)])
        coupling, discrepancy = gw_coupling(cs, ct, how.solver, how.epsilon)
        gw.append(discrepancy)
        q[block] = (coupling / np.maximum(coupling.sum(0, keepdims=True), 1e-300)).T
        bar.update(1)
    bar.close()
    return q, {"blocks": len(blocks), "source_segments": len(source_x),
               "gw_discrepancy": float(np.mean(gw)), "seconds": round(time.perf_counter() - began, 2)}


# -- the direct-transfer baseline ----------------------------------------------------------------

def direct_segment_returns(source: OfflineDataset, source_prefs: Preferences, noise: float,
                           target: OfflineDataset, target_prefs: Preferences, how: Transfer,
                           progress: bool = True) -> np.ndarray:
    """R(y_j) = sum_t r(s_t, a_t) over each target segment, with r a Bradley-Terry reward model
    (256x256 ReLU, Adam 3e-4, 64 pairs a batch, `how.steps` updates) fitted on the source's
    labelled pairs as P-IQL fits its own."""
    from torch.nn import functional as F
    from rlcore.training.buffer import Buffer
    from rlcore.agent.nets import MLP
    from rlcore.data.preferences import PreferenceSampler
    if (source.obs_dim, source.action_dim) != (target.obs_dim, target.action_dim):
        raise ConfigError(f"env.transfer=direct applies the source's reward model to the target: "
                          f"their (state, action) sizes differ, {(source.obs_dim, source.action_dim)}"
                          f" and {(target.obs_dim, target.action_dim)}; use env.transfer=cpa")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(how.seed)
        pairs = PreferenceSampler(Buffer.from_dataset(source, torch.device("cpu"), seed=how.seed),
                                  source_prefs, noise if source_prefs.labels is None else 0.0)
        model = MLP(source.obs_dim + source.action_dim, [256, 256], 1, squeeze=True)
        opt = torch.optim.Adam(model.parameters(), lr=3e-4)
        bar = progress_bar(total=how.steps, desc="fitting the source reward model", unit="upd",
                           disable=not progress)
        for _ in range(how.steps):
            batch = pairs.sample(64)
            returns = model(torch.cat([batch["observations"], batch["actions"]], -1)).sum(-1)
            loss = F.binary_cross_entropy_with_logits(returns[:, 1] - returns[:, 0], batch["labels"])
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.update(1)
        bar.close()
        steps = target_prefs.starts[:, None] + np.arange(target_prefs.length)
        inputs = torch.as_tensor(np.concatenate([target.observations, target.actions], 1))
        with torch.no_grad():
            return np.concatenate([model(inputs[torch.as_tensor(chunk)]).sum(-1).numpy()
                                   for chunk in np.array_split(steps, max(1, len(steps) // 4096))])


# -- the run's labels ----------------------------------------------------------------------------

def label_accuracy(transferred: np.ndarray, truth: np.ndarray) -> float:
    """Agreement with the true labels where those are not ties (a 0.5 label counts half)."""
    keep = truth != 0.5
    guess, truth = transferred[keep], truth[keep]
    return float(np.where(guess == 0.5, 0.5, (guess > 0.5) == (truth > 0.5)).mean())


@dataclass
class Transferred:
    """A target's transferred labels, and what made them (q: CPA's [n, s] columns)."""
    prefs: Preferences
    q: np.ndarray | None = None
    source_scores: np.ndarray | None = None


def transfer_preferences(target: OfflineDataset, target_prefs: Preferences, source: OfflineDataset,
                         source_prefs: Preferences, noise: float, how: Transfer,
                         progress: bool = True) -> Transferred:
    """Labels for the target's pairs (its fixed pairs, or with dense labelling every pair of its
    segments, a [n, n] matrix) from the source's labels; `target_prefs` gives the segments and,
    only for the accuracy in the metadata, the true scores. `noise` flips the source's dense
    labels (sparse ones were flipped when made)."""
    if source.action_dim != target.action_dim:
        raise ConfigError(f"env.source: the source's actions have {source.action_dim} dimensions "
                          f"and the target's {target.action_dim}; preferences transfer between "
                          "tasks that share an action space")
    if source_prefs.length != target_prefs.length:
        raise ConfigError("source and target segments differ in length")
    rng = np.random.default_rng(how.seed)
    began = time.perf_counter()
    dense = target_prefs.labels is None
    n, q, subset = len(target_prefs.starts), None, None
    if how.method == "cpa":
        subset = source_subset(source_prefs, how.block, rng)
        q, stats = transport_columns(
            segment_features(source, source_prefs.starts[subset], source_prefs.length, how.features),
            segment_features(target, target_prefs.starts, target_prefs.length, how.features),
            how, rng, progress)
        z, mask = (torch.as_tensor(a) for a in source_labels(
            source_prefs, subset, noise if source_prefs.labels is None else 0.0, rng))
        qt = torch.as_tensor(q)
        if dense:
            labels, covered = transported_labels(qt, qt, z, mask, every_pair=True)
        else:
            labels, covered = transported_labels(qt[target_prefs.first], qt[target_prefs.second], z, mask)
        labels, covered = labels.numpy(), covered.numpy()
    else:
        returns = direct_segment_returns(source, source_prefs, noise, target, target_prefs, how, progress)
        stats = {"reward_model_steps": how.steps}
        first, second = ((returns[:, None], returns[None, :]) if dense else
                         (returns[target_prefs.first], returns[target_prefs.second]))
        labels = 1.0 / (1.0 + np.exp(np.clip(first - second, -50, 50)))
        covered = np.ones_like(labels, bool)
    if dense:
        np.fill_diagonal(labels, 0.5)                  # a segment against itself: a tie
    scores = target_prefs.scores
    if dense:
        truth = preference_label(scores[:, None], scores[None, :])
        upper = np.triu_indices(n, 1)
        accuracy = label_accuracy(labels[upper], truth[upper])
        sharpness, coverage = np.abs(labels[upper] - 0.5).mean() * 2, covered[upper].mean()
    else:
        truth = preference_label(scores[target_prefs.first], scores[target_prefs.second])
        accuracy = label_accuracy(labels, truth)
        sharpness, coverage = np.abs(labels - 0.5).mean() * 2, covered.mean()
    meta = {**(target_prefs.metadata or {}), "transfer": {
        **asdict(how), "source_labelling": source_prefs.metadata, "accuracy": accuracy,
        "chance": 0.5, "covered": float(coverage), "sharpness": float(sharpness),
        "source_label_noise": noise, "seconds": round(time.perf_counter() - began, 2), **stats}}
    prefs = Preferences(target_prefs.starts, np.full(n, np.nan), target_prefs.length,
                        target_prefs.first, target_prefs.second, None if dense else labels,
                        meta, matrix=labels.astype(np.float32) if dense else None)
    return Transferred(prefs, q, None if subset is None else source_prefs.scores[subset])


def transferred_from_source(cfg, target: OfflineDataset, where, how, progress: bool = True) -> Transferred:
    """The run's target labels: the source env's dataset labelled as the run's env config says
    (labels, labeller, segments, length, noise), transferred to the target's segments."""
    from dataclasses import replace
    from rlcore.data.datasets import load_dataset, locate
    from rlcore.data.preferences import dataset_preferences
    transfer = Transfer.from_config(cfg.env, cfg.data.seed)
    source_cfg = source_env_config(transfer.source)
    name = str(source_cfg.dataset)
    source_where = locate(name, cfg.data.transitions, cfg.data.seed, cfg.data.dir)[1]
    source = load_dataset(name, cfg.data.transitions, cfg.data.seed, cfg.data.dir, progress=progress)
    source_prefs = dataset_preferences(source, source_where, how, progress)
    target_prefs = dataset_preferences(target, where, replace(how, label_noise=0.0), progress)
    return transfer_preferences(target, target_prefs, source, source_prefs, how.label_noise,
                                transfer, progress)
