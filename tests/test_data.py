"""MNISTDataModule on small IDX files the tests write: the real torchvision parsing path."""

from __future__ import annotations

import gzip
import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import (
    SHARED_MNIST,
    needs_shared_data,
    require_shared_data,
    separable_digits,
    write_mnist,
)

from mlp_digits import data
from mlp_digits.data import DataError, check_idx, load_mnist, prepare_mnist
from mlp_digits.idx import write_idx_images, write_idx_labels
from mlp_digits.lightning.datamodule import ChunkedBatches, MNISTDataModule
from mlp_digits.sgd import EpochPermutation

OFFICIAL_GZ = SHARED_MNIST.parent / "mnist-gz"


def datamodule(root: Path, **kwargs) -> MNISTDataModule:
    dm = MNISTDataModule(str(root), download=False, **{"val_size": 100, **kwargs})
    dm.prepare_data()
    dm.setup("fit")
    return dm


def test_split_sizes_follow_val_size(tiny_mnist: Path) -> None:
    dm = datamodule(tiny_mnist, val_size=100)
    assert len(dm.splits["train"][0]) == 500 and len(dm.splits["val"][0]) == 100


def test_val_size_accepts_a_fraction(tiny_mnist: Path) -> None:
    dm = datamodule(tiny_mnist, val_size=0.25)
    assert len(dm.splits["val"][0]) == 150 and len(dm.splits["train"][0]) == 450


@pytest.mark.parametrize("val_size", [600, 5000, 0])
def test_val_size_that_leaves_nothing_is_refused(tiny_mnist: Path, val_size: int) -> None:
    with pytest.raises(DataError, match="--val-size"):
        datamodule(tiny_mnist, val_size=val_size)


def test_validation_is_the_last_images_of_the_file_whatever_the_seed(tiny_mnist: Path) -> None:
    """The book's split: train on the first n - val_size images, validate on the last, in
    file order; the seed draws weights and epoch orders only."""
    images, labels = separable_digits(600, seed=0)  # what write_mnist wrote
    pixels = torch.from_numpy(images.reshape(600, -1)).float() / 255
    for seed in (0, 1):
        dm = datamodule(tiny_mnist, seed=seed)
        assert torch.equal(dm.splits["train"][0], pixels[:500])
        assert torch.equal(dm.splits["val"][0], pixels[500:])
        assert dm.splits["val"][1].tolist() == labels[500:].tolist()


def test_pixels_are_float32_in_unit_range_and_match_the_file(tiny_mnist: Path) -> None:
    x, targets = load_mnist(tiny_mnist, "test")
    images, labels = separable_digits(200, seed=1)
    assert x.dtype == torch.float32 and x.shape == (200, 784)
    assert targets.dtype == torch.int64 and targets.tolist() == labels.tolist()
    assert float(x.min()) >= 0.0 and float(x.max()) <= 1.0
    assert torch.equal(x, torch.from_numpy(images.reshape(200, 784)).float() / 255)


def test_test_split_is_the_whole_test_file(tiny_mnist: Path) -> None:
    dm = MNISTDataModule(str(tiny_mnist), download=False, eval_batch_size=64)
    dm.setup("test")
    batches = list(dm.test_dataloader())
    assert sum(len(x) for x, _ in batches) == 200  # no drop_last: 64 + 64 + 64 + 8


def test_missing_files_offline_give_one_clear_error(tmp_path: Path, monkeypatch) -> None:
    def offline(*args, **kwargs):
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz")

    monkeypatch.setattr(data.MNIST, "download", offline)
    with pytest.raises(DataError) as error:
        prepare_mnist(tmp_path / "nowhere", download=True)
    message = str(error.value)
    assert str(tmp_path / "nowhere" / "MNIST" / "raw") in message
    for name in data.RAW_FILES["train"] + data.RAW_FILES["test"]:
        assert name in message
    assert "--data-dir" in message and "\n" not in message


