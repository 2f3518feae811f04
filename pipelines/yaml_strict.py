"""A strict, bounded reader for contract YAML.

A contract file decides money, so the YAML it is written in may not be ambiguous or hostile:

- **One key, once.** A key repeated in a mapping is an error naming both lines (PyYAML would keep
  the last one silently, so `{rate: 2.40, rate: 9.99}` would bill at 9.99).
- **No anchors, aliases or merge keys (`<<`).** Every value is written out where it applies. This
  also makes an "alias bomb" (a few KB that expands to gigabytes) fail on its first `&`. Tags are
  refused too, except the core schema's own (`!!str`, `!!int`, `!!float`, `!!bool`, `!!null`).
- **Keys are text, lists hold entries.** `12:` as a key is a slip, and an empty list (`target:
  []`) would silently mean "none"; both are refused (`loads(..., empty_lists=True)` allows `[]`).
- **Bounded.** At most `MAX_DEPTH` levels of nesting and `MAX_BYTES` bytes. Depth is counted on
  libyaml's event stream, which is iterative: nothing deep ever reaches a recursive composer
  (PyYAML's C composer segfaults on 30,000 levels, its Python constructor raises RecursionError).
- **UTF-8, regular files.** A file that is not UTF-8 is refused with the byte offset of the first
  bad byte; a directory, FIFO, socket or dangling symlink is refused without being opened for a
  blocking read (a FIFO would block forever).
- **YAML 1.2 core scalars.** `true`/`false` are booleans and `yes`/`no`/`on`/`off` are text;
  `1:30` and `1:30.5` (YAML 1.1 sexagesimal) are text, so a number key refuses them; `010` is ten;
  dates stay text for the config's own parsers. Numbers are `int` or `Decimal` read from their
  literal text (never a float); `.inf`/`.nan` become infinite/NaN Decimals, so the key that
  receives one rejects it by name. Underscores group digits (`1_000.00`), as YAML 1.1 allowed.

Errors are `YamlError(path, reason)`: `path` is the key path of the offending value when known
(`service_lines[0].pricing[0].bands[0].rate`), and `reason` names the line.
"""

from __future__ import annotations

import os
import re
import stat
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

import yaml
from yaml import events as ev

# libyaml's parser when PyYAML was built with it (about 8x faster than the pure-Python one); both
# are state machines, so a deep file costs a long event stream, never a deep C or Python stack.
try:
    from yaml.cyaml import CParser as _Parser  # type: ignore[no-redef]
except ImportError:  # pragma: no cover - PyYAML without libyaml
    from yaml.loader import SafeLoader as _Parser  # type: ignore[no-redef,assignment]

MAX_DEPTH = 32  # a contract nests 6 levels deep; anything near 32 is a mistake or an attack
MAX_BYTES = 4 * 1024 * 1024  # ten years of monthly entries for dozens of KPIs is well under 1 MB

_NULL = {"", "~", "null", "Null", "NULL"}
_TRUE = {"true", "True", "TRUE"}
_FALSE = {"false", "False", "FALSE"}
_INT = re.compile(r"[-+]?[0-9][0-9_]*")
_FLOAT = re.compile(r"[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)?")
_INF = re.compile(r"[-+]?\.(?:inf|Inf|INF)")
_NAN = re.compile(r"\.(?:nan|NaN|NAN)")
_STR_TAG = "tag:yaml.org,2002:str"


class YamlError(Exception):
    """A file that is not strict YAML: key path (may be empty) and reason."""

    def __init__(self, path: str, reason: str):
        self.path, self.reason = path, reason
        super().__init__(f"{path}: {reason}" if path else reason)


# --------------------------------------------------------------------------- reading the file


def _kind(mode: int) -> str:
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISSOCK, "a socket"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
    ):
        if test(mode):
            return name
    return "not a regular file"


