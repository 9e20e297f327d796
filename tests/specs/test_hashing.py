"""The content hash: equal for the same spec however written, different for any real change."""

from __future__ import annotations

import hashlib
import json

import pytest

from service.specs.hashing import spec_hash
from service.specs.loading import load_spec_text
from service.specs.sweep import expand

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