def test_no_download_never_calls_torchvision(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(data.MNIST, "download", lambda *a, **k: pytest.fail("tried to download"))
    with pytest.raises(DataError, match="downloading is switched off"):
        prepare_mnist(tmp_path, download=False)


# --- malformed files: each names the file and what is wrong --------------------------------


def corrupt(root: Path, name: str, payload: bytes) -> Path:
    path = root / "MNIST" / "raw" / name
    path.write_bytes(payload)
    return path


def test_wrong_magic_number(tiny_mnist: Path) -> None:
    path = tiny_mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    raw = bytearray(path.read_bytes())
    raw[2:4] = b"\x08\x01"
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: magic number 2049 is not 2051"):
        load_mnist(tiny_mnist, "test")


def test_truncated_image_file(tiny_mnist: Path) -> None:
    path = tiny_mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte: .* is truncated"):
        load_mnist(tiny_mnist, "test")


def test_file_shorter_than_its_header(tiny_mnist: Path) -> None:
    corrupt(tiny_mnist, "t10k-labels-idx1-ubyte", b"\x00\x00")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte: 2 bytes is too short"):
        load_mnist(tiny_mnist, "test")


def test_images_that_are_not_28_by_28(tiny_mnist: Path) -> None:
    write_idx_images(tiny_mnist / "MNIST" / "raw" / "t10k-images-idx3-ubyte", np.zeros((5, 20, 20)))
    with pytest.raises(DataError, match="images are 20x20, MNIST images are 28x28"):
        load_mnist(tiny_mnist, "test")


def test_image_and_label_counts_differ(tiny_mnist: Path) -> None:
    write_idx_labels(tiny_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.zeros(199))
    with pytest.raises(DataError, match="has 200 images but .* has 199 labels"):
        load_mnist(tiny_mnist, "test")


def test_label_that_is_not_a_digit(tiny_mnist: Path) -> None:
    write_idx_labels(tiny_mnist / "MNIST" / "raw" / "t10k-labels-idx1-ubyte", np.full(200, 12))
    with pytest.raises(DataError, match="labels must be digits 0-9, found 12"):
        load_mnist(tiny_mnist, "test")


def test_label_file_longer_than_its_header(tiny_mnist: Path) -> None:
    payload = struct.pack(">ii", 2049, 200) + bytes(201)
    corrupt(tiny_mnist, "t10k-labels-idx1-ubyte", payload)
    with pytest.raises(DataError, match="longer than its header says"):
        load_mnist(tiny_mnist, "test")


def test_gz_with_wrong_md5_is_refused_and_kept(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    gz = raw / "t10k-labels-idx1-ubyte.gz"
    gz.write_bytes(gzip.compress(b"not mnist"))
    with pytest.raises(
        DataError, match=r"t10k-labels-idx1-ubyte.gz: its MD5 sum differs.*delete it"
    ):
        prepare_mnist(tmp_path, download=True)
    assert gz.read_bytes() == gzip.compress(b"not mnist")  # never replaced behind the user's back


@needs_shared_data(OFFICIAL_GZ)
def test_official_gz_files_are_verified_and_extracted_offline(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for gz in OFFICIAL_GZ.glob("*.gz"):
        shutil.copy(gz, raw / gz.name)
    with pytest.raises(DataError, match="train-images-idx3-ubyte"):  # not among the .gz files
        prepare_mnist(tmp_path, download=False)
    assert check_idx(raw / "t10k-images-idx3-ubyte", "images") == 10_000
    assert check_idx(raw / "t10k-labels-idx1-ubyte", "labels") == 10_000
    assert check_idx(raw / "train-labels-idx1-ubyte", "labels") == 60_000


# --- training batches ----------------------------------------------------------------------


def chunks_of(n: int, batch_size: int, steps: int, epoch: int = 0) -> list:
    x = torch.arange(n, dtype=torch.float32).unsqueeze(1)
    sampler = EpochPermutation(n, seed=3, device=torch.device("cpu"))
    sampler.set_epoch(epoch)
    return list(ChunkedBatches(x, torch.arange(n), sampler, batch_size, steps))


def test_chunks_are_stacks_of_mini_batches_covering_the_epoch_once() -> None:
    chunks = chunks_of(n=95, batch_size=10, steps=4)
    assert [tuple(x.shape) for x, _ in chunks] == [(4, 10, 1), (4, 10, 1), (1, 10, 1), (1, 5, 1)]
    seen = torch.cat([t.flatten() for _, t in chunks])
    assert sorted(seen.tolist()) == list(range(95))
    assert all(torch.equal(x.squeeze(-1).long(), t) for x, t in chunks)


def test_len_and_steps_per_epoch_count_chunks_and_mini_batches() -> None:
    x = torch.zeros(95, 1)
    batches = ChunkedBatches(x, torch.zeros(95), EpochPermutation(95, 0, x.device), 10, 4)
    assert len(batches) == 4 and batches.steps_per_epoch() == 10


def test_permutation_is_reproducible_from_seed_and_differs_between_epochs() -> None:
    def order(seed: int, epoch: int) -> list[int]:
        sampler = EpochPermutation(1000, seed, torch.device("cpu"))
        sampler.set_epoch(epoch)
        return sampler.indices().tolist()

    assert order(0, 5) == order(0, 5)
    assert order(0, 5) != order(0, 6)
    assert order(0, 5) != order(1, 5)
    assert sorted(order(0, 5)) == list(range(1000))


def test_two_ranks_take_equal_shards_of_the_permutation_cut_to_an_even_length() -> None:
    """1001 images on 2 ranks: 500 each, interleaved from the first 1000 of the permutation,
    so that both take the same number of mini-batches (a rank with one more would wait for
    the other forever in the gradient all-reduce)."""
    shards = []
    for rank in range(2):
        sampler = EpochPermutation(1001, 7, torch.device("cpu"), rank=rank, world_size=2)
        sampler.set_epoch(2)
        shards.append(sampler.indices())
        assert len(sampler) == len(shards[-1]) == 500
    whole = EpochPermutation(1001, 7, torch.device("cpu"))
    whole.set_epoch(2)
    assert torch.equal(torch.stack(shards, 1).flatten(), whole.indices()[:1000])


def test_train_loader_serves_chunks_of_the_epochs_mini_batches(tiny_mnist: Path) -> None:
    dm = datamodule(tiny_mnist, batch_size=10, steps_per_chunk=20)
    loader = dm.train_dataloader()
    x, targets = next(iter(loader))
    assert x.shape == (20, 10, 784) and targets.shape == (20, 10)
    first = loader.sampler.indices()[:200].view(20, 10)
    assert torch.equal(x, dm.splits["train"][0][first])
    assert torch.equal(targets, dm.splits["train"][1][first])


def test_default_chunk_is_about_1000_samples() -> None:
    assert MNISTDataModule(batch_size=10).steps_per_chunk == 100
    assert MNISTDataModule(batch_size=7).steps_per_chunk == 143
    assert MNISTDataModule(batch_size=1000).steps_per_chunk == 1
    assert MNISTDataModule(batch_size=5000).steps_per_chunk == 1


def test_write_mnist_helper_makes_balanced_classes(tmp_path: Path) -> None:
    root = write_mnist(tmp_path, n_train=100, n_test=50)
    _, targets = load_mnist(root, "train")
    assert targets.bincount().tolist() == [10] * 10


# --- the shared data: skip, or fail under CI ------------------------------------------------


def test_missing_shared_data_skips_without_ci(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="not present"):
        require_shared_data(tmp_path / "absent")


def test_missing_shared_data_fails_in_one_line_under_ci(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception) as failed:
        require_shared_data(tmp_path / "absent")
    assert str(failed.value).count("\n") == 0 and "CI is set" in str(failed.value)
    require_shared_data(tmp_path)  # present: nothing happens
