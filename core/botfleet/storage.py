"""The storage layer every botfleet stage uses.

Locations are URIs:

* ``s3://bucket/key``: an object in an S3-compatible store (MinIO, SeaweedFS, AWS);
  the endpoint and credentials come from :class:`S3Config` (normally from the environment).
* ``file:///abs/path``: a local file, for the command line only.

Prefix operations (:meth:`Storage.list`, :meth:`Storage.download_dir`,
:meth:`Storage.delete_prefix`) treat the prefix as a folder: ``s3://b/runs/1`` covers
``s3://b/runs/1/...`` and never ``s3://b/runs/10/...``.

Every failure the caller can act on is a :class:`StorageError` with a one-line message
that names the URI (or the endpoint) and what is wrong.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import mimetypes
import os
import posixpath
import re
import shutil
import time
import urllib.parse
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from botfleet.errors import UserError

log = logging.getLogger("botfleet.storage")

# How long the job's processes wait for an object store that stopped answering mid-run (a
# restart, a network cut) before they fail: the store holds every checkpoint and the dataset.
JOB_OUTAGE_WAIT_S = 300.0

PART_SIZE = 64 * 1024 * 1024
"""Multipart part size: big parts upload 2-3x faster than the client's 5 MiB default."""

_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_SCHEME_HINT = "use s3://bucket/key or file:///path"


class StorageError(UserError):
    """A storage operation failed; the message is one line naming the URI or endpoint."""


class NotFound(StorageError):
    """The object, file or folder is not there; the message names it and says "not found"."""


# --------------------------------------------------------------------------- URIs


@dataclass(frozen=True)
class Location:
    """A parsed storage URI: ``scheme`` is ``"s3"`` (``bucket``, ``key``) or ``"file"`` (``path``)."""

    scheme: str
    bucket: str = ""
    key: str = ""
    path: str = ""

    @property
    def uri(self) -> str:
        if self.scheme == "s3":
            return f"s3://{self.bucket}/{self.key}" if self.key else f"s3://{self.bucket}"
        return "file://" + urllib.parse.quote(self.path)

    def __str__(self) -> str:
        return self.uri

    def folder_key(self) -> str:
        """The key as a folder prefix: "" for the bucket root, else ending in "/"."""
        return self.key if not self.key or self.key.endswith("/") else self.key + "/"


def parse_uri(uri: str) -> Location:
    """Parse ``s3://bucket/key`` or ``file:///abs/path``; raise :class:`StorageError` otherwise."""
    if not isinstance(uri, str) or not uri:
        raise StorageError(f"{uri!r}: empty URI ({_SCHEME_HINT})")
    scheme, sep, rest = uri.partition(":")
    scheme = scheme.lower()
    if not sep or not re.fullmatch(r"[a-z][a-z0-9+.-]*", scheme):
        raise StorageError(f"{uri}: missing URI scheme ({_SCHEME_HINT})")
    if scheme == "s3":
        if not rest.startswith("//"):
            raise StorageError(f"{uri}: malformed s3 URI (use s3://bucket/key)")
        bucket, _, key = rest[2:].partition("/")
        if not bucket:
            raise StorageError(f"{uri}: missing bucket name (use s3://bucket/key)")
        if not _BUCKET_RE.match(bucket) or ".." in bucket:
            raise StorageError(
                f"{uri}: invalid bucket name {bucket!r} (3-63 characters: lowercase letters, digits, '.', '-')"
            )
        return Location("s3", bucket=bucket, key=key)
    if scheme == "file":
        path = rest
        if rest.startswith("//"):  # file://HOST/path; only an empty host (or localhost) is local
            host, slash, tail = rest[2:].partition("/")
            if host not in ("", "localhost"):
                raise StorageError(f"{uri}: file URIs need an absolute path (file:///abs/path), not host {host!r}")
            path = slash + tail
        path = urllib.parse.unquote(path)
        if not path.startswith("/"):
            raise StorageError(f"{uri}: file URIs need an absolute path (file:///abs/path)")
        return Location("file", path=posixpath.normpath(path))
    raise StorageError(f"{uri}: unsupported URI scheme {scheme!r} ({_SCHEME_HINT})")


