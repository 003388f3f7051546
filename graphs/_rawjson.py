"""Raw graph text: size, encoding, depth (without recursion), duplicate keys, NaN."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping
from itertools import accumulate
from typing import Any

from components.errors import GraphInvalid, Problem
from graphs._limits import MAX_DEPTH, MAX_DOCUMENT_BYTES, Loc
from graphs._places import (
    _DOCUMENT,
    _SURROGATE_ESCAPE,
    _UNPAIRED,
    _UNPAIRED_TEXT,
    _locate,
    _path,
    _show,
)

# ---------------------------------------------------------------- raw text


class _NonFinite:
    """Stands in for NaN/Infinity while parsing, so the raw pass can say where it was."""


_NON_FINITE = _NonFinite()
_JSON_STRING = re.compile(r'"(?:[^"\\]++|\\.)*+"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]++")
_STEP = {"[": 1, "{": 1, "]": -1, "}": -1}


def _too_deep(text: str) -> bool:
    """Whether arrays/objects nest deeper than MAX_DEPTH: no recursion, no Python-level loop."""
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > MAX_DEPTH


def _decode(raw: str | bytes) -> str | Problem:
    too_big = f"document is larger than {MAX_DOCUMENT_BYTES} bytes: split it into sub-graphs"
    if len(raw) > MAX_DOCUMENT_BYTES:
        return _DOCUMENT.problem(too_big)
    try:
        text = raw.decode("utf-8-sig") if isinstance(raw, bytes) else raw
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8"))
    except (UnicodeDecodeError, UnicodeEncodeError) as exc:
        return _DOCUMENT.problem(f"document is not UTF-8 text ({exc.reason} at {exc.start})")
    if size > MAX_DOCUMENT_BYTES:
        return _DOCUMENT.problem(too_big)
    if _too_deep(text):
        return _DOCUMENT.problem(f"document nests deeper than {MAX_DEPTH} levels")
    return text.removeprefix("\ufeff")


class _Parser:
    """`json.loads` hooks that record duplicate keys and non-finite numbers."""

    def __init__(self) -> None:
        self.duplicates: dict[int, list[str]] = {}
        self.marked = False
        self.surrogates = False

    def pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        obj: dict[str, Any] = {}
        repeated: list[str] = []
        for key, value in pairs:
            if key in obj and key not in repeated:
                repeated.append(key)
            obj[key] = value
        if repeated:
            self.duplicates[id(obj)] = repeated
            self.marked = True
        return obj

    def number(self, text: str) -> float | _NonFinite:
        value = float(text)
        return value if math.isfinite(value) else self.constant(text)

    def constant(self, _text: str) -> _NonFinite:
        self.marked = True
        return _NON_FINITE


def _parse(text: str) -> tuple[dict[str, Any] | None, _Parser, list[Problem]]:
    parser = _Parser()
    parser.surrogates = parser.marked = bool(_SURROGATE_ESCAPE.search(text))
    try:
        data = json.loads(
            text,
            object_pairs_hook=parser.pairs,
            parse_float=parser.number,
            parse_constant=parser.constant,
        )
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno} column {exc.colno}"
        return None, parser, [_DOCUMENT.problem(f"not valid JSON: {exc.msg} at {where}")]
    except (ValueError, RecursionError):  # int() over its digit limit; depth is pre-checked
        return None, parser, [_DOCUMENT.problem("not valid JSON: a number has too many digits")]
    if not isinstance(data, dict):
        kind = "an array" if isinstance(data, list) else type(data).__name__
        return None, parser, [_DOCUMENT.problem(f"the document must be a JSON object, not {kind}")]
    return data, parser, []


def _children(value: object) -> Iterator[tuple[int | str, object]]:
    if isinstance(value, Mapping):
        yield from value.items()
    elif isinstance(value, list | tuple):
        yield from enumerate(value)


def _raw_marks(data: Mapping[str, Any], parser: _Parser | None) -> tuple[list[Problem], set[Loc]]:
    """One iterative walk over the parsed tree: depth, repeated keys, NaN, broken unicode."""
    problems: list[Problem] = []
    reported: set[Loc] = set()
    check_text = parser is None or parser.surrogates
    stack: list[tuple[object, Loc]] = [(data, ())]
    while stack:
        value, loc = stack.pop()
        if isinstance(value, Mapping | list | tuple) and len(loc) >= MAX_DEPTH:
            too_deep = _DOCUMENT.problem(f"document nests deeper than {MAX_DEPTH} levels")
            raise GraphInvalid([too_deep])
        for repeated in parser.duplicates.get(id(value), []) if parser else []:
            problems.append(_raw_problem(loc, data, f"repeats key {_show(repeated)}: keep one"))
        for key, child in _children(value):
            if text := _bad_scalar(key, child, check_text):
                problems.append(_raw_problem((*loc, key), data, text))
                reported.add((*loc, key))
            if child is _NON_FINITE:  # only in our own parse tree: safe to replace
                value[key] = None  # type: ignore[index]
            stack.append((child, (*loc, key)))
    return problems, reported


def _bad_scalar(key: int | str, value: object, check_text: bool) -> str | None:
    if value is _NON_FINITE or (isinstance(value, float) and not math.isfinite(value)):
        return "NaN and Infinity are not JSON numbers; use a finite number"
    texts = (key, value) if check_text else ()
    if any(isinstance(t, str) and _UNPAIRED.search(t) for t in texts):
        return _UNPAIRED_TEXT
    return None


def _raw_problem(loc: Loc, data: Mapping[str, Any], text: str) -> Problem:
    place, rest = _locate(loc, data)
    subject = _path(rest) or ("the document" if not loc else "the object")
    return place.problem(f"{subject}: {text}")
