"""Loaders: files (analytics exports, CRM CSV exports) into the raw schema, one file = one batch = one transaction."""
