"""A cap on the connections one peer address keeps busy.

gRPC Python tells a server nothing about connections — no accept hook, no close event — so the
cap is kept from the calls: a call's peer (``ipv4:10.0.0.7:52114``) names its connection by
address and port. :class:`PeerConnections` counts, per address, the connections (ports) in use:
with a call in flight, or a call ended within ``linger_s``. A call on one connection more than
``per_peer`` is refused (:class:`TooManyConnections`) before anything else is done for it, while
calls on the connections already counted go on. Connections that make no calls cost only
memory, and the server closes them once idle (``grpc.max_connection_idle_ms``).

Limits: behind a proxy or a NAT every caller shares one address (raise the cap, or turn it off
with 0); health checks and reflection are not counted.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from onceonly.errors import ResourceExhausted

__all__ = ["PeerConnections", "TooManyConnections", "split_peer"]

log = logging.getLogger(__name__)


class TooManyConnections(ResourceExhausted):
    """A call on one connection more than its peer address may keep."""

    reason = "TOO_MANY_CONNECTIONS"

    def __init__(self, address: str, per_peer: int, linger_s: float) -> None:
        super().__init__(
            f"{address} already has {per_peer} connections in use; send calls over the ones you "
            "have (one channel is one connection and carries many calls at once); a connection "
            f"stops counting {linger_s:g} s after its last call ends",
            retry_after_s=linger_s,
            metadata={"max_connections_per_peer": str(per_peer)},
        )


def split_peer(peer: str) -> tuple[str, str] | None:
    """``(address, port)`` of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``); ``None``
    for peers without a port (Unix sockets)."""
    kind, _, rest = peer.partition(":")
    if kind not in ("ipv4", "ipv6") or not rest:
        return None
    address, _, port = rest.rpartition(":")
    return (address.strip("[]").replace("%5B", "").replace("%5D", ""), port) if address else None


class PeerConnections:
    """Counts the connections each peer address uses (see the module's description).

    A connection counts while it has a call in flight, and for ``linger_s`` after its last call
    ended (a client's next call usually follows soon on the same connection; one it closed drops
    out). Touched only on the server's event loop: no lock.
    """

    def __init__(
        self, per_peer: int, linger_s: float = 5.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if per_peer < 1 or linger_s < 0:
            raise ValueError("per_peer must be at least 1 and linger_s not negative")
        self.per_peer = per_peer
        self.linger_s = linger_s
        self._clock = clock
        self._seen: dict[str, dict[str, list[float]]] = {}  # address → port → [in flight, last ended]
        self._warned: dict[str, float] = {}

    def enter(self, peer: str) -> tuple[str, str] | None:
        """Count a call on its connection; raise :class:`TooManyConnections` if the connection is
        one more than its address may use. Pass the result to :meth:`leave` when the call ends."""
        parts = split_peer(peer)
        if parts is None:
            return None
        address, port = parts
        ports = self._seen.setdefault(address, {})
        state = ports.get(port)
        if state is None:
            if len(ports) >= self.per_peer:
                self._drop_quiet(ports, self._clock())
                if len(ports) >= self.per_peer:
                    self._refuse(address, len(ports))
            state = ports[port] = [0, 0.0]
        state[0] += 1
        return parts

    def leave(self, key: tuple[str, str] | None) -> None:
        """The call counted by :meth:`enter` ended."""
        if key is None:
            return
        state = self._seen.get(key[0], {}).get(key[1])
        if state is not None:
            state[0] -= 1
            state[1] = self._clock()
        if len(self._seen) > 4 * 1024:  # forget addresses gone quiet, now and then
            now = self._clock()
            for address in list(self._seen):
                self._drop_quiet(self._seen[address], now)
                if not self._seen[address]:
                    del self._seen[address]
                    self._warned.pop(address, None)

    def connections(self, address: str) -> int:
        """How many connections of ``address`` count now."""
        now = self._clock()
        return sum(
            1 for n, ended in self._seen.get(address, {}).values() if n > 0 or now - ended <= self.linger_s
        )

    def _drop_quiet(self, ports: dict[str, list[float]], now: float) -> None:
        for port in [p for p, (n, ended) in ports.items() if n <= 0 and now - ended > self.linger_s]:
            del ports[port]

    def _refuse(self, address: str, connections: int) -> None:
        now = self._clock()
        if now - self._warned.get(address, -60.0) >= 60.0:
            self._warned[address] = now
            log.warning(
                "calls refused: too many connections from one address",
                extra={"address": address, "connections": connections, "per_peer": self.per_peer},
            )
        raise TooManyConnections(address, self.per_peer, self.linger_s)
