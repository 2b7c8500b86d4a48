"""Endpoint credentials, black box (review of issue 13's endpoint authentication).

The first tests pin behaviour that works today (OAuth token shared and
refreshed, dropped after a 401, failures recorded; mTLS against a receiver
that requires a client certificate). The tests marked "finding" fail on the
reviewed commits and describe what should hold instead.
"""

import concurrent.futures
import datetime
import json
import ssl
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from conftest import TOKEN, QuietHTTPServer, Server

H = {"Authorization": f"Bearer {TOKEN}"}


def api(server, method, path, body=None, token=TOKEN):
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
        return c.request(method, path, json=body)


class TokenEndpoint:
    """A local OAuth 2.0 token endpoint answering `answer(n)` to the n-th request."""

    def __init__(self, answer):
        self.requests = []
        this = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                this.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                status, payload = answer(len(this.requests))
                data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/token"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self):
        self.httpd.shutdown()


def app_and_endpoint(server, url):
    app = api(server, "POST", "/api/v1/app", {"name": "auth-review"}).json()["id"]
    ep = api(server, "POST", f"/api/v1/app/{app}/endpoint", {"url": url}).json()["id"]
    return app, ep


def send(server, app):
    r = api(server, "POST", f"/api/v1/app/{app}/msg", {"eventType": "user.created", "payload": {"a": 1}})
    assert r.status_code == 202, r.text
    return r.json()["id"]


def attempts(server, app, msg):
    return api(server, "GET", f"/api/v1/app/{app}/attempt/msg/{msg}").json()["data"]


def wait_for(pred, timeout=15.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.1)
    return pred()


def oauth_body(token_url, **extra):
    return {
        "grantType": "clientCredentials",
        "authMethod": "clientSecretBasic",
        "clientId": "cid",
        "clientSecret": "client-secret-1",
        "tokenUrl": token_url,
        **extra,
    }


def test_oauth_token_is_shared_refreshed_and_dropped_after_401(server, receiver):
    issued = []

    def answer(n):
        time.sleep(0.2)
        issued.append(f"T{n}")
        return 200, {"access_token": f"T{n}", "token_type": "Bearer", "expires_in": 2}

    tokens = TokenEndpoint(answer)
    try:
        app, ep = app_and_endpoint(server, receiver.base + "/oauth")
        base = f"/api/v1/app/{app}/endpoint/{ep}"
        assert api(server, "PUT", base + "/oauth", oauth_body(tokens.url)).status_code == 204
        for _ in range(15):
            send(server, app)
        got = receiver.wait(15, path="/oauth")
        assert len(got) == 15
        assert {r["headers"]["authorization"] for r in got} == {"Bearer T1"}
        assert len(tokens.requests) == 1
        # Used for 1.8 s: the next delivery fetches another.
        time.sleep(2.0)
        send(server, app)
        assert receiver.wait(1, path="/oauth")[0]["headers"]["authorization"] == "Bearer T2"
        # A 401 drops it: the retry carries a new one.
        receiver.script("/oauth", [401])
        msg = send(server, app)
        got = receiver.wait(2, path="/oauth")
        assert [r["headers"]["authorization"] for r in got] == ["Bearer T2", "Bearer T3"]
        assert sorted(a["responseStatusCode"] for a in attempts(server, app, msg)) == [200, 401]
    finally:
        tokens.stop()


def test_a_failing_token_request_is_an_attempt_error_and_retried(server, receiver):
    tokens = TokenEndpoint(lambda n: (400, {"error": "invalid_client"}))
    try:
        app, ep = app_and_endpoint(server, receiver.base + "/oauth-fail")
        base = f"/api/v1/app/{app}/endpoint/{ep}"
        assert api(server, "PUT", base + "/oauth", oauth_body(tokens.url)).status_code == 204
        msg = send(server, app)
        got = wait_for(lambda: len(attempts(server, app, msg)) >= 3 and attempts(server, app, msg))
        assert got, "the failed token request was not retried on the schedule (1,1)"
        for a in got:
            assert a["responseStatusCode"] == 0
            assert a["response"].startswith("OAuth2 token request"), a["response"]
        assert receiver.wait(1, timeout=1, path="/oauth-fail") == []
    finally:
        tokens.stop()


