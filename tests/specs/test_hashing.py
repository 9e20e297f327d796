"""The content hash: equal for the same spec however written, different for any real change."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Annotated, Literal

import pytest

from contract.specs.hashing import canonical_json, spec_hash
from contract.specs.loading import load_spec_file, load_spec_text
from contract.specs.sweep import expand
from contract.specs.values import ADDED_LATER, Strict

PLAIN = """\
name: e1
kind: theory
distribution: {p: 0.7, eta: 0.3}
eps: [0.3]
"""

REWRITTEN = """\
# the same experiment, written another way
eps: [3/10]
description: Any words at all.
kind: theory
distribution:
  eta: 3e-1
  d: 1000
  p: 7/10
seed: 0
device: auto
name: e1
n_train: 1e4
"""


def hash_of(text: str, *overrides: str) -> str:
    return spec_hash(load_spec_text(text, overrides=overrides).spec)


def test_the_hash_is_sha256_of_the_canonical_json() -> None:
    spec = load_spec_text(PLAIN).spec
    data = spec.model_dump(mode="json")
    del data["description"]
    canonical = json.dumps(data, sort_keys=True, separators=(",", ":"))
    assert spec_hash(spec) == hashlib.sha256(canonical.encode()).hexdigest()


def test_the_same_spec_written_differently_hashes_the_same() -> None:
    assert hash_of(PLAIN) == hash_of(REWRITTEN)


@pytest.mark.parametrize("override", [
    "seed=1", "eps=[0.31]", "device=cpu", "distribution.d=999", "name=e1b", "models=[svm]",
    "sweep.seed=[0,1]",
])
def test_any_real_change_changes_the_hash(override: str) -> None:
    assert hash_of(PLAIN, override) != hash_of(PLAIN)


def test_sweep_values_are_normalised_before_hashing() -> None:
    assert hash_of(PLAIN, "sweep.svm_c=[8/255, 1e-3]") == \
        hash_of(PLAIN, f"sweep.svm_c=[{8 / 255!r}, 0.001]")


def test_a_cell_hashes_like_the_same_spec_written_without_sweep() -> None:
    cells = expand(load_spec_text(PLAIN, overrides=["sweep.seed=[4,5,6]"]).spec)
    hashes = [spec_hash(cell.spec) for cell in cells]
    assert len(set(hashes)) == 3
    assert hashes == [hash_of(PLAIN, f"seed={seed}") for seed in (4, 5, 6)]


# --------------------------------------------------------------------------- hashes that last

RECORDED = Path(__file__).with_name("spec_hashes.json")
"""Every spec of ``specs/`` with its hash and its cells' hashes, computed before the spec
language moved into ``contract/`` (issue 18). A spec's hash finds its cached cells: it may
change only when the spec does."""
REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("path", sorted(json.loads(RECORDED.read_text())))
def test_every_spec_keeps_its_recorded_hash(path: str) -> None:
    recorded = json.loads(RECORDED.read_text())[path]
    spec = load_spec_file(REPO / path).spec
    assert spec_hash(spec) == recorded["spec"]
    assert [spec_hash(cell.spec) for cell in expand(spec)] == recorded["cells"]


def test_every_spec_in_the_repository_is_recorded() -> None:
    """A new spec joins the file (so later changes of the language are checked on it too)."""
    on_disk = {str(p.relative_to(REPO)) for p in (REPO / "specs").rglob("*.yaml")}
    assert on_disk == set(json.loads(RECORDED.read_text()))


class _Old(Strict):
    kind: Literal["toy"] = "toy"
    steps: int = 3


class _Grown(Strict):
    """``_Old`` after a field was added: ``ADDED_LATER`` keeps old hashes while it is unset."""

    kind: Literal["toy"] = "toy"
    steps: int = 3
    ema: Annotated[float | None, ADDED_LATER] = None
    nested: list[_Old] = []


class _Outer(Strict):
    inner: _Grown = _Grown()
    items: list[_Grown] = []


def test_a_field_added_later_is_left_out_of_the_hash_at_its_default() -> None:
    assert spec_hash(_Grown()) == spec_hash(_Grown.model_validate({"nested": []})) != \
        spec_hash(_Old())  # ``nested`` is not marked: it is part of the hash
    grown_hash = hashlib.sha256(json.dumps(
        {"kind": "toy", "nested": [], "steps": 3}, sort_keys=True,
        separators=(",", ":")).encode()).hexdigest()
    assert spec_hash(_Grown()) == grown_hash
    assert spec_hash(_Grown(ema=0.999)) != grown_hash
    # Nested models and models in lists follow the same rule.
    outer = _Outer(items=[_Grown(), _Grown(ema=0.5)])
    dumped = json.loads(canonical_json(outer))
    assert "ema" not in dumped["inner"] and "ema" not in dumped["items"][0]
    assert dumped["items"][1]["ema"] == 0.5
