"""Calls to a Ray cluster that uses token authentication: the token, the headers that carry
it, and Ray's refusals as two clear errors.

Ray (2.52 and later) with token authentication on (``RAY_AUTH_MODE=token``; Ray 2.60 turns it
on by itself for a head that finds a token in ``~/.ray/auth_token``) refuses every dashboard,
job and Serve REST call without the header ``Authorization: Bearer <token>``: 401 when it is
missing, 403 when it is not the cluster's (its dashboard also takes ``X-Ray-Authorization``).
Ray's own client adds the header only from the caller's ``RAY_AUTH_*`` environment; the
operator passes it itself, from :class:`RayToken`.

:func:`auth_headers` builds the headers for any code that calls a Ray cluster;
:class:`RayAccess` is one cluster's address and token, with :meth:`RayAccess.request` for plain
HTTP calls (e.g. the Serve REST API) and :meth:`RayAccess.errors` around Ray's own client.
Both raise :class:`RayUnauthorized` and :class:`RayUnreachable`, whose messages name the
address and the fix, never the token.
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from botfleet.errors import one_line
from botfleet.reasons import Reason
from botfleet_operator.failures import ExecutorUnavailable

TOKEN_FIX = (
    "give the operator the cluster's token (Helm value executor.ray.authTokenSecret, or the flag"
    " --ray-auth-token-file); docs/install.md says how to get it"
)
ADDRESS_FIX = (
    "check the operator's Ray address (Helm value executor.ray.address, or the flag --ray-address)"
    " and that the Ray head's dashboard listens there"
)


class RayUnauthorized(ExecutorUnavailable):
    reason = Reason.RAY_UNAUTHORIZED


class RayUnreachable(ExecutorUnavailable):
    reason = Reason.RAY_UNREACHABLE


def auth_headers(token: str | None) -> dict[str, str]:
    """The headers that authenticate a call to a Ray cluster with ``token`` (none without one)."""
    return {"Authorization": f"Bearer {token}"} if token else {}


class RayToken:
    """The Ray token in a file (a mounted Secret, or the head's ``~/.ray/auth_token``), read
    again whenever the file changes: the kubelet updates a mounted Secret in place, so a token
    set or rotated later is used without a restart. No file configured, a missing or an empty
    file: no token."""

    def __init__(self, path: str = "") -> None:
        self.path = os.path.expanduser(path) if path else ""
        self._lock = threading.Lock()
        self._seen: tuple | None = None  # (inode, mtime, size) of the file last read
        self._value: str | None = None

    def value(self) -> str | None:
        if not self.path:
            return None
        try:
            stat = os.stat(self.path)  # follows the kubelet's ..data symlink to the current file
        except OSError:
            return None
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)
        with self._lock:
            if seen != self._seen:
                try:
                    with open(self.path, encoding="utf-8") as f:
                        self._value = f.read().strip() or None
                except (OSError, UnicodeDecodeError):
                    self._value = None
                self._seen = seen
            return self._value

    def describe(self) -> str:
        """The token the operator has, for messages (where it is, never what it is)."""
        if not self.path:
            return "no token"
        return f"the token in {self.path}" if self.value() else f"no token ({self.path} is missing or empty)"


def _cause(exc: BaseException) -> str:
    """The short cause of a connection failure ("Connection refused", "timed out"), also from
    the error Ray's client raised its own from."""
    for error in (exc, exc.__cause__, exc.__context__):
        found = re.search(r"\[Errno -?\d+\] ([^'\")]+)", str(error)) if error is not None else None
        if found:
            return found.group(1).strip()
        if error is not None and ("timed out" in str(error).lower() or "Timeout" in type(error).__name__):
            return "timed out"
    return one_line(exc, 200)


def _gateway_error(exc: BaseException) -> bool:
    """A proxy in front of the dashboard answered for it: the dashboard is not there."""
    return isinstance(exc, RuntimeError) and re.search(r"status code (502|503|504)\b", str(exc)) is not None


@dataclass
class RayAccess:
    """One Ray cluster: its dashboard address and the token the operator sends it."""

    address: str
    token: RayToken = field(default_factory=RayToken)

    def headers(self) -> dict[str, str]:
        return auth_headers(self.token.value())

    def refused(self, status: int) -> RayUnauthorized:
        has_token = self.token.value() is not None
        if status == 403 or has_token:
            message = (
                f"the Ray cluster at {self.address} refuses {self.token.describe()} ({status}):"
                f" it is not this cluster's token; {TOKEN_FIX}"
            )
        else:
            message = (
                f"the Ray cluster at {self.address} requires token authentication and the operator has"
                f" {self.token.describe()} ({status}); {TOKEN_FIX}"
            )
        return RayUnauthorized(self.address, message)

    def unreachable(self, cause: str) -> RayUnreachable:
        return RayUnreachable(self.address, f"cannot reach the Ray cluster at {self.address} ({cause}); {ADDRESS_FIX}")

    @contextlib.contextmanager
    def errors(self) -> Iterator[None]:
        """Around calls of Ray's own clients: their failures to authenticate or connect as
        :class:`RayUnauthorized` / :class:`RayUnreachable` (the rest passes through)."""
        import requests
        from ray.exceptions import AuthenticationError

        try:
            yield
        except AuthenticationError as exc:
            # Ray's words: "Authentication required" (401) or "Authentication failed" (403).
            raise self.refused(403 if "failed" in str(exc).split(":", 1)[0].lower() else 401) from None
        except (ConnectionError, requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise self.unreachable(_cause(exc)) from None
        except RuntimeError as exc:
            if _gateway_error(exc):
                raise self.unreachable(one_line(exc, 120)) from None
            raise

    def request(self, method: str, path: str, timeout: float = 30.0, **kwargs):
        """One HTTP call to the cluster's dashboard (``path`` from its root, e.g.
        ``/api/serve/applications/``) with the token; returns the ``requests`` response of any
        other status for the caller to judge."""
        import requests

        headers = {**kwargs.pop("headers", {}), **self.headers()}
        try:
            response = requests.request(
                method, self.address.rstrip("/") + path, headers=headers, timeout=timeout, **kwargs
            )
        except (requests.exceptions.ConnectionError, requests.exceptions.Timeout) as exc:
            raise self.unreachable(_cause(exc)) from None
        if response.status_code in (401, 403):
            raise self.refused(response.status_code)
        if response.status_code in (502, 503, 504):
            raise self.unreachable(f"status {response.status_code} from {self.address}")
        return response