def join(uri: str, *parts: str) -> str:
    """Append path parts to a URI: ``join("s3://b/models", "x", "card.md")`` -> ``s3://b/models/x/card.md``.

    Slashes between parts are normalised; ``..`` segments are refused.
    """
    loc = parse_uri(uri)
    segments = [s for p in parts for s in str(p).split("/") if s and s != "."]
    if ".." in segments:
        raise StorageError(f"{uri}: refusing '..' in joined path {'/'.join(map(str, parts))!r}")
    if loc.scheme == "s3":
        base = loc.key.rstrip("/")
        key = "/".join(([base] if base else []) + segments)
        return dataclasses.replace(loc, key=key).uri
    return dataclasses.replace(loc, path=posixpath.join(loc.path, *segments)).uri


def file_uri(path: str | os.PathLike) -> str:
    """The ``file://`` URI of a local path (made absolute)."""
    return Location("file", path=os.path.abspath(os.fspath(path))).uri


# --------------------------------------------------------------------------- config


@dataclass
class S3Config:
    """Where the object store is and how to sign requests to it."""

    endpoint: str  # e.g. http://127.0.0.1:9000
    access_key: str
    secret_key: str = field(repr=False)
    region: str | None = None
    ca_file: str | None = None  # CA bundle for an https endpoint with a private CA

    def __post_init__(self) -> None:
        parsed = urllib.parse.urlsplit(self.endpoint)
        if parsed.scheme not in ("http", "https") or not parsed.netloc:
            raise StorageError(
                f"{self.endpoint}: S3 endpoint must be an http:// or https:// URL such as http://127.0.0.1:9000"
            )
        if parsed.path not in ("", "/") or parsed.query:
            raise StorageError(f"{self.endpoint}: S3 endpoint must not have a path")
        self.endpoint = f"{parsed.scheme}://{parsed.netloc}"

    @property
    def secure(self) -> bool:
        return self.endpoint.startswith("https://")

    @property
    def host(self) -> str:
        """``host:port`` of the endpoint (what the minio and pyarrow clients want)."""
        return urllib.parse.urlsplit(self.endpoint).netloc

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Config | None:
        """Read ``BOTFLEET_S3_ENDPOINT`` (or ``AWS_ENDPOINT_URL``), ``AWS_ACCESS_KEY_ID``,
        ``AWS_SECRET_ACCESS_KEY`` and optionally ``AWS_REGION``/``AWS_DEFAULT_REGION`` and
        ``BOTFLEET_S3_CA_FILE``. Returns None when no endpoint is configured."""
        env = os.environ if env is None else env
        endpoint = env.get("BOTFLEET_S3_ENDPOINT") or env.get("AWS_ENDPOINT_URL")
        if not endpoint:
            return None
        access_key = env.get("AWS_ACCESS_KEY_ID")
        secret_key = env.get("AWS_SECRET_ACCESS_KEY")
        if not access_key or not secret_key:
            raise StorageError(
                f"{endpoint}: S3 endpoint is configured but AWS_ACCESS_KEY_ID and"
                " AWS_SECRET_ACCESS_KEY are not both set"
            )
        region = env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
        ca_file = env.get("BOTFLEET_S3_CA_FILE") or None
        return cls(endpoint=endpoint, access_key=access_key, secret_key=secret_key, region=region, ca_file=ca_file)

    def to_env(self) -> dict[str, str]:
        """Environment variables a subprocess (e.g. a Ray job) needs to reach the same store."""
        env = {
            "BOTFLEET_S3_ENDPOINT": self.endpoint,
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            # No instance-metadata probing (slow time-outs off AWS).
            "AWS_EC2_METADATA_DISABLED": "true",
        }
        if self.region:
            env["AWS_REGION"] = env["AWS_DEFAULT_REGION"] = self.region
        if self.ca_file:
            env["BOTFLEET_S3_CA_FILE"] = self.ca_file
        return env


# --------------------------------------------------------------------------- storage


