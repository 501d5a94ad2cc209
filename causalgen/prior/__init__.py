"""The prior: everything from a config and a seed to a `Task` with its exact ground truth.

Graph, roles, mechanisms and noise are drawn (`draft`), the SCM is simulated in both worlds
(`scm`, `linear`), the population ATE found (`ate`) and quality-checked (`qc`) by `sampler`.
`measure` types and distorts covariates, `tables` reads real covariate tables (and a bundled
default pool) for the semi-synthetic mode, `audit` re-checks the ground truth, and `coverage`
describes any dataset (user data or a task) and places it within a prior's tasks.
This room imports nothing else of causalgen: `store` and `hub` build on it, never the reverse.
"""

from .config import ConfigError, TaskConfig
from .presets import PRESETS, load_config
from .sampler import SamplingError, sample_task, sample_tasks
from .task import ROLE_NAMES, Role, Task

__all__ = ["ConfigError", "PRESETS", "ROLE_NAMES", "Role", "SamplingError", "Task", "TaskConfig", "load_config",
           "sample_task", "sample_tasks"]
