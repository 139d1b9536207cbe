"""botfleet.storage and botfleet.embedded_s3 against a real S3 server (SeaweedFS weed mini)."""

from __future__ import annotations

import json
import os
import shlex
import socket
import subprocess
import sys
import threading

import pytest

from botfleet.embedded_s3 import STATE_FILE, EmbeddedS3, choose_ports, local_default_storage, pid_alive
from botfleet.storage import Location, NotFound, S3Config, Storage, StorageError, file_uri, join, parse_uri

# --------------------------------------------------------------------------- URIs


def test_parse_s3_and_file_uris():
    assert parse_uri("s3://bots/models/a/card.md") == Location("s3", bucket="bots", key="models/a/card.md")
    assert parse_uri("s3://bots") == Location("s3", bucket="bots", key="")
    assert parse_uri("file:///tmp/x/y.txt") == Location("file", path="/tmp/x/y.txt")
    assert parse_uri("file://localhost/tmp/a%20b") == Location("file", path="/tmp/a b")
    assert parse_uri("file:/tmp/z").path == "/tmp/z"
    assert parse_uri("s3://bots/a/b").uri == "s3://bots/a/b"
    assert file_uri("/tmp/a b") == "file:///tmp/a%20b"
    assert parse_uri(file_uri("/tmp/a b")).path == "/tmp/a b"


@pytest.mark.parametrize(
    "uri, message",
    [
        ("http://x", "http://x: unsupported URI scheme 'http' (use s3://bucket/key or file:///path)"),
        ("s3:///models/x", "s3:///models/x: missing bucket name (use s3://bucket/key)"),
        ("s3://Bad_Bucket/x", "invalid bucket name 'Bad_Bucket'"),
        ("file://relative/x", "file URIs need an absolute path"),
        ("file:relative/x", "file:relative/x: file URIs need an absolute path"),
        ("/abs/path", "/abs/path: missing URI scheme"),
        ("models/x", "missing URI scheme"),
        ("", "empty URI"),
    ],
)
def test_bad_uris(uri, message):
    with pytest.raises(StorageError) as info:
        parse_uri(uri)
    assert message in str(info.value)
    assert "\n" not in str(info.value)


def test_join():
    assert join("s3://bots", "models", "a/card.md") == "s3://bots/models/a/card.md"
    assert join("s3://bots/models/", "/a/", "b") == "s3://bots/models/a/b"
    assert join("file:///tmp/x", "y", "z.json") == "file:///tmp/x/y/z.json"
    assert join("file:///", "y") == "file:///y"
    with pytest.raises(StorageError, match=r"refusing '\.\.'"):
        join("s3://bots/a", "../b")


# --------------------------------------------------------------------------- config


def test_s3_config_from_env_and_to_env():
    assert S3Config.from_env({}) is None
    env = {
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9000/",
        "AWS_ACCESS_KEY_ID": "ak",
        "AWS_SECRET_ACCESS_KEY": "sk",
    }
    cfg = S3Config.from_env(env)
    assert (cfg.endpoint, cfg.host, cfg.secure, cfg.region) == ("http://127.0.0.1:9000", "127.0.0.1:9000", False, None)
    assert "sk" not in repr(cfg)
    env["BOTFLEET_S3_ENDPOINT"] = "https://minio.example:443"
    env["AWS_REGION"] = "eu-west-1"
    cfg = S3Config.from_env(env)
    assert cfg.secure and cfg.endpoint == "https://minio.example:443"
    out = cfg.to_env()
    assert out["BOTFLEET_S3_ENDPOINT"] == out["AWS_ENDPOINT_URL"] == "https://minio.example:443"
    assert (out["AWS_ACCESS_KEY_ID"], out["AWS_SECRET_ACCESS_KEY"], out["AWS_REGION"]) == ("ak", "sk", "eu-west-1")
    assert S3Config.from_env(out).endpoint == cfg.endpoint
    with pytest.raises(StorageError, match="AWS_ACCESS_KEY_ID"):
        S3Config.from_env({"BOTFLEET_S3_ENDPOINT": "http://127.0.0.1:9000"})
    with pytest.raises(StorageError, match="http:// or https://"):
        S3Config("127.0.0.1:9000", "ak", "sk")


