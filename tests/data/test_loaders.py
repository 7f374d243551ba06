"""Loaders: known facts of the real files, plus tiny files written here for the edge cases."""

from __future__ import annotations

import gzip
import io
import pickle
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from phloem.core.errors import DataNotFoundError
from phloem.data import (
    TrainTest,
    load_cifar10,
    load_digits,
    load_femnist,
    load_libsvm,
    load_libsvm_pair,
    load_mnist,
    natural,
    read_idx,
    read_libsvm,
)

DataFile = Callable[[str], Path]

# Published per-digit counts of the MNIST splits.
MNIST_TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
MNIST_TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


def _check_split(tt: TrainTest, feature_shape: tuple[int, ...], num_classes: int) -> None:
    for ds in (tt.train, tt.test):
        assert ds.x.dtype == np.float32
        assert ds.y.dtype == np.int64
        assert ds.feature_shape == feature_shape
        assert ds.num_classes == num_classes
        assert ds.x.min() >= 0.0 and ds.x.max() <= 1.0
        assert ds.y.min() >= 0 and ds.y.max() < num_classes


# ------------------------------------------------------------------------------------ digits


def test_digits_shapes_ranges_and_stratified_split() -> None:
    tt = load_digits(0.2, rng=np.random.default_rng(0))
    _check_split(tt, (64,), 10)
    assert len(tt.train) + len(tt.test) == 1797
    assert tt.train.x.max() == 1.0
    share = np.bincount(tt.test.y, minlength=10) / np.bincount(
        np.concatenate([tt.train.y, tt.test.y]), minlength=10
    )
    assert np.all(np.abs(share - 0.2) < 0.02)


def test_digits_split_is_deterministic_given_the_generator() -> None:
    a = load_digits(rng=np.random.default_rng(7))
    b = load_digits(rng=np.random.default_rng(7))
    c = load_digits(rng=np.random.default_rng(8))
    np.testing.assert_array_equal(a.test.x, b.test.x)
    assert not np.array_equal(a.test.x, c.test.x)


@pytest.mark.parametrize("fraction", [0.0, 1.0, -0.1, 1.5])
def test_digits_rejects_bad_fraction(fraction: float) -> None:
    with pytest.raises(ValueError, match="test_fraction"):
        load_digits(fraction, rng=np.random.default_rng(0))


# ------------------------------------------------------------------------------------ LIBSVM


def _write(path: Path, text: str, gz: bool = False) -> Path:
    data = text.encode()
    path.write_bytes(gzip.compress(data) if gz else data)
    return path


@pytest.mark.parametrize("gz", [False, True])
def test_read_libsvm_small_file(tmp_path: Path, gz: bool) -> None:
    text = "+1 1:0.5 3:2\n\n-1 2:1 # a comment\n1 4:-1.25\n"
    x, y = read_libsvm(_write(tmp_path / "f", text, gz))
    expected = np.array([[0.5, 0, 2, 0], [0, 1, 0, 0], [0, 0, 0, -1.25]], dtype=np.float32)
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(y, [1, 0, 1])
    assert x.dtype == np.float32 and y.dtype == np.int64
    x6, _ = read_libsvm(tmp_path / "f", n_features=6)
    assert x6.shape == (3, 6)


def test_read_libsvm_keeps_non_negative_integer_labels(tmp_path: Path) -> None:
    _, y = read_libsvm(_write(tmp_path / "f", "0 1:1\n2 1:1\n1 2:1\n"))
    np.testing.assert_array_equal(y, [0, 2, 1])


@pytest.mark.parametrize(
    ("bad_line", "words"),
    [
        ("x 1:1", "label"),
        ("1 0:1", "1-based"),
        ("1 3", "<index>:<value>"),
        ("1 3 4:1:2", "<index>:<value>"),
        ("1 a:1", "non-numeric"),
        ("1 2:b", "non-numeric"),
        ("1 9:1", "n_features=5"),
        ("1 2:nan", "non-finite"),
    ],
)
def test_read_libsvm_names_file_and_line_of_a_malformed_line(
    tmp_path: Path, bad_line: str, words: str
) -> None:
    path = _write(tmp_path / "bad.txt", f"1 1:1\n-1 2:1\n{bad_line}\n1 3:1\n")
    with pytest.raises(ValueError, match="line 3") as info:
        read_libsvm(path, n_features=5)
    assert str(path) in str(info.value)
    assert words in str(info.value)


