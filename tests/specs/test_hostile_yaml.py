"""Hostile YAML is refused in one line before PyYAML reads it: control characters and nesting.

Control characters (other than tab, LF and CR) are refused with their line and column, and
never echoed. Nesting is counted on the raw text (``yaml_text.raw_depth``) before any scanner
runs; behind it the event stream and the composer (``SpecLoader``) count exactly, so 3,000
levels of ``[``, ``{``, ``- `` or indentation never reach Python's recursion limit, even when
the raw count is bypassed.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from contract.limits import get_limits
from contract.specs.loading import SpecError, load_spec_file, load_spec_text, parse_override
from contract.specs.yaml_text import SpecLoader, TooDeep, check_yaml_events, parse_yaml, raw_depth
from tests.data.hostile import make_corpus

THEORY = "name: hostile\nkind: theory\n"
DEEP = 3_000
TOO_DEEP = "YAML nested deeper than 64 levels (ROBUSTLAB_MAX_YAML_DEPTH)"


@pytest.fixture
def big_specs(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Specs up to 8 MB: 3,000 indentation levels need 4.5 MB of spaces."""
    monkeypatch.setenv("ROBUSTLAB_MAX_SPEC_BYTES", str(8 << 20))
    get_limits.cache_clear()
    yield
    monkeypatch.undo()
    get_limits.cache_clear()


def one_line(call: object, *args: object) -> str:
    with pytest.raises(SpecError) as raised:
        call(*args)  # type: ignore[operator]
    text = str(raised.value)
    assert "\n" not in text and "Traceback" not in text, text
    return text


@pytest.mark.parametrize("text, where, what", [
    ("name: hostile\x00\nkind: theory\n", "s.yaml:1", "control character U+0000 (NUL) in column 14"),
    (THEORY + "description: \x1b[2J\x1b[31mred\n", "s.yaml:3",
     "control character U+001B (ESC) in column 14"),
    (THEORY + "description: a\x7fb\n", "s.yaml:3", "control character U+007F (DEL) in column 15"),
    (THEORY + "description: a\x9bb\n", "s.yaml:3",
     "control character U+009B (C1 control) in column 15"),
    (THEORY + "description: >\n  x\x07y\n", "s.yaml:4", "control character U+0007 (BEL) in column 4"),
    ("name: a\r\nkind: t\x0cx\r\n", "s.yaml:2", "control character U+000C (FF) in column 8"),
    (THEORY + "description: \ufffe\n", "s.yaml:3", "character U+FFFE in column 14"),
])
def test_control_characters_are_refused_with_line_and_column(text: str, where: str,
                                                             what: str) -> None:
    message = one_line(load_spec_text, text, "s.yaml")
    assert message.startswith(f"{where}: {what}: a spec is plain text"), message
    assert all(ord(c) >= 32 and not 0x7F <= ord(c) < 0xA0 for c in message), "echoed"


def test_tabs_and_line_breaks_are_fine() -> None:
    loaded = load_spec_text('name: tabs\r\nkind: theory\r\ndescription: "a\tb"\n')
    assert (loaded.spec.name, loaded.spec.description) == ("tabs", "a\tb")


@pytest.mark.parametrize("nesting", ["brackets", "braces", "dashes", "indent"])
def test_3000_levels_are_one_line_without_recursion(nesting: str, big_specs: None,
                                                    tmp_path: Path) -> None:
    path = getattr(make_corpus, f"deep_{nesting}")(tmp_path / f"{nesting}.yaml")
    line = 3 if nesting in ("brackets", "braces") else 4 if nesting == "dashes" else 67
    assert one_line(load_spec_file, path) == f"{path}:{line}: {TOO_DEEP}"


def test_the_deep_indentation_meets_the_size_limit_first_by_default(tmp_path: Path) -> None:
    path = make_corpus.deep_indent(tmp_path / "indent.yaml")
    assert "more than the limit of 1048576 bytes" in one_line(load_spec_file, path)


@pytest.mark.parametrize("value", ["[" * DEEP, "{" * DEEP, "[" * DEEP + "]" * DEEP,
                                   "- " * DEEP + "x", "a\x00b", "\x1b[2J"])
def test_overrides_are_held_to_the_same_checks(value: str) -> None:
    message = one_line(load_spec_text, THEORY, "s.yaml", [f"description={value}"])
    assert message.startswith("--set description=")
    assert TOO_DEEP in message or "control character" in message
    assert "\x00" not in message and "\x1b" not in message


@pytest.mark.parametrize("text", [
    "[" * DEEP + "]" * DEEP, "{" * DEEP + "}" * DEEP, "[" * DEEP, "- " * DEEP + "x",
    "".join(" " * level + f"k{level}:\n" for level in range(DEEP)),
])
def test_the_composer_counts_too_when_the_raw_check_is_bypassed(text: str) -> None:
    """The last guard: ``SpecLoader``'s composer stops at the limit, whatever came before."""
    assert check_yaml_events(text) in ([], [(1, TOO_DEEP)], [(65, TOO_DEEP)])
    loader = SpecLoader(text)
    try:
        with pytest.raises(TooDeep):
            loader.get_single_node()
    finally:
        loader.dispose()


def test_a_low_recursion_limit_is_never_reached() -> None:
    """64 levels of composing fit in far less stack than Python's default limit gives."""
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(400)
    try:
        node, data = parse_yaml(THEORY + "v: " + "[" * 60 + "]" * 60 + "\n", "s.yaml")
        with pytest.raises(SpecError, match=r"^s\.yaml:3: YAML nested deeper than 64 levels"):
            parse_yaml(THEORY + "v: " + "[" * DEEP + "\n", "s.yaml")
    finally:
        sys.setrecursionlimit(old)
    inner = data["v"]
    for _ in range(59):
        (inner,) = inner
    assert inner == [] and isinstance(node, yaml.MappingNode)


def test_quoted_brackets_and_block_text_are_not_nesting() -> None:
    text = (THEORY + 'description: "' + "[" * 100 + '"\n'
            + "notes: |\n" + "".join(f"  {'[' * 70} line {i}\n" for i in range(3))
            + "tags: ['[[[', \"{{{\", it's]\n")
    assert raw_depth(text, 64) is None
    assert yaml.safe_load(text)["tags"] == ["[[[", "{{{", "it's"]


def test_parse_override_reports_depth_and_characters_in_one_line() -> None:
    for value in ("[" * DEEP, "\x00"):
        with pytest.raises(SpecError) as raised:
            parse_override(f"eps={value}")
        assert "\n" not in str(raised.value)