def test_s3_without_config_is_a_clear_error():
    with pytest.raises(StorageError, match=r"s3://bots/x: no S3 endpoint configured"):
        Storage().read_bytes("s3://bots/x")


# --------------------------------------------------------------------------- s3 round trips


def test_bytes_text_json_round_trip(storage):
    data = bytes(range(256)) * 10
    assert storage.write_bytes(storage.uri("raw/blob.bin"), data) == storage.uri("raw/blob.bin")
    assert storage.read_bytes(storage.uri("raw/blob.bin")) == data
    storage.write_text(storage.uri("card/README.md"), "# héllo ✓\n")
    assert storage.read_text(storage.uri("card/README.md")) == "# héllo ✓\n"
    stat = storage.client.stat_object(storage.test_bucket, "card/README.md")
    assert stat.content_type.startswith("text/markdown")
    obj = {"name": "bot", "n": [1, 2.5, None], "ok": True, "ü": "ß"}
    storage.write_json(storage.uri("meta.json"), obj)
    assert storage.read_json(storage.uri("meta.json")) == obj
    storage.write_bytes(storage.uri("meta.json"), b"{}")  # overwrite
    assert storage.read_json(storage.uri("meta.json")) == {}
    storage.write_bytes(storage.uri("empty"), b"")
    assert storage.read_bytes(storage.uri("empty")) == b""


def test_exists(storage):
    assert not storage.exists(storage.uri("a/b.txt"))
    storage.write_text(storage.uri("a/b.txt"), "x")
    assert storage.exists(storage.uri("a/b.txt"))
    assert not storage.exists(storage.uri("a"))  # a folder is not an object


def test_upload_download_large_file_multipart(storage, tmp_path):
    src = tmp_path / "big.bin"
    data = os.urandom(1 << 20) * 70  # 70 MiB: two 64 MiB parts
    src.write_bytes(data)
    storage.upload_file(src, storage.uri("ckpt/big.bin"))
    stat = storage.client.stat_object(storage.test_bucket, "ckpt/big.bin")
    assert stat.size == len(data)
    assert stat.etag.endswith("-2")  # multipart, 64 MiB parts
    dst = tmp_path / "deep" / "down" / "big.bin"
    assert storage.download_file(storage.uri("ckpt/big.bin"), dst) == str(dst)
    assert dst.read_bytes() == data
    assert sorted(os.listdir(dst.parent)) == ["big.bin"]  # no part files left


def test_upload_download_dir(storage, tmp_path):
    src = tmp_path / "model"
    files = {"config.json": b"{}", "tokenizer/vocab.json": b"[1]", "a/b/c/weights.bin": os.urandom(1000)}
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    uploaded = storage.upload_dir(src, storage.uri("models/bot1"))
    assert uploaded == sorted(storage.uri("models/bot1", rel) for rel in files)
    dst = tmp_path / "copy"
    paths = storage.download_dir(storage.uri("models/bot1"), dst)
    assert paths == sorted(str(dst / rel) for rel in files)
    for rel, data in files.items():
        assert (dst / rel).read_bytes() == data
    with pytest.raises(NotFound, match="not found"):
        storage.download_dir(storage.uri("models/none"), tmp_path / "none")


def test_list_is_recursive_sorted_and_folder_scoped(storage):
    for key in ["runs/1/b.txt", "runs/1/a/x.txt", "runs/10/c.txt", "runs/1.txt", "other/z.txt"]:
        storage.write_text(storage.uri(key), key)
    expected = [storage.uri("runs/1/a/x.txt"), storage.uri("runs/1/b.txt")]
    assert storage.list(storage.uri("runs/1")) == expected
    assert storage.list(storage.uri("runs/1/")) == expected
    assert storage.list(storage.uri("runs")) == sorted(
        storage.uri(k) for k in ["runs/1/b.txt", "runs/1/a/x.txt", "runs/10/c.txt", "runs/1.txt"]
    )
    assert len(storage.list(storage.root)) == 5
    assert storage.list(storage.uri("nothing/here")) == []