class Storage:
    """Read and write ``s3://`` and ``file://`` URIs.

    ``file://`` always works; ``s3://`` needs an :class:`S3Config`.
    """

    def __init__(self, config: S3Config | None = None, *, outage_wait_s: float = 0.0, connections: int = 10) -> None:
        """``outage_wait_s``: once the store has answered, how long a call waits for it to
        come back when it stops answering (a restart, a network cut) before failing. 0 (the
        operator's choice: the next reconcile retries) fails at once; the job waits.
        ``connections``: the connections kept open, at least as many as threads calling at once
        (past it, each call opens and closes one)."""
        self.config = config
        self.outage_wait_s = outage_wait_s
        self.connections = connections
        self._client = None
        self._buckets_seen: set[str] = set()  # buckets known to exist (see _error)
        self._answered = False  # the store has answered once: a failure now is an outage

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Storage:
        return cls(S3Config.from_env(env))

    def __repr__(self) -> str:
        return f"Storage(endpoint={self.config.endpoint if self.config else None!r})"

    # ----------------------------------------------------------------- internals

    @property
    def client(self):
        """The underlying ``minio.Minio`` client (created on first use)."""
        if self._client is None:
            if self.config is None:
                raise StorageError(
                    "no S3 endpoint configured: set BOTFLEET_S3_ENDPOINT (or AWS_ENDPOINT_URL),"
                    " AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
                )
            import minio
            import urllib3

            cfg = self.config
            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=10, read=300),
                maxsize=self.connections,
                # The object store's own CA, if any: BOTFLEET_S3_CA_FILE applies to S3 only,
                # where SSL_CERT_FILE would also replace the public roots W&B needs.
                ca_certs=cfg.ca_file or os.environ.get("SSL_CERT_FILE") or None,
                # Retry server hiccups; give up fast on a refused connection.
                retries=urllib3.Retry(total=5, connect=1, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
            )
            self._client = minio.Minio(
                cfg.host,
                access_key=cfg.access_key,
                secret_key=cfg.secret_key,
                secure=cfg.secure,
                region=cfg.region,
                http_client=http,
            )
        return self._client

    def _s3(self, uri: str, loc: Location) -> Location:
        """Check that an s3:// location can be served; returns it."""
        if self.config is None:
            raise StorageError(
                f"{uri}: no S3 endpoint configured (set BOTFLEET_S3_ENDPOINT or AWS_ENDPOINT_URL,"
                " AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
            )
        return loc

    def _error(self, uri: str, loc: Location, exc: BaseException) -> StorageError:
        """Translate a minio/urllib3/OS exception into a one-line StorageError."""
        import urllib3
        from minio.error import S3Error

        if isinstance(exc, S3Error):
            code = exc.code
            if code == "NoSuchKey" and loc.key and loc.bucket not in self._buckets_seen:
                # Some servers (SeaweedFS; any HEAD answer) say NoSuchKey for a missing bucket
                # too. A bucket seen once is not asked about again: the operator reads many
                # files that are not there yet, and each cost two requests.
                try:
                    if self.client.bucket_exists(loc.bucket):
                        self._buckets_seen.add(loc.bucket)
                    else:
                        code = "NoSuchBucket"
                except Exception:  # noqa: BLE001 - keep the original answer
                    pass
            if code == "NoSuchBucket":
                return StorageError(f"{uri}: bucket {loc.bucket!r} does not exist")
            if code in ("NoSuchKey", "ResourceNotFound"):
                return NotFound(f"{uri}: not found")
            if code in ("AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch"):
                return StorageError(
                    f"{uri}: access denied by {self.config.endpoint} ({code}; check"
                    " AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY)"
                )
            return StorageError(f"{uri}: {code}: {exc.message}")
        if isinstance(exc, (urllib3.exceptions.HTTPError, ConnectionError)):
            text = str(getattr(exc, "reason", None) or exc)
            if "refused" in text.lower():
                text = "connection refused"
            return StorageError(f"{uri}: cannot reach S3 endpoint {self.config.endpoint}: {text}".replace("\n", " "))
        if isinstance(exc, OSError):
            return StorageError(f"{uri}: {exc.strerror or exc}: {exc.filename or ''}".rstrip(": "))
        return StorageError(f"{uri}: {type(exc).__name__}: {exc}".replace("\n", " "))

    def _call(self, uri: str, loc: Location, fn, *args, **kwargs):
        import urllib3
        from minio.error import MinioException

        deadline = time.monotonic() + self.outage_wait_s
        delay = 1.0
        while True:
            try:
                result = fn(*args, **kwargs)
                self._answered = True
                return result
            except (urllib3.exceptions.HTTPError, ConnectionError) as exc:
                left = deadline - time.monotonic()
                if not self._answered or left <= 0:
                    raise self._error(uri, loc, exc) from exc
                wait = min(delay, left)
                log.warning("object store %s unreachable (%s); trying again in %.0f s", self.config.endpoint, exc, wait)
                time.sleep(wait)
                delay = min(delay * 2, 30.0)
            except MinioException as exc:
                self._answered = True  # an S3 error is the store answering
                raise self._error(uri, loc, exc) from exc
            except OSError as exc:
                raise self._error(uri, loc, exc) from exc

    def _iter_keys(self, prefix_uri: str, loc: Location) -> Iterator[str]:
        return (obj.object_name for obj in self._objects(prefix_uri, loc))

    def _objects(self, prefix_uri: str, loc: Location) -> list:
        """The objects (minio's listing entries: name, etag, size, time) under the folder."""

        def objects() -> list:
            return [
                obj
                for obj in self.client.list_objects(loc.bucket, prefix=loc.folder_key(), recursive=True)
                if not obj.is_dir and not obj.object_name.endswith("/")
            ]

        return self._call(prefix_uri, loc, objects)

    # ----------------------------------------------------------------- bytes/text/json

    def read_bytes(self, uri: str) -> bytes:
        loc = parse_uri(uri)
        if loc.scheme == "file":
            try:
                with open(loc.path, "rb") as f:
                    return f.read()
            except FileNotFoundError:
                raise NotFound(f"{uri}: not found") from None
            except OSError as exc:
                raise StorageError(f"{uri}: {exc.strerror}") from exc
        loc = self._s3(uri, loc)
        self._require_key(uri, loc)

        def get() -> bytes:
            response = self.client.get_object(loc.bucket, loc.key)
            try:
                return response.read()
            finally:
                response.close()
                response.release_conn()

        return self._call(uri, loc, get)

    def read_text(self, uri: str) -> str:
        return self.read_bytes(uri).decode("utf-8")

    def read_json(self, uri: str) -> Any:
        try:
            return json.loads(self.read_bytes(uri))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StorageError(f"{uri}: invalid JSON: {exc}") from exc

    def write_bytes(self, uri: str, data: bytes, content_type: str | None = None) -> str:
        """Write ``data`` to ``uri`` (replacing it); returns ``uri``."""
        loc = parse_uri(uri)
        data = bytes(data)
        if loc.scheme == "file":
            _atomic_write(uri, loc.path, lambda f: f.write(data))
            return uri
        loc = self._s3(uri, loc)
        self._require_key(uri, loc)
        self._call(  # a fresh stream each try: a retry must send the data from its start
            uri,
            loc,
            lambda: self.client.put_object(
                loc.bucket,
                loc.key,
                io.BytesIO(data),
                len(data),
                content_type=content_type or _guess_type(loc.key),
                part_size=PART_SIZE,
            ),
        )
        return uri

    def write_text(self, uri: str, text: str, content_type: str | None = None) -> str:
        ctype = content_type or (_guess_type(uri, "text/plain") + "; charset=utf-8")
        return self.write_bytes(uri, text.encode("utf-8"), ctype)

    def write_json(self, uri: str, obj: Any) -> str:
        text = json.dumps(obj, indent=2, ensure_ascii=False) + "\n"
        return self.write_bytes(uri, text.encode("utf-8"), "application/json")

    # ----------------------------------------------------------------- objects

    def exists(self, uri: str) -> bool:
        """Whether the object (or local file) exists. A missing bucket is an error, not False."""
        loc = parse_uri(uri)
        if loc.scheme == "file":
            return os.path.isfile(loc.path)
        loc = self._s3(uri, loc)
        self._require_key(uri, loc)
        try:
            self._call(uri, loc, self.client.stat_object, loc.bucket, loc.key)
            return True
        except NotFound:
            return False

    def version(self, uri: str) -> str:
        """What changes whenever the object's content does, without reading it: its ETag
        (S3), its size and modification time (a local file)."""
        loc = parse_uri(uri)
        if loc.scheme == "file":
            try:
                info = os.stat(loc.path)
            except FileNotFoundError:
                raise NotFound(f"{uri}: not found") from None
            except OSError as exc:
                raise StorageError(f"{uri}: {exc.strerror}") from exc
            return _file_version(info)
        loc = self._s3(uri, loc)
        self._require_key(uri, loc)
        return _object_version(self._call(uri, loc, self.client.stat_object, loc.bucket, loc.key))

    def copy(self, src_uri: str, dst_uri: str) -> str:
        """Copy one object to another place in the same store (server-side on S3; minio copies
        an object over S3's 5 GiB limit for one copy in parts); returns ``dst_uri``."""
        src, dst = parse_uri(src_uri), parse_uri(dst_uri)
        if src.scheme != dst.scheme:
            raise StorageError(f"{src_uri}: cannot copy to {dst_uri} (another store)")
        if src.scheme == "file":
            try:
                source = open(src.path, "rb")
            except FileNotFoundError:
                raise NotFound(f"{src_uri}: not found") from None
            with source:
                _atomic_write(dst_uri, dst.path, lambda f: shutil.copyfileobj(source, f, 1 << 20))
            return dst_uri
        from minio.commonconfig import CopySource

        src, dst = self._s3(src_uri, src), self._s3(dst_uri, dst)
        self._require_key(src_uri, src)
        self._require_key(dst_uri, dst)
        self._call(src_uri, src, self.client.copy_object, dst.bucket, dst.key, CopySource(src.bucket, src.key))
        return dst_uri

    def list(self, prefix_uri: str) -> list[str]:
        """All objects under the folder ``prefix_uri``, recursively, as sorted full URIs."""
        loc = parse_uri(prefix_uri)
        if loc.scheme == "file":
            return sorted(file_uri(p) for p in _walk_files(loc.path))
        loc = self._s3(prefix_uri, loc)
        return sorted(Location("s3", bucket=loc.bucket, key=k).uri for k in self._iter_keys(prefix_uri, loc))

    def versions(self, prefix_uri: str) -> dict[str, str]:
        """Every object under the folder ``prefix_uri``, recursively, as {full URI: its
        :meth:`version`}, from one listing."""
        loc = parse_uri(prefix_uri)
        if loc.scheme == "file":
            return {file_uri(p): _file_version(os.stat(p)) for p in sorted(_walk_files(loc.path))}
        loc = self._s3(prefix_uri, loc)
        objects = sorted(self._objects(prefix_uri, loc), key=lambda obj: obj.object_name)
        return {Location("s3", bucket=loc.bucket, key=obj.object_name).uri: _object_version(obj) for obj in objects}

    def folders(self, prefix_uri: str) -> list[str]:
        """The folders directly under ``prefix_uri`` (one level, not recursive), as sorted full URIs."""
        loc = parse_uri(prefix_uri)
        if loc.scheme == "file":
            if not os.path.isdir(loc.path):
                return []
            return sorted(file_uri(e.path) for e in os.scandir(loc.path) if e.is_dir() and not e.name.startswith("."))
        loc = self._s3(prefix_uri, loc)

        def names() -> list[str]:
            found = self.client.list_objects(loc.bucket, prefix=loc.folder_key(), recursive=False)
            return [obj.object_name.rstrip("/") for obj in found if obj.is_dir]

        return sorted(Location("s3", bucket=loc.bucket, key=k).uri for k in self._call(prefix_uri, loc, names))

    def upload_file(self, path: str | os.PathLike, uri: str, content_type: str | None = None) -> str:
        """Copy a local file to ``uri`` (multipart, 64 MiB parts); returns ``uri``."""
        path = os.fspath(path)
        if not os.path.isfile(path):
            raise StorageError(f"{path}: no such local file to upload to {uri}")
        loc = parse_uri(uri)
        if loc.scheme == "file":
            with open(path, "rb") as src:
                _atomic_write(uri, loc.path, lambda dst: shutil.copyfileobj(src, dst, 1 << 20))
            return uri
        loc = self._s3(uri, loc)
        self._require_key(uri, loc)
        self._call(
            uri,
            loc,
            self.client.fput_object,
            loc.bucket,
            loc.key,
            path,
            content_type=content_type or _guess_type(loc.key),
            part_size=PART_SIZE,
        )
        return uri

    def download_file(self, uri: str, path: str | os.PathLike) -> str:
        """Copy ``uri`` to a local file (parents created, written atomically); returns the path."""
        path = os.path.abspath(os.fspath(path))
        loc = parse_uri(uri)
        if loc.scheme == "file":
            try:
                src = open(loc.path, "rb")
            except FileNotFoundError:
                raise NotFound(f"{uri}: not found") from None
            with src:
                _atomic_write(file_uri(path), path, lambda dst: shutil.copyfileobj(src, dst, 1 << 20))
            return path
        loc = self._s3(uri, loc)
        self._require_key(uri, loc)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        # fget_object writes "<path>.<etag>.part.minio" and renames it: atomic.
        self._call(uri, loc, self.client.fget_object, loc.bucket, loc.key, path)
        return path

    # ----------------------------------------------------------------- folders

    def upload_dir(self, local_dir: str | os.PathLike, prefix_uri: str) -> list[str]:
        """Upload every file under ``local_dir`` to ``prefix_uri/<relative path>``; returns the URIs."""
        local_dir = os.path.abspath(os.fspath(local_dir))
        if not os.path.isdir(local_dir):
            raise StorageError(f"{local_dir}: no such local directory to upload to {prefix_uri}")
        written = []
        for path in _walk_files(local_dir):
            rel = os.path.relpath(path, local_dir).replace(os.sep, "/")
            written.append(self.upload_file(path, join(prefix_uri, rel)))
        return sorted(written)

    def download_dir(self, prefix_uri: str, local_dir: str | os.PathLike) -> list[str]:
        """Download every object under the folder ``prefix_uri`` into ``local_dir``
        (keeping relative paths); returns the local paths. An empty prefix is an error."""
        local_dir = os.path.abspath(os.fspath(local_dir))
        loc = parse_uri(prefix_uri)
        if loc.scheme == "file":
            base, sources = loc.path, [(file_uri(p), p) for p in _walk_files(loc.path)]
        else:
            loc = self._s3(prefix_uri, loc)
            base = loc.folder_key()
            sources = [(Location("s3", bucket=loc.bucket, key=k).uri, k) for k in self._iter_keys(prefix_uri, loc)]
        if not sources:
            raise NotFound(f"{prefix_uri}: not found (no objects under this prefix)")
        paths = []
        for uri, name in sources:
            rel = os.path.relpath(name, base) if loc.scheme == "file" else name[len(base) :]
            parts = [p for p in rel.split("/") if p]
            if not parts or ".." in parts:
                raise StorageError(f"{uri}: refusing to download outside {local_dir}")
            paths.append(self.download_file(uri, os.path.join(local_dir, *parts)))
        return sorted(paths)

    def delete(self, uri: str) -> None:
        """Delete one object (or file); deleting what is not there is not an error."""
        loc = parse_uri(uri)
        if loc.scheme == "file":
            with contextlib.suppress(FileNotFoundError):
                os.remove(loc.path)
            return
        loc = self._s3(uri, loc)
        self._require_key(uri, loc)
        self._call(uri, loc, self.client.remove_object, loc.bucket, loc.key)

    def delete_prefix(self, prefix_uri: str) -> int:
        """Delete every object under the folder ``prefix_uri``; returns how many were deleted.

        Note: on SeaweedFS an emptied folder may linger in *delimiter* listings for ~30 s;
        recursive listings (:meth:`list`) are exact at once.
        """
        loc = parse_uri(prefix_uri)
        if loc.scheme == "file":
            files = _walk_files(loc.path)
            if os.path.isdir(loc.path):
                shutil.rmtree(loc.path)
            return len(files)
        loc = self._s3(prefix_uri, loc)
        if not loc.key:
            raise StorageError(f"{prefix_uri}: refusing to delete a whole bucket; name a prefix")
        keys = list(self._iter_keys(prefix_uri, loc))
        self._remove_keys(prefix_uri, loc, keys)
        return len(keys)

    def delete_all(self, uris: Iterable[str]) -> None:
        """Delete several objects (or files) with one request per bucket; deleting what is
        not there is not an error."""
        by_bucket: dict[str, list[tuple[str, Location]]] = {}
        for uri in uris:
            loc = parse_uri(uri)
            if loc.scheme == "file":
                self.delete(uri)
                continue
            loc = self._s3(uri, loc)
            self._require_key(uri, loc)
            by_bucket.setdefault(loc.bucket, []).append((uri, loc))
        for named in by_bucket.values():
            first_uri, first_loc = named[0]
            self._remove_keys(first_uri, first_loc, [loc.key for _, loc in named])

    def _remove_keys(self, uri: str, loc: Location, keys: list[str]) -> None:
        """Remove ``keys`` of ``loc``'s bucket, 1,000 a request (S3's most)."""
        from minio.deleteobjects import DeleteObject

        for start in range(0, len(keys), 1000):
            batch = [DeleteObject(k) for k in keys[start : start + 1000]]
            errors = self._call(uri, loc, lambda objects: list(self.client.remove_objects(loc.bucket, objects)), batch)
            if errors:
                first = errors[0]
                raise StorageError(
                    f"{uri}: could not delete {len(errors)} objects, first {first.name}: {first.code} {first.message}"
                )

    def ensure_bucket(self, bucket: str) -> None:
        """Create ``bucket`` if it does not exist (embedded default and tests only)."""
        from minio.error import S3Error

        uri = f"s3://{bucket}"
        loc = self._s3(uri, parse_uri(uri))
        try:
            if not self._call(loc.uri, loc, self.client.bucket_exists, bucket):
                self._call(loc.uri, loc, self.client.make_bucket, bucket)
        except StorageError as exc:
            cause = exc.__cause__
            if not (isinstance(cause, S3Error) and cause.code in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists")):
                raise

    # ----------------------------------------------------------------- pyarrow

    def pyarrow_filesystem(self):
        """A ``pyarrow.fs.S3FileSystem`` for this store (e.g. Ray Train's ``storage_filesystem``).

        The endpoint is passed explicitly: pyarrow ignores ``AWS_ENDPOINT_URL``.
        """
        if self.config is None:
            raise StorageError("no S3 endpoint configured: cannot build a pyarrow S3 filesystem")
        from pyarrow import fs

        cfg = self.config
        options = dict(
            access_key=cfg.access_key,
            secret_key=cfg.secret_key,
            endpoint_override=cfg.host,
            scheme="https" if cfg.secure else "http",
            region=cfg.region or "us-east-1",
            **({"tls_ca_file_path": cfg.ca_file} if cfg.ca_file else {}),
            allow_bucket_creation=False,
            allow_bucket_deletion=False,
        )
        if not self.outage_wait_s:
            return fs.S3FileSystem(**options)
        from botfleet.pyarrow_s3 import RetryingS3FileSystem

        # Ray Train's checkpoint uploads wait out a store outage as the other calls do: the
        # default strategy doubles its wait from 25 ms (14 tries: about 7 minutes in all)
        # and, unlike the standard one, has no retry quota that many failing uploads use up.
        return RetryingS3FileSystem(14, **options)

    def pyarrow_target(self, uri: str) -> tuple[Any, str]:
        """``(filesystem, path)`` for pyarrow/Ray: ``s3://b/k`` -> (S3FileSystem, "b/k"),
        ``file:///p`` -> (LocalFileSystem, "/p")."""
        loc = parse_uri(uri)
        if loc.scheme == "file":
            from pyarrow import fs

            return fs.LocalFileSystem(), loc.path
        loc = self._s3(uri, loc)
        return self.pyarrow_filesystem(), f"{loc.bucket}/{loc.key}".rstrip("/")

    # ----------------------------------------------------------------- helpers

    @staticmethod
    def _require_key(uri: str, loc: Location) -> None:
        if not loc.key or loc.key.endswith("/"):
            raise StorageError(f"{uri}: needs an object key, not a bucket or folder")


def _guess_type(name: str, default: str = "application/octet-stream") -> str:
    if name.endswith((".md", ".markdown")):
        return "text/markdown"
    if name.endswith((".jsonl", ".ndjson")):
        return "application/x-ndjson"
    return mimetypes.guess_type(name)[0] or default


def _file_version(info: os.stat_result) -> str:
    return f"size {info.st_size} mtime {info.st_mtime_ns}"


def _object_version(obj) -> str:
    """An S3 object's version from its stat or listing entry: the ETag, else size and time."""
    return f"etag {obj.etag}" if obj.etag else f"size {obj.size} mtime {obj.last_modified}"


def _walk_files(root: str) -> list[str]:
    """All regular files under ``root`` (absolute paths); [] if it does not exist."""
    found = []
    for dirpath, _dirs, files in os.walk(root):
        found.extend(os.path.join(dirpath, f) for f in files if not _is_temp(f))
    return found


def _is_temp(name: str) -> bool:
    return name.startswith(".") and name.endswith(".botfleet-tmp")


def _atomic_write(uri: str, path: str, write) -> None:
    """Write ``path`` through a temporary file in the same folder and rename it into place."""
    if path.endswith("/"):
        raise StorageError(f"{uri}: needs a file path, not a folder")
    parent = os.path.dirname(path)
    tmp = os.path.join(parent, f".{os.path.basename(path)}.{uuid.uuid4().hex[:12]}.botfleet-tmp")
    try:
        os.makedirs(parent, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise StorageError(f"{uri}: cannot write: {exc.strerror or exc}") from exc
