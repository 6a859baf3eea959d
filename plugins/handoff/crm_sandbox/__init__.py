"""A local stand-in for HubSpot's CRM v3 API (the external SaaS), for tests, demos and benches.

It serves what the official `hubspot-api-client` SDK sends: objects (list, read, search, batch
read/update/create, archive), owners, HubSpot's error shapes, lifecycle-stage rules, rate limits
and injectable faults, with its state in one SQLite file.
"""

from .cli import add_arguments, main, run
from .limits import Faults
from .server import (
    SandboxHandle,
    create_handoff_properties,
    create_properties,
    init_from,
    load_objects,
    start_sandbox,
)

__all__ = ["Faults", "SandboxHandle", "add_arguments", "create_handoff_properties", "create_properties",
           "init_from", "load_objects", "main", "run", "start_sandbox"]
