"""Fixtures for the fault tests: the push tests' CRM sandbox and fake clock, reused as they are."""

from tests.plugins.push.conftest import clock, crm  # noqa: F401 - pytest fixtures, re-exported
