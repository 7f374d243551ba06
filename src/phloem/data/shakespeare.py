"""LEAF Shakespeare: next-character prediction, one client per speaking role.

The federated Shakespeare task of LEAF (Caldas, Duddu, Wu, Li, Konecny, McMahan, Smith,
Talwalkar, "LEAF: A Benchmark for Federated Settings", arXiv:1812.01097, 2018; first used for
FL by McMahan et al., "Communication-Efficient Learning of Deep Networks from Decentralized
Data", AISTATS 2017). The source is Project Gutenberg etext #100 (the complete works, 1994);
the parse follows LEAF's description, written here from that description:

- a play starts at each ``by William Shakespeare`` line after the Sonnets; its title is the
  nearest non-blank line above;
- a speech starts at a line ``"  NAME. text"`` (two spaces; in The Comedy of Errors no
  indent) and continues on lines indented four spaces (two in The Comedy of Errors); any other
  line ends it. Names are upper-cased, so ``Sir Toby`` and ``SIR TOBY`` are one role;
- a role is a (play, speaker) pair; its text is its speeches joined by single spaces (runs of
  spaces collapsed), characters outside the vocabulary replaced by a space. Plays with fewer
  than two speakers (the poems) are dropped;
- a sample of a role is a window of ``seq_len`` (80) characters, its label the character that
  follows; windows slide by one character;
- each role's first ``1 - test_fraction`` of windows (in time order) are its training rows;
  its test rows start ``seq_len`` windows after the last training window, so no character of
  a test window lies in a training window (LEAF starts them ``seq_len - 1`` later: it shares
  one character). ``limit`` keeps a role's first ``limit`` training windows and, after the
  same gap, ``limit * test_fraction / (1 - test_fraction)`` test windows.

Like LEAF's parse, stage directions indented inside a speech (``Exit``) stay in its text.
This parse finds 1,281 roles and 3,744,608 windows of 80 (LEAF reports 1,129 users and
4,226,158 samples for its own version of the parse).

The vocabulary is LEAF's fixed 80-character set :data:`VOCAB` (index = position in the string).

Memory: every sample is ``seq_len`` int64 indices (640 bytes), and the whole text yields about
four million windows, so use ``max_clients``, ``min_samples`` and ``limit`` for anything but a
large machine. The file's licence forbids shipping it inside the project; it is read from the
data folder.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Final

import numpy as np
import numpy.typing as npt

from phloem.data.dataset import ArrayDataset, TrainTest
from phloem.data.datasets import Dataset
from phloem.data.loaders import _find_first, _read_bytes
from phloem.data.registries import DATASETS

__all__ = [
    "VOCAB",
    "Role",
    "Shakespeare",
    "ShakespeareParams",
    "encode",
    "load_shakespeare",
    "shakespeare_roles",
]

#: LEAF's 80 characters (``language_utils.ALL_LETTERS``); a character's index is its position
VOCAB: Final = "\n !\"&'(),-.0123456789:;>?ABCDEFGHIJKLMNOPQRSTUVWXYZ[]abcdefghijklmnopqrstuvwxyz}"
_SPACE: Final = VOCAB.index(" ")
_TABLE: Final = np.full(256, _SPACE, dtype=np.int64)
_TABLE[[ord(c) for c in VOCAB]] = np.arange(len(VOCAB))

_FILE: Final = "shakespeare/shaks12.txt.gz"
_AUTHOR: Final = "by William Shakespeare"
_SPEAKER: Final = re.compile(r"^  ([A-Za-z][A-Za-z ]*)\. (\S.*)$")
_CONTINUED: Final = re.compile(r"^    (\S.*)$")
_COE_SPEAKER: Final = re.compile(r"^([A-Za-z][A-Za-z ]*)\. (\S.*)$")
_COE_CONTINUED: Final = re.compile(r"^  (\S.*)$")
_COE_TITLE: Final = "THE COMEDY OF ERRORS"
_SPACES: Final = re.compile(r" {2,}")


@dataclass(frozen=True)
class Role:
    """One speaking role: ``play`` title, ``speaker`` (upper case) and everything it says."""

    play: str
    speaker: str
    text: str

    @property
    def client_id(self) -> str:
        """LEAF's user name: ``PLAY_SPEAKER`` with spaces as underscores."""
        return f"{self.play}_{self.speaker}".replace(" ", "_")


