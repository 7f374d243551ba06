"""LEAF Shakespeare: the parse on a small hand-written file, and windows, split and vocabulary
on the real text against direct slicing of each role's text (the obvious reference)."""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from phloem.core.config import from_dict
from phloem.core.errors import ConfigError, DataNotFoundError
from phloem.data.shakespeare import (
    VOCAB,
    ShakespeareParams,
    encode,
    load_shakespeare,
    shakespeare_roles,
)
from phloem.fl.config import DataConfig

REL = "shakespeare/shaks12.txt.gz"

SMALL = """\
THE SONNETS

by William Shakespeare

  From fairest creatures we desire increase,

1600

A PLAY

by William Shakespeare

  ALPHA. Hello   there friend.
    Second line.
  Beta. Reply here~ now.
Enter someone
    not continued after a stage direction
  Alpha. More words.

THE COMEDY OF ERRORS

by William Shakespeare

DUKE. Speak on.
  and more.
ACT I. SCENE 1.
EGEON. Yes.

A POEM

by William Shakespeare

  Some verse. with one speaker only, so it is dropped
"""


def _write(tmp_path: Path, text: str) -> Path:
    f = tmp_path / "shaks12.txt.gz"
    f.write_bytes(gzip.compress(text.encode("latin-1")))
    return f


def test_parse_rules_on_a_small_file(tmp_path: Path) -> None:
    roles = shakespeare_roles(_write(tmp_path, SMALL))
    got = [(r.play, r.speaker, r.text) for r in roles]
    assert got == [
        ("A PLAY", "ALPHA", "Hello there friend. Second line. More words."),
        ("A PLAY", "BETA", "Reply here~ now."),
        ("THE COMEDY OF ERRORS", "DUKE", "Speak on. and more."),
        ("THE COMEDY OF ERRORS", "EGEON", "Yes."),
    ]
    assert roles[0].client_id == "A_PLAY_ALPHA"


def test_windows_of_a_small_file(tmp_path: Path) -> None:
    f = _write(tmp_path, SMALL)
    data = load_shakespeare(f, seq_len=4, test_fraction=0.25)
    text = "Hello there friend. Second line. More words."
    codes = encode(text)
    n = len(text) - 4
    n_train = int(0.75 * n)
    mine = data.train.groups == 0
    assert mine.sum() == n_train
    np.testing.assert_array_equal(data.train.x[mine][0], codes[:4])
    assert data.train.y[mine][0] == codes[4]
    t0 = data.test.x[data.test.groups == 0][0]
    np.testing.assert_array_equal(t0, codes[n_train + 4 : n_train + 8])
    # '~' is outside LEAF's vocabulary: it becomes a space
    beta = data.train.x[data.train.groups == 1][0]
    assert "".join(VOCAB[i] for i in beta) == "Repl"
    assert encode("here~")[-1] == VOCAB.index(" ")


def test_missing_file_says_where_to_put_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as e:
        load_shakespeare(tmp_path)
    msg = str(e.value)
    assert "shakespeare/shaks12.txt.gz" in msg and "PHLOEM_DATA_DIR" in msg


def test_vocabulary_is_leafs_80_characters() -> None:
    assert len(VOCAB) == 80 and len(set(VOCAB)) == 80
    text = "To be, or not to be: that is the question."
    assert "".join(VOCAB[i] for i in encode(text)) == text


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        ("seq_len", 0, "data.seq_len"),
        ("test_fraction", 1.0, "data.test_fraction"),
        ("test_fraction", float("nan"), "data.test_fraction"),
        ("min_samples", -1, "data.min_samples"),
        ("max_clients", 0, "data.max_clients"),
        ("limit", 0, "data.limit"),
    ],
)
def test_bad_parameters_name_the_field(key: str, value: float, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        ShakespeareParams(**{key: value})  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        from_dict(DataConfig, {"dataset": "shakespeare", key: value})


def test_split_and_vocabulary_on_the_real_text(data_file: Callable[[str], Path]) -> None:
    path = data_file(REL)
    roles = shakespeare_roles(path)
    assert len(roles) > 1000  # 1,281 (play, speaker) pairs
    assert len({r.play for r in roles}) == 36
    ham = next(
        r for r in roles if r.play.startswith("THE TRAGEDY OF HAMLET") and r.speaker == "HAM"
    )
    assert ham.text.startswith("[aside] A little more than kin, and less than kind!")
    seq, tf, limit = 80, 0.1, 300
    data = load_shakespeare(path, min_samples=1000, max_clients=6, limit=limit)
    assert data.train.x.dtype == np.int64 and data.train.x.shape[1] == seq
    assert data.train.num_classes == 80 and int(data.train.x.max()) < 80
    kept = [r for r in roles if len(r.text) - seq >= 1000][:6]
    n_test = round(limit * tf / (1 - tf))
    for k, role in enumerate(kept):
        codes = encode(role.text)
        tr, te = data.train.groups == k, data.test.groups == k
        assert tr.sum() == limit and te.sum() == n_test
        for j in (0, 7, limit - 1):
            np.testing.assert_array_equal(data.train.x[tr][j], codes[j : j + seq])
            assert data.train.y[tr][j] == codes[j + seq]
        start = limit + seq  # no character of a test window lies in a training window
        np.testing.assert_array_equal(data.test.x[te][0], codes[start : start + seq])
        assert data.test.y[te][-1] == codes[start + n_test - 1 + seq]


def test_leaf_split_without_limit(data_file: Callable[[str], Path]) -> None:
    path = data_file(REL)
    data = load_shakespeare(path, max_clients=3)
    roles = shakespeare_roles(path)
    kept = [r for r in roles if len(r.text) > 80][:3]
    for k, role in enumerate(kept):
        n = len(role.text) - 80
        n_train = int(0.9 * n)
        assert (data.train.groups == k).sum() == n_train
        assert (data.test.groups == k).sum() == max(0, n - n_train - 80)
