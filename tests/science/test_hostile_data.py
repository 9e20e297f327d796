"""Hostile data files are refused in one line, before anything is loaded or run.

npz files are judged by their zip directory and ``.npy`` headers (``npz_headers``), image
folders by a walk that lists regular files only and reads every folder once (``folder_walk``),
checkpoints and pretrained weights by one ``torch.load(weights_only=True)`` helper
(``weights_only``). The corpus is ``tests/data/hostile/make_corpus.py``'s; the same cases
through the CLI, with their memory and time, are in ``tests/service/test_hostile_cli.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import threading
import time
import zipfile
import zlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from contract.specs.data import DatasetConfig
from tests.data.hostile import make_corpus
from workers.science.checkpoints import load_checkpoint
from workers.science.datasets import data_files, dataset_info, load_dataset, npz_headers
from workers.science.datasets import limits as data_limits
from workers.science.datasets.common import MalformedDataError
from workers.science.datasets.limits import RefusedData
from workers.science.models import pretrained
from workers.science.models.sources import ModelBuildError, build_network
from workers.science.state_dicts import read_weights_file
from workers.science.weights_only import UnsafeCheckpoint, load_weights_only


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return make_corpus.build(tmp_path_factory.mktemp("hostile"))


@pytest.fixture(autouse=True)
def _limits(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The tests' own limits: 256 MiB of data whatever the machine has."""
    monkeypatch.setenv(data_limits.MAX_DATASET_BYTES, str(256 << 20))
    monkeypatch.delenv(data_limits.MAX_CLASSES, raising=False)
    yield


def npz_cfg(path: Path) -> DatasetConfig:
    return DatasetConfig(name="npz", root=str(path))


def folder_cfg(path: Path) -> DatasetConfig:
    return DatasetConfig(name="image_folder", root=str(path))


