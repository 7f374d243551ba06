"""Seed streams: addressed, independent, reproducible, equal to SeedSequence.spawn children."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from phloem.core.rng import SeedStreams, Stage


def test_streams_are_addressed_not_consumed() -> None:
    s = SeedStreams(42)
    a = s.numpy(Stage.CLIENT, 3, 7).random(5)
    s.numpy(Stage.CLIENT, 1, 1).random(100)  # drawing another stream changes nothing
    assert np.array_equal(a, s.numpy(Stage.CLIENT, 3, 7).random(5))
    assert torch.equal(
        torch.randperm(50, generator=s.torch(Stage.CLIENT, 3, 7)),
        torch.randperm(50, generator=s.torch(Stage.CLIENT, 3, 7)),
    )


def test_streams_are_the_spawned_children() -> None:
    root = np.random.SeedSequence(5)
    child = root.spawn(4)[Stage.SAMPLING]
    grandchild = child.spawn(3)[2]
    ours = SeedStreams(5).sequence(Stage.SAMPLING, 2)
    assert np.array_equal(ours.generate_state(4), grandchild.generate_state(4))


@pytest.mark.parametrize(
    ("a", "b"),
    [
        ((Stage.CLIENT, 1, 2), (Stage.CLIENT, 2, 1)),
        ((Stage.CLIENT, 1, 2), (Stage.COMPRESSION, 1, 2)),
    ],
)
def test_different_addresses_differ(a: tuple[int, ...], b: tuple[int, ...]) -> None:
    s = SeedStreams(0)
    assert s.int_seed(Stage(a[0]), *a[1:]) != s.int_seed(Stage(b[0]), *b[1:])


def test_int_seed_fits_torch_and_is_stable_across_processes() -> None:
    seed = SeedStreams(9).int_seed(Stage.CLIENT, 4, 5)
    assert 0 <= seed < 2**63
    code = (
        "from phloem.core.rng import SeedStreams, Stage; "
        "print(SeedStreams(9).int_seed(Stage.CLIENT, 4, 5))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) == seed


def test_negative_seed_rejected() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        SeedStreams(-1)


def test_import_phloem_is_cheap() -> None:
    code = "import sys, phloem, phloem.core.rng, phloem.data; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