def test_versions_of_a_folder_agree_with_each_object_version(storage, tmp_path):
    for key in ["runs/1/b.txt", "runs/1/a/x.txt", "runs/10/c.txt"]:
        storage.write_text(storage.uri(key), key)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "x.txt").write_text("x")
    for folder in (storage.uri("runs/1"), file_uri(tmp_path)):
        versions = storage.versions(folder)
        assert list(versions) == storage.list(folder)
        assert versions == {uri: storage.version(uri) for uri in versions}
    before = storage.versions(storage.uri("runs/1"))
    storage.write_text(storage.uri("runs/1/b.txt"), "changed")
    after = storage.versions(storage.uri("runs/1"))
    changed = [uri for uri in after if after[uri] != before[uri]]
    assert changed == [storage.uri("runs/1/b.txt")]
    assert storage.versions(storage.uri("nothing/here")) == {}


def test_delete_prefix(storage):
    for key in ["runs/1/a.txt", "runs/1/sub/b.txt", "runs/10/c.txt", "keep.txt"]:
        storage.write_text(storage.uri(key), key)
    assert storage.delete_prefix(storage.uri("runs/1")) == 2
    # Recursive listings are exact at once (delimiter listings may lag on SeaweedFS).
    assert storage.list(storage.uri("runs/1")) == []
    assert storage.list(storage.root) == [storage.uri("keep.txt"), storage.uri("runs/10/c.txt")]
    assert not storage.exists(storage.uri("runs/1/a.txt"))
    assert storage.delete_prefix(storage.uri("runs/1")) == 0
    with pytest.raises(StorageError, match="refusing to delete a whole bucket"):
        storage.delete_prefix(storage.root)


def test_delete_all_removes_several_objects_and_files_in_one_go(storage, tmp_path):
    for key in ("run/result.json", "run/progress.json", "run/keep.json"):
        storage.write_text(storage.uri(key), key)
    local = tmp_path / "local.txt"
    local.write_text("x")
    storage.delete_all(
        [
            storage.uri("run/result.json"),
            storage.uri("run/progress.json"),
            storage.uri("run/never.json"),
            file_uri(local),
        ]
    )
    assert storage.list(storage.uri("run")) == [storage.uri("run/keep.json")]
    assert not local.exists()


def test_missing_bucket_errors(storage, tmp_path):
    uri = "s3://no-such-bucket-here/x/y.json"
    expected = "s3://no-such-bucket-here/x/y.json: bucket 'no-such-bucket-here' does not exist"
    for call in (
        lambda: storage.read_bytes(uri),
        lambda: storage.write_text(uri, "x"),
        lambda: storage.exists(uri),
        lambda: storage.download_file(uri, tmp_path / "y.json"),
    ):
        with pytest.raises(StorageError) as info:
            call()
        assert str(info.value) == expected
    with pytest.raises(StorageError, match="bucket 'no-such-bucket-here' does not exist"):
        storage.list("s3://no-such-bucket-here/x")


def test_missing_object_errors(storage, tmp_path):
    uri = storage.uri("nope/missing.txt")
    for call in (lambda: storage.read_text(uri), lambda: storage.download_file(uri, tmp_path / "m")):
        with pytest.raises(NotFound) as info:
            call()
        assert str(info.value) == f"{uri}: not found"
    assert not (tmp_path / "m").exists()


def test_wrong_credentials_and_unreachable_endpoint(embedded_s3, storage):
    cfg = embedded_s3.config
    wrong = Storage(S3Config(cfg.endpoint, cfg.access_key, "not-the-secret"))
    with pytest.raises(StorageError, match="access denied"):
        wrong.read_bytes(storage.uri("x"))
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = Storage(S3Config(f"http://127.0.0.1:{port}", "ak", "sk"))
    with pytest.raises(StorageError) as info:
        dead.read_bytes("s3://bots/x")
    assert str(info.value) == f"s3://bots/x: cannot reach S3 endpoint http://127.0.0.1:{port}: connection refused"


