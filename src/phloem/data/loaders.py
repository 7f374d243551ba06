"""Data-set loaders that read local files and never download.

Every loader returns a :class:`~phloem.data.dataset.TrainTest` whose splits hold ``float32``
features and ``int64`` labels. File-based loaders look for their files with
:func:`~phloem.data.paths.find_data_file`: in the folder named by ``PHLOEM_DATA_DIR`` or at an
explicit ``path``; a missing file raises :class:`~phloem.core.errors.DataNotFoundError` saying
where it looked and how to provide the file. A file that is present but malformed raises
:class:`ValueError` naming the file (and the line, for text formats) and what is wrong.

Heavy optional dependencies (scikit-learn's data sets, Pillow) are imported inside the functions
that need them, so ``import phloem.data`` stays cheap.
"""

from __future__ import annotations

import gzip
import io
import os
import pickle
import re
import tempfile
import warnings
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from phloem.core.errors import DataNotFoundError
from phloem.data.dataset import ArrayDataset, TrainTest
from phloem.data.paths import ENV_DIR, find_data_file

__all__ = [
    "default_cache_dir",
    "load_cifar10",
    "load_digits",
    "load_femnist",
    "load_libsvm",
    "load_libsvm_pair",
    "load_mnist",
    "read_idx",
    "read_libsvm",
]

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.int64]

_GZIP_MAGIC: Final = b"\x1f\x8b"
_REDOWNLOAD: Final = (
    "the file is corrupt or truncated; replace it and compare its sha256 with MANIFEST.json"
)

# Feature counts of the LIBSVM binary sets whose test files may use fewer features than train.
_LIBSVM_FEATURES: Final[dict[str, int]] = {
    **{f"a{i}a": 123 for i in range(1, 10)},
    **{f"w{i}a": 300 for i in range(1, 9)},
}


# --------------------------------------------------------------------------------------------
# shared helpers


def _find_first(relatives: Sequence[str], explicit: str | Path | None, what: str) -> Path:
    """The first of ``relatives`` that exists; otherwise one error naming every place looked."""
    looked: list[Path] = []
    for rel in relatives:
        try:
            return find_data_file(rel, explicit=explicit, what=what)
        except DataNotFoundError as exc:
            looked.extend(p for p in exc.looked_in if p not in looked)
    names = " or ".join(f"<data folder>/{r}" for r in relatives)
    fix = (
        f"Put the file at {names} and set {ENV_DIR}=<data folder> "
        f"(e.g. {ENV_DIR}=../shared/data), or pass its path explicitly."
    )
    raise DataNotFoundError(what, looked, fix)


def _read_bytes(path: Path) -> bytes:
    """The content of ``path``, transparently gunzipped when it starts with the gzip magic."""
    raw = path.read_bytes()
    if not raw.startswith(_GZIP_MAGIC):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise ValueError(f"{path}: cannot be gunzipped ({exc}); {_REDOWNLOAD}") from exc


def _check_fraction(test_fraction: float) -> None:
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in the open interval (0, 1), got {test_fraction}")


def _stratified_split(
    y: npt.NDArray[np.integer[Any]], test_fraction: float, rng: np.random.Generator
) -> tuple[IntArray, IntArray]:
    """Sorted (train, test) row indices with ``round(test_fraction * n_c)`` test rows per class."""
    _check_fraction(test_fraction)
    test_parts = []
    for c in np.unique(y):
        rows = rng.permutation(np.flatnonzero(y == c))
        test_parts.append(rows[: round(test_fraction * len(rows))])
    test = np.sort(np.concatenate(test_parts)).astype(np.int64)
    mask = np.ones(len(y), dtype=bool)
    mask[test] = False
    train = np.flatnonzero(mask).astype(np.int64)
    if len(train) == 0 or len(test) == 0:
        raise ValueError(
            f"test_fraction={test_fraction} leaves an empty train or test split of {len(y)} rows; "
            "choose a fraction nearer 0.5 or use more rows"
        )
    return train, test


