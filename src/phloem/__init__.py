"""phloem: private, efficient distributed machine learning.

Importing :mod:`phloem` is cheap: it loads no torch. The areas live in subpackages:

- :mod:`phloem.core` -- seeded RNG streams, configs, run directories, callbacks, plotting
- :mod:`phloem.data` -- dataset loaders (never download) and federated partitioning
- :mod:`phloem.fl` -- the federated-optimisation simulator
"""

from phloem.core.errors import (
    ConfigError,
    DataNotFoundError,
    DivergenceError,
    PhloemError,
)

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "DataNotFoundError",
    "DivergenceError",
    "PhloemError",
    "__version__",
]
