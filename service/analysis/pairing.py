"""When two accuracies were measured on the same examples, and how they then differ.

Two models scored on the same examples are paired: their per-example outcomes (the packed bits
of ``evaluations.per_example``) are compared example by example (McNemar), which is far more
sensitive than comparing two accuracies. ``compare`` and the report's claims both decide
pairing here, from the rows' example identity (``dataset_hash``, ``split``, ``examples_hash``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Outcome:
    """One evaluation's accuracy, with its per-example bits and example identity if known."""

    accuracy: float
    n: int
    dataset: str | None
    split: str | None
    bits: bytes | None
    dataset_hash: str | None = None
    examples_hash: str | None = None


def row_outcome(row: Mapping[str, Any], bits: bytes | None = None) -> Outcome:
    """A result row as an ``Outcome``; its bits from ``bits`` or the row's ``per_example``."""
    found = bits if bits is not None else row.get("per_example")
    return Outcome(float(row["accuracy"]), int(row["n"]), row.get("dataset"), row.get("split"),
                   bytes(found) if found is not None else None,
                   row.get("dataset_hash") or None, row.get("examples_hash") or None)


def is_paired(a: Outcome, b: Outcome) -> bool:
    """Whether a and b were measured on the same examples, in the same order.

    Both rows name their examples (``dataset_hash`` and ``examples_hash``, see
    ``workers.science.example_identity``) and name the same ones: the same dataset,
    dataset_hash, split and examples_hash. Rows older than migration 0006 name none and are
    unpaired, as are rows without per-example bits (of the right length) to count.
    """
    return (a.bits is not None and b.bits is not None and a.n == b.n and a.n > 0
            and len(a.bits) == len(b.bits) == (a.n + 7) // 8
            and a.dataset_hash is not None and a.examples_hash is not None
            and (a.dataset, a.dataset_hash, a.split, a.examples_hash)
            == (b.dataset, b.dataset_hash, b.split, b.examples_hash))


def discordance(bits_a: bytes, bits_b: bytes, n: int) -> tuple[int, int, int, int]:
    """(both, a_only, b_only, neither) correct among n examples, from two ``numpy.packbits``
    bitmaps (big-endian: example 0 is the top bit of byte 0; the last byte's padding is
    masked off). Read as Python integers and popcounted: 10,000 examples in microseconds, and
    no numpy import for the CLI to pay for."""
    width = 8 * len(bits_a)
    if len(bits_b) * 8 != width or not width - 8 < n <= width:
        raise ValueError(f"{len(bits_a)} and {len(bits_b)} bytes do not hold {n} examples")
    mask = ((1 << n) - 1) << (width - n)
    a = int.from_bytes(bits_a, "big") & mask
    b = int.from_bytes(bits_b, "big") & mask
    both, a_only, b_only = (a & b).bit_count(), (a & ~b).bit_count(), (b & ~a).bit_count()
    return both, a_only, b_only, n - both - a_only - b_only
