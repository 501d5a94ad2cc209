"""cina: Causal Inference with Attention (Zhang et al., ICML 2024), a reference implementation.

    >>> import cina
    >>> w = cina.fit_single(x, t)                 # Algorithm 1: weights for one dataset
    >>> model = cina.CInA.load("default")         # Algorithms 2/3: a pretrained model
    >>> est = model.estimate(x, t, y)             # zero-shot: est.ate, est.weights, est.diagnostics

Rooms, in the order data flows (each imports only those before it):

- `cina.core`: the estimator (attention kernel, balancing layers, Algorithm 1, the CInA
  transformer, zero-shot estimation, model files);
- `cina.data`: causalgen corpora streamed as padded batches (epoch plan, shard cache, collate);
- `cina.train`: pretraining, single process or DDP under torchrun;
- `cina.eval`: baselines, benchmark loaders and the scoreboard (users of the estimator);
- `cina.cli`: the ``cina`` command.

Importing cina does not import scikit-learn.
"""

from .core import (
    DEFAULT_LAM,
    ESTIMANDS,
    BalancingAttention,
    CInA,
    CInAConfig,
    Estimate,
    SingleDatasetCInA,
    balance_diagnostics,
    balancing_loss,
    collate_datasets,
    covariate_keys,
    dense_kernel,
    fit_single,
    kernel_matvec,
    log_normalizer,
    normalize_keys,
    optimal_intercept,
    project_weights,
    read_out_alpha,
    solve_balancing_svm,
    solve_target_balance,
    standardize_covariates,
    values_from_alpha,
    weighted_effect,
    ZeroShotEstimator,
)
from .data import ShardReadError, TaskLoader, TaskStream, select_tasks

__all__ = [
    "ShardReadError",
    "TaskLoader",
    "TaskStream",
    "select_tasks",
    "CInA",
    "CInAConfig",
    "DEFAULT_LAM",
    "ESTIMANDS",
    "BalancingAttention",
    "Estimate",
    "SingleDatasetCInA",
    "balance_diagnostics",
    "balancing_loss",
    "collate_datasets",
    "covariate_keys",
    "standardize_covariates",
    "dense_kernel",
    "fit_single",
    "kernel_matvec",
    "log_normalizer",
    "normalize_keys",
    "optimal_intercept",
    "project_weights",
    "read_out_alpha",
    "solve_balancing_svm",
    "solve_target_balance",
    "values_from_alpha",
    "weighted_effect",
    "ZeroShotEstimator",
]
