"""Airflow's public REST API (v2), as ``handoff airflow up`` and the end-to-end tests call it: a JWT from
``POST /auth/token``, JSON in and out, the standard library's HTTP client (the api-server is ours, on loopback)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from handoff.supervisor import ServicesError


class Api:
    """Airflow's public REST API (v2) with a JWT from ``POST /auth/token``."""

    def __init__(self, url: str, token: str | None = None) -> None:
        self.url, self.token = url, token

    @classmethod
    def login(cls, url: str, username: str, password: str) -> Api:
        status, body = cls(url).call("POST", "/auth/token", {"username": username, "password": password})
        if status != 201:
            raise ServicesError(f"POST {url}/auth/token answered {status}: {body}")
        return cls(url, body["access_token"])

    def call(self, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310 - our loopback api-server
                return response.status, _json(response.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())

    def healthy(self) -> bool:
        try:
            return self.call("GET", "/api/v2/monitor/health")[0] == 200
        except OSError:
            return False


def _json(raw: bytes) -> dict:
    try:
        return json.loads(raw or b"{}")
    except ValueError:
        return {"text": raw.decode(errors="replace")[:500]}
