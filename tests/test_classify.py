"""Classification by exception type, HTTP status and close code: never message text."""

from __future__ import annotations

import errno
import socket
import ssl

import pytest

from fsm_live.core.classify import Classifier
from fsm_live.errors import TransportError
from fsm_live.spec import Spec
from fsm_live.transport.errors import failure_kind

CLASSIFIER = Classifier(Spec.default().errors)


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        (500, "server"),
        (502, "server"),
        (503, "server"),
        (504, "server"),
        (429, "throttled"),
        (401, "auth"),
        (403, "auth"),
        (400, "fatal"),
        (404, "fatal"),
        (426, "fatal"),
    ],
)
def test_http_status(status: int, expected: str) -> None:
    assert CLASSIFIER.classify(http_status=status).error_class == expected


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (1000, "planned"),
        (1001, "planned"),
        (1012, "planned"),
        (1006, "lost"),
        (1011, "lost"),
        (1002, "protocol"),
        (1003, "protocol"),
        (1007, "protocol"),
        (1008, "terminal"),
        (1009, "terminal"),
        (3500, "terminal"),
        (3999, "terminal"),
        (4500, "terminal"),
        (4999, "terminal"),
        (3000, "retry"),
        (3499, "retry"),
        (4000, "retry"),
        (4499, "retry"),
        (1013, "throttled"),
        (1005, "lost"),
        (1015, "lost"),
    ],
)
def test_close_codes(code: int, expected: str) -> None:
    assert CLASSIFIER.classify(close_code=code).error_class == expected


@pytest.mark.parametrize(
    ("exc", "kind", "expected"),
    [
        (ConnectionRefusedError(), "refused", "network"),
        (ConnectionResetError(), "reset", "network"),
        (BrokenPipeError(), "reset", "network"),
        (socket.gaierror(socket.EAI_NONAME, "x"), "dns", "network"),
        (TimeoutError(), "timeout", "network"),
        (EOFError(), "eof", "network"),
        (OSError(errno.ENETUNREACH, "x"), "unreachable", "network"),
        (ssl.SSLCertVerificationError(1, "x"), "tls", "fatal"),
        (ssl.SSLEOFError(8, "x"), "eof", "network"),
        (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER]"), "tls_handshake", "network"),
    ],
)
def test_exception_types(exc: BaseException, kind: str | None, expected: str) -> None:
    assert failure_kind(exc) == kind
    assert CLASSIFIER.classify(kind=kind).error_class == expected


def test_an_exception_of_no_transport_is_a_bug_of_the_default_class() -> None:
    failure = CLASSIFIER.classify_exception(ValueError("x"))
    assert (failure.error_class, failure.reason) == ("lost", "ValueError")


def test_message_text_is_never_read() -> None:
    # The old client matched "network"/"timeout" in messages; the type decides here.
    assert failure_kind(RuntimeError("network timeout connection refused")) is None
    assert failure_kind(OSError("Connection refused")) is None


def test_transport_error_facts() -> None:
    failure = CLASSIFIER.classify_error(
        TransportError("HTTP 503 at handshake", http_status=503, retry_after=7.0)
    )
    assert failure.error_class == "server"
    assert failure.retry_after == 7.0
    assert str(failure) == "server: HTTP 503 at handshake"


def test_status_wins_over_kind_and_policy_lookup() -> None:
    failure = CLASSIFIER.classify(kind="refused", http_status=429)
    assert failure.error_class == "throttled"
    assert CLASSIFIER.policy("throttled").retry_after
    assert CLASSIFIER.policy("no-such-class").action == CLASSIFIER.policy("lost").action