def read_bytes(path: Path) -> bytes:
    """The file's bytes, refusing anything that is not a regular file of at most MAX_BYTES.

    The type is checked with stat before opening, and again on the open descriptor (opened
    non-blocking, so a FIFO swapped in between still cannot block the read)."""
    try:
        info = os.stat(path)
    except FileNotFoundError:
        if os.path.islink(path):
            raise YamlError("", "is a symbolic link to a missing file") from None
        raise YamlError("", "file not found") from None
    except OSError as exc:
        raise YamlError("", f"cannot be read: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        raise YamlError("", f"is {_kind(info.st_mode)}, not a contract file")
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as exc:
        raise YamlError("", f"cannot be read: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise YamlError("", f"is {_kind(info.st_mode)}, not a contract file")
        try:
            data = handle.read(MAX_BYTES + 1)
        except OSError as exc:
            raise YamlError("", f"cannot be read: {exc.strerror}") from None
    if len(data) > MAX_BYTES:
        raise YamlError("", f"is larger than {MAX_BYTES // (1024 * 1024)} MB")
    return data


def decode(data: bytes) -> str:
    """UTF-8 text (a UTF-8 byte order mark is allowed); the error names the first bad byte."""
    if data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise YamlError("", "is UTF-16 (it starts with a UTF-16 byte order mark); save it as UTF-8")
    if b"\x00" in data:
        at = data.index(b"\x00")
        raise YamlError(
            "", f"holds a NUL byte at byte offset {at} (UTF-16 without a byte order mark?)"
        )
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YamlError(
            "",
            f"is not UTF-8: byte 0x{data[exc.start]:02x} at byte offset {exc.start} (line {line}); "
            "save the file as UTF-8",
        ) from None


# --------------------------------------------------------------------------- parsing


class _Frame:
    __slots__ = ("items", "is_map", "key", "lines")

    def __init__(self, is_map: bool):
        self.is_map = is_map
        self.items: Any = {} if is_map else []
        self.key: Any = _NO_KEY
        self.lines: dict[Any, Any] = {}


_NO_KEY = object()


def _path(stack: list[_Frame]) -> str:
    """The key path of the value being read (`a.b[2].c`)."""
    out = ""
    for frame in stack:
        if frame.is_map:
            if frame.key is not _NO_KEY:
                out += ("." if out else "") + str(frame.key)
        else:
            out += f"[{len(frame.items)}]"
    return out


def _where(mark: Any) -> str:
    return f"line {mark.line + 1}"


def _number(text: str) -> int | Decimal:
    digits = text.replace("_", "")
    try:
        if _INT.fullmatch(text) and len(digits) <= 40:
            return int(digits)
        return Decimal(digits)
    except (ValueError, InvalidOperation):
        # an exponent beyond what Decimal can hold: left as text for the key to refuse by name
        return text


_NUMBER_START = frozenset("0123456789+-.")


def _plain(value: str) -> Any:
    """A plain (unquoted, untagged) scalar under the YAML 1.2 core schema."""
    if value[:1] not in _NUMBER_START:  # most scalars are keys and words: skip the patterns
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
        return None if value in _NULL else value
    if value in _NULL:
        return None
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    if _FLOAT.fullmatch(value):
        return _number(value)
    if _INF.fullmatch(value):
        return Decimal("-Infinity") if value.startswith("-") else Decimal("Infinity")
    if _NAN.fullmatch(value):
        return Decimal("NaN")
    return value


# The core schema's own tags (`!!float '19700'` is what PyYAML's dumper writes for a Decimal): the
# tagged text must then read as that type. Any other tag is refused.
_TAG_TYPES: dict[str, tuple[type, ...]] = {
    "tag:yaml.org,2002:int": (int,),
    "tag:yaml.org,2002:float": (int, Decimal),
    "tag:yaml.org,2002:bool": (bool,),
    "tag:yaml.org,2002:null": (type(None),),
}


def _scalar(event: ev.ScalarEvent, stack: list[_Frame]) -> Any:
    value, tag = event.value, event.tag
    if tag is None or tag == "!":
        if event.style or not event.implicit[0]:
            return value  # quoted or block text: always a string
        return _plain(value)
    if tag == _STR_TAG:
        return value
    types = _TAG_TYPES.get(tag)
    if types is None:
        raise YamlError(
            _path(stack), f"tags ({tag}) are not supported ({_where(event.start_mark)})"
        )
    typed = _plain(value)
    if isinstance(typed, bool) and bool not in types or not isinstance(typed, types):
        raise YamlError(
            _path(stack),
            f"{value!r} is not a valid {tag.rsplit(':', 1)[-1]} ({_where(event.start_mark)})",
        )
    return Decimal(typed) if tag.endswith(":float") and isinstance(typed, int) else typed


def loads(text: str, max_depth: int = MAX_DEPTH, empty_lists: bool = False) -> Any:
    """One YAML document as plain dicts, lists and scalars, under the rules in the module doc.

    With `empty_lists=False` a `[]` is an error too: in a contract it would silently mean "none"
    (`target: []`, `basket: []`); leaving the key out says so instead."""
    parser = _Parser(text)
    stack: list[_Frame] = []
    result: Any = None
    documents = 0
    scalar, mapping, sequence = ev.ScalarEvent, ev.MappingStartEvent, ev.SequenceStartEvent
    ends = (ev.MappingEndEvent, ev.SequenceEndEvent)
    try:
        while parser.check_event():
            event = parser.get_event()
            kind = type(event)  # dispatch on the exact class: the loop runs once per event
            if (kind is scalar or kind is mapping or kind is sequence) and event.anchor:
                raise YamlError(
                    _path(stack),
                    f"anchors (&{event.anchor}) and aliases are not supported "
                    f"({_where(event.start_mark)}): write the value out in full",
                )
            if kind is scalar:
                value = _scalar(event, stack)
                if stack:
                    _add(stack, value, event, is_scalar=True)
                else:
                    result = value
            elif kind is mapping or kind is sequence:
                if event.tag is not None and event.tag != "!":
                    raise YamlError(
                        _path(stack),
                        f"tags ({event.tag}) are not supported ({_where(event.start_mark)})",
                    )
                if len(stack) >= max_depth:
                    raise YamlError(
                        _path(stack[:4]) + "...",
                        f"nested more than {max_depth} levels deep ({_where(event.start_mark)})",
                    )
                if stack and stack[-1].is_map and stack[-1].key is _NO_KEY:
                    raise YamlError(
                        _path(stack),
                        f"a key must be plain text, not a list or mapping "
                        f"({_where(event.start_mark)})",
                    )
                stack.append(_Frame(kind is mapping))
            elif kind in ends:
                done = stack.pop()
                if not empty_lists and not done.is_map and not done.items:
                    raise YamlError(
                        _path(stack),
                        f"is an empty list ({_where(event.start_mark)}): give at least one "
                        "entry or leave the key out",
                    )
                if stack:
                    _add(stack, done.items, event, is_scalar=False)
                else:
                    result = done.items
            elif kind is ev.AliasEvent:
                raise YamlError(
                    _path(stack),
                    f"aliases (*{event.anchor}) are not supported "
                    f"({_where(event.start_mark)}): write the value out in full",
                )
            elif kind is ev.DocumentStartEvent:
                documents += 1
                if documents > 1:
                    raise YamlError(
                        "",
                        f"holds more than one YAML document ({_where(event.start_mark)}): "
                        "one contract per file",
                    )
    except yaml.YAMLError as exc:
        # the key path so far is misleading when the syntax itself is broken: give the line
        mark = getattr(exc, "problem_mark", None)
        raise YamlError(_where(mark) if mark else "", _syntax(exc)) from None
    return result


def _add(stack: list[_Frame], value: Any, event: ev.Event, is_scalar: bool) -> None:
    top = stack[-1]
    if not top.is_map:
        top.items.append(value)
        return
    if top.key is not _NO_KEY:
        top.items[top.key] = value
        top.key = _NO_KEY
        return
    # `value` is a key
    if not is_scalar or not isinstance(value, str):
        # every key of a contract is a word; `1:` or `true:` is a slip (quote it if meant)
        raise YamlError(
            _path(stack), f"a key must be text, not {value!r} ({_where(event.start_mark)})"
        )
    if value == "<<" and not getattr(event, "style", None):
        raise YamlError(
            _path(stack),
            f"merge keys (<<) are not supported ({_where(event.start_mark)}): "
            "write the keys out in full",
        )
    mark = event.start_mark
    first = top.lines.get(value)
    if first is not None:
        top.key = value
        same_line = first.line == mark.line
        where = (
            f"line {mark.line + 1}, columns {first.column + 1} and {mark.column + 1}"
            if same_line
            else f"lines {first.line + 1} and {mark.line + 1}"
        )
        raise YamlError(
            _path(stack), f"key {value!s} is given twice ({where}); each key may appear once"
        )
    top.lines[value] = mark
    top.key = value


def _syntax(exc: yaml.YAMLError) -> str:
    """libyaml's message, pointing at where the construct began when that is elsewhere."""
    if isinstance(exc, yaml.reader.ReaderError):
        return f"not valid YAML: {exc.reason} at character {exc.position}"
    mark = getattr(exc, "problem_mark", None)
    reason = f"not valid YAML: {getattr(exc, 'problem', None) or exc}"
    start, context = getattr(exc, "context_mark", None), getattr(exc, "context", None)
    if start is not None and context and (mark is None or start.line != mark.line):
        reason += f" ({context} that starts on line {start.line + 1})"
    return reason