def _balanced_head(labels: npt.NDArray[np.integer[Any]], limit: int | None) -> IntArray:
    """Sorted indices of ``limit`` rows taken round-robin over classes, in file order per class.

    Deterministic and class-balanced even when the file is sorted by label (as the CIFAR-10
    npz is), so a small ``limit`` still sees every class.
    """
    n = len(labels)
    if limit is None or limit >= n:
        return np.arange(n, dtype=np.int64)
    order = np.argsort(labels, kind="stable")
    sorted_labels = labels[order]
    starts = np.searchsorted(sorted_labels, sorted_labels, side="left")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - starts
    key = rank * (int(labels.max()) + 1) + labels.astype(np.int64)
    return np.sort(np.argsort(key, kind="stable")[:limit]).astype(np.int64)


def _check_limit(name: str, limit: int | None) -> None:
    if limit is not None and limit < 1:
        raise ValueError(f"{name} must be a positive number of rows or None (all), got {limit}")


def _labels_dataset(
    x: FloatArray, y: npt.NDArray[Any], num_classes: int, groups: npt.NDArray[Any] | None = None
) -> ArrayDataset:
    g = None if groups is None else np.asarray(groups, dtype=np.int64)
    return ArrayDataset(x, np.asarray(y, dtype=np.int64), num_classes, g)


# --------------------------------------------------------------------------------------------
# scikit-learn digits


def load_digits(test_fraction: float = 0.2, *, rng: np.random.Generator) -> TrainTest:
    """scikit-learn's bundled handwritten digits (1,797 rows, no file needed).

    Parameters
    ----------
    test_fraction
        Share of each class put in the test split, in (0, 1).
    rng
        Generator that draws the stratified split.

    Returns
    -------
    TrainTest
        ``name="digits"``; ``x`` is ``(n, 64)`` ``float32`` in [0, 1] (the 8x8 grey levels 0..16
        divided by 16), ``y`` ``int64`` in 0..9, ``num_classes=10``.
    """
    from sklearn.datasets import load_digits as _sk_load_digits

    bunch = _sk_load_digits()
    x = (np.asarray(bunch.data, dtype=np.float32) / np.float32(16.0)).astype(np.float32)
    y = np.asarray(bunch.target, dtype=np.int64)
    (y,) = _ranked(y)
    train, test = _stratified_split(y, test_fraction, rng)
    return TrainTest(
        "digits", ArrayDataset(x[train], y[train], 10), ArrayDataset(x[test], y[test], 10)
    )


# --------------------------------------------------------------------------------------------
# LIBSVM text

_LIBSVM_TOKENS: Final = re.compile(r"[^:\s]+:[^:\s]+(?: [^:\s]+:[^:\s]+)*")


def _parse_libsvm_line(line: str, n_features: int | None) -> None:
    """Check one line the slow, obvious way; raise ``ValueError`` saying what is wrong."""
    parts = line.split()
    try:
        float(parts[0])
    except ValueError:
        raise ValueError(f"label {parts[0]!r} is not a number") from None
    for tok in parts[1:]:
        if tok.count(":") != 1:
            raise ValueError(f"feature {tok!r} is not of the form <index>:<value>")
        idx_s, val_s = tok.split(":")
        try:
            idx = int(idx_s)
            val = float(val_s)
        except ValueError:
            raise ValueError(f"feature {tok!r} has a non-numeric index or value") from None
        if idx < 1:
            raise ValueError(f"feature index {idx} is below 1 (LIBSVM indices are 1-based)")
        if n_features is not None and idx > n_features:
            raise ValueError(f"feature index {idx} exceeds n_features={n_features}")
        if not np.isfinite(val):
            raise ValueError(f"feature {tok!r} has a non-finite value")


def _locate_libsvm_error(path: Path, lines: Sequence[str], n_features: int | None) -> None:
    """Re-parse line by line and raise at the first malformed line (the error path only)."""
    for lineno, raw in enumerate(lines, 1):
        line = raw.partition("#")[0]
        if not line.strip():
            continue
        try:
            _parse_libsvm_line(line, n_features)
        except ValueError as exc:
            raise ValueError(f"{path}, line {lineno}: {exc}") from None


def _libsvm_labels(path: Path, y: npt.NDArray[np.float64]) -> IntArray:
    values = set(np.unique(y).tolist())
    if values <= {-1.0, 1.0}:
        return (y > 0).astype(np.int64)
    if np.all(y >= 0) and np.all(y == np.round(y)):
        return y.astype(np.int64)
    shown = sorted(values)[:5]
    raise ValueError(
        f"{path}: labels must be ±1 or non-negative integers, found e.g. {shown}; "
        "regression targets are not supported by read_libsvm"
    )


