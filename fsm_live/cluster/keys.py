"""The cluster's keys in etcd and what their values hold (never a secret).

Under a prefix (default ``/fsm_live``)::

    {prefix}/members/{worker}    {"host": ..., "pid": ..., "capacity": ..., "draining": ...}
                                                                   on the worker's lease
    {prefix}/owners/{account}    {"worker": ...}                    on the owner's lease

Worker ids and account keys are percent-encoded (``urllib.parse.quote`` with no
safe characters), so a key holding ``/`` stays one path segment.  An owner key is
created only by a transaction that succeeds if it does not exist; its create
revision is the holder's fencing token.  Values carry no cookie, token, URL or
other account setting: only the worker's id, host, pid, capacity and draining
flag, and the name of the worker holding an account.
"""

from __future__ import annotations

import json
from typing import Any, Final
from urllib.parse import quote, unquote

import attrs

from fsm_live.errors import ConfigError

__all__ = ("DEFAULT_PREFIX", "KeyLayout", "MemberInfo", "decode_owner", "encode_owner")

#: The key prefix when the coordinator URL names none.
DEFAULT_PREFIX: Final = "/fsm_live"


@attrs.frozen
class MemberInfo:
    """A worker of the cluster as its member key describes it.

    ``capacity`` (> 0) weighs its share of the accounts; ``draining`` says it is
    handing its accounts over and takes no new ones.
    """

    worker: str
    host: str
    pid: int
    capacity: float = 1.0
    draining: bool = False

    def encode(self) -> bytes:
        """The member key's value (JSON, UTF-8)."""
        value = {
            "host": self.host,
            "pid": self.pid,
            "capacity": self.capacity,
            "draining": self.draining,
        }
        return json.dumps(value, separators=(",", ":")).encode()

    @classmethod
    def decode(cls, worker: str, value: bytes) -> MemberInfo:
        """Read a member key's value; a value this version cannot read is a member of
        capacity 1 on an unknown host (it still counts: never place on a guess)."""
        try:
            data: Any = json.loads(value)
            return cls(
                worker=worker,
                host=str(data.get("host", "?")),
                pid=int(data.get("pid", 0)),
                capacity=float(data.get("capacity", 1.0)),
                draining=bool(data.get("draining", False)),
            )
        except (ValueError, TypeError, AttributeError):
            return cls(worker=worker, host="?", pid=0)


@attrs.frozen
class KeyLayout:
    """Where a cluster's keys live under ``prefix`` (``/name``, no trailing slash)."""

    prefix: str = DEFAULT_PREFIX

    def __attrs_post_init__(self) -> None:
        if not self.prefix.startswith("/") or self.prefix.endswith("/") or "//" in self.prefix:
            raise ConfigError(
                "prefix", f"expected /NAME[/NAME...] without a trailing slash, got {self.prefix!r}"
            )

    @property
    def members(self) -> bytes:
        """The prefix of every member key."""
        return f"{self.prefix}/members/".encode()

    @property
    def owners(self) -> bytes:
        """The prefix of every owner key."""
        return f"{self.prefix}/owners/".encode()

    @property
    def root(self) -> bytes:
        """The prefix of every key of the cluster (what a worker watches)."""
        return f"{self.prefix}/".encode()

    def member(self, worker: str) -> bytes:
        return self.members + quote(worker, safe="").encode()

    def owner(self, account: str) -> bytes:
        return self.owners + quote(account, safe="").encode()

    def parse(self, key: bytes) -> tuple[str, str] | None:
        """``("member", worker)`` or ``("owner", account)`` for a key of this layout;
        None for any other key."""
        for kind, prefix in (("member", self.members), ("owner", self.owners)):
            if key.startswith(prefix):
                return kind, unquote(key[len(prefix) :].decode(errors="replace"))
        return None


def encode_owner(worker: str) -> bytes:
    """An owner key's value."""
    return json.dumps({"worker": worker}, separators=(",", ":")).encode()


def decode_owner(value: bytes) -> str:
    """The worker an owner key's value names ("?" if unreadable)."""
    try:
        return str(json.loads(value)["worker"])
    except (ValueError, TypeError, KeyError):
        return "?"
