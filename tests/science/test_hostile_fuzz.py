"""A standing fuzz test: generated hostile inputs give a valid result or one line, nothing else.

``hypothesis`` drives the three readers a spec author or a data file can reach:

- the spec loader (``contract.specs.loading.load_spec_text``) on arbitrary text, on YAML-like
  token soup with deep nesting and control characters, and on dumped nested data;
- the npz reader (``npz.read_arrays``) on archives of arrays of any dtype and shape, some of
  them truncated or with bytes flipped;
- the image-folder scanner (``dataset_info``, ``data_files``, ``load_dataset``) on trees of
  images, truncated images, junk, FIFOs, links to folders above and broken links.

Property: the call returns, or raises the project's own one-line error (``SpecError``,
``MalformedDataError`` / ``MissingDataError``), within a deadline; never another exception,
never a hang. Examples are few and derandomized so that the test is fast and repeatable; raise
``ROBUSTLAB_FUZZ_EXAMPLES`` for a longer hunt.
"""

from __future__ import annotations

import itertools
import os
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from contract.specs.data import DatasetConfig
from contract.specs.loading import SpecError, load_spec_text
from contract.specs.yaml_text import raw_depth
from tests.data.hostile import make_corpus
from workers.science.datasets import data_files, dataset_info, load_dataset
from workers.science.datasets.common import MalformedDataError, MissingDataError
from workers.science.datasets.npz import read_arrays

EXAMPLES = int(os.environ.get("ROBUSTLAB_FUZZ_EXAMPLES", "60"))
FUZZ = settings(max_examples=EXAMPLES, deadline=5_000, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
DEADLINE_S = 20.0
_names = itertools.count()


def ends(seconds: float, call: Callable[[], Any]) -> BaseException | None:
    """Run ``call`` in a thread; it must end within ``seconds``. Returns what it raised."""
    outcome: list[BaseException | None] = []

    def target() -> None:
        try:
            call()
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - judged by the caller
            outcome.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"no answer after {seconds} s"
    return outcome[0]


def one_line_or_nothing(raised: BaseException | None, *allowed: type[BaseException]) -> None:
    if raised is None:
        return
    if not isinstance(raised, allowed):
        raise raised
    assert str(raised).strip() and "Traceback" not in str(raised)
    problems = getattr(raised, "problems", None)
    if problems is not None:  # SpecError: one line per problem
        assert all("\n" not in str(problem) for problem in problems)
    else:
        assert "\n" not in str(raised)


# --------------------------------------------------------------------------- specs

TOKENS = ["[", "]", "{", "}", ",", ": ", "- ", "? ", "\n", "  ", "'", '"', "#", "&a ", "*a",
          "!!str ", "|", ">", "name", "kind", "theory", "eps", "1e-3", "8/255", "x", "\t", "\x00",
          "\x1b", "\x7f", "\x85", "---", "...", "%YAML 1.1", "\\", "\r\n"]
spec_texts = st.one_of(
    st.text(max_size=300),
    st.lists(st.sampled_from(TOKENS), max_size=200).map("".join),
    st.builds(lambda head, opener, depth: head + opener * depth,
              st.sampled_from(["", "name: x\nkind: theory\ndescription: ", "v:\n"]),
              st.sampled_from(["[", "{", "- ", "[{", "? "]), st.integers(0, 3000)),
    st.builds(lambda depth: "name: x\n" + "".join(" " * i + f"k{i}:\n" for i in range(depth)),
              st.integers(0, 400)),
)


@FUZZ
@given(text=spec_texts, overrides=st.lists(st.sampled_from(
    ["eps=[" * 5, "eps=" + "[" * 200, "eps=\x00", "seed=1", "a.b.c=1", "=", "x"]), max_size=2))
def test_the_spec_loader_answers_or_refuses_in_one_line(text: str, overrides: list[str]) -> None:
    one_line_or_nothing(ends(DEADLINE_S, lambda: load_spec_text(text, "fuzz.yaml", overrides)),
                        SpecError)


plain = st.text(st.sampled_from(list("ab[]{}'\"#:-?,|>&!* \\xy")), max_size=8)
nested = st.recursive(
    st.one_of(plain, st.integers(), st.floats(allow_nan=False), st.none(), st.booleans()),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(plain.filter(bool), inner, max_size=4)),
    max_leaves=40)


def _depth(text: str) -> int:
    depth = deepest = 0
    for event in yaml.parse(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)):
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            deepest = max(deepest, depth)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1
    return deepest


