"""The body of each ``torchrun`` process: ``python -m phloem.spb.worker RUN_DIR [--resume]``.

``phloem spb train --nproc N`` (:func:`phloem.spb.train.launch`) writes the run folder's
``config.toml`` and starts ``N`` of these; each joins the process group and trains. A user's
mistake (bad config, missing data) is one line on standard error and exit code 2, never a
traceback from every rank.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path


def _terminate_as_interrupt(signum: int, frame: object) -> None:
    # torchrun stops the other workers with SIGTERM when one fails or the user presses
    # Ctrl-C: raise, so that rank 0 records the run as interrupted and keeps what it has
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if not args or args[0].startswith("-"):
        print("usage: python -m phloem.spb.worker RUN_DIR [--resume]", file=sys.stderr)
        return 2
    from phloem.core.errors import DivergenceError, PhloemError
    from phloem.spb.train import worker_main

    signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        worker_main(Path(args[0]), "--resume" in args[1:])
    except DivergenceError as e:
        print(f"diverged: {e}", file=sys.stderr)
        return 3
    except PhloemError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
