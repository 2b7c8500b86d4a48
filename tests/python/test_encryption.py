"""Secrets at rest: with SWITCHYARD_ENCRYPTION_KEY set, endpoint secrets and
source configs and tokens are stored encrypted (read back from the database
itself here), deliveries and ingest still work, a wrong or missing key stops
the server at start, and `switchyard reseal-secrets` moves everything to a
new key, on SQLite and PostgreSQL."""

import base64
import hashlib
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook
from svix.api import ApplicationIn, EndpointIn, EndpointSecretRotateIn, MessageIn

from conftest import POSTGRES_URL, Server, binary, drop_database, scratch_database
from test_ingest import STRIPE_SECRET, admin, post_stripe, stripe_event

ENDPOINT_SECRET = "whsec_" + base64.b64encode(b"endpoint-secret-kept-at-rest!!").decode()
ROTATED_SECRET = "whsec_" + base64.b64encode(b"the-next-endpoint-secret-here").decode()
HEADER_SECRET = "hdr-credential-7f3a9c"


def new_key():
    out = subprocess.run([binary(), "generate-encryption-key"], capture_output=True, text=True, check=True)
    key = out.stdout.strip()
    assert len(base64.b64decode(key)) == 32
    return key


def key_id(key):
    return hashlib.sha256(base64.b64decode(key)).hexdigest()[:8]


class Backend:
    """One database, started and stopped under different keys."""

    def __init__(self, kind):
        self.kind = kind
        self.data_dir = None
        self.db_name = None
        self.env = {}
        if kind == "sqlite":
            import tempfile

            self.data_dir = tempfile.mkdtemp(prefix="switchyard-enc-")
        else:
            self.db_name, url = scratch_database()
            self.env = {"SWITCHYARD_DATABASE_URL": url}
            self.url = url

    def start(self, keys):
        env = dict(self.env)
        env["SWITCHYARD_ENCRYPTION_KEY"] = keys
        return Server(env, data_dir=self.data_dir)

    def command(self, args, keys):
        import os

        env = dict(os.environ)
        env.update(self.env)
        env["SWITCHYARD_ENCRYPTION_KEY"] = keys
        if self.data_dir:
            env["SWITCHYARD_DATA_DIR"] = self.data_dir
        return subprocess.run([binary(), *args], env=env, capture_output=True, text=True, timeout=60)

    def rows(self, sql):
        """Every column of every row, as stored."""
        if self.kind == "sqlite":
            conn = sqlite3.connect(Path(self.data_dir) / "switchyard.db")
            try:
                return [tuple(str(v) for v in row) for row in conn.execute(sql)]
            finally:
                conn.close()
        out = subprocess.run(
            ["psql", self.url, "-qAt", "-F", "\x1f", "-c", sql], capture_output=True, text=True, check=True
        )
        return [tuple(line.split("\x1f")) for line in out.stdout.splitlines() if line]

    def close(self):
        if self.db_name:
            drop_database(self.db_name)


@pytest.fixture(params=["sqlite", "postgres"])
def backend(request):
    b = Backend(request.param)
    yield b
    b.close()


def send_and_verify(svix, receiver, app_id, path, secret):
    msg = svix.message.create(app_id, MessageIn(event_type="invoice.paid", payload={"n": time.time()}))
    got = [r for r in receiver.wait(1, path=path, timeout=20)]
    assert got, "the message was not delivered"
    Webhook(secret).verify(got[0]["body"], got[0]["headers"])
    assert got[0]["headers"]["webhook-id"] == msg.id


def assert_sealed(values, key, plain):
    for value in values:
        assert value.startswith(f"$sy1${key_id(key)}$"), value[:40]
        for p in plain:
            assert p not in value