def test_finding_credentials_in_the_token_url_reach_read_only_tokens(server, receiver):
    """Finding: a tokenUrl carrying credentials (user info, or a key in the
    query, as some token endpoints take) is accepted, used (the user info
    becomes `Authorization: Basic`) and copied verbatim into every failed
    attempt's response text, which a read-only or ViewBase app-portal token
    may read, while the same token gets 403 on GET …/oauth. Either refuse
    such URLs (422 naming tokenUrl) or never show them in attempts."""
    tokens = TokenEndpoint(lambda n: (401, {"error": "invalid_client"}))
    try:
        app, ep = app_and_endpoint(server, receiver.base + "/oauth-url")
        base = f"/api/v1/app/{app}/endpoint/{ep}"
        url = tokens.url.replace("http://", "http://admin:URLPASS@") + "?api_key=QUERYKEY"
        r = api(server, "PUT", base + "/oauth", oauth_body(url, authMethod="clientSecretPost"))
        if r.status_code == 422:
            assert "tokenUrl" in r.text
            return
        assert r.status_code == 204
        read_only = api(server, "POST", "/api/v1/auth/api-token", {"name": "ro", "readOnly": True, "appId": app}).json()[
            "token"
        ]
        assert api(server, "GET", base + "/oauth", token=read_only).status_code == 403
        msg = send(server, app)
        seen = wait_for(lambda: api(server, "GET", f"/api/v1/app/{app}/attempt/msg/{msg}", token=read_only).json()["data"])
        assert seen
        for a in seen:
            assert "URLPASS" not in a["response"] and "QUERYKEY" not in a["response"], a["response"]
    finally:
        tokens.stop()


def test_finding_deleted_credentials_come_back_after_a_concurrent_patch(server, receiver):
    """Finding: PATCH (and PUT) of an endpoint reads the whole row, credentials
    included, and writes it back; a DELETE …/http-auth that lands in between
    answers 204 and is then undone, and deliveries keep carrying the
    credentials the user revoked. The same race loses a PUT of credentials
    (204, then gone) and lets concurrent PUTs of http-auth and oauth both
    answer 204 while only one is kept."""
    app, ep = app_and_endpoint(server, receiver.base + "/race")
    base = f"/api/v1/app/{app}/endpoint/{ep}"
    resurrected = 0
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        for i in range(30):
            assert (
                api(server, "PUT", base + "/http-auth", {"type": "bearer", "token": "revoked-token"}).status_code == 204
            )
            deleted = pool.submit(api, server, "DELETE", base + "/http-auth")
            patched = pool.submit(api, server, "PATCH", base, {"description": f"d{i}"})
            assert deleted.result().status_code == 204
            assert patched.result().status_code == 200
            if api(server, "GET", base + "/http-auth").json()["enabled"]:
                resurrected += 1
    assert resurrected == 0, f"DELETE …/http-auth answered 204 and was undone {resurrected} times in 30"


def test_finding_a_burst_shares_one_token_even_when_it_is_short_lived(server, receiver):
    """Finding: a token whose lifetime is shorter than the token request
    (expires_in 0 or 1 with a slow token endpoint) is already "expired" when
    the deliveries that waited for it look at it, so each of them asked for
    another, one after the other: a burst of 20 made 20 token requests.

    The first token request is held until all 20 messages are accepted, so
    the deliveries made meanwhile wait for it and must share its token; how
    many arrive after it ends depends on the machine, so the bound is only
    that they are not one request each."""
    release = threading.Event()

    def answer(n):
        release.wait(20)
        return 200, {"access_token": f"Z{n}", "expires_in": 0}

    tokens = TokenEndpoint(answer)
    try:
        app, ep = app_and_endpoint(server, receiver.base + "/short")
        base = f"/api/v1/app/{app}/endpoint/{ep}"
        assert api(server, "PUT", base + "/oauth", oauth_body(tokens.url)).status_code == 204
        for _ in range(20):
            send(server, app)
        release.set()
        assert len(receiver.wait(20, timeout=30, path="/short")) == 20
        assert len(tokens.requests) < 20, f"{len(tokens.requests)} token requests for one burst"
    finally:
        tokens.stop()


