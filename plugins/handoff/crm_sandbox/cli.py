"""`handoff crm-sandbox`: serve the CRM sandbox until interrupted."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from collections.abc import Sequence
from typing import Any

from handoff.settings import DEFAULT_CRM_PORT, paths

from .limits import Faults, parse_rate_limit
from .server import init_from, start_sandbox

TOKEN_ENV = "HANDOFF_CRM_SANDBOX_TOKEN"


def add_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--state", default=str(paths().crm_state),
                        help="SQLite state file (default: %(default)s)")
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default: %(default)s)")
    parser.add_argument("--port", type=int, default=DEFAULT_CRM_PORT,
                        help="port to listen on, 0 for any free port (default: %(default)s)")
    parser.add_argument("--token", default=os.environ.get(TOKEN_ENV),
                        help=f"bearer token clients must send (default: ${TOKEN_ENV})")
    parser.add_argument("--init-from", metavar="DIR",
                        help="replace the state with DIR/crm/<object>.jsonl.gz from `handoff sample` first")
    parser.add_argument("--init-only", action="store_true", help="with --init-from: load the state and exit")
    parser.add_argument("--rate-limit", default="100/10", metavar="N/SECONDS",
                        help="requests per rolling window per token, or 'off' (default: %(default)s)")
    parser.add_argument("--search-rate-limit", default="5/1", metavar="N/SECONDS",
                        help="search requests per rolling window per token, or 'off' (default: %(default)s)")
    parser.add_argument("--daily-limit", type=int, default=250_000,
                        help="requests per UTC day per token, 0 for none (default: %(default)s)")
    faults = parser.add_argument_group("fault injection (deterministic for a given --fault-seed)")
    faults.add_argument("--fault-seed", type=int, default=0)
    faults.add_argument("--fault-429", type=float, default=0.0, metavar="P",
                        help="probability a request starts a 429 storm")
    faults.add_argument("--fault-429-storm", type=int, default=3, metavar="N",
                        help="requests answered 429 once a storm starts (default: %(default)s)")
    faults.add_argument("--fault-503", type=float, default=0.0, metavar="P", help="probability of a 503")
    faults.add_argument("--fault-timeout", type=float, default=0.0, metavar="P",
                        help="probability the request is held for --fault-timeout-seconds")
    faults.add_argument("--fault-timeout-seconds", type=float, default=30.0, metavar="S")
    faults.add_argument("--fault-timeout-mode", choices=("drop", "late", "lost"), default="drop",
                        help="after the hold: drop unprocessed, answer late, or process and drop the answer "
                             "(default: %(default)s)")
    faults.add_argument("--fault-slow", type=float, default=0.0, metavar="P",
                        help="probability of added latency (--fault-slow-ms)")
    faults.add_argument("--fault-slow-ms", type=float, default=0.0, metavar="MS")
    faults.add_argument("--fault-row-errors", type=float, default=0.0, metavar="P",
                        help="fraction of batch write rows failing with VALIDATION_ERROR")
    faults.add_argument("--fault-down", action="store_true", help="answer every API request with 503")
    return parser


def faults_from_args(args: argparse.Namespace) -> Faults:
    return Faults(seed=args.fault_seed, rate_limit_storm=args.fault_429, storm_length=args.fault_429_storm,
                  server_error=args.fault_503, timeout=args.fault_timeout,
                  timeout_seconds=args.fault_timeout_seconds, timeout_mode=args.fault_timeout_mode,
                  slow=args.fault_slow, slow_ms=args.fault_slow_ms, row_error_rate=args.fault_row_errors,
                  down=args.fault_down)


def run(args: argparse.Namespace) -> int:
    """Run the sandbox from parsed arguments; returns the exit status."""
    try:
        faults = faults_from_args(args)
        rate_limit = parse_rate_limit(args.rate_limit)
        search_rate_limit = parse_rate_limit(args.search_rate_limit)
    except ValueError as exc:
        print(f"crm-sandbox: {exc}", file=sys.stderr)
        return 2
    if args.init_from:
        try:
            counts = init_from(args.state, args.init_from)
        except (OSError, ValueError) as exc:
            print(f"crm-sandbox: cannot load {args.init_from}: {exc}", file=sys.stderr)
            return 1
        loaded = ", ".join(f"{name} {count}" for name, count in counts.items())
        print(f"crm-sandbox: loaded {args.state} from {args.init_from}: {loaded}", flush=True)
        if args.init_only:
            return 0
    if not args.token:
        print(f"crm-sandbox: a token is required (--token or ${TOKEN_ENV})", file=sys.stderr)
        return 2
    try:
        handle = start_sandbox(args.state, args.port, token=args.token, rate_limit=rate_limit,
                               search_rate_limit=search_rate_limit, faults=faults,
                               host=args.host, daily_limit=args.daily_limit or None)
    except OSError as exc:
        print(f"crm-sandbox: cannot listen on {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    stop = threading.Event()

    def _stop(*_: Any) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, _stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    print(f"crm-sandbox: serving {args.state} (HubSpot CRM v3 API)", flush=True)
    print(handle.url, flush=True)
    try:
        while not stop.wait(0.2):
            pass
    finally:
        handle.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = add_arguments(argparse.ArgumentParser(
        prog="handoff crm-sandbox", description="A local stand-in for HubSpot's CRM v3 API."))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