def test_a9a_pair_known_facts(data_file: DataFile) -> None:
    data_file("libsvm/a9a.gz")
    data_file("libsvm/a9a.t.gz")
    tt = load_libsvm_pair("a9a")
    _check_split(tt, (123,), 2)
    assert (len(tt.train), len(tt.test)) == (32561, 16281)
    assert np.bincount(tt.train.y).tolist() == [24720, 7841]
    assert set(np.unique(tt.train.x).tolist()) == {0.0, 1.0}
    by_name = load_libsvm("a9a")  # finds the .t file by itself
    assert by_name.test.x.shape == (16281, 123)


def test_a9a_matches_scikit_learn_reference_parser(data_file: DataFile) -> None:
    from sklearn.datasets import load_svmlight_file

    path = data_file("libsvm/a9a.gz")
    x, y = read_libsvm(path, 123)
    ref_x, ref_y = load_svmlight_file(str(path), n_features=123)
    np.testing.assert_array_equal(x, ref_x.toarray().astype(np.float32))
    np.testing.assert_array_equal(y, (ref_y > 0).astype(np.int64))


def test_libsvm_without_test_file_is_split_with_the_generator(data_file: DataFile) -> None:
    data_file("libsvm/a8a.gz")
    tt = load_libsvm("a8a", rng=np.random.default_rng(0), test_fraction=0.25)
    _check_split(tt, (123,), 2)
    assert len(tt.train) + len(tt.test) == 22696
    assert abs(len(tt.test) / 22696 - 0.25) < 0.001
    with pytest.raises(ValueError, match="rng"):
        load_libsvm("a8a")


def test_libsvm_by_path_uses_a_sibling_test_file(tmp_path: Path) -> None:
    _write(tmp_path / "toy.gz", "1 1:1 5:1\n-1 2:1\n", gz=True)
    _write(tmp_path / "toy.t.gz", "-1 1:1\n", gz=True)
    tt = load_libsvm(tmp_path / "toy.gz")
    assert tt.name == "toy"
    assert tt.train.x.shape == (2, 5) and tt.test.x.shape == (1, 5)


def test_libsvm_missing_names_where_it_looked(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_libsvm("a9a", path=tmp_path)
    assert str(tmp_path) in str(info.value)


# ------------------------------------------------------------------------------------ MNIST


def _idx_bytes(arr: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, arr.ndim]) + np.asarray(arr.shape, dtype=">u4").tobytes()
    return header + arr.astype(np.uint8).tobytes()


def _write_mnist(folder: Path, n_train: int = 5, n_test: int = 3) -> None:
    rng = np.random.default_rng(0)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = np.arange(n, dtype=np.uint8) % 10
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(images)))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_idx_bytes(labels)))


@pytest.fixture(scope="module")
def mnist(data_file: DataFile) -> TrainTest:
    for stem in ("train-images-idx3", "train-labels-idx1", "t10k-images-idx3", "t10k-labels-idx1"):
        data_file(f"mnist/{stem}-ubyte.gz")
    return load_mnist()


def test_mnist_known_facts(mnist: TrainTest) -> None:
    _check_split(mnist, (1, 28, 28), 10)
    assert (len(mnist.train), len(mnist.test)) == (60000, 10000)
    assert mnist.train.x.max() == 1.0
    assert np.bincount(mnist.test.y).tolist() == MNIST_TEST_COUNTS
    assert np.bincount(mnist.train.y).tolist() == MNIST_TRAIN_COUNTS


