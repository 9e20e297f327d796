"""Reading a spec's YAML safely: regular files only, size and shape limits, lines kept.

Nothing here validates a spec; it turns bytes into the top-level mapping as nodes (which know
their lines) and as plain data, refusing what could exhaust memory, the stack or the reader
before PyYAML builds it. The limits are ``contract.limits.SpecLimits``.
"""

from __future__ import annotations

import os
import re
import stat
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from contract.limits import get_limits


class TooDeep(Exception):
    """The composer met a collection nested deeper than ``max_yaml_depth`` (at ``line``)."""

    def __init__(self, line: int) -> None:
        super().__init__(line)
        self.line = line


class SpecLoader(yaml.SafeLoader):
    """PyYAML's safe loader that also reads YAML 1.2 floats such as ``1e-3`` and ``1e4``.

    YAML 1.1 (all PyYAML speaks) wants a dot and a signed exponent, so ``1e-3`` would arrive as a
    string; reading it as a float makes it work in every field, integers (``n_train: 1e4``),
    lists and sweeps included, not only in the fields that call ``parse_number``.

    Its composer, which is recursive, counts how deep it is and raises ``TooDeep`` past
    ``max_yaml_depth``: the last guard against the stack, whatever the checks before it missed.
    """

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.depth = 0
        self.max_depth = get_limits().max_yaml_depth

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > self.max_depth:
            mark = self.peek_event().start_mark
            raise TooDeep(mark.line + 1 if mark is not None else 0)

    def compose_sequence_node(self, anchor: str | None) -> yaml.SequenceNode:
        self._enter()
        try:
            return super().compose_sequence_node(anchor)
        finally:
            self.depth -= 1

    def compose_mapping_node(self, anchor: str | None) -> yaml.MappingNode:
        self._enter()
        try:
            return super().compose_mapping_node(anchor)
        finally:
            self.depth -= 1


SpecLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)

_EVENT_LOADER: type = getattr(yaml, "CSafeLoader", SpecLoader)
"""Only its parser is used (for events); resolving and constructing stay ``SpecLoader``'s."""

@dataclass(frozen=True)
class Problem:
    """One thing wrong with a spec, printable as ``file:line path: message``."""

    file: str
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        """One line; a control character or line break from the spec (a key written
        ``"\\e[2J"``, a file name) is shown escaped, never sent to the terminal."""
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        text = f"{where} {self.path}: {self.message}" if self.path else f"{where}: {self.message}"
        return printable(text).replace("\r", "\\r").replace("\n", "\\n")