def refusal(call: object, *args: object) -> str:
    """The one line a refusal says (a MalformedDataError, RefusedData among them)."""
    with pytest.raises(MalformedDataError) as raised:
        call(*args)  # type: ignore[operator]
    text = str(raised.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


# --------------------------------------------------------------------------- npz


def test_the_zip_bomb_is_refused_from_its_headers_without_decompressing(
        corpus: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    path = corpus["zip_bomb.npz"]
    assert path.stat().st_size < 1_200_000
    opened: list[str] = []
    real_open = zipfile.ZipFile.open

    def spy(self: zipfile.ZipFile, name: object, *args: object, **kwargs: object) -> object:
        opened.append(str(getattr(name, "filename", name)))
        return real_open(self, name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(zipfile.ZipFile, "open", spy)
    loads: list[object] = []
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a))
    started = time.monotonic()
    text = refusal(dataset_info, npz_cfg(path), path.parent)
    assert time.monotonic() - started < 2
    assert text.startswith(f"{path}: its arrays declare 1108803680 bytes")
    assert "x_train is uint8 (1400000, 28, 28)" in text and "ROBUSTLAB_MAX_DATASET_BYTES" in text
    assert not loads, "np.load ran before the headers were judged"
    assert set(opened) == {"x_train.npy", "y_train.npy", "x_test.npy", "y_test.npy"}


def test_headers_are_read_without_decompressing_the_data(corpus: dict[str, Path]) -> None:
    with open(corpus["zip_bomb.npz"], "rb") as handle, \
            npz_headers.open_archive(corpus["zip_bomb.npz"], handle) as archive:
        header = npz_headers.read_header(corpus["zip_bomb.npz"], archive, "x_train")
    assert (header.shape, header.dtype, header.declared) == ((1_400_000, 28, 28), np.uint8,
                                                            1_097_600_128)


@pytest.mark.parametrize("case, says", [
    ("label_1e9.npz", "y_train has label 1000000000, but labels are 0..K-1 with at most 100000 "
                      "classes (ROBUSTLAB_MAX_CLASSES)"),
    ("xy_mismatch.npz", "y_train holds 7 labels but x_train holds 10 images"),
    ("object_array.npz", "x_train is object; images are uint8 or floats in [0, 1]"),
])
def test_impossible_arrays_are_one_line_naming_file_and_array(corpus: dict[str, Path], case: str,
                                                              says: str) -> None:
    text = refusal(dataset_info, npz_cfg(corpus[case]), corpus[case].parent)
    assert text == f"{corpus[case]}: {says}" or text.startswith(f"{corpus[case]}: {says}"), text


def _npz(path: Path, **arrays: np.ndarray) -> Path:
    np.savez(path, **arrays)  # type: ignore[arg-type]
    return path


@pytest.mark.parametrize("change, says", [
    ({"x_train": np.zeros((4, 8, 8), np.int64)}, "x_train is int64; images are uint8 or floats"),
    ({"x_train": np.zeros((4, 8, 8, 5), np.uint8)}, "x_train has shape (4, 8, 8, 5); images are"),
    ({"x_train": np.zeros((4, 8), np.uint8)}, "x_train has shape (4, 8); images are"),
    ({"x_train": np.array(["a"] * 4)}, "x_train is <U1; images are uint8"),
    ({"y_train": np.zeros((4, 2), np.int64)}, "y_train must be 4 integer labels, got int64 (4, 2)"),
    ({"y_train": np.zeros(4, np.float32)}, "y_train must be 4 integer labels, got float32 (4,)"),
    ({"y_test": np.zeros(3, np.int64)}, "y_test holds 3 labels but x_test holds 4 images"),
    ({"x_test": np.zeros((4, 9, 9), np.uint8)}, "x_train images are (1, 8, 8) but x_test images "
                                                 "are (1, 9, 9)"),
    ({"classes": np.zeros((2, 2), np.int64)}, "classes must be a list of class names"),
])
def test_every_impossible_shape_or_dtype_is_named(tmp_path: Path, change: dict[str, np.ndarray],
                                                  says: str) -> None:
    arrays = {"x_train": np.zeros((4, 8, 8), np.uint8), "y_train": np.arange(4) % 2,
              "x_test": np.zeros((4, 8, 8), np.uint8), "y_test": np.arange(4) % 2} | change
    path = _npz(tmp_path / "bad.npz", **arrays)
    assert refusal(dataset_info, npz_cfg(path), tmp_path).startswith(f"{path}: {says}")


def test_a_header_that_declares_more_than_its_member_holds_is_forged(tmp_path: Path) -> None:
    good = make_corpus.small_arrays()
    members = {f"{name}.npy": make_corpus._array_member(value) for name, value in good.items()}
    header = make_corpus._npy_header((10**6, 8, 8), "|u1")
    raw = header + bytes(64)
    members["x_train.npy"] = (make_corpus._raw_deflate(raw) + make_corpus._final_block(),
                              zlib.crc32(raw), len(raw))
    path = tmp_path / "forged.npz"
    make_corpus.write_zip(path, members)
    text = refusal(dataset_info, npz_cfg(path), tmp_path)
    assert text.startswith(f"{path}: x_train declares uint8 (1000000, 8, 8)") and "forged" in text


def test_a_member_that_is_no_npy_array_is_not_decompressed(tmp_path: Path) -> None:
    arrays = make_corpus.small_arrays()
    path = _npz(tmp_path / "raw.npz", **arrays)
    with zipfile.ZipFile(path, "a") as archive:
        archive.writestr("classes.npy", b"\0" * 1000)
    text = refusal(dataset_info, npz_cfg(path), tmp_path)
    assert text.startswith(f"{path}: classes is not a readable .npy array")


def test_thousands_of_members_are_refused_before_the_directory_is_parsed(tmp_path: Path) -> None:
    path = _npz(tmp_path / "many.npz", **make_corpus.small_arrays(),
                **{f"extra{i}": np.zeros(1) for i in range(1100)})
    text = refusal(dataset_info, npz_cfg(path), tmp_path)
    assert "1104 members" in text and text.startswith(str(path))


def test_a_fifo_named_like_an_npz_is_refused_without_blocking(tmp_path: Path) -> None:
    path = tmp_path / "pipe.npz"
    os.mkfifo(path)
    text = refusal(dataset_info, npz_cfg(path), tmp_path)
    assert text == f"{path} is not a regular file: an npz dataset is a file (refused without " \
                   "reading it)"


def test_the_class_limit_comes_from_the_environment(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    arrays = make_corpus.small_arrays()
    arrays["y_train"] = np.arange(8) % 5
    path = _npz(tmp_path / "five.npz", **arrays)
    assert dataset_info(npz_cfg(path), tmp_path).num_classes == 5
    monkeypatch.setenv("ROBUSTLAB_MAX_CLASSES", "4")
    path = _npz(tmp_path / "five_again.npz", **arrays)  # a new file: nothing cached
    assert "at most 4 classes (ROBUSTLAB_MAX_CLASSES)" in refusal(dataset_info, npz_cfg(path),
                                                                 tmp_path)


def test_valid_npz_files_still_load(tmp_path: Path) -> None:
    signed = make_corpus.small_arrays(channels=3)
    signed["y_train"] = np.where(signed["y_train"] == 1, 1, -1)
    signed["y_test"] = np.where(signed["y_test"] == 1, 1, -1)
    path = _npz(tmp_path / "ok.npz", **signed, classes=np.array(["no", "yes"]))
    info = dataset_info(npz_cfg(path), tmp_path)
    assert (info.num_classes, info.input_shape, info.class_names) == (2, (3, 8, 8), ("no", "yes"))
    data = load_dataset(npz_cfg(path), tmp_path, train=True)
    assert sorted({int(data[i][1]) for i in range(8)}) == [-1, 1]


def test_the_default_data_limit_is_half_the_available_memory(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 8000000 kB\nMemAvailable:  4000000 kB\n")
    monkeypatch.setattr(data_limits, "MEMINFO", meminfo)
    monkeypatch.delenv(data_limits.MAX_DATASET_BYTES)
    assert data_limits.max_dataset_bytes() == 4_000_000 * 1024 // 2
    monkeypatch.setattr(data_limits, "MEMINFO", tmp_path / "absent")
    assert data_limits.max_dataset_bytes() > 0  # os.sysconf's free pages
    monkeypatch.setenv(data_limits.MAX_DATASET_BYTES, "1_000")
    assert data_limits.max_dataset_bytes() == 1000
    monkeypatch.setenv(data_limits.MAX_DATASET_BYTES, "lots")
    with pytest.raises(RefusedData, match=r"^ROBUSTLAB_MAX_DATASET_BYTES must be a whole number "
                                          r"of at least 1, not 'lots'$"):
        data_limits.max_dataset_bytes()


# --------------------------------------------------------------------------- image folders


def _within(seconds: float, call: object, *args: object) -> str:
    """``refusal(call, *args)`` in a thread that must end within ``seconds`` (a hang fails)."""
    outcome: list[str | BaseException] = []

    def target() -> None:
        try:
            outcome.append(refusal(call, *args))
        except BaseException as exc:  # noqa: BLE001 - handed to the test below
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"still running after {seconds} s"
    if isinstance(outcome[0], BaseException):
        raise outcome[0]
    return outcome[0]


@pytest.mark.parametrize("case, file, says", [
    ("fifo_folder", "train/a/z.png", "is a FIFO (named pipe): an image folder holds regular files "
                                     "and folders only"),
    ("loop_folder", "train/a/loop", "is a symbolic link loop: it leads back to "),
    ("truncated_folder", "train/a/t.png", "is not a readable image (OSError: image file is "
                                          "truncated"),
    ("bomb_folder", "train/a/big.png", "is refused as a decompression bomb: Image size "
                                       "(900000000 pixels) exceeds limit"),
])
def test_hostile_image_folders_are_one_line_naming_the_file(corpus: dict[str, Path], case: str,
                                                           file: str, says: str) -> None:
    root = corpus[case]
    cfg = folder_cfg(root)

    def every_step() -> None:  # what a run does: facts, both splits, the data hash's files
        dataset_info(cfg, root.parent)
        load_dataset(cfg, root.parent, train=True)
        load_dataset(cfg, root.parent, train=False)
        data_files(cfg, root.parent)

    text = _within(30, every_step)
    assert text.startswith(f"{root / file} {says}"), text


def test_links_to_folders_are_followed_once(tmp_path: Path) -> None:
    root = make_corpus.image_folder(tmp_path / "linked")
    elsewhere = make_corpus.image_folder(tmp_path / "elsewhere")
    (root / "train" / "a" / "more").symlink_to(elsewhere / "train" / "b")
    files = data_files(folder_cfg(root), tmp_path)
    assert root / "train" / "a" / "more" / "x.png" in files and len(files) == 5
    (root / "train" / "b" / "again").symlink_to(elsewhere / "train" / "b")
    text = refusal(data_files, folder_cfg(root), tmp_path)
    assert text.startswith(f"{root / 'train' / 'b' / 'again'} is a second way into "
                           f"{root / 'train' / 'a' / 'more'}") or \
        text.startswith(f"{root / 'train' / 'a' / 'more'} is a second way into "), text


def test_a_broken_link_and_too_many_classes_are_refused(tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_corpus.image_folder(tmp_path / "broken")
    (root / "train" / "a" / "gone.png").symlink_to(tmp_path / "nothing.png")
    assert refusal(data_files, folder_cfg(root), tmp_path).startswith(
        f"{root / 'train' / 'a' / 'gone.png'} is a broken symbolic link")
    monkeypatch.setenv("ROBUSTLAB_MAX_CLASSES", "1")
    assert refusal(dataset_info, folder_cfg(make_corpus.image_folder(tmp_path / "two")),
                   tmp_path).endswith("has 2 class folders, more than 1 (ROBUSTLAB_MAX_CLASSES)")


def test_the_walk_keeps_torchvisions_order(tmp_path: Path) -> None:
    root = make_corpus.image_folder(tmp_path / "order")
    for name in ("b.png", "a.PNG", "c.txt", "sub/z.png", "sub/a.jpg", "A.png"):
        (root / "train" / "a" / name).parent.mkdir(exist_ok=True)
        (root / "train" / "a" / name).write_bytes(make_corpus.png_bytes())
    ours = load_dataset(folder_cfg(root), tmp_path, train=True)
    reference = torchvision.datasets.ImageFolder(str(root / "train"))
    assert len(ours) == len(reference.samples) == 7  # type: ignore[arg-type]
    assert data_files(folder_cfg(root), tmp_path) == sorted(
        [Path(p) for p, _ in reference.samples]
        + [Path(p) for p, _ in torchvision.datasets.ImageFolder(str(root / "test")).samples])


# --------------------------------------------------------------------------- checkpoints


class Canary:
    """Unpickling this creates a file: proof that the file's code ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_a_checkpoint_with_other_objects_says_what_it_found_and_the_remedy(tmp_path: Path) -> None:
    path = tmp_path / "with_args.pt"
    torch.save({"format": "robustlab-checkpoint", "args": argparse.Namespace(lr=0.1)}, path)
    for load in (load_checkpoint, read_weights_file):
        with pytest.raises(UnsafeCheckpoint) as raised:
            load(path)
        text = str(raised.value)
        assert text == (f"{path} holds a argparse.Namespace object, which weights_only=True "
                        "refuses to unpickle (nothing in the file was run): re-save "
                        "model.state_dict() (torch.save(model.state_dict(), 'weights.pt')) and "
                        "load that")


@pytest.mark.parametrize("protocol", [2, 4])
def test_a_malicious_pickle_runs_nothing_and_gets_no_version_hint(tmp_path: Path,
                                                                  protocol: int) -> None:
    marker = tmp_path / "ran"
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps(Canary(marker), protocol=protocol))
    for load in (load_checkpoint, read_weights_file, load_weights_only):
        with pytest.raises(UnsafeCheckpoint) as raised:
            load(path)
        text = str(raised.value)
        assert text.startswith(f"{path} holds a posix.system object, which weights_only=True "
                               "refuses to unpickle (nothing in the file was run): re-save "
                               "model.state_dict()"), text
        assert "\n" not in text and "2.6" not in text and "weights_only=False" not in text
    assert not marker.exists()


# --------------------------------------------------------------------------- pretrained weights


@pytest.fixture
def torch_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    return tmp_path / "torch"


def _squeezenet_file() -> Path:
    weights = torchvision.models.get_model_weights("squeezenet1_1").IMAGENET1K_V1
    path = pretrained.weights_file(weights.url)
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def test_pretrained_weights_load_when_their_hash_matches(torch_home: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """A tiny stand-in for squeezenet1_1's weights, its expected hash patched to its own."""
    path = _squeezenet_file()
    assert path == torch_home / "hub" / "checkpoints" / "squeezenet1_1-b8a52dc0.pth"
    reference = torchvision.models.squeezenet1_1(num_classes=1000)
    torch.save(reference.state_dict(), path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(pretrained, "expected_prefix", lambda name: digest[:8])
    net = build_network("torchvision:squeezenet1_1", 1000, (3, 32, 32), {"weights": "IMAGENET1K_V1"})
    for (key, value), expected in zip(net.state_dict().items(), reference.state_dict().values(),
                                      strict=True):
        assert torch.equal(value, expected), key


def test_pretrained_weights_with_the_wrong_hash_are_refused(torch_home: Path) -> None:
    path = _squeezenet_file()
    torch.save(torchvision.models.squeezenet1_1(num_classes=1000).state_dict(), path)
    with pytest.raises(ModelBuildError) as raised:
        build_network("torchvision:squeezenet1_1", 1000, (3, 32, 32), {"weights": "IMAGENET1K_V1"})
    text = str(raised.value)
    assert text.startswith(f"{path} has sha256 ") and "not the b8a52dc0... that torchvision " \
        "publishes in its name: refused, not loaded" in text


def test_a_planted_pickle_with_a_matching_hash_still_runs_nothing(
        torch_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    marker = tmp_path / "ran"
    path = _squeezenet_file()
    path.write_bytes(pickle.dumps(Canary(marker), protocol=2))
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    monkeypatch.setattr(pretrained, "expected_prefix", lambda name: digest[:8])
    with pytest.raises(ModelBuildError, match=r"holds a posix\.system object, which "
                                              r"weights_only=True refuses"):
        build_network("torchvision:squeezenet1_1", 1000, (3, 32, 32), {"weights": "IMAGENET1K_V1"})
    assert not marker.exists()


def test_pretrained_arguments_are_checked_in_one_line(torch_home: Path) -> None:
    with pytest.raises(ModelBuildError, match=r"^torchvision:squeezenet1_1 has no weights 'NOPE': "
                                              r"one of IMAGENET1K_V1, DEFAULT$"):
        build_network("torchvision:squeezenet1_1", 10, (3, 32, 32), {"weights": "NOPE"})
    with pytest.raises(ModelBuildError, match=r"with weights IMAGENET1K_V1 has 1000 outputs, not "
                                              r"10: set model.kwargs.num_classes: 1000"):
        build_network("torchvision:squeezenet1_1", 10, (3, 32, 32), {"weights": "IMAGENET1K_V1"})