def read_libsvm(path: str | Path, n_features: int | None = None) -> tuple[FloatArray, IntArray]:
    """Parse a LIBSVM/svmlight text file (plain or gzipped) into dense arrays.

    Parameters
    ----------
    path
        The file. Each line is ``<label> <index>:<value> ...`` with 1-based indices; text after
        ``#`` is a comment; blank lines are skipped.
    n_features
        Number of columns of ``x``. ``None`` uses the largest index in the file; give it for a
        test file that may not use the last features (a9a.t), so train and test agree.

    Returns
    -------
    x : numpy.ndarray
        ``(n, n_features)`` ``float32``, zeros where a feature is absent.
    y : numpy.ndarray
        ``(n,)`` ``int64``: labels ±1 are mapped to {0, 1}; non-negative integer labels are kept.

    Raises
    ------
    ValueError
        For a malformed line, naming the file, the line number and the problem.
    """
    path = Path(path)
    if n_features is not None and n_features < 1:
        raise ValueError(f"n_features must be a positive integer or None, got {n_features}")
    lines = _read_bytes(path).decode("utf-8", errors="replace").splitlines()
    has_comments = any("#" in line for line in lines)
    labels: list[str] = []
    counts: list[int] = []
    tokens: list[str] = []
    for raw in lines:
        parts = (raw.partition("#")[0] if has_comments else raw).split()
        if parts:
            labels.append(parts[0])
            counts.append(len(parts) - 1)
            tokens.extend(parts[1:])
    try:
        x, y = _libsvm_dense(labels, counts, tokens, n_features)
    except ValueError as exc:
        _locate_libsvm_error(path, lines, n_features)
        raise ValueError(f"{path}: {exc}") from exc
    return x, _libsvm_labels(path, y)


def _libsvm_dense(
    labels: list[str], counts: list[int], tokens: list[str], n_features: int | None
) -> tuple[FloatArray, npt.NDArray[np.float64]]:
    """Vectorised conversion; raises a bare ``ValueError`` on anything malformed."""
    joined = " ".join(tokens)
    if tokens and _LIBSVM_TOKENS.fullmatch(joined) is None:
        raise ValueError("malformed feature token")
    fields = joined.replace(":", " ").split()
    idx = np.fromiter(map(int, fields[0::2]), dtype=np.int64, count=len(tokens))
    val = np.fromiter(map(float, fields[1::2]), dtype=np.float64, count=len(tokens))
    y = np.fromiter(map(float, labels), dtype=np.float64, count=len(labels))
    if len(idx) and (idx.min() < 1 or (n_features is not None and idx.max() > n_features)):
        raise ValueError("feature index out of range")
    if not (np.all(np.isfinite(val)) and np.all(np.isfinite(y))):
        raise ValueError("non-finite value")
    width = n_features if n_features is not None else int(idx.max(initial=0))
    x = np.zeros((len(labels), width), dtype=np.float32)
    rows = np.repeat(np.arange(len(labels)), counts)
    x[rows, idx - 1] = val
    return x, y


def _libsvm_test_name(file: Path) -> Path:
    """``a9a.gz`` -> ``a9a.t.gz``; ``a9a`` -> ``a9a.t``."""
    if file.suffix == ".gz":
        return file.with_name(file.name[: -len(".gz")] + ".t.gz")
    return file.with_name(file.name + ".t")


def _num_classes(*ys: IntArray) -> int:
    return max(2, max(int(y.max(initial=0)) for y in ys) + 1)


def _ranked(*ys: IntArray) -> list[IntArray]:
    """Labels replaced by their rank among the values the files use together: ``{1, 2}`` (or
    ``{2, 4}``) becomes ``{0, 1}``, 1-based multi-class ``1..K`` becomes ``0..K-1``; labels
    already ``0..K-1`` (and ±1, mapped to {0, 1} before) are unchanged. Without it a file
    labelled 1/2 read as three classes, and a binary model refused it."""
    values = np.unique(np.concatenate(ys))
    return [np.searchsorted(values, y).astype(np.int64) for y in ys]


def _find_libsvm(name: str, path: str | Path | None) -> Path:
    return _find_first(
        [f"libsvm/{name}.gz", f"libsvm/{name}"], path, what=f"LIBSVM data set '{name}'"
    )