@FUZZ
@given(data=nested, flow=st.sampled_from([None, True, False]), width=st.sampled_from([20, 80]))
def test_the_raw_depth_count_is_never_below_the_real_depth(data: Any, flow: bool | None,
                                                           width: int) -> None:
    """The raw-text count is conservative on YAML as PyYAML writes it (quotes, brackets and
    indicators inside keys and values included)."""
    text = yaml.safe_dump(data, default_flow_style=flow, width=width)
    real = _depth(text)
    assert real == 0 or raw_depth(text, real - 1) is not None  # it may over-count, never under


# --------------------------------------------------------------------------- npz

DTYPES = ["u1", "i8", "f4", "f8", "f2", "?", "c8", "U3", "S2", "O", "V4", "M8[s]", ">f4", "u8"]
arrays = st.builds(
    lambda dtype, shape: np.zeros(shape, dtype=dtype) if dtype != "O" else np.empty(shape, "O"),
    st.sampled_from(DTYPES),
    st.lists(st.integers(0, 5), min_size=0, max_size=5).map(tuple))
archives = st.dictionaries(
    st.sampled_from(["x_train", "y_train", "x_test", "y_test", "classes", "extra"]), arrays,
    max_size=6)


def _valid_base() -> dict[str, np.ndarray]:
    return dict(make_corpus.small_arrays(4))


@FUZZ
@given(changes=archives, keep_valid=st.booleans(),
       damage=st.one_of(st.none(), st.tuples(st.integers(0, 4000), st.integers(0, 255)),
                        st.integers(0, 4000).map(lambda n: -n - 1)))
def test_the_npz_reader_answers_or_refuses_in_one_line(
        changes: dict[str, np.ndarray], keep_valid: bool,
        damage: tuple[int, int] | int | None) -> None:
    arrays = {**(_valid_base() if keep_valid else {}), **changes}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"fuzz{next(_names)}.npz"
        np.savez(path, **arrays)  # type: ignore[arg-type]
        data = bytearray(path.read_bytes())
        if isinstance(damage, tuple) and data:
            data[damage[0] % len(data)] = damage[1]
        elif isinstance(damage, int):
            data = data[:max(0, len(data) + damage)]
        path.write_bytes(bytes(data))
        one_line_or_nothing(ends(DEADLINE_S, lambda: (read_arrays(path), dataset_info(
            DatasetConfig(name="npz", root=str(path)), Path(folder)))),
            MalformedDataError, MissingDataError)


# --------------------------------------------------------------------------- image folders

KINDS = ["png", "png", "truncated", "junk", "fifo", "link_up", "link_sibling", "broken", "dir"]
trees = st.lists(st.tuples(st.sampled_from(["train/a", "train/b", "test/a", "train/a/sub"]),
                           st.sampled_from(KINDS)), max_size=8)


def _plant(root: Path, where: str, kind: str, index: int) -> None:
    folder = root / where
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"e{index}.png"
    if kind == "png":
        path.write_bytes(make_corpus.png_bytes())
    elif kind == "truncated":
        path.write_bytes(make_corpus.png_bytes(32)[:40])
    elif kind == "junk":
        path.write_bytes(b"\x89PNG junk" * index)
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "link_up":
        (folder / f"up{index}").symlink_to(Path(".."))
    elif kind == "link_sibling":
        (folder / f"side{index}").symlink_to(root / "train" / "b", target_is_directory=True)
    elif kind == "broken":
        path.symlink_to(root / "nowhere.png")
    else:
        (folder / f"d{index}").mkdir(exist_ok=True)


@FUZZ
@given(tree=trees)
def test_the_image_folder_scanner_answers_or_refuses_in_one_line(
        tree: list[tuple[str, str]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = make_corpus.image_folder(Path(folder) / "data")
        for index, (where, kind) in enumerate(tree):
            _plant(root, where, kind, index)
        cfg = DatasetConfig(name="image_folder", root=str(root), channels=1)

        def every_step() -> None:
            dataset_info(cfg, Path(folder))
            data_files(cfg, Path(folder))
            load_dataset(cfg, Path(folder), train=True)
            load_dataset(cfg, Path(folder), train=False)

        one_line_or_nothing(ends(DEADLINE_S, every_step), MalformedDataError, MissingDataError)


@pytest.mark.parametrize("case", ["fifo_folder", "loop_folder", "truncated_folder",
                                  "bomb_folder"])
def test_the_corpus_folders_are_refused_in_one_line(case: str, tmp_path: Path) -> None:
    root = make_corpus.CASES[case](tmp_path / case)
    raised = ends(DEADLINE_S, lambda: load_dataset(
        DatasetConfig(name="image_folder", root=str(root)), tmp_path, train=True))
    assert isinstance(raised, MalformedDataError)
    one_line_or_nothing(raised, MalformedDataError)
