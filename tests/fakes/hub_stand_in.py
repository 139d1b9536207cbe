"""A local stand-in for the Hugging Face Hub's HTTP API (the Hub cannot be reached in tests).

One threaded ``http.server`` on 127.0.0.1 (a free port) answers the calls the real
``huggingface_hub`` client makes for ``create_repo`` and ``create_commit``, as the Hub does:

* ``POST /api/repos/create`` ``{name, organization, visibility}``: 200 ``{url}``, 409 when
  the repository exists, 403 when the token may not write the namespace.
* ``GET /api/models/ORG/NAME[/revision/REV]`` (what ``create_repo(exist_ok=True)`` asks
  after a 401/403): the repository's info, or 404 ``X-Error-Code: RepoNotFound``.
* ``POST /api/validate-yaml``: the card's front matter is YAML, else 400 with ``errors``.
* ``POST /api/models/ORG/NAME/preupload/main``: every file is ``regular`` (committed inline,
  base64): the stand-in has no LFS storage, which only changes how bytes travel.
* ``POST /api/models/ORG/NAME/commit/main`` (NDJSON: a header, then ``file`` lines): one
  commit with every file, ``{commitUrl, commitOid}``.

Every call needs ``Authorization: Bearer <token>`` of a known token, else 401 with the
Hub's ``X-Error-Message: Invalid credentials in Authorization header``. Each token may
write the namespaces it is given. Every request is logged (:attr:`HubStandIn.log`).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import yaml

REPO_PATH = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")


@dataclass
class StoredCommit:
    oid: str
    summary: str
    files: dict[str, bytes]  # what this commit wrote


@dataclass
class StoredRepo:
    repo: str
    private: bool
    commits: list[StoredCommit] = field(default_factory=list)

    def files(self) -> dict[str, bytes]:
        """The repository's files at its head."""
        tree: dict[str, bytes] = {}
        for commit in self.commits:
            tree.update(commit.files)
        return tree


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    headers: dict  # names lower-cased
    body: bytes


class HubStandIn:
    def __init__(self, tokens: dict[str, set[str]]) -> None:
        self.tokens = tokens  # token -> namespaces it may write
        self.repos: dict[str, StoredRepo] = {}
        self.log: list[LoggedRequest] = []
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> HubStandIn:
        stand_in = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                stand_in._handle(self, "GET")

            def do_POST(self) -> None:
                stand_in._handle(self, "POST")

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, name="hub-stand-in", daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------- requests

    def _handle(self, request: BaseHTTPRequestHandler, method: str) -> None:
        length = int(request.headers.get("Content-Length") or 0)
        body = request.rfile.read(length) if length else b""
        with self._lock:
            self.log.append(
                LoggedRequest(method, request.path, {k.lower(): v for k, v in request.headers.items()}, body)
            )
        path = request.path.split("?", 1)[0]
        token = self._token(request)
        if token is None:
            return self._send(
                request,
                401,
                {"error": "Invalid credentials"},
                {"X-Error-Message": "Invalid credentials in Authorization header"},
            )
        if method == "POST" and path == "/api/repos/create":
            return self._create(request, token, json.loads(body))
        if method == "POST" and path == "/api/validate-yaml":
            return self._validate_yaml(request, json.loads(body))
        match = REPO_PATH.match(path)
        if match is None:
            return self._send(request, 404, {"error": "not found"})
        repo, rest = match["repo"], match["rest"] or ""
        stored = self.repos.get(repo)
        if stored is None:
            return self._send(request, 404, {"error": "Repository not found"}, {"X-Error-Code": "RepoNotFound"})
        if method == "GET" and (rest == "" or rest.startswith("/revision/")):
            head = stored.commits[-1].oid if stored.commits else "0" * 40
            return self._send(request, 200, {"id": repo, "modelId": repo, "sha": head, "private": stored.private})
        if not self._may_write(token, repo):
            return self._send(request, 403, {"error": f"You don't have the rights to write to {repo}"})
        if method == "POST" and rest.startswith("/preupload/"):
            files = json.loads(body)["files"]
            answer = [{"path": f["path"], "uploadMode": "regular", "shouldIgnore": False} for f in files]
            return self._send(request, 200, {"files": answer})
        if method == "POST" and rest.startswith("/commit/"):
            return self._commit(request, stored, body)
        return self._send(request, 404, {"error": "not found"})

    def _token(self, request: BaseHTTPRequestHandler) -> str | None:
        header = request.headers.get("Authorization") or ""
        scheme, _, token = header.partition(" ")
        return token if scheme == "Bearer" and token in self.tokens else None

    def _may_write(self, token: str, repo: str) -> bool:
        return repo.split("/", 1)[0] in self.tokens[token]

    def _create(self, request, token: str, payload: dict) -> None:
        repo = f"{payload.get('organization')}/{payload['name']}"
        if not self._may_write(token, repo):
            message = (
                f'You don\'t have the rights to create a model under the namespace "{payload.get("organization")}"'
            )
            return self._send(request, 403, {"error": message})
        with self._lock:
            if repo in self.repos:
                return self._send(
                    request, 409, {"error": "You already created this model repo", "url": self._page(repo)}
                )
            private = payload.get("visibility") == "private" or bool(payload.get("private"))
            self.repos[repo] = StoredRepo(repo, private)
        self._send(request, 200, {"url": self._page(repo), "name": repo})

    def _validate_yaml(self, request, payload: dict) -> None:
        content = payload.get("content", "")
        match = re.match(r"^---\n(.*?)\n---\n", content, re.S)
        try:
            if match:
                yaml.safe_load(match[1])
        except yaml.YAMLError as error:
            return self._send(request, 400, {"errors": [{"message": str(error)}], "warnings": []})
        self._send(request, 200, {"errors": [], "warnings": []})

    def _commit(self, request, stored: StoredRepo, body: bytes) -> None:
        lines = [json.loads(line) for line in body.splitlines() if line.strip()]
        header = next(line["value"] for line in lines if line["key"] == "header")
        files = {
            line["value"]["path"]: base64.b64decode(line["value"]["content"]) for line in lines if line["key"] == "file"
        }
        if any(line["key"] not in ("header", "file") for line in lines):
            return self._send(request, 400, {"error": "the stand-in takes regular files only"})
        oid = hashlib.sha1(body + str(len(stored.commits)).encode()).hexdigest()
        with self._lock:
            stored.commits.append(StoredCommit(oid, header["summary"], files))
        self._send(
            request, 200, {"commitUrl": f"{self._page(stored.repo)}/commit/{oid}", "commitOid": oid, "success": True}
        )

    def _page(self, repo: str) -> str:
        return f"{self.url}/{repo}"

    @staticmethod
    def _send(request: BaseHTTPRequestHandler, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        request.send_response(status)
        request.send_header("Content-Type", "application/json")
        request.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            request.send_header(name, value)
        request.end_headers()
        request.wfile.write(data)
