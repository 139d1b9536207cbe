"""Ray Serve's REST API on a Ray cluster's dashboard (the ``ray`` executor's serving).

Every HTTP call the operator makes to it goes through :func:`serve_request`, so a header the
cluster needs (authentication) is added in one place.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from botfleet.errors import one_line

SERVE_PATH = "/api/serve/applications/"


class ServeApiError(RuntimeError):
    """The dashboard refused the call or could not be reached; the message says which."""


def serve_request(
    address: str, method: str, body: dict | None = None, timeout: float = 120.0, headers: dict | None = None
) -> dict | None:
    """``method`` on ``<address>/api/serve/applications/``: the JSON answer of a GET (the
    Serve instance's details), None for a PUT (the whole declarative config) or DELETE.

    The first call to a fresh dashboard connects it to Ray, and a PUT may start Serve:
    on a busy head each takes tens of seconds, hence the long ``timeout``. ``headers``: what
    the cluster needs besides (its authentication)."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        address.rstrip("/") + SERVE_PATH,
        data=data,
        method=method,
        headers={"Content-Type": "application/json", "Accept": "application/json", **(headers or {})},
    )
    where = f"{method} {SERVE_PATH} on {address}"
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            text = response.read()
    except urllib.error.HTTPError as exc:
        detail = one_line(exc.read().decode(errors="replace"), limit=500)
        raise ServeApiError(f"{where}: HTTP {exc.code}: {detail}") from None
    except OSError as exc:
        raise ServeApiError(f"{where}: {exc}") from None
    return json.loads(text) if method == "GET" else None
