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

import difflib
import os
import re
import stat
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import ErrorDetails

from service.settings import get_settings
from service.specs import sweep as sweeps
from service.specs.models import SPEC_KINDS, AnySpec

_ADAPTER: TypeAdapter[Any] = TypeAdapter(AnySpec)


class _SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads YAML 1.2 floats such as ``1e-3`` and ``1e4``.

    YAML 1.1 (all PyYAML speaks) wants a dot and a signed exponent, so ``1e-3`` would arrive as a
    string; reading it as a float makes it work in every field, integers (``n_train: 1e4``),
    lists and sweeps included, not only in the fields that call ``parse_number``.
    """


_SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

_EVENT_LOADER: type = getattr(yaml, "CSafeLoader", _SpecLoader)
"""Only its parser is used (for events); resolving and constructing stay ``_SpecLoader``'s."""

Loc = tuple[str | int, ...]
"""A path into the spec data: field names and list indices (a sweep key is one element)."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, printable as ``file:line path: message``."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(Exception):
    """A spec that cannot be used; ``problems`` lists every problem found, one line each."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


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
    except _Refused as exc:
        raise SpecError([Problem(name, None, "", str(exc))]) from None
    return LoadedSpec(_load(text, name, overrides), text, name, tuple(overrides))


def load_spec_text(
    text: str, source: str = "<string>", overrides: Sequence[str] = ()
) -> LoadedSpec:
    """Like ``load_spec_file`` for YAML text; ``source`` names it in problems."""
    size, limit = len(text.encode("utf-8", errors="replace")), get_settings().max_spec_bytes
    if size > limit:
        raise SpecError([Problem(source, None, "", _too_big(size, limit))])
    return LoadedSpec(_load(text, source, overrides), text, None, tuple(overrides))


# --------------------------------------------------------------------------- reading


class _Refused(Exception):
    """A file that is not read at all (not a regular file, or too big); the message says why."""


_FILE_TYPES = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket"}


def _too_big(size: int, limit: int) -> str:
    return (f"is {size} bytes, more than the limit of {limit} bytes for a spec "
            "(ROBUSTLAB_MAX_SPEC_BYTES)")


