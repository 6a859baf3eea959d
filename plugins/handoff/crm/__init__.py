"""The CRM (HubSpot CRM v3 compatible) client: transport, rate limiting, retries, reads (writes come with the push)."""