def test_secrets_are_encrypted_at_rest_and_keys_rotate(backend, receiver):
    old, new = new_key(), new_key()
    server = backend.start(old)
    try:
        svix = server.client()
        app = svix.application.create(ApplicationIn(name="sealed"))
        ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/sealed", secret=ENDPOINT_SECRET))
        send_and_verify(svix, receiver, app.id, "/sealed", ENDPOINT_SECRET)
        # A rotation keeps the old secret as retired: that column is sealed
        # too, and so is the answer kept for its idempotency key.
        with admin(server) as c:
            rotate = f"/api/v1/app/{app.id}/endpoint/{ep.id}/secret/rotate"
            for _ in range(2):
                r = c.post(rotate, json={"key": ROTATED_SECRET}, headers={"idempotency-key": "rot-1"})
                assert r.status_code < 300, r.text
            c.put(f"/api/v1/app/{app.id}/endpoint/{ep.id}/headers", json={"headers": {"X-Api-Secret": HEADER_SECRET}})
        send_and_verify(svix, receiver, app.id, "/sealed", ROTATED_SECRET)
        with admin(server) as c:
            src = c.post(
                "/ingest/api/v1/source", json={"name": "billing", "type": "stripe", "config": {"secret": STRIPE_SECRET}}
            ).json()
            c.post(f"/ingest/api/v1/source/{src['id']}/endpoint", json={"url": f"{receiver.base}/ingested"})
        ingest_url = src["ingestUrl"]
        ingest_path = ingest_url[len(server.url) :]
        token = ingest_url.rstrip("/").rsplit("/", 1)[1]
        assert post_stripe(ingest_url, stripe_event()).status_code == 200
        assert receiver.wait(1, path="/ingested", timeout=20)

        plain = [ENDPOINT_SECRET[6:], ROTATED_SECRET[6:], "whsec_", STRIPE_SECRET, token, HEADER_SECRET]
        (ep_row,) = backend.rows(f"SELECT secret, retired_secrets, headers FROM endpoints WHERE id = '{ep.id}'")
        kept = backend.rows("SELECT body FROM idempotency")
        assert kept, "the rotation's answer is kept for its idempotency key"
        for (body,) in kept:
            for p in plain:
                assert p not in body, f"an idempotency record holds {p}"
        (src_row,) = backend.rows(
            f"SELECT config, token, retired_tokens, retired_secrets FROM sources WHERE id = '{src['id']}'"
        )
        assert_sealed(ep_row + src_row, old, plain)
    finally:
        server.stop()

    # A wrong key, or none, stops the server at start, saying why.
    with pytest.raises(RuntimeError, match="does not decrypt the stored secrets"):
        backend.start(new)
    with pytest.raises(RuntimeError, match="no SWITCHYARD_ENCRYPTION_KEY is set"):
        backend.start("")
    bad = backend.command(["reseal-secrets"], new)
    assert bad.returncode != 0 and "does not decrypt" in bad.stderr, bad.stderr

    # Rotation: the new key first, the old one after it, then re-seal.
    done = backend.command(["reseal-secrets"], f"{new},{old}")
    assert done.returncode == 0, done.stderr
    assert f"re-encrypted with key {key_id(new)}" in done.stdout, done.stdout
    (ep_row,) = backend.rows(f"SELECT secret, retired_secrets, headers FROM endpoints WHERE id = '{ep.id}'")
    (src_row,) = backend.rows(
        f"SELECT config, token, retired_tokens, retired_secrets FROM sources WHERE id = '{src['id']}'"
    )
    assert_sealed(ep_row + src_row, new, plain)

    with pytest.raises(RuntimeError, match="does not decrypt the stored secrets"):
        backend.start(old)
    server = backend.start(new)
    try:
        svix = server.client()
        assert svix.endpoint.get_secret(app.id, ep.id).key == ROTATED_SECRET
        send_and_verify(svix, receiver, app.id, "/sealed", ROTATED_SECRET)
        # Each start listens on a port of its own.
        assert post_stripe(server.url + ingest_path, stripe_event()).status_code == 200
        assert receiver.wait(1, path="/ingested", timeout=20)
    finally:
        server.stop()


def test_a_key_given_later_seals_what_was_stored_plain(backend, receiver):
    server = backend.start("")
    try:
        svix = server.client()
        app = svix.application.create(ApplicationIn(name="plain first"))
        ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/later", secret=ENDPOINT_SECRET))
    finally:
        server.stop()
    ((stored,),) = backend.rows(f"SELECT secret FROM endpoints WHERE id = '{ep.id}'")
    assert stored == ENDPOINT_SECRET, "without a key, secrets are stored as before"

    key = new_key()
    server = backend.start(key)
    try:
        svix = server.client()
        # Stored plain, still read; sealed by the next change or the command.
        send_and_verify(svix, receiver, app.id, "/later", ENDPOINT_SECRET)
    finally:
        server.stop()
    done = backend.command(["reseal-secrets"], key)
    assert done.returncode == 0, done.stderr
    ((stored,),) = backend.rows(f"SELECT secret FROM endpoints WHERE id = '{ep.id}'")
    assert_sealed([stored], key, [ENDPOINT_SECRET[6:]])
    server = backend.start(key)
    try:
        send_and_verify(server.client(), receiver, app.id, "/later", ENDPOINT_SECRET)
    finally:
        server.stop()
    # A malformed key is refused before anything is opened.
    bad = backend.command(["migrate"], "not-a-key")
    assert bad.returncode != 0 and "encryption_key" in bad.stderr, bad.stderr


def test_a_key_dropped_before_resealing_stops_the_start(backend, receiver):
    old, new = new_key(), new_key()
    server = backend.start(old)
    server.stop()
    # A node with the new key first seals what it writes with the new key...
    server = backend.start(f"{new},{old}")
    try:
        svix = server.client()
        app = svix.application.create(ApplicationIn(name="dropped"))
        svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/dropped"))
    finally:
        server.stop()
    # ...so the old key alone no longer opens everything: refused at start,
    # naming the key and what it seals.
    with pytest.raises(RuntimeError, match=f"sealed with keys it lacks: .*endpoints.secret with key {key_id(new)}"):
        backend.start(old)