def read_spec_bytes(path: str | Path) -> bytes:
    """The bytes of a regular file of at most ``max_spec_bytes``; nothing else is read.

    ``/dev/zero`` would be read forever and a FIFO would block the reader until a writer comes,
    so the file is opened non-blocking and its type checked on the open descriptor (no race
    with a rename) before a single byte is read; at most the limit plus one byte is ever read.
    Raises ``OSError`` (missing, a directory, unreadable) or ``_Refused``.
    """
    limit = get_settings().max_spec_bytes
    if not stat.S_ISREG(mode := os.stat(path).st_mode) and not stat.S_ISDIR(mode):
        raise _Refused(f"is {_FILE_TYPES.get(stat.S_IFMT(mode), 'not a regular file')}, "
                       "not a spec file: refused without reading it")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):
            raise _Refused("is not a regular file, not a spec file: refused without reading it")
        if info.st_size > limit:
            raise _Refused(_too_big(info.st_size, limit))
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while being read
        raise _Refused(_too_big(len(data), limit))
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``"a.b=VALUE"`` -> ``("a.b", VALUE parsed as YAML)``; ``SpecError`` naming ``--set item``."""
    path, equals, text = item.partition("=")
    path = path.strip()
    if not equals or not path:
        example = "expected PATH=VALUE, e.g. --set distribution.p=0.8"
        raise SpecError([_override_problem(item, example)])
    try:
        sweeps.split_path(path)
        limits = check_yaml_events(text)
        if limits:
            raise ValueError(f"VALUE {limits[0][1]}")
        loader = _SpecLoader(text)
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
    except ValueError as exc:
        raise SpecError([_override_problem(item, str(exc))]) from None
    except yaml.YAMLError as exc:
        reason = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError([_override_problem(item, f"VALUE is not valid YAML: {reason}")]) from None


def _override_problem(item: str, message: str) -> Problem:
    return Problem(f"--set {item}", None, "", message)


# --------------------------------------------------------------------------- YAML limits


def check_yaml_events(text: str) -> list[tuple[int | None, str]]:
    """(line, message) for the first limit the YAML's event stream exceeds, or ``[]``.

    PyYAML's parser is a state machine, so this pass cannot overflow the stack, and it stops at
    the first excess: a 500-deep document never reaches the (recursive) composer. libyaml's
    parser does it when installed (20 times faster than the pure-Python one: a megabyte of
    YAML is refused in a fraction of a second). Syntax errors are left to the composer, which
    reports them with their line.
    """
    settings = get_settings()
    depth = aliases = values = 0
    items: list[list[int]] = []  # per open collection: [items so far (-1: a mapping), line]
    try:
        for event in yaml.parse(text, Loader=_EVENT_LOADER):
            line = event.start_mark.line + 1 if event.start_mark is not None else None
            if isinstance(event, yaml.NodeEvent) and items and items[-1][0] >= 0:
                items[-1][0] += 1
                if items[-1][0] > settings.max_list_items:
                    return [(items[-1][1], f"a list of more than {settings.max_list_items} "
                             "items (ROBUSTLAB_MAX_LIST_ITEMS)")]
            if isinstance(event, yaml.CollectionStartEvent):
                sequence = isinstance(event, yaml.SequenceStartEvent)
                items.append([0 if sequence else -1, line or 0])
                depth += 1
                if depth > settings.max_yaml_depth:
                    return [(line, f"YAML nested deeper than {settings.max_yaml_depth} levels "
                             "(ROBUSTLAB_MAX_YAML_DEPTH)")]
            elif isinstance(event, yaml.CollectionEndEvent):
                depth -= 1
                items.pop()
            elif isinstance(event, yaml.AliasEvent):
                aliases += 1
                if aliases > settings.max_yaml_aliases:
                    return [(line, f"more than {settings.max_yaml_aliases} YAML aliases "
                             "(ROBUSTLAB_MAX_YAML_ALIASES)")]
            if isinstance(event, yaml.NodeEvent) and not isinstance(event, yaml.AliasEvent):
                values += 1
                if values > settings.max_yaml_nodes:
                    return [(line, f"more than {settings.max_yaml_nodes} YAML values "
                             "(ROBUSTLAB_MAX_YAML_NODES)")]
    except yaml.YAMLError:
        return []
    return []


def _children(node: yaml.Node) -> list[yaml.Node]:
    if isinstance(node, yaml.SequenceNode):
        return list(node.value)
    if isinstance(node, yaml.MappingNode):
        return [part for pair in node.value for part in pair]
    return []


def check_yaml_graph(root: yaml.Node) -> list[tuple[int | None, str]]:
    """(line, message) for limits the composed YAML exceeds once aliases are expanded, or ``[]``.

    Aliases share nodes, so a few hundred bytes can stand for 10**9 values ("billion laughs")
    or nest far deeper than written, and an anchor may even contain its own alias. Sizes and
    depths are computed per shared node once (iterative post-order, no recursion), so the check
    costs the size of the document, not of its expansion.
    """
    settings = get_settings()
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, children_done = stack.pop()
        key, line = id(node), node.start_mark.line + 1
        if children_done:
            on_path.discard(key)
            children = _children(node)
            if isinstance(node, yaml.SequenceNode) and len(children) > settings.max_list_items:
                return [(line, f"a list of {len(children)} items, more than "
                         f"{settings.max_list_items} (ROBUSTLAB_MAX_LIST_ITEMS)")]
            size[key] = 1 + sum(size[id(child)] for child in children)
            collection = isinstance(node, yaml.CollectionNode)
            depth[key] = collection + max((depth[id(child)] for child in children), default=0)
            if size[key] > settings.max_yaml_nodes:
                return [(line, f"more than {settings.max_yaml_nodes} YAML values once its "
                         "aliases are expanded (ROBUSTLAB_MAX_YAML_NODES)")]
            if depth[key] > settings.max_yaml_depth:
                return [(line, f"YAML nested deeper than {settings.max_yaml_depth} levels once "
                         "its aliases are expanded (ROBUSTLAB_MAX_YAML_DEPTH)")]
            continue
        if key in size:
            continue
        on_path.add(key)
        stack.append((node, True))
        for child in _children(node):
            if id(child) in on_path:
                return [(child.start_mark.line + 1, "a YAML alias refers to a value that "
                         "contains it (a cycle)")]
            if id(child) not in size:
                stack.append((child, False))
    return []


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
        root, data = _parse_yaml(text, source)
    except SpecError as exc:
        raise SpecError(problems + exc.problems) from None
    problems += _duplicate_keys(root, source)
    for item, path, value in parsed:
        try:
            sweeps.set_path(data, path, value)
        except ValueError as exc:
            problems.append(_override_problem(item, str(exc)))
    if problems:
        raise SpecError(problems)

    located = _Located(source, root, [(item, _loc_of(path)) for item, path, _ in parsed])
    spec, base_errors = _validate(data)
    problems += [located.problem(*_describe(error, data)) for error in base_errors]
    sweep_is_valid = not any(_walk(error["loc"])[0][:1] == ("sweep",) for error in base_errors)
    normalised: dict[str, list[Any]] = {}
    if data.get("kind") in SPEC_KINDS and sweep_is_valid and data.get("sweep"):
        cell_problems, normalised = _check_cells(data, spec is not None, located)
        problems += cell_problems
    if problems:
        raise SpecError(sorted(dict.fromkeys(problems), key=lambda p: p.line or 0))
    return spec.model_copy(update={"sweep": normalised}) if normalised else spec


def _parse_yaml(text: str, source: str) -> tuple[yaml.MappingNode, dict[str, Any]]:
    """The top-level mapping as nodes (for lines) and as data, from one parse.

    The YAML's size limits are checked twice before any Python data is built: on the event
    stream (depth, aliases, values) before the recursive composer runs, and on the node graph
    (values and depth with every alias expanded, list lengths) before it is constructed.
    """
    loader = _SpecLoader(text)
    try:
        limits = check_yaml_events(text)
        node = loader.get_single_node() if not limits else None
        limits = limits or (check_yaml_graph(node) if node is not None else [])
        if limits:
            raise SpecError([Problem(source, line, "", message) for line, message in limits])
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = ", ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        line = mark.line + 1 if mark is not None else None
        raise SpecError([Problem(source, line, "", f"YAML syntax error: {reason}")]) from None
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError([Problem(source, None, "", f"YAML syntax error: {first_line}")]) from None
    finally:
        loader.dispose()
    if node is None:
        empty = "the file is empty: a spec is a mapping with 'name' and 'kind'"
        raise SpecError([Problem(source, None, "", empty)])
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        not_mapping = f"a spec is a mapping of field names to values, not {_yaml_type(data)}"
        raise SpecError([Problem(source, node.start_mark.line + 1, "", not_mapping)])
    return node, data


def _duplicate_keys(root: yaml.Node, source: str) -> list[Problem]:
    """Keys written twice in one mapping (PyYAML would silently keep the last)."""
    problems: list[Problem] = []
    seen_nodes: set[int] = set()

    def visit(node: yaml.Node, path: tuple[str, ...]) -> None:
        if id(node) in seen_nodes:  # aliases may share (or even cycle through) nodes
            return
        seen_nodes.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for index, item in enumerate(node.value):
                visit(item, (*path, str(index)))
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key, value in node.value:
                line = key.start_mark.line + 1
                if isinstance(key, yaml.ScalarNode) and key.value in first_line:
                    problems.append(Problem(source, line, ".".join((*path, key.value)),
                                            f"duplicate key (first written on line "
                                            f"{first_line[key.value]})"))
                elif isinstance(key, yaml.ScalarNode):
                    first_line[key.value] = line
                visit(value, (*path, str(key.value)))

    visit(root, ())
    return problems


def _validate(data: dict[str, Any]) -> tuple[Any, list[ErrorDetails]]:
    """The validated spec (None if invalid) and pydantic's errors."""
    try:
        return _ADAPTER.validate_python(data), []
    except ValidationError as exc:
        return None, exc.errors()


