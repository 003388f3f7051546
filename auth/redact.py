"""The redaction layer: secret values never leave the vault in logs, events or checkpoints.

A `Redactor` knows the secret values of this process: the vault registers a value when a
resolver returns it, when it is set, and (at start-up, `Vault.register_all`) every stored one.
It replaces each with ``[redacted]`` in strings, bytes, nested JSON-like values (dict keys
too), pydantic models such as LangChain messages, exception messages and log records.

Values are matched as one compiled regex of escaped literals (a trie of their first
characters, longest match first), rebuilt only when the set changes. Besides the raw value,
its JSON-escaped and URL-encoded spellings are registered, so a value inside a serialized
payload or a logged URL is caught as well.
Values shorter than `MIN_SECRET_LENGTH` (6) characters are ignored: redacting "admin" from
every log line would hide more than it protects. The vault therefore refuses shorter secrets.

Redaction is process-wide, not per workspace: a value of workspace A is also hidden in
workspace B's output. Over-redacting cannot leak; under-redacting could.
"""

from __future__ import annotations

__all__ = [
    "MIN_SECRET_LENGTH",
    "REDACTED",
    "RedactingFilter",
    "Redactor",
    "install_log_redaction",
    "redact_payload",
    "redact_record",
]

import dataclasses
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any
from urllib.parse import quote, quote_plus

from pydantic import BaseModel

REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 6


def _spellings(value: str) -> set[str]:
    """The value and the ways it is commonly re-encoded in logs and payloads."""
    return {
        value,
        json.dumps(value)[1:-1],
        json.dumps(value, ensure_ascii=False)[1:-1],
        quote(value, safe=""),
        quote_plus(value, safe=""),
    }


@dataclasses.dataclass(frozen=True, slots=True)
class _Patterns:
    text: re.Pattern[str] | None
    raw: re.Pattern[bytes] | None


_EMPTY = _Patterns(None, None)


_TRIE_DEPTH = 8


def _trie_source(values: Iterable[str]) -> str:
    """One regex source matching any of `values`, longest first at each position.

    The first `_TRIE_DEPTH` characters are factored into a trie, so at each position of
    the text the engine follows one branch instead of trying every value: redaction stays
    fast with thousands of secrets. Beyond that depth the tails are an alternation.
    """
    root: dict[str | None, Any] = {}
    for value in values:
        node = root
        for char in value[:_TRIE_DEPTH]:
            node = node.setdefault(char, {})
        node.setdefault(None, set()).add(value[_TRIE_DEPTH:])
    return _node_source(root)


def _node_source(node: dict[str | None, Any]) -> str:
    tails: set[str] = node.get(None, set())
    children = sorted((char, child) for char, child in node.items() if char is not None)
    alternatives = [re.escape(char) + _node_source(child) for char, child in children]
    alternatives += [re.escape(t) for t in sorted(tails - {""}, key=lambda t: (-len(t), t))]
    if not alternatives:
        return ""
    group = alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"
    if "" not in tails:
        return group
    return f"(?:{group})?"


def _compile(values: Iterable[str]) -> _Patterns:
    values = list(values)
    if not values:
        return _EMPTY
    text = re.compile(_trie_source(values))
    latin = [value.encode().decode("latin-1") for value in values]
    raw = re.compile(_trie_source(latin).encode("latin-1"))
    return _Patterns(text, raw)


