"""Failure classification: from exception type, HTTP status and close code.

Never from message text.  A transport names the *kind* of a failure from the
exception's type (``fsm_live.transport.errors.failure_kind``), or reports the
handshake's HTTP status
or the WebSocket close code; the spec's error table (:class:`Classifier`) maps
that to a class such as ``network`` or ``terminal``, and the class to an action.
"""

from __future__ import annotations

from fsm_live.errors import Failure, TransportError
from fsm_live.spec import ErrorClassSpec, ErrorTable

__all__ = ("Classifier", "Failure")


class Classifier:
    """The spec's error table as fast lookups.  Shared by every connection."""

    __slots__ = ("_by_code", "_by_kind", "_by_status", "default", "table")

    def __init__(self, table: ErrorTable) -> None:
        self.table = table
        self.default = table.default
        self._by_kind: dict[str, str] = {}
        self._by_status: dict[int, str] = {}
        self._by_code: dict[int, str] = {}
        for rule in table.rules:  # first matching rule wins: never overwrite
            for kind in rule.kinds:
                self._by_kind.setdefault(kind, rule.error_class)
            for status in rule.http_status:
                self._by_status.setdefault(status, rule.error_class)
            for code in rule.close_codes:
                self._by_code.setdefault(code, rule.error_class)

    def classify(
        self,
        *,
        kind: str | None = None,
        http_status: int | None = None,
        close_code: int | None = None,
        reason: str = "",
        retry_after: float | None = None,
    ) -> Failure:
        """Classify by HTTP status, then close code, then kind; else the default class."""
        error_class = (
            (http_status is not None and self._by_status.get(http_status))
            or (close_code is not None and self._by_code.get(close_code))
            or (kind is not None and self._by_kind.get(kind))
            or self.default
        )
        return Failure(
            error_class=error_class,
            reason=reason,
            kind=kind,
            http_status=http_status,
            close_code=close_code,
            retry_after=retry_after,
        )

    def classify_exception(self, exc: BaseException, reason: str = "") -> Failure:
        """Classify an exception that is no transport's (a bug: the default class);
        the reason is its type's name."""
        return self.classify(reason=reason or type(exc).__name__)

    def classify_error(self, error: TransportError) -> Failure:
        """Classify a transport's error by the facts it carries."""
        return self.classify(
            kind=error.kind,
            http_status=error.http_status,
            close_code=error.close_code,
            reason=error.reason,
            retry_after=error.retry_after,
        )

    def policy(self, error_class: str) -> ErrorClassSpec:
        """What the machine does with this class (the default class's policy if unknown)."""
        classes = self.table.classes
        return classes.get(error_class) or classes[self.default]
