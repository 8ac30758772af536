"""fsm_live._runtime.credential_jobs: each provider call's outcome as a value, and what a
provider raises translated once (never its message: it might quote a secret)."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from fsm_live._runtime import credential_jobs
from fsm_live.credentials import Secret, StaticCredentials
from fsm_live.errors import CredentialsRejected, TransportError

pytestmark = pytest.mark.anyio

SECRET = "s3cr3t-token"


class Provider:
    """A provider whose calls raise ``raises`` (if given), and whose refreshes say
    ``changed``."""

    def __init__(self, *, raises: Exception | None = None, changed: bool = True) -> None:
        self.raises = raises
        self.changed = changed

    def _maybe_raise(self) -> None:
        if self.raises is not None:
            raise self.raises

    async def handshake_headers(self) -> Mapping[str, Secret | str]:
        self._maybe_raise()
        return {"Cookie": Secret("a=b"), "X-Plain": "plain"}

    async def refresh(self) -> bool:
        self._maybe_raise()
        return True

    async def refresh_token(self) -> bool:
        self._maybe_raise()
        return self.changed

    async def refresh_cookies(self) -> bool:
        return await self.refresh_token()

    async def escalate(self) -> bool:
        self._maybe_raise()
        return True


async def test_headers_are_revealed_for_sending_only() -> None:
    assert await credential_jobs.handshake_headers(None) == {}
    headers = await credential_jobs.handshake_headers(Provider())
    assert headers == {"Cookie": "a=b", "X-Plain": "plain"}


@pytest.mark.parametrize(
    ("raised", "kind"),
    [
        (RuntimeError(f"token service down ({SECRET})"), "credentials"),
        (
            CredentialsRejected("token endpoint http://t.test/token: answered HTTP 401"),
            "credentials_rejected",
        ),
    ],
)
async def test_a_provider_failing_at_set_up_is_a_transport_error_of_its_kind(
    raised: Exception, kind: str
) -> None:
    for call in (credential_jobs.handshake_headers, credential_jobs.refresh_auth):
        with pytest.raises(TransportError) as caught:
            await call(Provider(raises=raised))
        assert caught.value.kind == kind
        assert SECRET not in str(caught.value)


async def test_refreshes_by_age_report_their_outcome() -> None:
    assert await credential_jobs.refresh_token(Provider()) == credential_jobs.Outcome(True, True)
    assert await credential_jobs.refresh_token(Provider(changed=False)) == credential_jobs.Outcome(
        True, False
    )
    failed = await credential_jobs.refresh_token(Provider(raises=RuntimeError(SECRET)))
    assert (failed.ok, failed.reason) == (False, "token refresh raised RuntimeError")
    assert await credential_jobs.refresh_cookies(Provider()) == credential_jobs.Outcome(True, True)
    cannot = await credential_jobs.refresh_token(StaticCredentials())
    assert (cannot.ok, cannot.reason) == (False, "the provider cannot refresh a token")


async def test_the_escalation_reports_how_it_ended() -> None:
    assert (await credential_jobs.escalate(Provider())).ok
    raised = await credential_jobs.escalate(Provider(raises=RuntimeError(SECRET)))
    assert (raised.ok, raised.reason) == (False, "escalation raised RuntimeError")
    declined = await credential_jobs.escalate(StaticCredentials())
    assert (declined.ok, declined.reason) == (False, "escalation did not recover")
