"""causalgen: random structural causal models -> causal-inference datasets with exact ground truth.

    >>> import causalgen
    >>> task = causalgen.sample_task("default", seed=0)
    >>> task.x.shape, task.ate
"""

from .config import ConfigError, TaskConfig, load_config
from .corpus import Corpus, open_corpus, verify_corpus
from .presets import PRESETS
from .sampler import SamplingError, sample_task, sample_tasks
from .task import ROLE_NAMES, Role, Task

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "Corpus",
    "PRESETS",
    "ROLE_NAMES",
    "Role",
    "SamplingError",
    "Task",
    "TaskConfig",
    "__version__",
    "load_config",
    "open_corpus",
    "sample_task",
    "sample_tasks",
    "verify_corpus",
]
