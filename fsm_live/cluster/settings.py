"""A worker's cluster settings, checked when built, and the failover bound they give.

=======================  =======  ==========================================================
setting                  default  meaning
=======================  =======  ==========================================================
``lease_ttl``            5        seconds (whole: etcd's unit) of the worker's lease; its
                                  keys go when etcd has heard no keepalive for this long
``keepalive_interval``   1.0      seconds between keepalives (one per worker, whatever the
                                  number of accounts)
``fence_margin``         1.0      the worker stops acting this long before the earliest
                                  moment its lease can expire
``handover_delay``       1.0      after an owner's lease expired, its accounts are claimed
                                  this much later (Chubby's lock-delay: a paused or cut-off
                                  owner has stopped by then)
``settle_delay``         0.2      membership changes are gathered this long before the
                                  accounts are placed again
``claims_per_second``    200.0    claims, first dials and takeovers together, per second
``releases_per_second``  100.0    accounts handed over per second (rebalance, drain)
``capacity``             1.0      this worker's weight in the placement
``rpc_timeout``          2.0      bound of one request to etcd
=======================  =======  ==========================================================

A worker started by ``fsm-live fleet --coordinator`` reads them from the
environment as ``FSM_LIVE_CLUSTER_<NAME>`` (``FSM_LIVE_CLUSTER_LEASE_TTL=10``):
:meth:`ClusterSettings.from_env`.

Rules, each checked: ``lease_ttl`` >= 2; ``keepalive_interval`` > 0;
``lease_ttl - fence_margin >= 2 * keepalive_interval`` (a keepalive that is one
interval late must not fence the worker); ``fence_margin`` > 0; the delays >= 0;
the rates and ``capacity`` > 0.  A bad value raises
:class:`~fsm_live.errors.ConfigError` naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Final

import attrs

from fsm_live.errors import ConfigError

__all__ = ("ENV_PREFIX", "EXPIRY_CHECK", "ClusterSettings")

#: The environment variables of a worker's settings: ``FSM_LIVE_CLUSTER_LEASE_TTL``...
ENV_PREFIX: Final = "FSM_LIVE_CLUSTER_"

#: etcd checks for expired leases every 500 ms (lessor's expiredLeaseRetryInterval;
#: etcd issue #11746), so a lease's keys go up to this long after its TTL.
EXPIRY_CHECK: Final = 0.5


def _positive(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (isinstance(value, int | float) and 0 < value < math.inf):
        raise ConfigError(attribute.name, f"must be a positive number, got {value!r}")


def _not_negative(instance: object, attribute: attrs.Attribute[Any], value: float) -> None:
    if not (isinstance(value, int | float) and 0 <= value < math.inf):
        raise ConfigError(attribute.name, f"must be a number >= 0, got {value!r}")


def _ttl(instance: object, attribute: attrs.Attribute[Any], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 2:
        raise ConfigError(attribute.name, f"must be a whole number of seconds >= 2, got {value!r}")


@attrs.frozen(kw_only=True)
class ClusterSettings:
    """The timing and weight of one worker (see the module docstring)."""

    lease_ttl: int = attrs.field(default=5, validator=_ttl)
    keepalive_interval: float = attrs.field(default=1.0, validator=_positive)
    fence_margin: float = attrs.field(default=1.0, validator=_positive)
    handover_delay: float = attrs.field(default=1.0, validator=_not_negative)
    settle_delay: float = attrs.field(default=0.2, validator=_not_negative)
    claims_per_second: float = attrs.field(default=200.0, validator=_positive)
    releases_per_second: float = attrs.field(default=100.0, validator=_positive)
    capacity: float = attrs.field(default=1.0, validator=_positive)
    rpc_timeout: float = attrs.field(default=2.0, validator=_positive)

    def __attrs_post_init__(self) -> None:
        if self.lease_ttl - self.fence_margin < 2 * self.keepalive_interval:
            raise ConfigError(
                "fence_margin",
                f"lease_ttl - fence_margin ({self.lease_ttl} - {self.fence_margin:g}) must be "
                f">= 2 * keepalive_interval ({2 * self.keepalive_interval:g}): a keepalive one "
                "interval late would fence the worker",
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> ClusterSettings:
        """Defaults, overridden by ``FSM_LIVE_CLUSTER_<NAME>`` variables of ``env``.
        Raises ConfigError naming the variable for a value that is not a number, or
        for an unknown ``FSM_LIVE_CLUSTER_`` variable."""
        fields = {field.name: field for field in attrs.fields(cls)}
        values: dict[str, Any] = {}
        for variable, text in env.items():
            if not variable.startswith(ENV_PREFIX):
                continue
            name = variable.removeprefix(ENV_PREFIX).lower()
            if name not in fields:
                raise ConfigError(variable, f"unknown (known: {', '.join(sorted(fields))})")
            try:
                values[name] = int(text) if name == "lease_ttl" else float(text)
            except ValueError:
                raise ConfigError(variable, f"expected a number, got {text!r}") from None
        try:
            return cls(**values)
        except ConfigError as exc:
            raise ConfigError(ENV_PREFIX + exc.field.upper(), str(exc).split(": ", 1)[1]) from None

    @property
    def fence_after(self) -> float:
        """Seconds from sending an accepted keepalive to the worker's fence deadline."""
        return self.lease_ttl - self.fence_margin

    def failover_bound(self, accounts: int, connect_time: float = 1.0) -> float:
        """Seconds from a worker's death (``kill -9``) until the last of its
        ``accounts`` accounts has a session again, at most::

            lease_ttl + EXPIRY_CHECK + settle_delay + handover_delay
                      + accounts / claims_per_second + connect_time

        Its lease expires at most ``lease_ttl`` after the death (its last keepalive
        was before it), etcd notices within :data:`EXPIRY_CHECK`, the survivors
        place the accounts after ``settle_delay``, claim them ``handover_delay``
        later, paced, and each dials (``connect_time``: the account's own dial,
        handshake and registration).  Watch delivery (milliseconds on one network)
        is inside the connect allowance.  Defaults, 100 accounts over the
        survivors, 1 s to connect: 5 + 0.5 + 0.2 + 1 + 0.5 + 1 = 8.2 s.
        """
        return (
            self.lease_ttl
            + EXPIRY_CHECK
            + self.settle_delay
            + self.handover_delay
            + accounts / self.claims_per_second
            + connect_time
        )