def load_libsvm_pair(
    name: str, n_features: int | None = None, path: str | Path | None = None
) -> TrainTest:
    """A LIBSVM data set that ships a separate test file, e.g. ``a9a`` with ``a9a.t``.

    Parameters
    ----------
    name
        Data-set name; the files are ``libsvm/<name>.gz`` and ``libsvm/<name>.t.gz`` (or the
        same names without ``.gz``) in the data folder.
    n_features
        Feature count; defaults to the published count for a1a..a9a (123) and w1a..w8a (300),
        otherwise to the largest index of the train file. The test file always uses the train
        file's width.
    path
        A folder that holds the files (directly or under ``libsvm/``) instead of the data folder.

    Returns
    -------
    TrainTest
        Dense ``float32`` features, labels ranked to ``0..K-1`` (±1 and ``{1, 2}`` become
        {0, 1}).
    """
    train_file = _find_libsvm(name, path)
    test_file = _find_libsvm(f"{name}.t", path)
    width = n_features if n_features is not None else _LIBSVM_FEATURES.get(name)
    x_tr, y_tr = read_libsvm(train_file, width)
    x_te, y_te = read_libsvm(test_file, x_tr.shape[1])
    y_tr, y_te = _ranked(y_tr, y_te)
    k = _num_classes(y_tr, y_te)
    return TrainTest(name, ArrayDataset(x_tr, y_tr, k), ArrayDataset(x_te, y_te, k))


def load_libsvm(
    name_or_path: str | Path,
    n_features: int | None = None,
    path: str | Path | None = None,
    *,
    test_fraction: float = 0.2,
    rng: np.random.Generator | None = None,
) -> TrainTest:
    """A LIBSVM data set by name (looked up in the data folder) or by file path.

    When a test file (``<name>.t.gz`` next to the train file) exists it is the test split;
    otherwise a stratified ``test_fraction`` of the rows is split off with ``rng``.

    Parameters
    ----------
    name_or_path
        A name such as ``"a9a"`` or ``"w8a"`` (file ``libsvm/<name>.gz``), or the path of a
        LIBSVM file (anything containing a path separator, or an existing file).
    n_features
        Feature count; see :func:`load_libsvm_pair`.
    path
        A folder to look in instead of the data folder (only for a name).
    test_fraction
        Share of each class held out when there is no test file.
    rng
        Generator for that split; required when there is no test file.

    Returns
    -------
    TrainTest
        Dense ``float32`` features, labels ranked to ``0..K-1`` (±1 and ``{1, 2}`` become
        {0, 1}).
    """
    text = str(name_or_path)
    is_path = isinstance(name_or_path, Path) or "/" in text or os.sep in text
    if is_path or Path(text).is_file():
        train_file = find_data_file(Path(text).name, explicit=text, what=f"LIBSVM file {text}")
        sibling = _libsvm_test_name(train_file)
        test_file: Path | None = sibling if sibling.is_file() else None
        name = train_file.name.removesuffix(".gz")
    else:
        name = text
        train_file = _find_libsvm(name, path)
        try:
            test_file = _find_libsvm(f"{name}.t", path)
        except DataNotFoundError:
            test_file = None
    width = n_features if n_features is not None else _LIBSVM_FEATURES.get(name)
    x, y = read_libsvm(train_file, width)
    if test_file is not None:
        x_te, y_te = read_libsvm(test_file, x.shape[1])
        y, y_te = _ranked(y, y_te)
        k = _num_classes(y, y_te)
        return TrainTest(name, ArrayDataset(x, y, k), ArrayDataset(x_te, y_te, k))
    if rng is None:
        raise ValueError(
            f"{train_file} has no test file next to it ({_libsvm_test_name(train_file).name}); "
            f"pass rng=<numpy Generator> to split off test_fraction={test_fraction} of the rows"
        )
    (y,) = _ranked(y)
    train, test = _stratified_split(y, test_fraction, rng)
    k = _num_classes(y)
    return TrainTest(name, ArrayDataset(x[train], y[train], k), ArrayDataset(x[test], y[test], k))


# --------------------------------------------------------------------------------------------
# MNIST (IDX)

_IDX_DTYPES: Final[dict[int, str]] = {
    0x08: "u1",
    0x09: "i1",
    0x0B: ">i2",
    0x0C: ">i4",
    0x0D: ">f4",
    0x0E: ">f8",
}


