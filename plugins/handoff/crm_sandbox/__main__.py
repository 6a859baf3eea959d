"""`python -m handoff.crm_sandbox ...` runs the sandbox like `handoff crm-sandbox ...`."""

from .cli import main

raise SystemExit(main())