def encode(text: str) -> npt.NDArray[np.int64]:
    """Indices into :data:`VOCAB`; a character outside it becomes a space."""
    raw = np.frombuffer(text.encode("latin-1", errors="replace"), dtype=np.uint8)
    return _TABLE[raw]


def _parse(lines: list[str]) -> list[Role]:
    """Roles in order of first appearance, play by play (see the module docstring)."""
    starts = [i for i, line in enumerate(lines) if line.strip() == _AUTHOR]
    plays: list[tuple[str, dict[str, list[str]]]] = []
    speeches: dict[str, list[str]] = {}
    current: str | None = None
    coe = False
    begin = starts[1] if len(starts) > 1 else len(lines)  # the first is the Sonnets
    for i in range(begin, len(lines)):
        line = lines[i].rstrip()
        if line.strip() == _AUTHOR:
            title = next((t.strip() for t in reversed(lines[max(0, i - 7) : i]) if t.strip()), "")
            speeches, current, coe = {}, None, title == _COE_TITLE
            plays.append((title, speeches))
            continue
        m = (_COE_SPEAKER if coe else _SPEAKER).match(line)
        if m is not None:
            name = " ".join(m.group(1).upper().split())
            if coe and name.startswith("ACT"):
                current = None
                continue
            speeches.setdefault(name, []).append(m.group(2))
            current = name
            continue
        c = (_COE_CONTINUED if coe else _CONTINUED).match(line)
        if current is not None and c is not None:
            speeches[current].append(c.group(1))
        else:
            current = None
    roles = []
    for title, by_name in plays:
        if len(by_name) < 2:
            continue
        for name, parts in by_name.items():
            text = _SPACES.sub(" ", " ".join(p.strip() for p in parts))
            roles.append(Role(title, name, text))
    return roles


@functools.lru_cache(maxsize=2)
def _roles_cached(path: str, size: int, mtime_ns: int) -> tuple[Role, ...]:
    text = _read_bytes(Path(path)).decode("latin-1")
    roles = _parse(text.splitlines())
    if not roles:
        raise ValueError(
            f"{path}: no play with speakers found (expected the Gutenberg complete works, "
            f"etext #100, with '{_AUTHOR}' before each play)"
        )
    return tuple(roles)


def _find(path: str | Path | None) -> Path:
    return _find_first([_FILE, "shakespeare/shaks12.txt"], path, what="Shakespeare text")


def shakespeare_roles(path: str | Path | None = None) -> tuple[Role, ...]:
    """Every (play, speaker) role of the complete works, in order of appearance.

    Parameters
    ----------
    path
        The text (gzipped or not), or a folder holding ``shaks12.txt.gz`` (directly or under
        ``shakespeare/``); default: ``<data folder>/shakespeare/shaks12.txt.gz``.

    Raises
    ------
    DataNotFoundError
        When the file is missing, saying where to put it.
    """
    file = _find(path)
    st = file.stat()
    return _roles_cached(str(file), st.st_size, st.st_mtime_ns)


def _windows(codes: npt.NDArray[np.int64], seq_len: int) -> npt.NDArray[np.int64]:
    """``(len - seq_len, seq_len + 1)``: each window and the character after it."""
    view = np.lib.stride_tricks.sliding_window_view(codes, seq_len + 1)
    return np.ascontiguousarray(view)


