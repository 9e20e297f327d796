"""YAML -> one validated spec object, or every problem as ``file:line dotted.path: message``.

The loader composes the YAML once into nodes (which know their line) and Python data, applies
``--set`` overrides to the data, validates it against ``AnySpec``, then validates every sweep
cell, so that a bad sweep value is reported before anything runs. pydantic's errors are turned
into one human line each: the tag of a discriminated union is dropped from the path, "Value
error, " is stripped, unknown fields get a did-you-mean, and the line is that of the offending key
(of the parent mapping for a missing field, line 1 at the top level). A problem caused by an
override names the ``--set`` it came from instead of a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from contract.limits import get_limits
from contract.specs import sweep as sweeps
from contract.specs.hashing import stable_dump
from contract.specs.kinds import SPEC_KINDS, AnySpec
from contract.specs.messages import Loc, Located, describe, dotted, loc_of, overlap, walk
from contract.specs.yaml_text import (
    Problem,
    Refused,
    SpecError,
    SpecLoader,
    TooDeep,
    check_raw_text,
    check_yaml_events,
    check_yaml_graph,
    duplicate_keys,
    parse_yaml,
    printable,
    read_spec_bytes,
    too_big,
)

__all__ = ["LoadedSpec", "Problem", "SpecError", "load_spec_file", "load_spec_text",
           "parse_override"]

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnySpec)


@dataclass(frozen=True)
class LoadedSpec:
    """A validated spec with where it came from (kept with the runs as provenance)."""

    spec: AnySpec
    """The validated spec, its sweep still in it (values normalised, e.g. ``8/255`` -> float)."""
    source_yaml: str
    source_path: str | None
    overrides: tuple[str, ...] = ()


def load_spec_file(path: str | Path, overrides: Sequence[str] = ()) -> LoadedSpec:
    """Read, override and validate the spec at ``path``; raise ``SpecError`` on any problem."""
    name = str(path)
    try:
        text = read_spec_bytes(path).decode("utf-8")
    except FileNotFoundError:
        raise SpecError([Problem(name, None, "", "no such file")]) from None
    except IsADirectoryError:
        raise SpecError([Problem(name, None, "", "is a directory, not a spec file")]) from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise SpecError([Problem(name, None, "", f"cannot read: {reason}")]) from None
    except Refused as exc:
        raise SpecError([Problem(name, None, "", str(exc))]) from None
    return LoadedSpec(_load(text, name, overrides), text, name, tuple(overrides))


def load_spec_text(
    text: str, source: str = "<string>", overrides: Sequence[str] = ()
) -> LoadedSpec:
    """Like ``load_spec_file`` for YAML text; ``source`` names it in problems."""
    size, limit = len(text.encode("utf-8", errors="replace")), get_limits().max_spec_bytes
    if size > limit:
        raise SpecError([Problem(source, None, "", too_big(size, limit))])
    return LoadedSpec(_load(text, source, overrides), text, None, tuple(overrides))



def parse_override(item: str) -> tuple[str, Any]:
    """``"a.b=VALUE"`` -> ``("a.b", VALUE parsed as YAML)``; ``SpecError`` naming ``--set item``."""
    path, equals, text = item.partition("=")
    path = path.strip()
    if not equals or not path:
        example = "expected PATH=VALUE, e.g. --set distribution.p=0.8"
        raise SpecError([_override_problem(item, example)])
    try:
        sweeps.split_path(path)
        limits = check_raw_text(text) or check_yaml_events(text)
        if limits:
            raise ValueError(f"VALUE {limits[0][1]}")
        loader = SpecLoader(text)
        try:
            node = loader.get_single_node()
            if node is None:
                return path, None
            limits = check_yaml_graph(node)
            if limits:
                raise ValueError(f"VALUE {limits[0][1]}")
            return path, loader.construct_document(node)
        finally:
            loader.dispose()
    except TooDeep:
        limit = get_limits().max_yaml_depth
        raise SpecError([_override_problem(item, f"VALUE YAML nested deeper than {limit} levels "
                                                 "(ROBUSTLAB_MAX_YAML_DEPTH)")]) from None
    except ValueError as exc:
        raise SpecError([_override_problem(item, str(exc))]) from None
    except yaml.YAMLError as exc:
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([_override_problem(item, f"VALUE is not valid YAML: {reason}")]) from None


def _override_problem(item: str, message: str) -> Problem:
    return Problem(f"--set {printable(item)}", None, "", message)



# --------------------------------------------------------------------------- the pipeline


def _load(text: str, source: str, overrides: Sequence[str]) -> AnySpec:
    """Parse, override and validate.

    Problems with the YAML or a ``--set`` stop before validation (there is nothing sound to
    validate yet); validation then reports every problem of the spec and its sweep at once.
    """
    problems: list[Problem] = []
    parsed: list[tuple[str, str, Any]] = []
    for item in overrides:
        try:
            parsed.append((item, *parse_override(item)))
        except SpecError as exc:
            problems += exc.problems
    try:
        root, data = parse_yaml(text, source)
    except SpecError as exc:
        raise SpecError(problems + exc.problems) from None
    problems += duplicate_keys(root, source)
    for item, path, value in parsed:
        try:
            sweeps.set_path(data, path, value)
        except ValueError as exc:
            problems.append(_override_problem(item, str(exc)))
    if problems:
        raise SpecError(problems)

    located = Located(source, root, [(item, loc_of(path)) for item, path, _ in parsed])
    spec, base_errors = _validate(data)
    problems += [located.problem(*describe(error, data)) for error in base_errors]
    sweep_is_valid = not any(walk(error["loc"])[0][:1] == ("sweep",) for error in base_errors)
    normalised: dict[str, list[Any]] = {}
    if data.get("kind") in SPEC_KINDS and sweep_is_valid and data.get("sweep"):
        cell_problems, normalised = _check_cells(data, spec is not None, located)
        problems += cell_problems
    if problems:
        raise SpecError(sorted(dict.fromkeys(problems), key=lambda p: p.line or 0))
    return spec.model_copy(update={"sweep": normalised}) if normalised else spec



def _validate(data: dict[str, Any]) -> tuple[Any, list[ErrorDetails]]:
    """The validated spec (None if invalid) and pydantic's errors."""
    try:
        return _ADAPTER.validate_python(data), []
    except ValidationError as exc:
        return None, exc.errors()