def make_pki(directory):
    """A CA, a server certificate for localhost/127.0.0.1 and a client identity."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn):
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def issue(key, cn, issuer_key, issuer, ca=False, san=None, eku=None):
        b = (
            x509.CertificateBuilder()
            .subject_name(name(cn))
            .issuer_name(issuer)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san:
            b = b.add_extension(x509.SubjectAlternativeName(san), critical=False)
        if eku:
            b = b.add_extension(x509.ExtendedKeyUsage(eku), critical=False)
        return b.sign(issuer_key, hashes.SHA256())

    pem = lambda c: c.public_bytes(serialization.Encoding.PEM).decode()  # noqa: E731
    kpem = lambda k: k.private_bytes(  # noqa: E731
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = issue(ca_key, "review CA", ca_key, name("review CA"), ca=True)
    srv_key = ec.generate_private_key(ec.SECP256R1())
    srv = issue(
        srv_key,
        "localhost",
        ca_key,
        ca.subject,
        san=[x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))],
        eku=[ExtendedKeyUsageOID.SERVER_AUTH],
    )
    cli_key = ec.generate_private_key(ec.SECP256R1())
    cli = issue(cli_key, "client-1", ca_key, ca.subject, eku=[ExtendedKeyUsageOID.CLIENT_AUTH])
    other_key = ec.generate_private_key(ec.SECP256R1())
    paths = {"ca": f"{directory}/ca.pem", "srv": f"{directory}/srv.pem"}
    open(paths["ca"], "w").write(pem(ca))
    open(paths["srv"], "w").write(pem(srv) + kpem(srv_key))
    return paths, kpem(cli_key) + pem(cli), kpem(other_key) + pem(cli)


def test_mtls_against_a_receiver_that_requires_a_client_certificate():
    directory = tempfile.mkdtemp(prefix="sy-mtls-")
    paths, identity, mismatched = make_pki(directory)
    seen = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self):
            self.rfile.read(int(self.headers.get("content-length", 0)))
            seen.append(self.connection.getpeercert()["subject"])
            self.send_response(200)
            self.send_header("content-length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args):
            pass

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(paths["srv"])
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(paths["ca"])
    httpd = QuietHTTPServer(("127.0.0.1", 0), Handler)
    httpd.socket = ctx.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    server = Server({"SWITCHYARD_DELIVERY_CA_FILE": paths["ca"]})
    try:
        app, ep = app_and_endpoint(server, f"https://localhost:{httpd.server_address[1]}/hook")
        base = f"/api/v1/app/{app}/endpoint/{ep}"
        msg = send(server, app)
        first = wait_for(lambda: attempts(server, app, msg))
        assert first[0]["responseStatusCode"] == 0 and "Certificate" in first[0]["response"], first
        r = api(server, "PUT", base + "/mtls", {"identity": mismatched})
        assert r.status_code == 422 and "identity" in r.text
        assert api(server, "PUT", base + "/mtls", {"identity": identity}).status_code == 204
        view = api(server, "GET", base + "/mtls").json()
        assert view["enabled"] and "PRIVATE" not in json.dumps(view)
        msg = send(server, app)
        got = wait_for(lambda: [a for a in attempts(server, app, msg) if a["responseStatusCode"] == 200])
        assert got and seen and seen[-1] == ((("commonName", "client-1"),),)
        assert api(server, "DELETE", base + "/mtls").status_code == 204
        msg = send(server, app)
        after = wait_for(lambda: attempts(server, app, msg))
        assert after[0]["responseStatusCode"] == 0
    finally:
        server.stop()
        httpd.shutdown()
