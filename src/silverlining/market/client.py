"""A small client of the market's JSON API, for the CLI (and scripts)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import httpx

DEFAULT_URL = "http://127.0.0.1:8000"


class ApiError(Exception):
    """The market refused a call (``status``) or could not be reached (``status`` None)."""

    def __init__(self, message: str, status: int | None = None,
                 body: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.body = body or {}


@dataclass
class MarketClient:
    url: str
    token: str | None = field(default=None, repr=False)
    timeout: float = 900.0  # onboarding runs Core before it answers

    def __post_init__(self) -> None:
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        self._http = httpx.Client(base_url=self.url.rstrip("/") + "/api/v1",
                                  headers=headers, timeout=self.timeout)

    def close(self) -> None:
        self._http.close()

    def call(self, method: str, path: str, *, body: Any = None,
             params: dict[str, Any] | None = None, text: bool = False) -> Any:
        """The answer's JSON (or its text, with ``text``). Raises ApiError."""
        clean = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            resp = self._http.request(method, path, json=body, params=clean)
        except httpx.HTTPError as error:
            raise ApiError(f"cannot reach the market at {self.url}: "
                           f"{str(error).splitlines()[0] if str(error) else error!r}") from None
        if text and resp.status_code < 400:
            return resp.text
        try:
            payload = resp.json()
        except ValueError:
            payload = None
        if resp.status_code >= 400:
            raise ApiError(_describe(resp.status_code, payload), resp.status_code,
                           payload if isinstance(payload, dict) else None)
        return payload


def _describe(status: int, payload: Any) -> str:
    detail = payload.get("detail") if isinstance(payload, dict) else None
    if isinstance(detail, list):  # request validation: where and what
        parts = []
        for item in detail:
            loc = ".".join(str(x) for x in item.get("loc", ()) if x not in ("body", "query"))
            parts.append(f"{loc}: {item.get('msg')}" if loc else str(item.get("msg")))
        detail = "; ".join(parts)
    if status == 401 and not detail:
        detail = "a token is needed"
    return f"{detail or 'the market answered ' + str(status)} (HTTP {status})"
