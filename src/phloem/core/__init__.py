"""Small, dependency-light pieces every area shares (no torch at import)."""

from phloem.core.callbacks import Callback, CallbackList, EarlyStop
from phloem.core.config import apply_overrides, from_dict, load_toml, to_dict, to_toml
from phloem.core.errors import ConfigError, DataNotFoundError, DivergenceError, PhloemError
from phloem.core.history import History, read_history
from phloem.core.rng import SeedStreams, Stage
from phloem.core.rundir import RunDir, list_runs

__all__ = [
    "Callback",
    "CallbackList",
    "ConfigError",
    "DataNotFoundError",
    "DivergenceError",
    "EarlyStop",
    "History",
    "PhloemError",
    "RunDir",
    "SeedStreams",
    "Stage",
    "apply_overrides",
    "from_dict",
    "list_runs",
    "load_toml",
    "read_history",
    "to_dict",
    "to_toml",
]
