"""Fixtures that start the real switchyard binary and a real HTTP receiver."""

import os
import queue
import subprocess
import tempfile
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from svix.api import Svix, SvixOptions

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "test-admin-token"


def binary() -> str:
    path = os.environ.get("SWITCHYARD_BIN", str(ROOT / "target" / "debug" / "switchyard"))
    if not Path(path).exists():
        pytest.fail(f"switchyard binary not found at {path}; run `cargo build` first")
    return path


class Server:
    """A running `switchyard serve` on a free loopback port with its own data dir."""

    def __init__(self, env_overrides=None, data_dir=None):
        self.data_dir = data_dir or tempfile.mkdtemp(prefix="switchyard-test-")
        env = dict(os.environ)
        env.update(
            {
                "SWITCHYARD_LISTEN": "127.0.0.1:0",
                "SWITCHYARD_DATA_DIR": self.data_dir,
                "SWITCHYARD_ADMIN_TOKEN": TOKEN,
                "SWITCHYARD_ALLOWED_NETWORKS": "127.0.0.0/8",
                "SWITCHYARD_RETRY_SCHEDULE": "1,1",
                "RUST_LOG": "warn",
            }
        )
        env.update(env_overrides or {})
        self.proc = subprocess.Popen(
            [binary(), "serve"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        deadline = time.time() + 30
        self.url = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if "listening on" in line:
                self.url = line.strip().split("listening on ")[1]
                break
        if self.url is None:
            self.proc.kill()
            raise RuntimeError(f"switchyard did not start: {self.proc.stderr.read()}")
        # Keep draining stdout so the process never blocks on a full pipe.
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()
        threading.Thread(target=self.proc.stderr.read, daemon=True).start()

    def client(self) -> Svix:
        return Svix(TOKEN, SvixOptions(server_url=self.url, retry_schedule=[]))

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class QuietHTTPServer(ThreadingHTTPServer):
    """A client that hangs up (a timed-out attempt, a killed server) is part of
    the tests, not an error: no traceback in the middle of a passing run."""

    def handle_error(self, request, client_address):
        import sys

        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class Receiver:
    """Records every request; answers with scripted status codes per path (default 200)."""

    def __init__(self):
        self.requests = queue.Queue()
        self.scripts = {}
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length)
                with receiver.lock:
                    script = receiver.scripts.get(self.path, [])
                    status = script.pop(0) if script else 200
                receiver.requests.put(
                    {"path": self.path, "headers": {k.lower(): v for k, v in self.headers.items()}, "body": body}
                )
                payload = b'{"ok":true}'
                try:
                    self.send_response(status)
                    self.send_header("content-type", "application/json")
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except ConnectionError:
                    # Switchyard gave up on this attempt (a timeout under
                    # test); the request is recorded, the answer has no reader.
                    pass

            def log_message(self, *args):
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def script(self, path, statuses):
        with self.lock:
            self.scripts[path] = list(statuses)

    def wait(self, count, timeout=15.0, path=None):
        """Waits for `count` requests (to `path` when given) and returns them."""
        got = []
        deadline = time.time() + timeout
        while len(got) < count:
            left = deadline - time.time()
            if left <= 0:
                break
            try:
                item = self.requests.get(timeout=left)
            except queue.Empty:
                break
            if path is None or item["path"] == path:
                got.append(item)
        return got

    def stop(self):
        self.httpd.shutdown()


POSTGRES_URL = os.environ.get("SWITCHYARD_TEST_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")


SCRATCH_PREFIX = "switchyard_pytest_"
STALE_AFTER_SECS = 3600
_stale_dropped = False


def drop_stale_databases():
    """Drops scratch databases that earlier runs left behind (a killed run, a
    server that failed to start): those created more than an hour ago, so the
    databases of runs still going are left alone. Their names carry the time."""
    listed = subprocess.run(
        ["psql", POSTGRES_URL, "-qAtc", f"SELECT datname FROM pg_database WHERE datname LIKE '{SCRATCH_PREFIX}%'"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    now = time.time()
    for name in listed.stdout.split():
        born = name[len(SCRATCH_PREFIX):].split("_")[0]
        if not born.isdigit() or int(born) + STALE_AFTER_SECS < now:
            drop_database(name)


def scratch_database():
    """Creates an empty database on the test PostgreSQL server and returns (name, url).

    Under CI=true an unreachable server fails the test; otherwise it is skipped."""
    global _stale_dropped
    name = f"{SCRATCH_PREFIX}{int(time.time())}_{uuid.uuid4().hex[:8]}"
    try:
        if not _stale_dropped:
            drop_stale_databases()
            _stale_dropped = True
        subprocess.run(
            ["psql", POSTGRES_URL, "-v", "ON_ERROR_STOP=1", "-qc", f'CREATE DATABASE "{name}"'],
            check=True,
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (subprocess.CalledProcessError, FileNotFoundError, subprocess.TimeoutExpired) as e:
        reason = f"PostgreSQL at {POSTGRES_URL} unavailable: {getattr(e, 'stderr', '') or e}"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    base = POSTGRES_URL.split("?")[0].rsplit("/", 1)[0]
    return name, f"{base}/{name}"


def drop_database(name):
    subprocess.run(
        ["psql", POSTGRES_URL, "-qc", f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'],
        capture_output=True,
        timeout=30,
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def server(request):
    """The whole suite runs once on the embedded default and once on PostgreSQL."""
    if request.param == "sqlite":
        s = Server()
        yield s
        s.stop()
        return
    name, url = scratch_database()
    try:
        s = Server({"SWITCHYARD_DATABASE_URL": url})
        yield s
        s.stop()
    finally:
        drop_database(name)


@pytest.fixture
def svix(server):
    return server.client()


@pytest.fixture
def receiver():
    r = Receiver()
    yield r
    r.stop()
