"""The estimator core: datasets in, balancing weights and effect estimates out.

`kernel` (the attention kernel), `weights` (projection, effect, diagnostics), `balancing` (the
paper's SVM layer), `target_balancing` (the default layer), `single` (Algorithm 1), `config`,
`blocks` and `model` (the CInA transformer), `estimate` (zero-shot estimation, Algorithm 3),
`checks` (the warnings of an estimate), `checkpoint` (model files, checked on load), `inputs`
(validation and padding). This room imports no other part
of cina and nothing of causalgen: data, training and evaluation build on it.
"""

from .balancing import BalancingAttention, balancing_loss, optimal_intercept, read_out_alpha, values_from_alpha
from .checkpoint import SHIPPED_MODELS, ModelFileError, ModelNotFoundError, resolve_model, shipped_model_path
from .config import CInAConfig
from .estimate import Estimate, estimate_datasets
from .inputs import check_dataset, collate_datasets
from .kernel import covariate_keys, dense_kernel, kernel_matvec, log_normalizer, normalize_keys, standardize_covariates
from .model import CInA
from .single import DEFAULT_LAM, SingleDatasetCInA, fit_single, solve_balancing_svm
from .target_balancing import solve_target_balance
from .weights import ESTIMANDS, balance_diagnostics, project_weights, weighted_effect
from .zero_shot import ZeroShotEstimator
from .augment import augmented_effect
from .outcome import OutcomeHead

__all__ = [
    "BalancingAttention", "CInA", "CInAConfig", "DEFAULT_LAM", "ESTIMANDS", "Estimate", "ModelFileError", "ModelNotFoundError",
    "SHIPPED_MODELS", "SingleDatasetCInA", "balance_diagnostics", "balancing_loss", "check_dataset",
    "collate_datasets", "covariate_keys", "dense_kernel", "estimate_datasets", "fit_single", "kernel_matvec",
    "log_normalizer", "normalize_keys", "optimal_intercept", "project_weights", "read_out_alpha",
    "resolve_model", "shipped_model_path", "solve_balancing_svm", "solve_target_balance", "standardize_covariates",
    "values_from_alpha",
    "weighted_effect", "ZeroShotEstimator", "augmented_effect", "OutcomeHead",
]
