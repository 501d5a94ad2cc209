"""cina: Causal Inference with Attention (Zhang et al., ICML 2024), a reference implementation.

    >>> import cina
    >>> w = cina.fit_single(x, t)                 # Algorithm 1: weights for one dataset
    >>> model = cina.CInA.load("run/ckpt")        # Algorithms 2/3: a pretrained model
    >>> est = model.estimate(x, t, y)             # zero-shot: est.ate, est.weights, est.diagnostics

`cina.balancing` holds the maths of the paper's balancing attention layer (the SVM dual);
`cina.target_balancing` the default, estimand-correct layer (each arm weighted towards the target
sample by unrolled balancing-attention steps); `cina.single` Algorithm 1; `cina.model` the
transformer. Importing cina does not import scikit-learn.
"""

from .balancing import (
    ESTIMANDS,
    BalancingAttention,
    Estimate,
    balance_diagnostics,
    balancing_loss,
    covariate_keys,
    dense_kernel,
    standardize_covariates,
    kernel_matvec,
    log_normalizer,
    normalize_keys,
    optimal_intercept,
    project_weights,
    read_out_alpha,
    values_from_alpha,
    weighted_effect,
)
from .data import ShardReadError, TaskLoader, TaskStream, select_tasks
from .model import CInA, CInAConfig, collate_datasets
from .single import DEFAULT_LAM, SingleDatasetCInA, fit_single, solve_balancing_svm
from .target_balancing import solve_target_balance

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
]