def _check_cells(
    data: dict[str, Any], base_is_valid: bool, located: _Located
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
    keys = {key: _loc_of(key) for key in sweep}
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
            loc, message = _describe(error, cell)
            owner = _owning_key(loc, keys)
            if owner is not None:
                problems.append(_sweep_value_problem(owner, indices[owner], loc, message,
                                                     error["type"], keys, located))
            elif base_is_valid:
                problems.append(located.problem(("sweep",), f"cell {cell_index} {params}: "
                                                f"{_dotted(loc) or 'spec'}: {message}"))
        if spec is not None:
            dumped = spec.model_dump(mode="json")
            for key, index in indices.items():
                resolved[key][index] = sweeps.get_path(dumped, key)
    if problems or not base_is_valid:
        return problems, {}
    return [], {key: [resolved[key][i] for i in range(len(sweep[key]))] for key in sweep}


def _unsettable_keys(
    base: dict[str, Any], sweep: dict[str, list[Any]], located: _Located
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
    owners = [key for key, key_loc in keys.items() if _overlap(loc, key_loc)]
    return max(owners, key=lambda key: len(keys[key]), default=None)


def _sweep_value_problem(
    key: str, index: int, loc: Loc, message: str, error_type: str,
    keys: dict[str, Loc], located: _Located,
) -> Problem:
    """A problem with one sweep value, or with the key itself when it names no field."""
    if error_type == "extra_forbidden" and keys[key][: len(loc)] == loc:
        return located.problem(("sweep", key), message)
    where = f"sweep.{key}[{index}]"
    if loc != keys[key]:
        message = f"{_dotted(loc) or 'spec'}: {message}"
    return located.problem(("sweep", key, index), message, shown_as=where)


# --------------------------------------------------------------------------- lines


@dataclass
class _Located:
    """Turns a path into a ``Problem`` on the right line, or blames the ``--set`` that caused it."""

    file: str
    root: yaml.MappingNode
    overrides: list[tuple[str, Loc]] = field(default_factory=list)

    def problem(self, loc: Loc, message: str, *, shown_as: str | None = None) -> Problem:
        shown = shown_as if shown_as is not None else _dotted(loc)
        for item, override in self.overrides:
            if self._caused_by(loc, override):
                return Problem(self.file, None, shown, f"{message} (from --set {item})")
        line, _ = self.find(loc)
        return Problem(self.file, line, shown, message)

    def _caused_by(self, loc: Loc, override: Loc) -> bool:
        """The override wrote this value, or the mapping this value lives in."""
        if _overlap(loc, override):
            return True
        common = 0
        while common < min(len(loc), len(override)) and loc[common] == override[common]:
            common += 1
        return common > 0 and not self.find(loc[:common])[1]

    def find(self, loc: Loc) -> tuple[int, bool]:
        """The line of the deepest node on ``loc`` that the YAML has, and whether it has all.

        The line of a mapping entry is its key's line; of a list item, the item's first line.
        """
        line, node = 1, self.root
        for part in loc:
            child, child_line = _child_node(node, part)
            if child is None:
                return line, False
            line, node = child_line, child
        return line, True


def _child_node(node: yaml.Node, part: str | int) -> tuple[yaml.Node | None, int]:
    if isinstance(node, yaml.MappingNode):
        for key, value in reversed(node.value):  # the last of duplicate keys wins, as in PyYAML
            if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                return value, key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
        return node.value[part], node.value[part].start_mark.line + 1
    return None, 0


# --------------------------------------------------------------------------- messages


def _describe(error: ErrorDetails, data: dict[str, Any]) -> tuple[Loc, str]:
    """The clean path (union tags dropped) and a one-line human message for a pydantic error."""
    loc, models = _walk(error["loc"])
    if error["type"] in ("union_tag_invalid", "union_tag_not_found"):
        return (*loc, "kind"), _kind_message(error["input"], loc, models)
    if error["type"] == "extra_forbidden":
        _, parents = _walk(error["loc"][:-1])
        return loc, _unknown_field_message(str(loc[-1]), parents)
    if loc == ("sweep",) and isinstance(data.get("sweep"), dict):
        # The model checks the sweep as a whole; its message quotes the key at fault.
        loc = next((("sweep", key) for key in data["sweep"] if repr(key) in error["msg"]), loc)
    return loc, _message(error["type"], error["msg"], error.get("ctx", {}), error["input"])


def _kind_message(value: Any, loc: Loc, models: list[type[BaseModel]]) -> str:
    """A missing or unknown ``kind`` of a spec (``loc`` empty) or of a nested model (an attack)."""
    kinds = list(dict.fromkeys(k for m in models for k in _kinds(m))) if loc else list(SPEC_KINDS)
    expected = ", ".join(repr(k) for k in kinds)
    tag = value.get("kind") if isinstance(value, dict) else None
    if tag is None:
        return f"field required (one of {expected})"
    return f"unknown kind {tag!r}{_did_you_mean(str(tag), kinds)}; valid kinds: {expected}"


def _unknown_field_message(name: str, models: list[type[BaseModel]]) -> str:
    """Name the closest field, or list them all when none is close."""
    fields = sorted({field for model in models for field in model.model_fields})
    hint = _did_you_mean(name, fields) or (f" (fields: {', '.join(fields)})" if fields else "")
    return f"unknown field {name!r}{hint}"


_MESSAGES = {
    "missing": "field required",
    "greater_than_equal": "must be >= {ge} (got {got})",
    "greater_than": "must be > {gt} (got {got})",
    "less_than_equal": "must be <= {le} (got {got})",
    "less_than": "must be < {lt} (got {got})",
    "too_short": "must have at least {min_length} item(s)",
    "too_long": "must have at most {max_length} item(s)",
    "string_too_short": "must have at least {min_length} character(s)",
    "string_too_long": "must have at most {max_length} character(s)",
    "string_pattern_mismatch": "must match the pattern {pattern} (got {got})",
    "int_parsing": "must be an integer (got {got})",
    "int_type": "must be an integer (got {got})",
    "int_from_float": "must be a whole number (got {got})",
    "int_parsing_size": "must be a whole number <= 9223372036854775807 (got {got})",
    "float_parsing": "must be a number (got {got})",
    "float_type": "must be a number (got {got})",
    "bool_parsing": "must be true or false (got {got})",
    "bool_type": "must be true or false (got {got})",
    "string_type": "must be a string (got {got})",
    "list_type": "must be a list (got {got})",
    "dict_type": "must be a mapping (got {got})",
    "model_type": "must be a mapping (got {got})",
    "model_attributes_type": "must be a mapping (got {got})",
    "finite_number": "must be a finite number",
    "invalid_key": "field names must be strings",
}


def _message(kind: str, msg: str, ctx: dict[str, Any], value: Any) -> str:
    if kind == "value_error":
        message = msg.removeprefix("Value error, ")
        shown = _shown(value)
        if shown in message or isinstance(value, dict | list):
            return message
        return f"{message} (got {shown})"
    if kind == "literal_error":
        expected = re.sub(r" or (?='|\")", ", ", ctx["expected"])
        return f"must be one of {expected} (got {_shown(value)})"
    if kind == "string_too_short" and ctx.get("min_length") == 1:
        return "must not be empty"
    if kind in _MESSAGES:
        return _MESSAGES[kind].format(got=_shown(value), **ctx)
    return msg.replace("Input should be", "must be")


def _did_you_mean(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _shown(value: Any) -> str:
    """A short rendering of a bad input, as the user wrote it in YAML."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, dict | list):
        return _yaml_type(value)
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _yaml_type(value: Any) -> str:
    """'a list', 'a string', ... for the type of a YAML value."""
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- paths


def _walk(loc: Iterable[str | int]) -> tuple[Loc, list[type[BaseModel]]]:
    """Drop the discriminated-union tags from a pydantic ``loc``; the models reached at its end.

    pydantic puts the chosen tag (``'train'``, ``'pgd'``) into the location of an error inside a
    discriminated union; a tag is recognised as a name that is the ``kind`` of one of several
    candidate models, where a field name is expected.
    """
    models: list[type[BaseModel]] = list(SPEC_KINDS.values())
    clean: list[str | int] = []
    tag_possible = True
    for part in loc:
        if tag_possible and len(models) > 1 and any(part in _kinds(m) for m in models):
            models = [m for m in models if part in _kinds(m)]
            tag_possible = False
            continue
        clean.append(part)
        if isinstance(part, str):
            models = [sub for m in models if part in m.model_fields
                      for sub in _models_in(m.model_fields[part].annotation)]
            tag_possible = True
    return tuple(clean), models


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """The models an annotation holds (through Optional, unions, lists and Annotated)."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return [annotation]
    return [model for arg in get_args(annotation) for model in _models_in(arg)]


def _kinds(model: type[BaseModel]) -> tuple[str, ...]:
    """The ``kind`` literal(s) of a model, or () when it has no ``kind`` field."""
    kind = model.model_fields.get("kind")
    return tuple(str(arg) for arg in get_args(kind.annotation)) if kind is not None else ()


def _loc_of(dotted: str) -> Loc:
    """A dotted path as a ``Loc``: digits become list indices, ``sweep.<key>`` two elements."""
    return tuple(int(p) if p.isdigit() else p for p in sweeps.split_path(dotted))


def _overlap(a: Loc, b: Loc) -> bool:
    """One path equals the other or lies under it (the empty path, the whole spec, is neither)."""
    shorter = min(len(a), len(b))
    return shorter > 0 and a[:shorter] == b[:shorter]


def _dotted(loc: Loc) -> str:
    return ".".join(str(part) for part in loc)