class Redactor:
    """Replaces every registered secret value with ``[redacted]``. Thread-safe.

    Reads take the current compiled pattern without a lock; `register` rebuilds it under one.
    """

    def __init__(self, values: Iterable[str] = ()) -> None:
        self._lock = threading.Lock()
        self._values: set[str] = set()
        self._patterns = _EMPTY
        self.register_many(values)

    def register(self, value: str) -> None:
        """Remember one secret value (and its encoded spellings); short values are ignored."""
        self.register_many((value,))

    def register_many(self, values: Iterable[str]) -> None:
        fresh = {
            spelling
            for value in values
            if len(value) >= MIN_SECRET_LENGTH
            for spelling in _spellings(value)
        }
        with self._lock:
            if fresh <= self._values:
                return
            self._values |= fresh
            self._patterns = _compile(self._values)

    def forget(self, value: str) -> None:
        """Stop redacting a value (for example one that was never a real secret)."""
        with self._lock:
            self._values -= _spellings(value)
            self._patterns = _compile(self._values)

    @property
    def size(self) -> int:
        """How many spellings are redacted (a redactor is truthy even when empty)."""
        return len(self._values)

    def contains_secret(self, text: str) -> bool:
        pattern = self._patterns.text
        return pattern is not None and pattern.search(text) is not None

    def redact(self, text: str) -> str:
        pattern = self._patterns.text
        return text if pattern is None else pattern.sub(REDACTED, text)

    def redact_bytes(self, data: bytes) -> bytes:
        pattern = self._patterns.raw
        return data if pattern is None else pattern.sub(REDACTED.encode(), data)

    def redact_value(self, value: Any) -> Any:
        """A copy of `value` with secrets replaced; unchanged parts are returned as they are."""
        if self._patterns.text is None:
            return value
        return _redact_any(self, value)

    def redact_exception(self, exc: BaseException) -> BaseException:
        """`exc` with secrets removed from its message (args and notes are rewritten in place).

        When the type renders its message from other attributes and the value survives, a
        plain `RuntimeError` carrying the redacted text is returned instead (no traceback
        or cause is kept, since those would carry the original).
        """
        exc.args = tuple(self.redact_value(arg) for arg in exc.args)
        notes = getattr(exc, "__notes__", None)
        if isinstance(notes, list):
            exc.__notes__ = [self.redact(str(note)) for note in notes]
        if not self.contains_secret(_safe_str(exc)):
            return exc
        return RuntimeError(f"{type(exc).__name__}: {self.redact(_safe_str(exc))}")

    def describe_exception(self, exc: BaseException) -> str:
        """``Type: message`` with secrets redacted, for run errors, events and API responses."""
        return self.redact(f"{type(exc).__name__}: {_safe_str(exc)}")


