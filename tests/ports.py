"""Free TCP ports for servers the tests start (clusters, sandboxes), chosen below the kernel's ephemeral range.

A port from bind(0) is an ephemeral one: once a test's server stops (a restart, a crash trial) any outgoing
connection of a parallel test may take it as its source port, and the restart then finds it "in use". Ports
below net.ipv4.ip_local_port_range are never handed out that way.
"""

from __future__ import annotations

import random
import socket
from pathlib import Path


def free_port() -> int:
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(max(low - 12_000, 1024), low)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port below the ephemeral range")
