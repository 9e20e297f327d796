"""Content hash of a normalised spec: the identity of "the same experiment".

Two specs hash the same exactly when they validate to the same values, whatever the YAML looked
like: key order, ``0.3`` versus ``3/10``, defaults omitted or written out. Only ``description``
is left out, so rewording the prose does not make a new experiment.
"""

from __future__ import annotations

import hashlib
import json

from service.specs.models import SpecBase

_EXCLUDED = {"description"}


def canonical_json(spec: SpecBase) -> str:
    """The spec's validated values as compact JSON with sorted keys (``description`` left out)."""
    data = spec.model_dump(mode="json", exclude=_EXCLUDED)
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def spec_hash(spec: SpecBase) -> str:
    """sha256 hex digest of ``canonical_json(spec)``."""
    return hashlib.sha256(canonical_json(spec).encode("utf-8")).hexdigest()