def test_ensure_bucket_is_idempotent(storage):
    storage.ensure_bucket(storage.test_bucket)
    name = storage.test_bucket + "-x"
    storage.ensure_bucket(name)
    storage.ensure_bucket(name)
    assert storage.client.bucket_exists(name)
    storage.client.remove_bucket(name)


def test_pyarrow_filesystem_write_and_read(storage):
    fs, path = storage.pyarrow_target(storage.uri("arrow/data.bin"))
    assert path == f"{storage.test_bucket}/arrow/data.bin"
    with fs.open_output_stream(path) as out:
        out.write(b"written by pyarrow")
    assert storage.read_bytes(storage.uri("arrow/data.bin")) == b"written by pyarrow"
    storage.write_bytes(storage.uri("arrow/other.bin"), b"written by minio")
    with storage.pyarrow_filesystem().open_input_stream(f"{storage.test_bucket}/arrow/other.bin") as f:
        assert f.read() == b"written by minio"


class TLSProxy:
    """HTTPS in front of the plain-HTTP test server, with a certificate from a private CA.

    Bytes pass through unchanged, so S3 signatures (over the Host header the client sent)
    still verify.
    """

    def __init__(self, upstream: str, tmp_path) -> None:
        import ssl

        self.upstream = upstream.removeprefix("http://").split(":")
        self.ca_file = tmp_path / "ca.crt"
        key_file, cert_file = tmp_path / "server.key", tmp_path / "server.crt"
        subprocess.run(
            [
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=botfleet test CA",
                "-addext",
                "subjectAltName=IP:127.0.0.1",
                "-keyout",
                str(key_file),
                "-out",
                str(cert_file),
            ],
            check=True,
            capture_output=True,
        )
        self.ca_file.write_bytes(cert_file.read_bytes())  # self-signed: it is its own CA
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert_file, key_file)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"https://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self.listener.accept()
            except OSError:
                return  # closed
            threading.Thread(target=self._relay, args=(raw,), daemon=True).start()

    def _relay(self, raw: socket.socket) -> None:
        import ssl

        try:
            client = self.context.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()  # a client that does not trust the CA hangs up in the handshake
            return
        server = socket.create_connection((self.upstream[0], int(self.upstream[1])))

        def pump(src, dst):
            try:
                while data := src.recv(65536):
                    dst.sendall(data)
            except OSError:
                pass
            finally:
                for sock in (src, dst):
                    try:
                        sock.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass

        threading.Thread(target=pump, args=(server, client), daemon=True).start()
        pump(client, server)

    def close(self) -> None:
        self.listener.close()


def test_a_private_ca_for_the_store_only(storage, tmp_path):
    """BOTFLEET_S3_CA_FILE lets both S3 clients (minio, pyarrow) trust a private CA."""
    proxy = TLSProxy(storage.config.endpoint, tmp_path)
    try:
        env = {
            **storage.config.to_env(),
            "BOTFLEET_S3_ENDPOINT": proxy.endpoint,
            "BOTFLEET_S3_CA_FILE": str(proxy.ca_file),
        }
        trusting = Storage.from_env(env)
        assert trusting.config.ca_file == str(proxy.ca_file) and trusting.config.to_env()["BOTFLEET_S3_CA_FILE"] == str(
            proxy.ca_file
        )
        trusting.write_text(storage.uri("tls/a.txt"), "over https")
        assert storage.read_text(storage.uri("tls/a.txt")) == "over https"
        with trusting.pyarrow_filesystem().open_input_stream(f"{storage.test_bucket}/tls/a.txt") as f:
            assert f.read() == b"over https"
        # Without it the same endpoint is refused: the CA really is what made it work.
        env.pop("BOTFLEET_S3_CA_FILE")
        with pytest.raises(StorageError, match="(?i)certificate"):
            Storage.from_env(env).read_text(storage.uri("tls/a.txt"))
    finally:
        proxy.close()


