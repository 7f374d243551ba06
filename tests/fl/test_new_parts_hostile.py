"""The new parts of phloem.fl driven by someone who did not build them.

Each case here broke (a traceback, a false stop, a silently ignored key) before it was mended:
a careless user's config, an adversarial value, a combination nobody spelled out.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from phloem.cli.app import app
from phloem.fl.simulate import _LossWatch

runner = CliRunner()

QUAD = """
[data]
dataset = "quadratic"
num_clients = 6
dim = 8

[algorithm]
name = "{alg}"

[local]
solver = "full"

[sampling]
scheme = "full"

[run]
name = "q"
rounds = 4
"""


def _cli(
    tmp_path: Path, alg: str, *sets: str, extra: str = "", cmd: str = "run"
) -> tuple[int, str]:
    """``phloem fl CMD`` on a small quadratic config; (exit code, output on one line)."""
    path = tmp_path / "q.toml"
    path.write_text(QUAD.format(alg=alg) + extra)
    args = ["fl", cmd, str(path)]
    if cmd == "run":
        args += ["--set", f"run.out_dir={tmp_path / 'runs'}"]
    for s in sets:
        args += ["--set", s]
    res = runner.invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    return res.exit_code, " ".join(res.output.split())


# --- divergence watch ------------------------------------------------------------------------


def test_a_first_loss_of_zero_is_no_scale_for_divergence() -> None:
    watch = _LossWatch(1e6)
    assert watch.check(0.0) is None  # the quadratic's f(x0 = 0)
    assert watch.check(0.05) is None  # was "exploded past 1e+06 x 1e-12"
    assert watch.check(-0.2) is None
    assert watch.check(1e6) is not None  # a real explosion is still caught


@pytest.mark.parametrize("alg", ["fednova", "feddyn"])
def test_partial_participation_on_the_quadratic_is_not_a_false_divergence(
    tmp_path: Path, alg: str
) -> None:
    # The sampled clients' loss at x0 = 0 is 0, and their next one is positive for some
    # cohorts: runs with a small, safe step stopped at round 2 as "diverged".
    code, out = _cli(tmp_path, alg, "sampling.scheme=poisson", "sampling.rate=0.3", "run.rounds=6")
    assert code == 0, out


# --- compressors -----------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dithering", "qsgd"])
def test_absurd_quantisation_levels_are_refused_not_a_traceback(tmp_path: Path, name: str) -> None:
    # levels = 1e30 ran until compress() raised OverflowError inside the first round.
    extra = f'[compressor]\nname = "{name}"\nlevels = 1e30\n'
    code, out = _cli(tmp_path, "diana", extra=extra)
    assert code == 2 and "compressor.levels" in out and "16777216" in out, out
    ok = f'[compressor]\nname = "{name}"\nlevels = 16777216\n'
    assert _cli(tmp_path, "diana", "server.lr=0.1", extra=ok)[0] == 0