class SpecError(Exception):
    """A spec that cannot be used; ``problems`` lists every problem found, one line each."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(problem) for problem in self.problems))


# --------------------------------------------------------------------------- reading


class Refused(Exception):
    """A file that is not read at all (not a regular file, or too big); the message says why."""


_FILE_TYPES = {stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
               stat.S_IFIFO: "a FIFO (named pipe)", stat.S_IFSOCK: "a socket"}


def too_big(size: int, limit: int) -> str:
    return (f"is {size} bytes, more than the limit of {limit} bytes for a spec "
            "(ROBUSTLAB_MAX_SPEC_BYTES)")


def read_spec_bytes(path: str | Path) -> bytes:
    """The bytes of a regular file of at most ``max_spec_bytes``; nothing else is read.

    ``/dev/zero`` would be read forever and a FIFO would block the reader until a writer comes,
    so the file is opened non-blocking and its type checked on the open descriptor (no race
    with a rename) before a single byte is read; at most the limit plus one byte is ever read.
    Raises ``OSError`` (missing, a directory, unreadable) or ``Refused``.
    """
    limit = get_limits().max_spec_bytes
    if not stat.S_ISREG(mode := os.stat(path).st_mode) and not stat.S_ISDIR(mode):
        raise Refused(f"is {_FILE_TYPES.get(stat.S_IFMT(mode), 'not a regular file')}, "
                       "not a spec file: refused without reading it")
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(path)
        if not stat.S_ISREG(info.st_mode):
            raise Refused("is not a regular file, not a spec file: refused without reading it")
        if info.st_size > limit:
            raise Refused(too_big(info.st_size, limit))
        chunks, left = [], limit + 1
        while left > 0 and (chunk := os.read(fd, min(left, 1 << 16))):
            chunks.append(chunk)
            left -= len(chunk)
        data = b"".join(chunks)
    finally:
        os.close(fd)
    if len(data) > limit:  # it grew while being read
        raise Refused(too_big(len(data), limit))
    return data


# --------------------------------------------------------------------------- the raw text


_NOT_ALLOWED = re.compile("[^\t\n\r\x20-\x7e\xa0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
"""Control characters (C0 but tab, LF and CR; DEL; C1) and what YAML forbids (surrogates,
U+FFFE, U+FFFF)."""
_C0 = ("NUL", "SOH", "STX", "ETX", "EOT", "ENQ", "ACK", "BEL", "BS", "HT", "LF", "VT", "FF",
       "CR", "SO", "SI", "DLE", "DC1", "DC2", "DC3", "DC4", "NAK", "SYN", "ETB", "CAN", "EM",
       "SUB", "ESC", "FS", "GS", "RS", "US")
_LINE_BREAK = re.compile("\r\n|[\r\n\u2028\u2029]")
"""What PyYAML counts as a line break (NEL is refused above), so lines agree with its marks."""
_INTERESTING = re.compile(r"""[\[\]{}'"#]""")
_ONLY_INDICATORS = re.compile(r"[ \t]*(?:[-?:][ \t]+)*[-?:]")
_KEY = re.compile(r"""(?:[&!][^\s\[\]{},]*[ \t]+)*(?:"(?:[^"\\]|\\.)*"|'(?:[^']|'')*'"""
                  r"""|[^\s#'"\[\]{},|>%@`](?:\S|[ \t]+(?=[^\s#]))*?)[ \t]*:(?:[ \t]|$)""")
_PROPERTY = re.compile(r"[&!][^\s\[\]{},]*")
"""An anchor (``&name``) or a tag (``!!str``) before a node."""
_BLOCK_SCALAR = re.compile(r"[|>][0-9+-]{0,2}[ \t]*(?:#.*)?$")


def _character(char: str) -> str:
    """'U+001B (ESC)' for a control character: never the character itself (it could drive a
    terminal), its code point and name."""
    code = ord(char)
    name = _C0[code] if code < 32 else "DEL" if code == 0x7F else "C1 control" if code < 0xA0 else ""
    return f"U+{code:04X} ({name})" if name else f"U+{code:04X}"


def printable(text: str) -> str:
    """``text`` with every character a spec may not hold written as an escape (``\\x1b``), so
    that echoing it cannot drive the terminal it is printed on."""
    return _NOT_ALLOWED.sub(lambda found: repr(found.group())[1:-1], text)


def _node_start(line: str, at: int, flow: bool) -> bool:
    """Whether a quote or bracket at ``line[at]`` can start a node (else it is plain text)."""
    if at and not flow and line[at - 1] not in " \t":
        return False
    head = line[:at].rstrip(" \t")
    while head:
        if flow and head[-1] in "[{,:?":
            return True
        if not flow and (head[-1] == ":" or _ONLY_INDICATORS.fullmatch(head)):
            return True
        last = head.split()[-1]
        if not _PROPERTY.fullmatch(last):
            return False
        head = head[:-len(last)].rstrip(" \t")  # an anchor or tag before the node
    return True


def _quote_end(line: str, start: int, quote: str) -> int:
    """Index just after the quote that closes a scalar opened before ``start``, or -1."""
    at = start
    while (at := line.find(quote, at)) >= 0:
        if quote == "'" and line.startswith("''", at):
            at += 2
        elif quote == '"' and (at - len(line[:at].rstrip("\\"))) % 2:
            at += 1
        else:
            return at + 1
    return -1


def raw_depth(text: str, limit: int) -> tuple[int, int] | None:
    """(line, column) where the text's nesting first passes ``limit``, counted on the raw text.

    Conservative, and cheap: no YAML code runs. Flow brackets (``[``, ``{``) outside quoted
    scalars and comments count one level each; block collections count one level per
    indentation column a ``key:``, ``- `` or ``? `` opens (a sequence written at its parent
    key's column counts too, as do compact ``- - -``). It may count a level the YAML does not
    have (never one fewer in ordinary YAML); PyYAML's event stream and the composer's own
    count (``SpecLoader``) follow it with the exact depth.
    """
    flow = 0
    quote = ""  # a quoted scalar still open at the end of a line
    block: list[tuple[int, str]] = []  # (column, "seq" or "map") of the open block collections
    scalar_indent: int | None = None  # inside a block scalar, lines indented more are its text
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        body = line.lstrip(" ")
        indent = len(line) - len(body)
        if scalar_indent is not None:
            if not body.strip() or indent > scalar_indent:
                continue
            scalar_indent = None
        at = 0
        if not quote and not flow:
            if not body.strip() or body.startswith(("#", "%")):
                continue
            if body.startswith(("---", "...")) and body[3:4] in ("", " ", "\t"):
                block.clear()
                at = indent + 3
            else:
                while block and block[-1][0] > indent:
                    block.pop()
                at = indent
                while at < len(line) and line[at] in "-?:" and line[at + 1:at + 2] in ("", " ", "\t"):
                    if line[at] != ":":  # ": " is a complex key's value: no collection of its own
                        _open_block(block, at, "seq" if line[at] == "-" else "map")
                        if len(block) > limit:
                            return number, at + 1
                    at += 1
                    while at < len(line) and line[at] in " \t":
                        at += 1
                if _KEY.match(line, at):
                    _open_block(block, at, "map")
                    if len(block) > limit:
                        return number, at + 1
        while True:
            if quote:
                end = _quote_end(line, at, quote)
                if end < 0:
                    break
                quote, at = "", end
            found = _INTERESTING.search(line, at)
            if found is None:
                break
            char, index = found.group(), found.start()
            at = index + 1
            if char == "#":
                if index == 0 or line[index - 1] in " \t":
                    break  # a comment
            elif char in "'\"":
                if _node_start(line, index, bool(flow)):
                    quote = char
            elif char in "[{":
                if flow or _node_start(line, index, False):
                    flow += 1
                    if flow + len(block) > limit:
                        return number, index + 1
            elif flow:
                flow -= 1
        if not quote and not flow:
            scalar = _BLOCK_SCALAR.search(line, indent)
            if scalar and _node_start(line, scalar.start(), False):
                scalar_indent = block[-1][0] if block else -1
    return None


def _open_block(block: list[tuple[int, str]], column: int, kind: str) -> None:
    """A ``- `` (seq) or key (map) at ``column``: the same collection goes on, or a new one."""
    if kind == "map":
        while block and block[-1] == (column, "seq"):
            block.pop()
    if not block or block[-1] != (column, kind):
        block.append((column, kind))


def check_raw_text(text: str) -> list[tuple[int | None, str]]:
    """(line, message) for a character a spec may not hold or nesting past the limit, or ``[]``.

    Run before any YAML code sees the text: a control character (other than tab, LF and CR) is
    refused with its line and column, never echoed; nesting deeper than ``max_yaml_depth`` is
    refused from ``raw_depth``'s count, before PyYAML's scanner (or libyaml's, which gives up
    at 1,000 levels) and its recursive composer could meet it.
    """
    if (bad := _NOT_ALLOWED.search(text)) is not None:
        lines = _LINE_BREAK.split(text[:bad.start()])
        column = len(lines[-1]) + 1
        what = "control character" if unicodedata.category(bad.group()) == "Cc" else "character"
        return [(len(lines), f"{what} {_character(bad.group())} in column {column}: a spec is "
                 "plain text (tabs and line breaks are its only control characters)")]
    limit = get_limits().max_yaml_depth
    if (deep := raw_depth(text, limit)) is not None:
        return [(deep[0], f"YAML nested deeper than {limit} levels (ROBUSTLAB_MAX_YAML_DEPTH)")]
    return []


# --------------------------------------------------------------------------- YAML limits


def check_yaml_events(text: str) -> list[tuple[int | None, str]]:
    """(line, message) for the first limit the YAML's event stream exceeds, or ``[]``.

    PyYAML's parser is a state machine, so this pass cannot overflow the stack, and it stops at
    the first excess: a 500-deep document never reaches the (recursive) composer. libyaml's
    parser does it when installed (20 times faster than the pure-Python one: a megabyte of
    YAML is refused in a fraction of a second). Syntax errors are left to the composer, which
    reports them with their line.
    """
    settings = get_limits()
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
    settings = get_limits()
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


def parse_yaml(text: str, source: str) -> tuple[yaml.MappingNode, dict[str, Any]]:
    """The top-level mapping as nodes (for lines) and as data, from one parse.

    The YAML's size limits are checked twice before any Python data is built: on the event
    stream (depth, aliases, values) before the recursive composer runs, and on the node graph
    (values and depth with every alias expanded, list lengths) before it is constructed.

    The raw text is checked first (``check_raw_text``: control characters, nesting), so no
    YAML code ever sees what it could choke on.
    """
    raw = check_raw_text(text)
    if raw:
        raise SpecError([Problem(source, line, "", message) for line, message in raw])
    loader: SpecLoader | None = None
    try:
        loader = SpecLoader(text)
        limits = check_yaml_events(text)
        node = loader.get_single_node() if not limits else None
        limits = limits or (check_yaml_graph(node) if node is not None else [])
        if limits:
            raise SpecError([Problem(source, line, "", message) for line, message in limits])
        data = loader.construct_document(node) if node is not None else None
    except TooDeep as exc:
        limit = get_limits().max_yaml_depth
        raise SpecError([Problem(source, exc.line, "", f"YAML nested deeper than {limit} levels "
                                 "(ROBUSTLAB_MAX_YAML_DEPTH)")]) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        reason = ", ".join(part for part in (exc.context, exc.problem) if part) or "invalid YAML"
        line = mark.line + 1 if mark is not None else None
        raise SpecError([Problem(source, line, "", f"YAML syntax error: {reason}")]) from None
    except yaml.YAMLError as exc:
        first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise SpecError([Problem(source, None, "", f"YAML syntax error: {first_line}")]) from None
    finally:
        if loader is not None:
            loader.dispose()
    if node is None:
        empty = "the file is empty: a spec is a mapping with 'name' and 'kind'"
        raise SpecError([Problem(source, None, "", empty)])
    if not isinstance(node, yaml.MappingNode) or not isinstance(data, dict):
        not_mapping = f"a spec is a mapping of field names to values, not {yaml_type(data)}"
        raise SpecError([Problem(source, node.start_mark.line + 1, "", not_mapping)])
    return node, data


def duplicate_keys(root: yaml.Node, source: str) -> list[Problem]:
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




def yaml_type(value: Any) -> str:
    """'a list', 'a string', ... for the type of a YAML value."""
    names = {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
             int: "a number", float: "a number", type(None): "null"}
    return names.get(type(value), type(value).__name__)