def _safe_str(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not hide the original error
        return f"<unprintable {type(exc).__name__}>"


def _redact_any(redactor: Redactor, value: Any) -> Any:
    if isinstance(value, str):
        return redactor.redact(value)
    if isinstance(value, bytes | bytearray):
        return redactor.redact_bytes(bytes(value))
    if isinstance(value, Mapping):
        return _redact_mapping(redactor, value)
    if isinstance(value, list | tuple | set | frozenset):
        return _redact_sequence(redactor, value)
    if isinstance(value, BaseModel):
        return _redact_model(redactor, value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _redact_dataclass(redactor, value)
    return value


def _redact_mapping(redactor: Redactor, value: Mapping[Any, Any]) -> Any:
    items = [(_redact_any(redactor, k), _redact_any(redactor, v)) for k, v in value.items()]
    if all(k is k0 and v is v0 for (k, v), (k0, v0) in zip(items, value.items(), strict=True)):
        return value
    if type(value) is dict:
        return dict(items)
    rebuild: Any = type(value)
    try:
        return rebuild(items)
    except Exception:  # mappings that cannot be rebuilt from pairs become plain dicts
        return dict(items)


def _redact_sequence(redactor: Redactor, value: Any) -> Any:
    items = [_redact_any(redactor, item) for item in value]
    if all(new is old for new, old in zip(items, value, strict=True)):
        return value
    if isinstance(value, tuple) and hasattr(value, "_fields"):
        return type(value)(*items)
    return type(value)(items)


def _redact_model(redactor: Redactor, value: BaseModel) -> BaseModel:
    changes: dict[str, Any] = {}
    for name in type(value).model_fields:
        old = getattr(value, name, None)
        new = _redact_any(redactor, old)
        if new is not old:
            changes[name] = new
    extra = value.model_extra or {}
    for name, old in extra.items():
        new = _redact_any(redactor, old)
        if new is not old:
            changes[name] = new
    return value.model_copy(update=changes) if changes else value


def _redact_dataclass(redactor: Redactor, value: Any) -> Any:
    changes: dict[str, Any] = {}
    for item in dataclasses.fields(value):
        old = getattr(value, item.name)
        new = _redact_any(redactor, old)
        if new is not old:
            changes[item.name] = new
    if not changes:
        return value
    try:
        return dataclasses.replace(value, **changes)
    except Exception:  # init=False fields etc.: fall back to a plain dict
        return {**dataclasses.asdict(value), **changes}


def redact_payload(redactor: Redactor, payload: Any) -> Any:
    """A copy of a run event, a LangGraph checkpoint or pending writes with secrets replaced.

    Call it on the object *before* it is serialized, written or sent (checkpointer `put` and
    `put_writes`, event log append, SSE/websocket send, export). Messages and other pydantic
    models are copied with redacted fields. A run that resumes from a redacted checkpoint
    sees ``[redacted]``, never the value: tools must resolve secrets again when they run.
    """
    return redactor.redact_value(payload)


_STANDARD_RECORD_KEYS = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys() | {"message", "asctime"}
)


class RedactingFilter(logging.Filter):
    """Redacts a log record in place: message and args, extra fields, traceback, stack.

    Attach it to *handlers* (or use `install_log_redaction`): a filter on a logger only sees
    records logged on that exact logger, not the ones that propagate to it.
    """

    def __init__(self, redactor: Redactor) -> None:
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        redact_record(self.redactor, record)
        return True


def redact_record(redactor: Redactor, record: logging.LogRecord) -> logging.LogRecord:
    """Redact `record` in place (see `RedactingFilter`) and return it."""
    if not redactor.size:
        return record
    message = _record_message(record)
    if redactor.contains_secret(message):
        record.msg, record.args = redactor.redact(message), None
    for key, value in list(record.__dict__.items()):
        if key not in _STANDARD_RECORD_KEYS:
            record.__dict__[key] = redactor.redact_value(value)
    if record.exc_info and record.exc_info[1] is not None:
        text = record.exc_text or logging.Formatter().formatException(record.exc_info)
        if redactor.contains_secret(text):
            record.exc_text, record.exc_info = redactor.redact(text), None
    elif record.exc_text:
        record.exc_text = redactor.redact(record.exc_text)
    if record.stack_info:
        record.stack_info = redactor.redact(record.stack_info)
    return record


def _record_message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except Exception:  # a bad format string: logging reports it later; check the parts
        return f"{record.msg} {record.args}"


def install_log_redaction(
    redactor: Redactor, logger: logging.Logger | None = None
) -> Callable[[], None]:
    """Redact every log record of this process; returns the uninstaller.

    Two layers, because a filter on the root *logger* never sees records that propagate to
    it from child loggers:

    - the log record factory is wrapped, so message, args, traceback and stack of every
      record are redacted when it is created, whatever logger or handler (also handlers
      added later, such as an OpenTelemetry exporter) handles it;
    - a `RedactingFilter` is added to each handler `logger` (default: root) has now, which
      also covers ``extra=`` fields (logging sets those after the factory runs).

    The app calls it once at start-up, before anything resolves a secret.
    """
    target = logger or logging.getLogger()
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        return redact_record(redactor, previous(*args, **kwargs))

    logging.setLogRecordFactory(factory)
    handler_filter = RedactingFilter(redactor)
    handlers = list(target.handlers)
    for handler in handlers:
        handler.addFilter(handler_filter)

    def uninstall() -> None:
        if logging.getLogRecordFactory() is factory:
            logging.setLogRecordFactory(previous)
        for handler in handlers:
            handler.removeFilter(handler_filter)

    return uninstall