def read_idx(path: str | Path) -> npt.NDArray[Any]:
    """Read an IDX file (the MNIST container), plain or gzipped.

    Parameters
    ----------
    path
        The file.

    Returns
    -------
    numpy.ndarray
        The array with the shape and element type the header declares (native byte order).

    Raises
    ------
    ValueError
        When the magic number is not an IDX one or the data size disagrees with the header.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        magic = raw[:4].hex() or "(empty file)"
        raise ValueError(
            f"{path}: not an IDX file (magic bytes {magic}, expected 0000 then a type code and "
            f"a dimension count, e.g. 00000803 for images); {_REDOWNLOAD}"
        )
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"{path}: IDX header truncated ({len(raw)} bytes); {_REDOWNLOAD}")
    dims = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_DTYPES[raw[2]])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"{path}: IDX header declares shape {dims} ({expected} data bytes) but the file "
            f"holds {len(raw) - header}; {_REDOWNLOAD}"
        )
    arr = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return arr.astype(dtype.newbyteorder("="))


def _mnist_split(images_file: Path, labels_file: Path) -> ArrayDataset:
    images = read_idx(images_file)
    labels = read_idx(labels_file)
    if images.dtype != np.uint8 or images.shape[1:] != (28, 28):
        raise ValueError(
            f"{images_file}: expected IDX ubyte images of shape (n, 28, 28) (magic 00000803), "
            f"got {images.dtype} of shape {images.shape}"
        )
    if labels.ndim != 1 or len(labels) != len(images) or labels.max(initial=0) > 9:
        raise ValueError(
            f"{labels_file}: expected {len(images)} labels in 0..9 to match {images_file.name}, "
            f"got shape {labels.shape}"
        )
    x = images.astype(np.float32).reshape(-1, 1, 28, 28)
    x *= np.float32(1.0 / 255.0)
    return ArrayDataset(x, labels.astype(np.int64), 10)


def load_mnist(path: str | Path | None = None) -> TrainTest:
    """MNIST from the four standard IDX files (60,000 train, 10,000 test).

    Parameters
    ----------
    path
        A folder holding ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
        ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (gzipped or not, directly
        or under ``mnist/``); default: ``<data folder>/mnist``.

    Returns
    -------
    TrainTest
        ``name="mnist"``; ``x`` is ``(n, 1, 28, 28)`` ``float32`` in [0, 1]; 10 classes.

    Raises
    ------
    DataNotFoundError
        When a file is missing.
    ValueError
        When a file is corrupt (bad magic number, wrong size).
    """
    files = {}
    for stem in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        rel = f"mnist/{stem}-ubyte"
        files[stem] = _find_first([f"{rel}.gz", rel], path, what=f"MNIST file {stem}-ubyte.gz")
    train = _mnist_split(files["train-images-idx3"], files["train-labels-idx1"])
    test = _mnist_split(files["t10k-images-idx3"], files["t10k-labels-idx1"])
    return TrainTest("mnist", train, test)


# --------------------------------------------------------------------------------------------
# FEMNIST (LEAF sample, npz)


def load_femnist(path: str | Path | None = None) -> TrainTest:
    """The LEAF FEMNIST sample: handwritten characters with their writers (62 classes).

    Parameters
    ----------
    path
        The npz file, or a folder holding ``femnist_leaf_sample.npz`` (directly or under
        ``femnist/``); default: ``<data folder>/femnist/femnist_leaf_sample.npz``.

    Returns
    -------
    TrainTest
        ``name="femnist"``; ``x`` is ``(n, 1, 28, 28)`` ``float32`` in [0, 1] with ink high and
        background 0 (the file stores white background = 255, which is inverted); ``groups``
        holds the writer index of each row, so :func:`phloem.data.natural` gives one client per
        writer. The shared sample has 105 writers, 14,708 train and 1,685 test rows.
    """
    file = find_data_file("femnist/femnist_leaf_sample.npz", explicit=path, what="FEMNIST sample")
    needed = ("x_train", "y_train", "w_train", "x_test", "y_test", "w_test")
    with np.load(file) as z:
        missing = [k for k in needed if k not in z.files]
        if missing:
            raise ValueError(f"{file}: missing arrays {missing}; it holds {sorted(z.files)}")
        arrays = {k: z[k] for k in needed}
    splits = []
    for s in ("train", "test"):
        raw, y = arrays[f"x_{s}"], arrays[f"y_{s}"]
        if raw.ndim != 3 or raw.shape[1:] != (28, 28) or len(y) != len(raw):
            raise ValueError(f"{file}: x_{s} must be (n, 28, 28) with n labels, got {raw.shape}")
        if y.min(initial=0) < 0 or y.max(initial=0) > 61:
            raise ValueError(f"{file}: y_{s} must lie in 0..61")
        x = np.float32(1.0) - raw.astype(np.float32) * np.float32(1.0 / 255.0)
        splits.append(_labels_dataset(x.reshape(-1, 1, 28, 28), y, 62, arrays[f"w_{s}"]))
    return TrainTest("femnist", splits[0], splits[1])


# --------------------------------------------------------------------------------------------
# CIFAR-10: JPEG npz (cached decode) or the python batches

_CIFAR_NPZ: Final = "cifar10_jpeg/cifar10_jpeg.npz"
_CIFAR_BATCHES: Final = "cifar-10-batches-py"


def default_cache_dir() -> Path:
    """Where decoded data are cached: ``PHLOEM_CACHE_DIR``, else ``$XDG_CACHE_HOME/phloem``,
    else ``~/.cache/phloem``."""
    explicit = os.environ.get("PHLOEM_CACHE_DIR")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or "~/.cache"
    return Path(base).expanduser() / "phloem"


def _cache_load(file: Path) -> tuple[npt.NDArray[np.uint8], IntArray] | None:
    if not file.is_file():
        return None
    try:
        with np.load(file) as z:
            return z["x"], z["y"]
    except Exception:  # a damaged cache entry is rebuilt, never fatal
        return None


def _cache_store(file: Path, x: npt.NDArray[np.uint8], y: IntArray) -> None:
    try:
        file.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=file.parent, prefix=file.name, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, x=x, y=y)
        os.replace(tmp, file)
    except OSError as exc:
        warnings.warn(
            f"could not write the decode cache {file} ({exc}); continuing without it",
            stacklevel=3,
        )


def _decode_jpegs(
    file: Path, split: str, jpeg: npt.NDArray[np.uint8], offsets: IntArray, rows: IntArray
) -> npt.NDArray[np.uint8]:
    try:
        from PIL import Image
    except ImportError as exc:
        raise ImportError(
            "load_cifar10 needs Pillow to decode the JPEG npz (pip install pillow), or use the "
            "python-batches format (cifar-10-batches-py)"
        ) from exc
    if offsets[0] != 0 or offsets[-1] != len(jpeg) or np.any(np.diff(offsets) <= 0):
        raise ValueError(f"{file}: {split}_offsets do not index {split}_jpeg; {_REDOWNLOAD}")
    buf = jpeg.tobytes()
    off = offsets.tolist()
    out = np.empty((len(rows), 32, 32, 3), dtype=np.uint8)
    for k, i in enumerate(rows.tolist()):
        try:
            with Image.open(io.BytesIO(buf[off[i] : off[i + 1]])) as im:
                arr = np.asarray(im.convert("RGB"))
        except (OSError, ValueError) as exc:
            raise ValueError(f"{file}: {split} image {i} is not a valid JPEG ({exc})") from exc
        if arr.shape != (32, 32, 3):
            raise ValueError(f"{file}: {split} image {i} is {arr.shape}, expected 32x32 RGB")
        out[k] = arr
    return out


def _cifar_npz_split(
    file: Path, split: str, limit: int | None, cache_dir: Path | None
) -> tuple[npt.NDArray[np.uint8], IntArray]:
    """Decoded ``(n, 32, 32, 3)`` uint8 images and labels of one split, via the cache."""
    st = file.stat()
    key = f"{file.stem}-{st.st_size}-{st.st_mtime_ns}-{split}-{limit or 'all'}.npz"
    if cache_dir is not None:
        hit = _cache_load(cache_dir / key)
        if hit is not None:
            return hit
    with np.load(file) as z:
        missing = [
            k for k in (f"{split}_jpeg", f"{split}_offsets", f"{split}_labels") if k not in z
        ]
        if missing:
            raise ValueError(f"{file}: missing arrays {missing}; it holds {sorted(z.files)}")
        labels = z[f"{split}_labels"].astype(np.int64)
        rows = _balanced_head(labels, limit)
        images = _decode_jpegs(
            file, split, z[f"{split}_jpeg"], z[f"{split}_offsets"].astype(np.int64), rows
        )
    y = labels[rows]
    if cache_dir is not None:
        _cache_store(cache_dir / key, images, y)
    return images, y


def _unpickle_batch(file: Path) -> tuple[npt.NDArray[np.uint8], IntArray]:
    try:
        with file.open("rb") as f:
            d = pickle.load(f, encoding="bytes")
        data = np.asarray(d[b"data"], dtype=np.uint8)
        labels = np.asarray(d[b"labels"], dtype=np.int64)
    except (pickle.UnpicklingError, EOFError, KeyError, TypeError, ValueError) as exc:
        raise ValueError(
            f"{file}: not a CIFAR-10 python batch (a pickled dict with b'data' and b'labels'): "
            f"{exc!r}"
        ) from exc
    if data.ndim != 2 or data.shape[1] != 3072 or len(labels) != len(data):
        raise ValueError(f"{file}: data must be (n, 3072) with n labels, got {data.shape}")
    return data.reshape(-1, 3, 32, 32), labels


def _cifar_batches(folder: Path, limit_train: int | None, limit_test: int | None) -> TrainTest:
    def load(names: Sequence[str], limit: int | None) -> ArrayDataset:
        parts = [
            _unpickle_batch(
                find_data_file(f"{_CIFAR_BATCHES}/{n}", explicit=folder, what=f"CIFAR-10 {n}")
            )
            for n in names
        ]
        x = np.concatenate([p[0] for p in parts])
        y = np.concatenate([p[1] for p in parts])
        rows = _balanced_head(y, limit)
        return ArrayDataset(_to_unit(x[rows]), y[rows], 10)

    train = load([f"data_batch_{i}" for i in range(1, 6)], limit_train)
    return TrainTest("cifar10", train, load(["test_batch"], limit_test))


def _to_unit(x: npt.NDArray[np.uint8]) -> FloatArray:
    out = x.astype(np.float32)
    out *= np.float32(1.0 / 255.0)
    return out


def load_cifar10(
    path: str | Path | None = None,
    *,
    limit_train: int | None = None,
    limit_test: int | None = None,
    cache: bool = True,
    cache_dir: str | Path | None = None,
) -> TrainTest:
    """CIFAR-10 from the shared JPEG npz or from the standard python batches.

    Two layouts are understood:

    - ``cifar10_jpeg/cifar10_jpeg.npz``: image ``i`` of split ``s`` is the JPEG
      ``s_jpeg[s_offsets[i]:s_offsets[i+1]]`` with label ``s_labels[i]`` (needs Pillow). The
      images are lossy re-encodes, not bit-exact CIFAR-10. Decoding is cached as uint8 arrays
      under :func:`default_cache_dir` (never in the data folder), keyed by the source file's
      size and modification time and by the limit.
    - ``cifar-10-batches-py/`` with ``data_batch_1`` .. ``data_batch_5`` and ``test_batch``
      (pickles; only load files you trust).

    Parameters
    ----------
    path
        The npz file, or a folder holding either layout (directly or under its usual
        sub-folder); default: the data folder, npz first.
    limit_train, limit_test
        Keep at most this many rows of the split, chosen deterministically and balanced over
        classes (the npz is sorted by label); ``None`` keeps all (50,000 / 10,000).
    cache
        Whether to read and write the decode cache.
    cache_dir
        Folder for the cache instead of :func:`default_cache_dir`.

    Returns
    -------
    TrainTest
        ``name="cifar10"``; ``x`` is ``(n, 3, 32, 32)`` ``float32`` in [0, 1]; 10 classes.
    """
    _check_limit("limit_train", limit_train)
    _check_limit("limit_test", limit_test)
    source = _find_first([_CIFAR_NPZ, f"{_CIFAR_BATCHES}/data_batch_1"], path, what="CIFAR-10")
    if source.suffix != ".npz":
        return _cifar_batches(source.parent, limit_train, limit_test)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()
    where = folder if cache else None
    splits = []
    for split, limit in (("train", limit_train), ("test", limit_test)):
        images, y = _cifar_npz_split(source, split, limit, where)
        splits.append(ArrayDataset(_to_unit(images.transpose(0, 3, 1, 2)), y, 10))
    return TrainTest("cifar10", splits[0], splits[1])