# --------------------------------------------------------------------------- file://


def test_file_round_trips(tmp_path):
    st = Storage()
    root = file_uri(tmp_path)
    st.write_bytes(join(root, "a/b/c.bin"), b"\x00\x01")  # parents created
    assert st.read_bytes(join(root, "a/b/c.bin")) == b"\x00\x01"
    st.write_text(join(root, "t.txt"), "héllo")
    assert st.read_text(join(root, "t.txt")) == "héllo"
    st.write_json(join(root, "j.json"), {"a": [1]})
    assert st.read_json(join(root, "j.json")) == {"a": [1]}
    assert st.exists(join(root, "t.txt")) and not st.exists(join(root, "nope"))
    assert st.list(root) == sorted(join(root, p) for p in ["a/b/c.bin", "t.txt", "j.json"])
    assert sorted(os.listdir(tmp_path)) == ["a", "j.json", "t.txt"]  # no temp files left
    with pytest.raises(NotFound, match=r": not found$"):
        st.read_bytes(join(root, "nope"))
    assert oct(os.stat(tmp_path / "t.txt").st_mode & 0o777) != oct(0o600)  # normal mode, not mkstemp's
    src = tmp_path / "src.txt"
    src.write_text("up")
    st.upload_file(src, join(root, "up/src.txt"))
    st.download_file(join(root, "up/src.txt"), tmp_path / "down" / "x.txt")
    assert (tmp_path / "down" / "x.txt").read_text() == "up"
    st.download_dir(join(root, "a"), tmp_path / "a2")
    assert (tmp_path / "a2/b/c.bin").read_bytes() == b"\x00\x01"
    assert st.delete_prefix(join(root, "a")) == 1
    assert not (tmp_path / "a").exists()


def test_copy_between_file_and_s3(storage, tmp_path):
    (tmp_path / "d/e").mkdir(parents=True)
    (tmp_path / "d/e/f.txt").write_text("f")
    storage.upload_dir(tmp_path / "d", storage.uri("d"))
    storage.download_dir(storage.uri("d"), tmp_path / "back")
    assert (tmp_path / "back/e/f.txt").read_text() == "f"


# --------------------------------------------------------------------------- EmbeddedS3


def test_choose_ports_leaves_grpc_ports_free():
    ports = choose_ports()
    assert set(ports) == {"s3", "master", "volume", "filer", "admin"}
    all_ports = set(ports.values()) | {p + 10000 for p in ports.values()}
    assert len(all_ports) == 10 and max(all_ports) < 32768


def test_stop_really_kills_the_process(tmp_path):
    server = EmbeddedS3(tmp_path / "s3").start()
    pid, endpoint = server.pid, server.endpoint
    assert pid_alive(pid)
    assert json.loads((tmp_path / "s3" / STATE_FILE).read_text())["pid"] == pid
    Storage(server.config).ensure_bucket("probe")
    server.stop()
    assert not os.path.exists(f"/proc/{pid}")  # gone, and reaped (no zombie)
    assert not (tmp_path / "s3" / STATE_FILE).exists()
    with pytest.raises(StorageError, match="connection refused"):
        Storage(S3Config(endpoint, "a", "b")).read_bytes("s3://probe/x")
    server.stop()  # idempotent


def test_two_servers_side_by_side(embedded_s3, tmp_path):
    with EmbeddedS3(tmp_path / "other") as other:
        assert other.endpoint != embedded_s3.endpoint
        a, b = Storage(embedded_s3.config), Storage(other.config)
        b.ensure_bucket("side-by-side")
        b.write_text("s3://side-by-side/x.txt", "b")
        assert b.read_text("s3://side-by-side/x.txt") == "b"
        with pytest.raises(StorageError, match="does not exist"):
            a.read_text("s3://side-by-side/x.txt")
        with pytest.raises(StorageError, match="access denied"):  # each has its own keys
            Storage(S3Config(other.endpoint, embedded_s3.config.access_key, embedded_s3.config.secret_key)).read_text(
                "s3://side-by-side/x.txt"
            )


