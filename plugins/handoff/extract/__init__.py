"""Extractors: pull from external systems (the CRM's REST API) into the raw schema."""
