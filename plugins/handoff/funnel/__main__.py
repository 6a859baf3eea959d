"""``python -m handoff.funnel check|compile``."""

from handoff.funnel.cli import main

raise SystemExit(main())