def _check_cells(
    data: dict[str, Any], base_is_valid: bool, located: Located
) -> tuple[list[Problem], dict[str, list[Any]]]:
    """Validate every grid cell; return the problems and the sweep with validated values.

    An error at or under a sweep key is reported at that value's line (at the key's line when
    the key names no field); an error elsewhere is a combination the grid makes invalid, reported
    at the ``sweep`` line with the cell's values (unless the base spec already has it).
    """
    base = {key: value for key, value in data.items() if key != "sweep"}
    unsettable = _unsettable_keys(base, data["sweep"], located)
    problems = list(unsettable.values())
    sweep = {key: values for key, values in data["sweep"].items() if key not in unsettable}
    keys = {key: loc_of(key) for key in sweep}
    resolved: dict[str, dict[int, Any]] = {key: {} for key in sweep}
    for cell_index, indices in enumerate(sweeps.grid({k: range(len(v)) for k, v in sweep.items()})):
        params = {key: sweep[key][index] for key, index in indices.items()}
        try:
            cell = sweeps.with_params(base, params)
        except ValueError as exc:  # a key made settable or not by another key's value
            problems.append(located.problem(("sweep",), f"cell {cell_index} {params}: {exc}"))
            continue
        spec, errors = _validate(cell)
        for error in errors:
            loc, message = describe(error, cell)
            owner = _owning_key(loc, keys)
            if owner is not None:
                problems.append(_sweep_value_problem(owner, indices[owner], loc, message,
                                                     error["type"], keys, located))
            elif base_is_valid:
                problems.append(located.problem(("sweep",), f"cell {cell_index} {params}: "
                                                f"{dotted(loc) or 'spec'}: {message}"))
        if spec is not None:
            dumped = stable_dump(spec)
            for key, index in indices.items():
                resolved[key][index] = sweeps.get_path(dumped, key)
    if problems or not base_is_valid:
        return problems, {}
    return [], {key: [resolved[key][i] for i in range(len(sweep[key]))] for key in sweep}


def _unsettable_keys(
    base: dict[str, Any], sweep: dict[str, list[Any]], located: Located
) -> dict[str, Problem]:
    """Sweep keys that cannot be set at all (through a scalar, past a list's end), at their line."""
    problems = {}
    for key, values in sweep.items():
        try:
            sweeps.with_params(base, {key: values[0]})
        except ValueError as exc:
            problems[key] = located.problem(("sweep", key), str(exc))
    return problems


def _owning_key(loc: Loc, keys: dict[str, Loc]) -> str | None:
    """The sweep key whose path contains ``loc`` or lies under it (the longest such)."""
    owners = [key for key, key_loc in keys.items() if overlap(loc, key_loc)]
    return max(owners, key=lambda key: len(keys[key]), default=None)


def _sweep_value_problem(
    key: str, index: int, loc: Loc, message: str, error_type: str,
    keys: dict[str, Loc], located: Located,
) -> Problem:
    """A problem with one sweep value, or with the key itself when it names no field."""
    if error_type == "extra_forbidden" and keys[key][: len(loc)] == loc:
        return located.problem(("sweep", key), message)
    where = f"sweep.{key}[{index}]"
    if loc != keys[key]:
        message = f"{dotted(loc) or 'spec'}: {message}"
    return located.problem(("sweep", key, index), message, shown_as=where)