def load_shakespeare(
    path: str | Path | None = None,
    *,
    seq_len: int = 80,
    test_fraction: float = 0.1,
    min_samples: int = 0,
    max_clients: int | None = None,
    limit: int | None = None,
) -> TrainTest:
    """LEAF Shakespeare as windows of character indices, grouped by speaking role.

    Parameters
    ----------
    path
        See :func:`shakespeare_roles`.
    seq_len
        Characters per input window (LEAF: 80).
    test_fraction
        Share of each role's windows held out at its end (LEAF: 0.1), in (0, 1).
    min_samples
        Keep roles with at least this many windows (before ``limit``).
    max_clients
        Keep the first this many such roles, in order of appearance (``None``: all).
    limit
        Use at most the first this many training windows of each role, and the test windows
        that follow them in the same proportion (``None``: all).

    Returns
    -------
    TrainTest
        ``name="shakespeare"``; ``x`` is ``(n, seq_len)`` ``int64`` indices into
        :data:`VOCAB`, ``y`` the next character's index, ``num_classes=80``; ``groups`` the
        role of each row (``k`` is the ``k``-th kept role), for the ``natural`` partition.
    """
    if seq_len < 1:
        raise ValueError(f"data.seq_len must be >= 1, got {seq_len}")
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"data.test_fraction must be in (0, 1), got {test_fraction}")
    chosen: list[npt.NDArray[np.int64]] = []
    for role in shakespeare_roles(path):
        n = len(role.text) - seq_len
        if n >= max(min_samples, 1):
            chosen.append(encode(role.text))
            if max_clients is not None and len(chosen) == max_clients:
                break
    if not chosen:
        raise ValueError(
            f"no speaking role has data.min_samples = {min_samples} windows of "
            f"data.seq_len = {seq_len}; lower min_samples"
        )
    parts: dict[str, list[npt.NDArray[np.int64]]] = {"train": [], "test": [], "gtr": [], "gte": []}
    for k, codes in enumerate(chosen):
        w = _windows(codes, seq_len)
        n_train = max(1, int((1.0 - test_fraction) * len(w)))
        n_test = len(w)
        if limit is not None and limit < n_train:
            n_train = limit
            n_test = round(limit * test_fraction / (1.0 - test_fraction))
        train = w[:n_train]
        test = w[n_train + seq_len :][:n_test]
        parts["train"].append(train)
        parts["test"].append(test)
        parts["gtr"].append(np.full(len(train), k, dtype=np.int64))
        parts["gte"].append(np.full(len(test), k, dtype=np.int64))
    k_vocab = len(VOCAB)
    splits = []
    for s, g in (("train", "gtr"), ("test", "gte")):
        w = np.concatenate(parts[s]) if parts[s] else np.zeros((0, seq_len + 1), np.int64)
        groups = np.concatenate(parts[g])
        splits.append(ArrayDataset(w[:, :seq_len].copy(), w[:, seq_len].copy(), k_vocab, groups))
    return TrainTest("shakespeare", splits[0], splits[1])


def _positive_or_none(name: str, value: int | None) -> None:
    if value is not None and value < 1:
        raise ValueError(f"data.{name} must be a positive integer or empty (all), got {value}")


@dataclass(frozen=True)
class ShakespeareParams:
    """``path``: a file or folder instead of the data folder; ``seq_len`` characters a window
    (LEAF: 80); ``test_fraction`` held out at the end of each role (LEAF: 0.1); roles with at
    least ``min_samples`` windows, the first ``max_clients`` of them; at most ``limit`` windows
    a role."""

    path: str | None = None
    seq_len: int = 80
    test_fraction: float = 0.1
    min_samples: int = 0
    max_clients: int | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.seq_len < 1:
            raise ValueError(f"data.seq_len must be >= 1, got {self.seq_len}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"data.test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.min_samples < 0:
            raise ValueError(f"data.min_samples must be >= 0, got {self.min_samples}")
        _positive_or_none("max_clients", self.max_clients)
        _positive_or_none("limit", self.limit)


@DATASETS.register
class Shakespeare(Dataset):
    name: ClassVar[str] = "shakespeare"
    description: ClassVar[str] = (
        "LEAF Shakespeare next char, one client per (play, speaker) (Caldas et al., arXiv 2018)"
    )
    Params: ClassVar[type[ShakespeareParams]] = ShakespeareParams
    has_owners: ClassVar[bool] = True

    @classmethod
    def load(
        cls, params: ShakespeareParams, *, num_clients: int, rng: np.random.Generator
    ) -> TrainTest:
        p = params
        return load_shakespeare(
            p.path,
            seq_len=p.seq_len,
            test_fraction=p.test_fraction,
            min_samples=p.min_samples,
            max_clients=p.max_clients,
            limit=p.limit,
        )
