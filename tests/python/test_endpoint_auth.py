"""Endpoint authentication end to end (issue 13): HTTP basic and bearer
credentials, OAuth2 client credentials against a real token endpoint (the
form and headers it is sent, the token cache shared by concurrent
deliveries, refresh on expiry and on a 401, failures recorded on the
attempt), mutual TLS against a receiver that demands a client certificate
of a test CA made here with `cryptography`, the extra CAs of
SWITCHYARD_DELIVERY_CA_FILE, credentials sealed at rest, and deliveries and
token requests through an HTTP CONNECT proxy (SWITCHYARD_EGRESS_PROXY) that
is asked for the address the SSRF guard judged, never the name.

Every server here is real and local: a token endpoint, receivers (plain and
TLS), and a CONNECT proxy, all threads on 127.0.0.1 with bounded waits."""

import base64
import datetime
import hashlib
import ipaddress
import json
import re
import select
import socket
import socketserver
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from svix.api import ApplicationIn, EndpointHeadersIn, EndpointIn, EndpointPatch, EndpointUpsertIn, MessageIn

from conftest import TOKEN, QuietHTTPServer, Server, drop_database, scratch_database

CLIENT_ID = "my client:1"
CLIENT_SECRET = "s3cr:et&=+/%\u00fc-oauth-7c1e"
BASIC_PASSWORD = "pa55-basic-9d2f&+ word"
BEARER_TOKEN = "bearer-credential-5a8b"
# A public address (the guard lets it through); the test proxy never goes
# there, it routes the tunnel to a local receiver instead.
PUBLIC_IP = "93.184.215.14"


# ---------------------------------------------------------------------------
# A test PKI: two CAs, a server certificate and client certificates.


def _name(cn):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _new_key():
    return ec.generate_private_key(ec.SECP256R1())


def _validity(builder):
    now = datetime.datetime.now(datetime.timezone.utc)
    return builder.not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))


def _ca(cn):
    key = _new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    )
    return key, _validity(builder).sign(key, hashes.SHA256())


def _leaf(ca_key, ca_cert, cn, server):
    key = _new_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
    )
    if server:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
    return key, _validity(builder).sign(ca_key, hashes.SHA256())


