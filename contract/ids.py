"""Ids a user can paste into YAML: never read back as a number, a boolean or null.

Run ids are 12 random hex digits. About one in 140 would not survive a paste into a spec
(``--set 'source={run: RUN_ID}'``): ``5e8841302917`` is a YAML 1.2 float (``inf``), an
all-digit id an integer, ``0e12...`` zero. ``new_id`` draws again until the id reads as the
same string under YAML 1.1 (PyYAML's safe loader) and under the spec loader's YAML 1.2 floats.
"""

from __future__ import annotations

import secrets

import yaml

from contract.specs.yaml_text import SpecLoader

ID_LENGTH = 12


def reads_as_string(text: str) -> bool:
    """Whether ``text`` written bare in YAML comes back as that very string."""
    for loader in (yaml.SafeLoader, SpecLoader):
        try:
            if yaml.load(text, Loader=loader) != text:  # noqa: S506 - safe loaders only
                return False
        except yaml.YAMLError:
            return False
    return True


def new_id(length: int = ID_LENGTH) -> str:
    """``length`` random hex digits that YAML reads as a string."""
    while True:
        candidate = secrets.token_hex((length + 1) // 2)[:length]
        if reads_as_string(candidate):
            return candidate