def test_mnist_tiny_files_round_trip(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    tt = load_mnist(tmp_path)
    _check_split(tt, (1, 28, 28), 10)
    assert (len(tt.train), len(tt.test)) == (5, 3)
    raw = read_idx(tmp_path / "train-images-idx3-ubyte.gz")
    np.testing.assert_allclose(tt.train.x[:, 0], raw / 255.0, rtol=1e-6)


def test_mnist_missing_file_names_the_folder(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        load_mnist(tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "train-images-idx3-ubyte" in str(info.value)


def test_missing_data_folder_says_how_to_fix(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PHLOEM_DATA_DIR", raising=False)
    with pytest.raises(DataNotFoundError, match="PHLOEM_DATA_DIR"):
        load_femnist()


def test_missing_file_in_data_folder_names_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PHLOEM_DATA_DIR", str(tmp_path))
    with pytest.raises(DataNotFoundError) as info:
        load_cifar10()
    assert str(tmp_path / "cifar10_jpeg" / "cifar10_jpeg.npz") in str(info.value)


@pytest.mark.parametrize(
    ("mutate", "words"),
    [
        (lambda b: b"\x00\x00\x0c\x03" + b[4:], "data bytes"),  # int32 type: size mismatch
        (lambda b: b"\x12\x34" + b[2:], "not an IDX file"),
        (lambda b: b[:-10], "data bytes"),
        (lambda b: b[:6], "truncated"),
        (lambda b: b"", "not an IDX file"),
    ],
)
def test_corrupt_idx_raises_clear_error(
    tmp_path: Path, mutate: Callable[[bytes], bytes], words: str
) -> None:
    good = _idx_bytes(np.zeros((2, 28, 28), dtype=np.uint8))
    path = tmp_path / "x.idx"
    path.write_bytes(mutate(good))
    with pytest.raises(ValueError, match=words) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_corrupt_gzip_and_wrong_kind_of_idx_in_load_mnist(tmp_path: Path) -> None:
    _write_mnist(tmp_path)
    images = tmp_path / "train-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-20])
    with pytest.raises(ValueError, match="gunzip"):
        load_mnist(tmp_path)
    labels = np.zeros(5, dtype=np.uint8)
    images.write_bytes(gzip.compress(_idx_bytes(labels)))  # a label file where images belong
    with pytest.raises(ValueError, match=r"\(n, 28, 28\)"):
        load_mnist(tmp_path)


# ------------------------------------------------------------------------------------ FEMNIST


def test_femnist_known_facts(data_file: DataFile) -> None:
    data_file("femnist/femnist_leaf_sample.npz")
    tt = load_femnist()
    _check_split(tt, (1, 28, 28), 62)
    assert (len(tt.train), len(tt.test)) == (14708, 1685)
    assert tt.train.groups is not None and tt.test.groups is not None
    assert len(np.unique(tt.train.groups)) == 105
    assert len(np.unique(tt.test.groups)) == 105
    # ink high, background 0: most pixels are background
    assert np.median(tt.train.x) == 0.0 and tt.train.x.max() == 1.0
    part = natural(tt.train.groups)
    assert part.num_clients == 105 and part.sizes().sum() == 14708


def test_femnist_inverts_white_background(tmp_path: Path) -> None:
    x = np.full((2, 28, 28), 255, dtype=np.uint8)
    x[:, 10, 10] = 0
    w = np.array([3, 4], dtype=np.int32)
    y = np.array([0, 61], dtype=np.uint8)
    np.savez(
        tmp_path / "femnist_leaf_sample.npz",
        x_train=x,
        y_train=y,
        w_train=w,
        x_test=x[:1],
        y_test=y[:1],
        w_test=w[:1],
    )
    tt = load_femnist(tmp_path)
    assert tt.train.x[0, 0, 10, 10] == 1.0 and tt.train.x[0, 0, 0, 0] == 0.0
    np.testing.assert_array_equal(tt.train.groups, [3, 4])
    np.savez(tmp_path / "femnist_leaf_sample.npz", x_train=x)
    with pytest.raises(ValueError, match="missing arrays"):
        load_femnist(tmp_path)


# ------------------------------------------------------------------------------------ CIFAR-10


def test_cifar10_npz_with_limit_and_cache(data_file: DataFile, tmp_path: Path) -> None:
    data_file("cifar10_jpeg/cifar10_jpeg.npz")
    tt = load_cifar10(limit_train=200, limit_test=50, cache_dir=tmp_path)
    _check_split(tt, (3, 32, 32), 10)
    assert (len(tt.train), len(tt.test)) == (200, 50)
    assert np.bincount(tt.train.y).tolist() == [20] * 10  # balanced though the file is sorted
    assert len(list(tmp_path.glob("*.npz"))) == 2
    again = load_cifar10(limit_train=200, limit_test=50, cache_dir=tmp_path)
    np.testing.assert_array_equal(again.train.x, tt.train.x)
    np.testing.assert_array_equal(again.test.y, tt.test.y)


def _jpeg(img: np.ndarray) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=95)
    return buf.getvalue()


def _write_cifar_npz(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    blobs = [_jpeg(im) for im in images]
    offsets = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    jpeg = np.frombuffer(b"".join(blobs), dtype=np.uint8)
    np.savez(
        path,
        train_jpeg=jpeg,
        train_offsets=offsets,
        train_labels=labels,
        test_jpeg=jpeg,
        test_offsets=offsets,
        test_labels=labels,
        classes=np.array([str(i) for i in range(10)]),
    )


def test_cifar10_npz_decoding_on_a_tiny_file(tmp_path: Path) -> None:
    pytest.importorskip("PIL")
    images = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    for i in range(4):
        images[i, :, :, i % 3] = 60 * (i + 1)  # flat colours survive JPEG almost exactly
    labels = np.array([0, 1, 2, 3], dtype=np.uint8)
    file = tmp_path / "cifar10_jpeg.npz"
    _write_cifar_npz(file, images, labels)
    tt = load_cifar10(file, cache=False)
    _check_split(tt, (3, 32, 32), 10)
    np.testing.assert_allclose(tt.train.x, images.transpose(0, 3, 1, 2) / 255.0, atol=4 / 255)
    np.testing.assert_array_equal(tt.test.y, labels)
    assert not (tmp_path / "cache").exists()
    with np.load(file) as z:
        arrays = dict(z)
    arrays["train_jpeg"] = arrays["train_jpeg"].copy()
    arrays["train_jpeg"][:40] = 7  # destroy the first JPEG's header
    np.savez(file, **arrays)
    with pytest.raises(ValueError, match="train image 0"):
        load_cifar10(file, cache=False)


def _write_cifar_batches(folder: Path, rows: int) -> dict[str, np.ndarray]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    written = {}
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data = rng.integers(0, 256, (rows, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, 10, rows)]
        with (folder / name).open("wb") as f:
            pickle.dump({b"data": data, b"labels": labels, b"batch_label": b"x"}, f)
        written[name] = data
    return written


def test_cifar10_python_batches(tmp_path: Path) -> None:
    written = _write_cifar_batches(tmp_path / "cifar-10-batches-py", rows=4)
    for where in (tmp_path, tmp_path / "cifar-10-batches-py"):
        tt = load_cifar10(where)
        _check_split(tt, (3, 32, 32), 10)
        assert (len(tt.train), len(tt.test)) == (20, 4)
        expected = written["test_batch"].reshape(-1, 3, 32, 32) / 255.0
        np.testing.assert_allclose(tt.test.x, expected, rtol=1e-6)
    limited = load_cifar10(tmp_path, limit_train=7, limit_test=2)
    assert (len(limited.train), len(limited.test)) == (7, 2)
    with pytest.raises(ValueError, match="limit_train"):
        load_cifar10(tmp_path, limit_train=0)


def test_cifar10_python_batches_missing_one_batch(tmp_path: Path) -> None:
    _write_cifar_batches(tmp_path / "cifar-10-batches-py", rows=2)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(DataNotFoundError, match="data_batch_3"):
        load_cifar10(tmp_path)


def test_import_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, phloem.data; "
        "print(sorted(m for m in ('torch', 'PIL', 'sklearn') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