def key_pem(key):
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def cert_pem(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def fingerprint(cert):
    return hashlib.sha256(cert.public_bytes(serialization.Encoding.DER)).hexdigest()


class Pki:
    """The test CA (trusted by Switchyard through SWITCHYARD_DELIVERY_CA_FILE
    and by the TLS receiver for client certificates), its server certificate
    for localhost / 127.0.0.1, its client certificate, and a client
    certificate of another CA that the receiver must refuse."""

    def __init__(self):
        self.dir = Path(tempfile.mkdtemp(prefix="switchyard-pki-"))
        self.ca_key, self.ca_cert = _ca("Switchyard Test CA")
        self.other_ca_key, self.other_ca_cert = _ca("Somebody Else's CA")
        self.server_key, self.server_cert = _leaf(self.ca_key, self.ca_cert, "localhost", server=True)
        self.client_key, self.client_cert = _leaf(self.ca_key, self.ca_cert, "switchyard-client", server=False)
        self.client2_key, self.client2_cert = _leaf(self.ca_key, self.ca_cert, "switchyard-client-2", server=False)
        self.intruder_key, self.intruder_cert = _leaf(
            self.other_ca_key, self.other_ca_cert, "intruder", server=False
        )
        self.ca_file = self.dir / "ca.pem"
        self.ca_file.write_text(cert_pem(self.ca_cert))
        self.server_chain = self.dir / "server.pem"
        self.server_chain.write_text(cert_pem(self.server_cert) + cert_pem(self.ca_cert))
        self.server_key_file = self.dir / "server.key"
        self.server_key_file.write_text(key_pem(self.server_key))
        self.client_file = self.dir / "client.pem"
        self.client_file.write_text(cert_pem(self.client_cert))
        self.client_key_file = self.dir / "client.key"
        self.client_key_file.write_text(key_pem(self.client_key))

    def identity(self):
        """What PUT .../mtls takes: the private key, then the chain."""
        return key_pem(self.client_key) + cert_pem(self.client_cert) + cert_pem(self.ca_cert)

    def second_identity(self):
        return key_pem(self.client2_key) + cert_pem(self.client2_cert)

    def intruder_identity(self):
        return key_pem(self.intruder_key) + cert_pem(self.intruder_cert)


@pytest.fixture(scope="session")
def pki():
    return Pki()


# ---------------------------------------------------------------------------
# Recording HTTP servers: receivers and the OAuth2 token endpoint.


class Recorder:
    """An HTTP/1.1 server on 127.0.0.1 recording every request (method, path,
    lower-cased headers, body, the client certificate's CN under TLS) and
    answering with `answer(request)`. With `tls`, each connection's handshake
    runs in its own thread; refused handshakes are counted with the reason."""

    def __init__(self, tls=None):
        self.requests = []
        self.handshake_failures = []
        self.cond = threading.Condition()
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _any(self):
                length = int(self.headers.get("content-length", 0))
                body = self.rfile.read(length) if length else b""
                peer_cn = None
                if tls is not None:
                    peer = self.connection.getpeercert() or {}
                    for rdn in peer.get("subject", ()):
                        for k, v in rdn:
                            if k == "commonName":
                                peer_cn = v
                req = {
                    "method": self.command,
                    "path": self.path,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "authorizations": self.headers.get_all("authorization") or [],
                    "body": body,
                    "peer_cn": peer_cn,
                    "at": time.time(),
                }
                status, content_type, payload = recorder.answer(req)
                with recorder.cond:
                    recorder.requests.append(req)
                    recorder.cond.notify_all()
                try:
                    self.send_response(status)
                    self.send_header("content-type", content_type)
                    self.send_header("content-length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (ConnectionError, ssl.SSLError):
                    pass

            do_POST = _any
            do_GET = _any

            def log_message(self, *args):
                pass

        class TlsServer(QuietHTTPServer):
            daemon_threads = True

            def finish_request(self, request, client_address):
                request.settimeout(10)
                try:
                    conn = tls.wrap_socket(request, server_side=True)
                except (ssl.SSLError, OSError) as e:
                    with recorder.cond:
                        recorder.handshake_failures.append(str(e))
                        recorder.cond.notify_all()
                    return
                try:
                    Handler(conn, client_address, self)
                except (ConnectionError, ssl.SSLError, TimeoutError):
                    pass
                finally:
                    conn.close()

        class PlainServer(QuietHTTPServer):
            daemon_threads = True

        self.httpd = (TlsServer if tls is not None else PlainServer)(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.base = f"{'https' if tls is not None else 'http'}://127.0.0.1:{self.port}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def answer(self, req):
        return 200, "application/json", b'{"ok":true}'

    def wait(self, count, timeout=20.0, path=None):
        """Waits until `count` requests (to `path` when given) were answered;
        returns all of them (maybe fewer, at the deadline)."""
        deadline = time.time() + timeout
        with self.cond:
            while True:
                got = [r for r in self.requests if path is None or r["path"] == path]
                left = deadline - time.time()
                if len(got) >= count or left <= 0:
                    return got
                self.cond.wait(left)

    def wait_handshake_failures(self, count, timeout=20.0):
        deadline = time.time() + timeout
        with self.cond:
            while len(self.handshake_failures) < count and time.time() < deadline:
                self.cond.wait(max(0.0, deadline - time.time()))
            return list(self.handshake_failures)

    def seen(self):
        with self.cond:
            return list(self.requests)

    def stop(self):
        self.httpd.shutdown()
        self.httpd.server_close()


class AuthReceiver(Recorder):
    """A receiver that answers 401 to the Authorization values in `rejected`."""

    def __init__(self, **kw):
        self.rejected = set()
        super().__init__(**kw)

    def answer(self, req):
        if req["headers"].get("authorization") in self.rejected:
            return 401, "application/json", b'{"error":"invalid_token"}'
        return super().answer(req)


class TlsReceiver(AuthReceiver):
    """An https receiver with the test CA's certificate for localhost and
    127.0.0.1; with `require_client_cert`, only clients with a certificate
    of the test CA get through the handshake. Records the SNI names asked."""

    def __init__(self, pki, require_client_cert=True):
        self.sni = []
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(pki.server_chain), str(pki.server_key_file))
        if require_client_cert:
            ctx.verify_mode = ssl.CERT_REQUIRED
            ctx.load_verify_locations(str(pki.ca_file))

        def on_sni(sock, name, context):
            self.sni.append(name)

        ctx.sni_callback = on_sni
        super().__init__(tls=ctx)


class TokenServer(Recorder):
    """An OAuth2 token endpoint at `/token`. Answers, in order, the scripted
    steps, then `default`:
      ("token", expires_in)      200 {"access_token": "tok-<n>", ...}
      ("json", status, object)   that status with that JSON
      ("raw", status, bytes)     that status with that body
    Each answer waits `delay` seconds first (to hold a fetch in flight)."""

    def __init__(self, expires_in=3600, delay=0.0, tls=None):
        self.script = []
        self.default = ("token", expires_in)
        self.delay = delay
        self.issued = 0
        self.lock = threading.Lock()
        super().__init__(tls=tls)
        self.url = f"{self.base}/token"

    def answer(self, req):
        req["form"] = urllib.parse.parse_qs(req["body"].decode(), keep_blank_values=True)
        with self.lock:
            step = self.script.pop(0) if self.script else self.default
            if step[0] == "token":
                self.issued += 1
                token = f"tok-{self.issued}"
        if self.delay:
            # Late on purpose: deliveries made meanwhile must share this fetch.
            time.sleep(self.delay)
        if step[0] == "token":
            req["issued"] = token
            body = {"access_token": token, "token_type": "Bearer", "expires_in": step[1]}
            return 200, "application/json", json.dumps(body).encode()
        if step[0] == "json":
            return step[1], "application/json", json.dumps(step[2]).encode()
        return step[1], "text/html", step[2]

    def then(self, *steps):
        with self.lock:
            self.script.extend(steps)


# ---------------------------------------------------------------------------
# A CONNECT proxy.


class ConnectProxy:
    """A minimal HTTP proxy on 127.0.0.1 that only tunnels (CONNECT).
    Records each request line and Proxy-Authorization; with `refuse`, answers
    403. `reroute` maps a requested "host:port" to the local port the tunnel
    really goes to, so addresses the test cannot reach still arrive."""

    def __init__(self, refuse=False, reroute=None):
        self.refuse = refuse
        self.reroute = dict(reroute or {})
        self.requests = []
        self.connections = 0
        self.lock = threading.Lock()
        self.open = set()
        proxy = self

        class Handler(socketserver.BaseRequestHandler):
            def handle(self):
                proxy._handle(self.request)

        class Tcp(socketserver.ThreadingTCPServer):
            daemon_threads = True
            allow_reuse_address = True
            block_on_close = False

        self.server = Tcp(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, creds=""):
        return f"http://{creds + '@' if creds else ''}127.0.0.1:{self.port}"

    def connects(self):
        with self.lock:
            return [r for r in self.requests if r["method"] == "CONNECT"]

    def wait_requests(self, count, timeout=20.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            with self.lock:
                if len(self.requests) >= count:
                    break
            time.sleep(0.05)
        with self.lock:
            return list(self.requests)

    def _handle(self, sock):
        with self.lock:
            self.connections += 1
            self.open.add(sock)
        upstream = None
        try:
            sock.settimeout(10)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = sock.recv(4096)
                if not chunk or len(head) > 16384:
                    return
                head += chunk
            head, _, rest = head.partition(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            parts = lines[0].split(" ")
            headers = {}
            for line in lines[1:]:
                k, sep, v = line.partition(":")
                if sep:
                    headers[k.strip().lower()] = v.strip()
            record = {
                "line": lines[0],
                "method": parts[0],
                "target": parts[1] if len(parts) > 1 else "",
                "proxy_authorization": headers.get("proxy-authorization"),
            }
            with self.lock:
                self.requests.append(record)
            if record["method"] != "CONNECT":
                sock.sendall(b"HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            if self.refuse:
                body = b"proxy policy: tunnel refused"
                sock.sendall(
                    b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain\r\nContent-Length: "
                    + str(len(body)).encode()
                    + b"\r\nConnection: close\r\n\r\n"
                    + body
                )
                return
            target = record["target"]
            if target in self.reroute:
                host, port = "127.0.0.1", self.reroute[target]
            else:
                host, _, port = target.rpartition(":")
                host = host.strip("[]")
            try:
                upstream = socket.create_connection((host, int(port)), timeout=10)
            except (OSError, ValueError):
                sock.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
                return
            with self.lock:
                self.open.add(upstream)
            sock.sendall(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            if rest:
                upstream.sendall(rest)
            self._pipe(sock, upstream)
        except OSError:
            pass
        finally:
            for s in (sock, upstream):
                if s is not None:
                    with self.lock:
                        self.open.discard(s)
                    try:
                        s.close()
                    except OSError:
                        pass

    @staticmethod
    def _pipe(a, b, idle=30.0):
        """Copies bytes both ways until one side closes or `idle` seconds pass quietly."""
        peers = {a: b, b: a}
        while True:
            readable, _, _ = select.select([a, b], [], [], idle)
            if not readable:
                return
            for s in readable:
                try:
                    data = s.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                peers[s].sendall(data)

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
        with self.lock:
            for s in list(self.open):
                try:
                    s.close()
                except OSError:
                    pass


# ---------------------------------------------------------------------------
# Fixtures and helpers.


@contextmanager
def started(kind, env=None):
    """A Switchyard of its own on SQLite or a scratch PostgreSQL database."""
    env = dict(env or {})
    name = None
    if kind == "postgres":
        name, url = scratch_database()
        env["SWITCHYARD_DATABASE_URL"] = url
    try:
        s = Server(env)
        try:
            yield s
        finally:
            s.stop()
    finally:
        if name:
            drop_database(name)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def tls_server(request, pki):
    """A Switchyard that trusts the test CA for deliveries."""
    with started(request.param, {"SWITCHYARD_DELIVERY_CA_FILE": str(pki.ca_file)}) as s:
        yield s


@pytest.fixture
def token_server():
    t = TokenServer()
    yield t
    t.stop()


@pytest.fixture
def auth_receiver():
    r = AuthReceiver()
    yield r
    r.stop()


@pytest.fixture
def tls_receiver(pki):
    r = TlsReceiver(pki, require_client_cert=True)
    yield r
    r.stop()


def admin(server):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def new_endpoint(server, url, name="endpoint-auth"):
    svix = server.client()
    app = svix.application.create(ApplicationIn(name=name))
    ep = svix.endpoint.create(app.id, EndpointIn(url=url))
    return svix, app.id, ep.id


def route(app_id, ep_id, what):
    return f"/api/v1/app/{app_id}/endpoint/{ep_id}/{what}"


def put(server, app_id, ep_id, what, body):
    with admin(server) as c:
        return c.put(route(app_id, ep_id, what), json=body)


def get(server, app_id, ep_id, what):
    with admin(server) as c:
        r = c.get(route(app_id, ep_id, what))
    assert r.status_code == 200, r.text
    return r


def delete(server, app_id, ep_id, what):
    with admin(server) as c:
        r = c.delete(route(app_id, ep_id, what))
    assert r.status_code == 204, r.text


def put_ok(server, app_id, ep_id, what, body):
    r = put(server, app_id, ep_id, what, body)
    assert r.status_code == 204, (r.status_code, r.text)


def send(svix, app_id, n=1):
    return [
        svix.message.create(app_id, MessageIn(event_type="auth.checked", payload={"n": i, "t": time.time()})).id
        for i in range(n)
    ]


def attempts(server, app_id, ep_id):
    """The finished attempts to an endpoint, newest first."""
    with admin(server) as c:
        r = c.get(f"/api/v1/app/{app_id}/attempt/endpoint/{ep_id}", params={"limit": 100})
    assert r.status_code == 200, r.text
    return [a for a in r.json()["data"] if a["status"] in (0, 2)]


def wait_attempts(server, app_id, ep_id, count, timeout=25.0):
    deadline = time.time() + timeout
    while True:
        got = attempts(server, app_id, ep_id)
        if len(got) >= count:
            return got
        if time.time() > deadline:
            pytest.fail(f"expected {count} finished attempts, got {got}")
        time.sleep(0.1)


def oauth_config(token_url, method="clientSecretBasic", **extra):
    body = {
        "grantType": "clientCredentials",
        "authMethod": method,
        "clientId": CLIENT_ID,
        "clientSecret": CLIENT_SECRET,
        "tokenUrl": token_url,
    }
    body.update(extra)
    return body


def basic(user, password):
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def only(items):
    """The one item of a list, failing readably when there is none or more."""
    assert len(items) == 1, f"expected exactly one, got {items}"
    return items[0]


def assert_failed_without_answer(attempt, prefix=None):
    assert attempt["status"] == 2, attempt
    assert attempt["responseStatusCode"] == 0, attempt
    if prefix:
        assert attempt["response"].startswith(prefix), attempt["response"]


# ---------------------------------------------------------------------------
# HTTP basic and bearer.


def test_basic_auth_is_sent_wins_over_a_custom_header_and_is_never_shown(server, auth_receiver):
    svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/basic")
    assert get(server, app, ep, "http-auth").json() == {"enabled": False}
    svix.endpoint.set_headers(app, ep, EndpointHeadersIn(headers={"Authorization": "Custom mine", "X-Extra": "kept"}))
    put_ok(server, app, ep, "http-auth", {"type": "basic", "username": "alice", "password": BASIC_PASSWORD})

    send(svix, app)
    req = only(auth_receiver.wait(1))
    assert req["authorizations"] == [basic("alice", BASIC_PASSWORD)]
    assert req["headers"]["x-extra"] == "kept"

    shown = get(server, app, ep, "http-auth")
    assert shown.json() == {"enabled": True, "config": {"type": "basic", "username": "alice"}}
    with admin(server) as c:
        for path in (route(app, ep, "http-auth"), f"/api/v1/app/{app}/endpoint/{ep}", route(app, ep, "headers")):
            text = c.get(path).text
            assert BASIC_PASSWORD not in text and basic("alice", BASIC_PASSWORD)[6:] not in text, path

    # Gone: the endpoint's own Authorization header is what is sent again.
    delete(server, app, ep, "http-auth")
    assert get(server, app, ep, "http-auth").json() == {"enabled": False}
    send(svix, app)
    reqs = auth_receiver.wait(2)
    assert len(reqs) == 2
    assert reqs[1]["headers"]["authorization"] == "Custom mine"


def test_bearer_auth_is_sent_until_deleted_and_never_shown(server, auth_receiver):
    svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/bearer")
    put_ok(server, app, ep, "http-auth", {"type": "bearer", "token": BEARER_TOKEN})
    send(svix, app)
    req = only(auth_receiver.wait(1))
    assert req["headers"]["authorization"] == f"Bearer {BEARER_TOKEN}"

    shown = get(server, app, ep, "http-auth")
    assert shown.json() == {"enabled": True, "config": {"type": "bearer"}}
    with admin(server) as c:
        assert BEARER_TOKEN not in c.get(f"/api/v1/app/{app}/endpoint/{ep}").text

    # Replaced by basic: the new one is sent.
    put_ok(server, app, ep, "http-auth", {"type": "basic", "username": "bob", "password": "other"})
    send(svix, app)
    reqs = auth_receiver.wait(2)
    assert reqs[1]["headers"]["authorization"] == basic("bob", "other")

    delete(server, app, ep, "http-auth")
    send(svix, app)
    reqs = auth_receiver.wait(3)
    assert len(reqs) == 3
    assert "authorization" not in reqs[2]["headers"]


def test_http_auth_and_oauth_exclude_each_other(server, token_server, auth_receiver):
    svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/both")
    put_ok(server, app, ep, "http-auth", {"type": "bearer", "token": BEARER_TOKEN})
    r = put(server, app, ep, "oauth", oauth_config(token_server.url))
    assert r.status_code == 409, r.text
    assert re.search(r"http[-_ ]?auth", r.text, re.I), r.text
    assert get(server, app, ep, "oauth").json() == {"enabled": False}

    delete(server, app, ep, "http-auth")
    put_ok(server, app, ep, "oauth", oauth_config(token_server.url))
    r = put(server, app, ep, "http-auth", {"type": "bearer", "token": BEARER_TOKEN})
    assert r.status_code == 409, r.text
    assert "oauth" in r.text.lower(), r.text
    assert get(server, app, ep, "http-auth").json() == {"enabled": False}

    # The OAuth token is what is sent.
    send(svix, app)
    req = only(auth_receiver.wait(1))
    assert req["headers"]["authorization"] == "Bearer tok-1"


def race(*calls):
    """Runs the calls at once (released together by a barrier); their results."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, call):
        barrier.wait(timeout=10)
        results[i] = call()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    return results


def test_concurrent_http_auth_and_oauth_puts_never_both_succeed(server, token_server):
    """Each PUT answered 204 is stored: of two racing PUTs that exclude each
    other, one gets 204 and is kept, the other 409."""
    svix = server.client()
    app = svix.application.create(ApplicationIn(name="racing puts")).id
    outcomes = []
    with admin(server) as a, admin(server) as b:
        for _ in range(20):
            ep = svix.endpoint.create(app, EndpointIn(url="http://127.0.0.1:9/never")).id
            http_status, oauth_status = (
                r.status_code
                for r in race(
                    lambda: a.put(route(app, ep, "http-auth"), json={"type": "bearer", "token": BEARER_TOKEN}),
                    lambda: b.put(route(app, ep, "oauth"), json=oauth_config(token_server.url)),
                )
            )
            stored = (
                get(server, app, ep, "http-auth").json()["enabled"],
                get(server, app, ep, "oauth").json()["enabled"],
            )
            outcomes.append(((http_status, oauth_status), stored))
    wrong = [o for o in outcomes if o not in (((204, 409), (True, False)), ((409, 204), (False, True)))]
    assert not wrong, f"{len(wrong)} of {len(outcomes)} races: (statuses, stored) = {wrong}"


def test_credentials_survive_concurrent_endpoint_changes(server):
    """A credentials PUT answered 204 is not undone by an endpoint PATCH
    that ran at the same time (nor the PATCH by it)."""
    svix = server.client()
    app = svix.application.create(ApplicationIn(name="racing patch")).id
    lost = []
    with admin(server) as a, admin(server) as b:
        for i in range(20):
            ep = svix.endpoint.create(app, EndpointIn(url="http://127.0.0.1:9/never")).id
            put_r, patch_r = race(
                lambda: a.put(route(app, ep, "http-auth"), json={"type": "bearer", "token": BEARER_TOKEN}),
                lambda: b.patch(f"/api/v1/app/{app}/endpoint/{ep}", json={"description": f"d{i}"}),
            )
            assert put_r.status_code == 204 and patch_r.status_code == 200, (put_r.text, patch_r.text)
            auth = get(server, app, ep, "http-auth").json()["enabled"]
            description = a.get(f"/api/v1/app/{app}/endpoint/{ep}").json()["description"]
            if not auth or description != f"d{i}":
                lost.append({"auth kept": auth, "description": description})
    assert not lost, f"{len(lost)} of 20 races lost an update: {lost}"


def test_endpoint_updates_keep_the_credentials(server, pki, auth_receiver):
    svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/before")
    put_ok(server, app, ep, "http-auth", {"type": "bearer", "token": BEARER_TOKEN})
    put_ok(server, app, ep, "mtls", {"identity": pki.identity()})
    svix.endpoint.upsert(app, ep, EndpointUpsertIn(url=f"{auth_receiver.base}/after", description="moved"))
    svix.endpoint.patch(app, ep, EndpointPatch(description="patched"))
    assert get(server, app, ep, "http-auth").json() == {"enabled": True, "config": {"type": "bearer"}}
    assert get(server, app, ep, "mtls").json()["config"]["certificateSha256"].lower() == fingerprint(pki.client_cert)
    send(svix, app)
    req = only(auth_receiver.wait(1))
    assert req["path"] == "/after"
    assert req["authorizations"] == [f"Bearer {BEARER_TOKEN}"]


def test_auth_routes_of_an_unknown_endpoint_are_404(server):
    svix = server.client()
    app = svix.application.create(ApplicationIn(name="no endpoint"))
    ep = svix.endpoint.create(app.id, EndpointIn(url="http://127.0.0.1:9/never"))
    with admin(server) as c:
        for what in ("http-auth", "oauth", "mtls"):
            r = c.get(route(app.id, ep.id, what))
            assert r.status_code == 200 and r.json() == {"enabled": False}, (what, r.status_code, r.text)
            r = c.get(route(app.id, "ep_2fNq5TvGmDOIYOvCn3QpUJyFe1A", what))
            assert r.status_code == 404, (what, r.status_code, r.text)


# ---------------------------------------------------------------------------
# OAuth2 client credentials.


def test_oauth_client_secret_basic_sends_the_form_and_headers_and_hides_the_secret(
    server, token_server, auth_receiver
):
    svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/oauth-basic")
    assert get(server, app, ep, "oauth").json() == {"enabled": False}
    config = oauth_config(
        token_server.url,
        scopes=["read", "write"],
        extraParams={"audience": "api://hooks"},
        extraHeaders={"X-Tenant": "acme"},
    )
    put_ok(server, app, ep, "oauth", config)

    send(svix, app)
    req = only(auth_receiver.wait(1))
    assert req["headers"]["authorization"] == "Bearer tok-1"

    tok = only(token_server.seen())
    assert tok["method"] == "POST" and tok["path"] == "/token"
    assert tok["headers"]["content-type"].startswith("application/x-www-form-urlencoded")
    assert tok["form"] == {
        "grant_type": ["client_credentials"],
        "scope": ["read write"],
        "audience": ["api://hooks"],
    }
    assert tok["headers"]["x-tenant"] == "acme"
    assert len(tok["authorizations"]) == 1, tok["authorizations"]
    scheme, _, creds = tok["headers"]["authorization"].partition(" ")
    assert scheme == "Basic"
    raw = base64.b64decode(creds).decode()
    # Both halves are form-encoded first, so the id's own ':' is escaped.
    assert raw.count(":") == 1, raw
    user, _, password = raw.partition(":")
    assert urllib.parse.unquote_plus(user) == CLIENT_ID
    assert urllib.parse.unquote_plus(password) == CLIENT_SECRET

    shown = get(server, app, ep, "oauth")
    body = shown.json()
    assert body["enabled"] is True
    cfg = dict(body["config"])
    cfg["extraHeaders"] = {k.lower(): v for k, v in cfg["extraHeaders"].items()}
    assert cfg == {
        "grantType": "clientCredentials",
        "authMethod": "clientSecretBasic",
        "clientId": CLIENT_ID,
        "tokenUrl": token_server.url,
        "scopes": ["read", "write"],
        "extraParams": {"audience": "api://hooks"},
        "extraHeaders": {"x-tenant": "********"},
    }
    assert "clientSecret" not in body["config"]
    assert CLIENT_SECRET not in shown.text and urllib.parse.quote(CLIENT_SECRET) not in shown.text
    with admin(server) as c:
        assert CLIENT_SECRET not in c.get(f"/api/v1/app/{app}/endpoint/{ep}").text

    delete(server, app, ep, "oauth")
    assert get(server, app, ep, "oauth").json() == {"enabled": False}
    send(svix, app)
    reqs = auth_receiver.wait(2)
    assert len(reqs) == 2 and "authorization" not in reqs[1]["headers"]
    assert len(token_server.seen()) == 1


def test_oauth_client_secret_post_sends_the_credentials_in_the_body(server, token_server, auth_receiver):
    svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/oauth-post")
    # The token wins over a custom header of the same name.
    svix.endpoint.set_headers(app, ep, EndpointHeadersIn(headers={"Authorization": "Custom mine"}))
    put_ok(server, app, ep, "oauth", oauth_config(token_server.url, method="clientSecretPost"))
    send(svix, app)
    req = only(auth_receiver.wait(1))
    assert req["authorizations"] == ["Bearer tok-1"]
    tok = only(token_server.seen())
    assert tok["headers"]["content-type"].startswith("application/x-www-form-urlencoded")
    assert "authorization" not in tok["headers"]
    assert tok["form"] == {
        "grant_type": ["client_credentials"],
        "client_id": [CLIENT_ID],
        "client_secret": [CLIENT_SECRET],
    }
    assert get(server, app, ep, "oauth").json()["config"]["authMethod"] == "clientSecretPost"


@pytest.mark.parametrize(
    "change, field",
    [
        ({"grantType": "refreshToken"}, "grantType"),
        ({"authMethod": "clientSecretJwt"}, "authMethod"),
        ({"tokenUrl": "ftp://127.0.0.1/token"}, "tokenUrl"),
        ({"tokenUrl": "not a url"}, "tokenUrl"),
        ({"clientSecret": "x" * 100_000}, "clientSecret"),
        ({"clientId": "i" * 100_000}, "clientId"),
    ],
)
def test_oauth_configs_that_cannot_work_are_422(server, token_server, change, field):
    svix, app, ep = new_endpoint(server, "http://127.0.0.1:9/never")
    body = oauth_config(token_server.url)
    body.update(change)
    r = put(server, app, ep, "oauth", body)
    assert r.status_code == 422, (r.status_code, r.text[:300])
    assert field in r.text, r.text[:300]
    assert get(server, app, ep, "oauth").json() == {"enabled": False}


def test_oauth_tokens_are_cached_and_fetched_once_for_concurrent_deliveries(server, auth_receiver):
    token_server = TokenServer(delay=1.0)
    try:
        svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/single")
        put_ok(server, app, ep, "oauth", oauth_config(token_server.url))
        send(svix, app, n=5)
        reqs = auth_receiver.wait(5)
        assert len(reqs) == 5
        assert {r["headers"]["authorization"] for r in reqs} == {"Bearer tok-1"}
        assert len(token_server.seen()) == 1, token_server.seen()
        # Later, still cached.
        send(svix, app, n=2)
        reqs = auth_receiver.wait(7)
        assert {r["headers"]["authorization"] for r in reqs} == {"Bearer tok-1"}
        assert len(token_server.seen()) == 1
    finally:
        token_server.stop()


def test_oauth_token_is_refreshed_when_it_expires(server, auth_receiver):
    # expires_in 4 s: refreshed from 4 - min(60, 0.4) = 3.6 s on.
    token_server = TokenServer(expires_in=4)
    try:
        svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/expiring")
        put_ok(server, app, ep, "oauth", oauth_config(token_server.url))
        send(svix, app)
        assert auth_receiver.wait(1)[0]["headers"]["authorization"] == "Bearer tok-1"
        issued = token_server.seen()[0]["at"]
        # Soon after: the cached token (a margin of 60 s would refetch).
        send(svix, app)
        second = auth_receiver.wait(2)[1]
        assert second["at"] - issued < 3.0, "the second delivery came too late to judge the cache"
        assert second["headers"]["authorization"] == "Bearer tok-1"
        assert len(token_server.seen()) == 1
        # After expiry: a new token.
        time.sleep(max(0.0, issued + 4.3 - time.time()))
        send(svix, app)
        third = auth_receiver.wait(3)[2]
        assert third["headers"]["authorization"] == "Bearer tok-2"
        assert len(token_server.seen()) == 2
    finally:
        token_server.stop()


def test_a_401_from_the_receiver_drops_the_token_and_the_retry_fetches_a_new_one(
    server, token_server, auth_receiver
):
    auth_receiver.rejected.add("Bearer tok-1")
    svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/revoked")
    put_ok(server, app, ep, "oauth", oauth_config(token_server.url))
    send(svix, app)
    reqs = auth_receiver.wait(2)
    assert [r["headers"]["authorization"] for r in reqs] == ["Bearer tok-1", "Bearer tok-2"]
    done = wait_attempts(server, app, ep, 2)
    assert [a["responseStatusCode"] for a in done] == [200, 401]
    assert done[0]["status"] == 0
    assert len(token_server.seen()) == 2
    # The new token is cached.
    send(svix, app)
    assert auth_receiver.wait(3)[2]["headers"]["authorization"] == "Bearer tok-2"
    assert len(token_server.seen()) == 2


@pytest.mark.parametrize(
    "failure, reason",
    [
        (("json", 401, {"error": "invalid_client"}), "401"),
        (("json", 500, {"error": "server_error"}), "500"),
        (("raw", 200, b"<html>not json</html>"), None),
        (("json", 200, {"token_type": "Bearer", "expires_in": 3600}), "access_token"),
    ],
    ids=["invalid_client", "server_error", "bad_json", "no_access_token"],
)
def test_a_failing_token_request_fails_the_attempt_and_the_retry_succeeds(
    server, token_server, auth_receiver, failure, reason
):
    token_server.then(failure)
    svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/token-fails")
    put_ok(server, app, ep, "oauth", oauth_config(token_server.url))
    send(svix, app)
    reqs = auth_receiver.wait(1)
    assert [r["headers"]["authorization"] for r in reqs] == ["Bearer tok-1"]
    done = wait_attempts(server, app, ep, 2)
    assert len(done) == 2, done
    assert done[0]["status"] == 0 and done[0]["responseStatusCode"] == 200
    failed = done[1]
    assert_failed_without_answer(failed, "OAuth2 token request")
    if reason:
        assert reason in failed["response"], failed["response"]
    else:
        assert re.search(r"json|decod|pars", failed["response"], re.I), failed["response"]
    assert CLIENT_SECRET not in failed["response"]
    assert len(token_server.seen()) == 2


@pytest.mark.parametrize("where", ["unreachable", "ssrf_blocked"])
def test_an_unusable_token_url_fails_every_attempt(server, auth_receiver, where):
    url = f"http://127.0.0.1:{free_port()}/token" if where == "unreachable" else "http://10.255.255.1:9/token"
    svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/no-token")
    put_ok(server, app, ep, "oauth", oauth_config(url))
    send(svix, app)
    done = wait_attempts(server, app, ep, 3)
    for a in done:
        assert_failed_without_answer(a, "OAuth2 token request")
    if where == "ssrf_blocked":
        assert "SSRF" in done[0]["response"], done[0]["response"]
    assert auth_receiver.seen() == []


# ---------------------------------------------------------------------------
# Trust and mutual TLS.


def test_the_delivery_ca_file_is_trusted(tls_server, pki):
    rx = TlsReceiver(pki, require_client_cert=False)
    try:
        svix, app, ep = new_endpoint(tls_server, f"https://localhost:{rx.port}/trusted")
        send(svix, app)
        assert len(rx.wait(1)) == 1
        assert "localhost" in rx.sni
    finally:
        rx.stop()


def test_an_https_token_url_is_trusted_through_the_ca_file(tls_server, pki, auth_receiver):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(pki.server_chain), str(pki.server_key_file))
    token_server = TokenServer(tls=ctx)
    try:
        svix, app, ep = new_endpoint(tls_server, f"{auth_receiver.base}/tls-token")
        put_ok(tls_server, app, ep, "oauth", oauth_config(f"https://localhost:{token_server.port}/token"))
        send(svix, app)
        req = only(auth_receiver.wait(1))
        assert req["headers"]["authorization"] == "Bearer tok-1"
        assert len(token_server.seen()) == 1
    finally:
        token_server.stop()


def test_without_the_ca_file_the_test_ca_is_not_trusted(server, pki):
    rx = TlsReceiver(pki, require_client_cert=False)
    try:
        svix, app, ep = new_endpoint(server, f"https://localhost:{rx.port}/untrusted")
        send(svix, app)
        (a, *_) = wait_attempts(server, app, ep, 1)
        assert_failed_without_answer(a)
        assert rx.seen() == []
    finally:
        rx.stop()


def test_mtls_identity_is_presented_to_a_receiver_that_requires_it(tls_server, pki, tls_receiver):
    svix, app, ep = new_endpoint(tls_server, f"https://localhost:{tls_receiver.port}/mtls")
    assert get(tls_server, app, ep, "mtls").json() == {"enabled": False}
    # Without an identity the receiver refuses the handshake.
    send(svix, app)
    done = wait_attempts(tls_server, app, ep, 3)
    for a in done:
        assert_failed_without_answer(a)
    assert tls_receiver.wait_handshake_failures(1)
    assert tls_receiver.seen() == []

    put_ok(tls_server, app, ep, "mtls", {"identity": pki.identity()})
    send(svix, app)
    req = only(tls_receiver.wait(1))
    assert req["peer_cn"] == "switchyard-client"
    assert wait_attempts(tls_server, app, ep, 4)[0]["responseStatusCode"] == 200

    # Replaced by another identity: the next delivery presents it (not a
    # connection kept alive with the old one).
    put_ok(tls_server, app, ep, "mtls", {"identity": pki.second_identity()})
    assert get(tls_server, app, ep, "mtls").json()["config"]["certificateSha256"].lower() == fingerprint(
        pki.client2_cert
    )
    send(svix, app)
    reqs = tls_receiver.wait(2)
    assert [r["peer_cn"] for r in reqs] == ["switchyard-client", "switchyard-client-2"]
    wait_attempts(tls_server, app, ep, 5)

    delete(tls_server, app, ep, "mtls")
    failures = len(tls_receiver.handshake_failures)
    send(svix, app)
    assert len(tls_receiver.wait_handshake_failures(failures + 1)) > failures
    assert wait_attempts(tls_server, app, ep, 6)[0]["responseStatusCode"] == 0


def test_an_identity_of_another_ca_is_refused_by_the_receiver(tls_server, pki, tls_receiver):
    svix, app, ep = new_endpoint(tls_server, f"https://localhost:{tls_receiver.port}/intruder")
    put_ok(tls_server, app, ep, "mtls", {"identity": pki.intruder_identity()})
    assert get(tls_server, app, ep, "mtls").json() == {
        "enabled": True,
        "config": {"certificateSha256": fingerprint(pki.intruder_cert)},
    }
    send(svix, app)
    done = wait_attempts(tls_server, app, ep, 3)
    for a in done:
        assert_failed_without_answer(a)
    assert tls_receiver.wait_handshake_failures(1)
    assert tls_receiver.seen() == []
    # Replaced with the right one: delivered.
    put_ok(tls_server, app, ep, "mtls", {"identity": pki.identity()})
    send(svix, app)
    req = only(tls_receiver.wait(1))
    assert req["peer_cn"] == "switchyard-client"


def test_mtls_get_shows_the_leaf_fingerprint_never_the_key(server, pki):
    svix, app, ep = new_endpoint(server, "https://localhost:9/never")
    put_ok(server, app, ep, "mtls", {"identity": pki.identity()})
    shown = get(server, app, ep, "mtls")
    body = shown.json()
    assert body == {"enabled": True, "config": {"certificateSha256": body["config"]["certificateSha256"]}}
    assert body["config"]["certificateSha256"].lower() == fingerprint(pki.client_cert)
    assert re.fullmatch(r"[0-9a-fA-F]{64}", body["config"]["certificateSha256"])
    key_body = key_pem(pki.client_key).splitlines()[1]
    with admin(server) as c:
        for path in (route(app, ep, "mtls"), f"/api/v1/app/{app}/endpoint/{ep}"):
            text = c.get(path).text
            assert "PRIVATE KEY" not in text and key_body not in text, path
    delete(server, app, ep, "mtls")
    assert get(server, app, ep, "mtls").json() == {"enabled": False}


@pytest.mark.parametrize(
    "identity",
    ["garbage", "key only", "cert only", "broken cert", "no identity field"],
)
def test_an_identity_that_does_not_parse_is_422_naming_identity(server, pki, identity):
    values = {
        "garbage": "not a pem at all",
        "key only": key_pem(pki.client_key),
        "cert only": cert_pem(pki.client_cert),
        "broken cert": key_pem(pki.client_key) + "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    }
    svix, app, ep = new_endpoint(server, "https://localhost:9/never")
    body = {"identity": values[identity]} if identity in values else {}
    r = put(server, app, ep, "mtls", body)
    assert r.status_code == 422, (r.status_code, r.text)
    assert "identity" in r.text, r.text
    assert get(server, app, ep, "mtls").json() == {"enabled": False}


# ---------------------------------------------------------------------------
# Sealed at rest.


def _stored_text(backend):
    """Everything the database holds, as text (SQLite: its files, WAL included)."""
    if backend.kind == "sqlite":
        return b"".join(p.read_bytes() for p in Path(backend.data_dir).iterdir() if p.is_file()).decode("latin-1")
    out = subprocess.run(
        ["pg_dump", "--data-only", backend.url], capture_output=True, text=True, timeout=60
    )
    if out.returncode == 0:
        return out.stdout
    return "\n".join("|".join(row) for row in backend.rows("SELECT * FROM endpoints"))


@pytest.fixture(params=["sqlite", "postgres"])
def sealed_backend(request):
    from test_encryption import Backend

    b = Backend(request.param)
    yield b
    b.close()


def test_credentials_are_sealed_at_rest(sealed_backend, pki, auth_receiver, token_server):
    from test_encryption import key_id, new_key

    key = new_key()
    server = sealed_backend.start(key)
    try:
        svix, app, basic_ep = new_endpoint(server, f"{auth_receiver.base}/sealed-basic")
        put_ok(server, app, basic_ep, "http-auth", {"type": "basic", "username": "alice", "password": BASIC_PASSWORD})
        bearer_ep = svix.endpoint.create(app, EndpointIn(url=f"{auth_receiver.base}/sealed-bearer")).id
        put_ok(server, app, bearer_ep, "http-auth", {"type": "bearer", "token": BEARER_TOKEN})
        oauth_ep = svix.endpoint.create(app, EndpointIn(url=f"{auth_receiver.base}/sealed-oauth")).id
        put_ok(server, app, oauth_ep, "oauth", oauth_config(token_server.url))
        mtls_ep = svix.endpoint.create(app, EndpointIn(url="https://localhost:9/sealed-mtls")).id
        put_ok(server, app, mtls_ep, "mtls", {"identity": pki.identity()})
        send(svix, app)
        got = {r["path"]: r["headers"].get("authorization") for r in auth_receiver.wait(3)}
        assert got == {
            "/sealed-basic": basic("alice", BASIC_PASSWORD),
            "/sealed-bearer": f"Bearer {BEARER_TOKEN}",
            "/sealed-oauth": "Bearer tok-1",
        }
        # Recorded as delivered before the stop (else the restart sends again).
        for ep in (basic_ep, bearer_ep, oauth_ep):
            wait_attempts(server, app, ep, 1)
    finally:
        server.stop()

    rows = dict(sealed_backend.rows(f"SELECT id, auth FROM endpoints WHERE app_id = '{app}'"))
    for ep in (basic_ep, bearer_ep, oauth_ep, mtls_ep):
        assert rows[ep].startswith(f"$sy1${key_id(key)}$"), rows[ep][:60]
    stored = _stored_text(sealed_backend)
    key_lines = key_pem(pki.client_key).splitlines()[1:-1]
    for plain in [BASIC_PASSWORD, BEARER_TOKEN, CLIENT_SECRET, "PRIVATE KEY", *key_lines]:
        assert plain not in stored, f"{plain!r} is stored in the clear"

    def delivered_with(server, oauth_token):
        (msg,) = send(server.client(), app)
        deadline = time.time() + 20
        while True:
            got = [r for r in auth_receiver.seen() if r["headers"].get("webhook-id") == msg]
            if len(got) >= 3 or time.time() > deadline:
                break
            time.sleep(0.1)
        assert {r["path"]: r["headers"].get("authorization") for r in got} == {
            "/sealed-basic": basic("alice", BASIC_PASSWORD),
            "/sealed-bearer": f"Bearer {BEARER_TOKEN}",
            "/sealed-oauth": f"Bearer {oauth_token}",
        }

    # Read back after a restart: still sent.
    server = sealed_backend.start(key)
    try:
        delivered_with(server, "tok-2")
    finally:
        server.stop()

    # `reseal-secrets` moves the credentials to a new key too.
    new = new_key()
    done = sealed_backend.command(["reseal-secrets"], f"{new},{key}")
    assert done.returncode == 0, done.stderr
    rows = dict(sealed_backend.rows(f"SELECT id, auth FROM endpoints WHERE app_id = '{app}'"))
    for ep in (basic_ep, bearer_ep, oauth_ep, mtls_ep):
        assert rows[ep].startswith(f"$sy1${key_id(new)}$"), rows[ep][:60]
    server = sealed_backend.start(new)
    try:
        delivered_with(server, "tok-3")
        assert get(server, app, mtls_ep, "mtls").json()["config"]["certificateSha256"].lower() == fingerprint(
            pki.client_cert
        )
    finally:
        server.stop()


# ---------------------------------------------------------------------------
# The egress proxy.


@pytest.fixture
def proxy():
    p = ConnectProxy()
    yield p
    p.stop()


def proxy_env(proxy, **extra):
    env = {"SWITCHYARD_EGRESS_PROXY": proxy.url("u:p")}
    env.update(extra)
    return env


def test_http_deliveries_are_tunnelled_to_the_ip_the_guard_judged(proxy, auth_receiver):
    with started("sqlite", proxy_env(proxy)) as server:
        svix, app, ep = new_endpoint(server, f"http://localhost:{auth_receiver.port}/proxied")
        send(svix, app)
        req = only(auth_receiver.wait(1))
        assert req["headers"]["host"] == f"localhost:{auth_receiver.port}"
        assert "proxy-authorization" not in req["headers"]
    assert proxy.requests, "the proxy was not asked"
    connect = proxy.requests[0]
    assert all(r["method"] == "CONNECT" for r in proxy.requests), proxy.requests
    assert connect["line"] == f"CONNECT 127.0.0.1:{auth_receiver.port} HTTP/1.1", connect
    assert connect["proxy_authorization"] == basic("u", "p")
    assert not any("localhost" in r["line"] for r in proxy.requests)


def test_https_through_the_proxy_keeps_the_host_name_for_tls(pki, proxy):
    rx = TlsReceiver(pki, require_client_cert=False)
    try:
        env = proxy_env(proxy, SWITCHYARD_DELIVERY_CA_FILE=str(pki.ca_file))
        with started("sqlite", env) as server:
            svix, app, ep = new_endpoint(server, f"https://localhost:{rx.port}/tls-proxied")
            send(svix, app)
            assert len(rx.wait(1)) == 1
        assert rx.sni and set(rx.sni) == {"localhost"}, rx.sni
        assert [r["line"] for r in proxy.connects()][0] == f"CONNECT 127.0.0.1:{rx.port} HTTP/1.1"
    finally:
        rx.stop()


def test_the_guard_refuses_before_the_proxy_is_asked(auth_receiver):
    proxy = ConnectProxy(reroute={f"{PUBLIC_IP}:80": auth_receiver.port})
    try:
        env = proxy_env(proxy, SWITCHYARD_ALLOWED_NETWORKS="10.99.0.0/16")
        with started("sqlite", env) as server:
            svix, app, ep = new_endpoint(server, f"http://localhost:{auth_receiver.port}/guarded")
            # A control: a public address is let through, to the proxy.
            svix.endpoint.create(app, EndpointIn(url=f"http://{PUBLIC_IP}/public"))
            # A public endpoint whose token URL is refused: no token request.
            oauth_ep = svix.endpoint.create(app, EndpointIn(url=f"http://{PUBLIC_IP}/public-oauth")).id
            put_ok(server, app, oauth_ep, "oauth", oauth_config(f"http://localhost:{free_port()}/token"))
            send(svix, app)
            only(auth_receiver.wait(1, path="/public"))
            done = wait_attempts(server, app, ep, 3)
            for a in done:
                assert_failed_without_answer(a)
                assert "SSRF" in a["response"], a["response"]
            for a in wait_attempts(server, app, oauth_ep, 3):
                assert_failed_without_answer(a, "OAuth2 token request")
                assert "SSRF" in a["response"], a["response"]
        assert [r["line"] for r in proxy.requests] == [f"CONNECT {PUBLIC_IP}:80 HTTP/1.1"], proxy.requests
        assert auth_receiver.wait(1, path="/guarded", timeout=0) == []
    finally:
        proxy.stop()


def test_a_proxy_that_refuses_fails_the_attempt_naming_its_answer(auth_receiver):
    proxy = ConnectProxy(refuse=True)
    try:
        with started("sqlite", proxy_env(proxy)) as server:
            svix, app, ep = new_endpoint(server, f"http://localhost:{auth_receiver.port}/refused")
            send(svix, app)
            done = wait_attempts(server, app, ep, 3)
            for a in done:
                assert_failed_without_answer(a)
                assert "403" in a["response"], a["response"]
                assert "proxy" in a["response"].lower(), a["response"]
        assert len(proxy.connects()) >= 3, proxy.requests
        assert auth_receiver.seen() == []
    finally:
        proxy.stop()


def test_oauth_token_requests_go_through_the_proxy(proxy, auth_receiver, token_server):
    with started("sqlite", proxy_env(proxy)) as server:
        svix, app, ep = new_endpoint(server, f"http://localhost:{auth_receiver.port}/proxied-oauth")
        token_url = f"http://localhost:{token_server.port}/token"
        put_ok(server, app, ep, "oauth", oauth_config(token_url))
        send(svix, app)
        req = only(auth_receiver.wait(1))
        assert req["headers"]["authorization"] == "Bearer tok-1"
    lines = [r["line"] for r in proxy.requests]
    assert f"CONNECT 127.0.0.1:{token_server.port} HTTP/1.1" in lines, lines
    assert f"CONNECT 127.0.0.1:{auth_receiver.port} HTTP/1.1" in lines, lines
    assert all(r["proxy_authorization"] == basic("u", "p") for r in proxy.requests)
    assert len(token_server.seen()) == 1


def test_proxy_credentials_are_percent_decoded_and_absent_without_userinfo(auth_receiver):
    proxy = ConnectProxy()
    try:
        env = {"SWITCHYARD_EGRESS_PROXY": proxy.url("u%40corp:p%3Ass%20w")}
        with started("sqlite", env) as server:
            svix, app, ep = new_endpoint(server, f"http://localhost:{auth_receiver.port}/encoded")
            send(svix, app)
            only(auth_receiver.wait(1))
        assert proxy.connects(), proxy.requests
        assert proxy.connects()[0]["proxy_authorization"] == basic("u@corp", "p:ss w")
    finally:
        proxy.stop()
    proxy = ConnectProxy()
    try:
        with started("sqlite", {"SWITCHYARD_EGRESS_PROXY": proxy.url()}) as server:
            svix, app, ep = new_endpoint(server, f"http://localhost:{auth_receiver.port}/anonymous")
            send(svix, app)
            assert len(auth_receiver.wait(2)) == 2
        assert proxy.connects(), proxy.requests
        assert all(r["proxy_authorization"] is None for r in proxy.requests), proxy.requests
    finally:
        proxy.stop()


@pytest.mark.parametrize(
    "env, named",
    [
        ({"SWITCHYARD_EGRESS_PROXY": "socks5://127.0.0.1:1080"}, "egress_proxy"),
        ({"SWITCHYARD_EGRESS_PROXY": "not a url"}, "egress_proxy"),
        ({"SWITCHYARD_DELIVERY_CA_FILE": "/nonexistent/roots.pem"}, "delivery_ca_file"),
        ({"SWITCHYARD_DELIVERY_CA_FILE": "/etc/hostname"}, "delivery_ca_file"),
    ],
    ids=["socks_proxy", "proxy_not_a_url", "ca_file_missing", "ca_file_without_pem"],
)
def test_an_unusable_proxy_or_ca_file_stops_the_start(env, named):
    # Never a silent fallback to direct connections or the web roots alone.
    with pytest.raises(RuntimeError, match=named):
        Server(env).stop()


def test_mtls_through_the_proxy_presents_each_endpoints_own_identity(pki):
    proxy, rx = ConnectProxy(), TlsReceiver(pki, require_client_cert=True)
    try:
        env = {"SWITCHYARD_EGRESS_PROXY": proxy.url(), "SWITCHYARD_DELIVERY_CA_FILE": str(pki.ca_file)}
        with started("sqlite", env) as server:
            svix, app, first = new_endpoint(server, f"https://localhost:{rx.port}/first")
            put_ok(server, app, first, "mtls", {"identity": pki.identity()})
            second = svix.endpoint.create(app, EndpointIn(url=f"https://localhost:{rx.port}/second")).id
            put_ok(server, app, second, "mtls", {"identity": pki.second_identity()})
            # Same host and port, no identity: refused, whatever the others keep open.
            bare = svix.endpoint.create(app, EndpointIn(url=f"https://localhost:{rx.port}/bare")).id
            for round_ in (1, 2):
                send(svix, app)
                got = rx.wait(2 * round_)
                assert sorted((r["path"], r["peer_cn"]) for r in got) == sorted(
                    [("/first", "switchyard-client"), ("/second", "switchyard-client-2")] * round_
                )
                assert wait_attempts(server, app, bare, round_)[0]["responseStatusCode"] == 0
        assert rx.wait(5, path="/bare", timeout=0) == []
        assert all(c["line"] == f"CONNECT 127.0.0.1:{rx.port} HTTP/1.1" for c in proxy.connects())
    finally:
        proxy.stop()
        rx.stop()


def test_a_silent_proxy_or_token_endpoint_fails_the_attempt_within_the_timeout(auth_receiver):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)
    slow_tokens = TokenServer(delay=8)
    try:
        env = {
            "SWITCHYARD_EGRESS_PROXY": f"http://127.0.0.1:{silent.getsockname()[1]}",
            "SWITCHYARD_REQUEST_TIMEOUT_SECS": "2",
        }
        with started("sqlite", env) as server:
            svix, app, ep = new_endpoint(server, f"http://localhost:{auth_receiver.port}/silent")
            started_at = time.time()
            send(svix, app)
            first = wait_attempts(server, app, ep, 1, timeout=15)[-1]
            assert time.time() - started_at < 8
            # (Named either as the proxy's silence or as the attempt's
            # timeout: both run out at the same time.)
            assert_failed_without_answer(first)
            assert re.search(r"proxy|timed out", first["response"]), first["response"]
        with started("sqlite", {"SWITCHYARD_REQUEST_TIMEOUT_SECS": "2"}) as server:
            svix, app, ep = new_endpoint(server, f"{auth_receiver.base}/slow-token")
            put_ok(server, app, ep, "oauth", oauth_config(slow_tokens.url))
            started_at = time.time()
            send(svix, app)
            first = wait_attempts(server, app, ep, 1, timeout=15)[-1]
            assert time.time() - started_at < 8
            assert_failed_without_answer(first, "OAuth2 token request")
        assert auth_receiver.seen() == []
    finally:
        silent.close()
        slow_tokens.stop()


def test_operational_webhook_endpoints_take_credentials_too(server, auth_receiver):
    """Switchyard's own events go out through the same dispatcher, so an
    operational webhook endpoint can carry credentials like any other."""
    with admin(server) as c:
        r = c.post(
            "/api/v1/operational-webhook/endpoint",
            json={"url": f"{auth_receiver.base}/ops", "filterTypes": ["endpoint.created"]},
        )
        assert r.status_code == 201, r.text
        ops = r.json()["id"]
        base = f"/api/v1/operational-webhook/endpoint/{ops}/http-auth"
        r = c.put(base, json={"type": "bearer", "token": BEARER_TOKEN})
        assert r.status_code == 204, r.text
        assert c.get(base).json() == {"enabled": True, "config": {"type": "bearer"}}
    try:
        # Creating an endpoint raises endpoint.created.
        new_endpoint(server, f"{auth_receiver.base}/elsewhere", name="ops-trigger")
        req = auth_receiver.wait(1, path="/ops")[0]
        assert req["headers"]["authorization"] == f"Bearer {BEARER_TOKEN}"
    finally:
        with admin(server) as c:
            c.delete(f"/api/v1/operational-webhook/endpoint/{ops}")