def test_local_default_storage_starts_once_and_reuses(tmp_path, monkeypatch):
    for var in ("BOTFLEET_S3_ENDPOINT", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(var, raising=False)
    data_dir = tmp_path / "home" / "s3"
    storage1, server1 = local_default_storage(data_dir)
    pid1 = server1.pid
    try:
        storage1.write_text("s3://bots/hello.txt", "kept")
        storage2, server2 = local_default_storage(data_dir)
        assert server2.pid == pid1  # reused, not a second server on the same files
        assert storage2.read_text("s3://bots/hello.txt") == "kept"
    finally:
        server1.stop()
    assert EmbeddedS3.find_running(data_dir) is None
    # Restarted on the same dir: the data survived, the keys stayed.
    storage3, server3 = local_default_storage(data_dir)
    pid3 = server3.pid
    try:
        assert pid3 != pid1
        assert server3.access_key == server1.access_key
        assert storage3.read_text("s3://bots/hello.txt") == "kept"
    finally:
        server3.stop()
    assert not pid_alive(pid1) and not pid_alive(pid3)


def test_local_default_storage_uses_configured_endpoint(embedded_s3, tmp_path, monkeypatch):
    for key, value in embedded_s3.config.to_env().items():
        monkeypatch.setenv(key, value)
    storage, server = local_default_storage(tmp_path / "unused")
    assert server is None
    assert storage.config.endpoint == embedded_s3.endpoint
    assert not (tmp_path / "unused").exists()


def test_store_command_starts_reports_and_stops_the_embedded_store(tmp_path):
    """`botfleet store`: the store `run` and `demo` leave running can be found and stopped."""
    env = {k: v for k, v in os.environ.items() if k not in ("BOTFLEET_S3_ENDPOINT", "AWS_ENDPOINT_URL")}
    env["BOTFLEET_HOME"] = str(tmp_path / "home")
    data_dir = tmp_path / "home" / "s3"  # $BOTFLEET_HOME/s3, as the README says

    def store(action: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [sys.executable, "-m", "botfleet.cli", "store", action],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    before = store("status")
    assert before.returncode == 1 and "not running" in before.stdout
    try:
        started = store("start")
        assert started.returncode == 0, started.stderr
        server = EmbeddedS3.find_running(data_dir)
        assert server is not None and f"pid {server.pid}" in started.stdout and server.endpoint in started.stdout
        exports = dict(shlex.split(line)[1].split("=", 1) for line in store("env").stdout.splitlines())
        assert exports["BOTFLEET_S3_ENDPOINT"] == server.endpoint
        # The exported keys really open the store.
        reached = Storage(
            S3Config(
                endpoint=exports["BOTFLEET_S3_ENDPOINT"],
                access_key=exports["AWS_ACCESS_KEY_ID"],
                secret_key=exports["AWS_SECRET_ACCESS_KEY"],
            )
        )
        reached.write_text("s3://bots/kept.txt", "still here")
        assert store("start").stdout == started.stdout  # the same server, not a second one
        stopped = store("stop")
        assert stopped.returncode == 0 and "stopped" in stopped.stdout
        assert not pid_alive(server.pid) and EmbeddedS3.find_running(data_dir) is None
        assert "not running" in store("stop").stdout  # stopping twice is fine
    finally:
        leftover = EmbeddedS3.find_running(data_dir)
        if leftover is not None:
            leftover.stop()
    # The data outlives the server.
    storage, server = local_default_storage(data_dir)
    try:
        assert storage.read_text("s3://bots/kept.txt") == "still here"
    finally:
        server.stop()


@pytest.mark.parametrize("suffix", ["", "/", "/folder/"])
def test_reading_a_bucket_or_a_folder_is_a_clear_error(storage, suffix):
    bucket = storage.root.split("/")[2]
    for read in (storage.read_bytes, storage.exists):
        with pytest.raises(StorageError, match="needs an object key"):
            read(f"s3://{bucket}{suffix}")
