"""Scoped tokens: app-portal sessions through the official Svix SDK's
`authentication` API, API tokens, and the token-scope matrix: every route of
the generated OpenAPI document (so a new route cannot be missed) tried with
a token of another application, read-only tokens, an expired and a revoked
token: 401/403/404, never another application's data, never a change."""

import re
import time
import uuid

import httpx
import pytest
from svix.api import (
    AppPortalAccessIn,
    ApplicationIn,
    ApplicationTokenExpireIn,
    EndpointIn,
    EventTypeIn,
    MessageIn,
    Svix,
    SvixOptions,
)
from svix.exceptions import HttpError

from conftest import TOKEN

# Routes without a token (or with a provider's): not part of the matrix.
PUBLIC = {"/api/v1/health", "/api/v1/openapi.json", "/ingest/{token}"}


def http(server, token):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def as_token(server, token):
    return Svix(token, SvixOptions(server_url=server.url, retry_schedule=[]))


def api_token(server, **body):
    with http(server, TOKEN) as c:
        r = c.post("/api/v1/auth/api-token", json={"name": "t", **body})
    assert r.status_code == 201, r.text
    return r.json()


@pytest.fixture(scope="module")
def world(server):
    """Two applications, each with an endpoint, an event type, a message and
    an attempt; a source; tokens of every kind."""
    svix = server.client()
    name = f"scope.{uuid.uuid4().hex[:8]}"
    svix.event_type.create(EventTypeIn(name=name, description="d"))
    apps = {}
    for label in ("a", "b"):
        app = svix.application.create(ApplicationIn(name=label, uid=f"{label}-{uuid.uuid4().hex[:8]}"))
        # Unreachable on purpose (a documentation address): the message gets
        # an attempt without a receiver.
        ep = svix.endpoint.create(app.id, EndpointIn(url="https://192.0.2.1/hook"))
        msg = svix.message.create(app.id, MessageIn(event_type=name, payload={"owner": label}))
        apps[label] = {"app": app, "ep": ep, "msg": msg}
    with http(server, TOKEN) as c:
        deadline = time.time() + 20
        while time.time() < deadline:
            attempts = c.get(f"/api/v1/app/{apps['a']['app'].id}/attempt/msg/{apps['a']['msg'].id}").json()["data"]
            if attempts:
                break
            time.sleep(0.2)
        assert attempts, "no attempt recorded"
        src = c.post("/ingest/api/v1/source", json={"name": "s", "type": "none"}).json()
    a_token = api_token(server, name="a token")
    return {
        "svix": svix,
        "event_type": name,
        "a": apps["a"],
        "b": apps["b"],
        "attempt_id": attempts[0]["id"],
        "source_id": src["id"],
        "token_id": a_token["id"],
    }


def routes(server):
    with httpx.Client(base_url=server.url, timeout=10) as c:
        doc = c.get("/api/v1/openapi.json").json()
    for path, ops in doc["paths"].items():
        if path in PUBLIC:
            continue
        for method in ops:
            if method in ("get", "post", "put", "patch", "delete"):
                yield method.upper(), path


def concrete(path, world):
    """A route's path with the ids of application A's things."""
    a = world["a"]
    values = {
        "app_id": a["app"].id,
        "endpoint_id": a["ep"].id,
        "msg_id": a["msg"].id,
        "attempt_id": world["attempt_id"],
        "event_type_name": world["event_type"],
        "source_id": world["source_id"],
        "token_id": world["token_id"],
    }

    def fill(m):
        key = m.group(1)
        assert key in values, f"the matrix does not know the parameter {{{key}}} of {path}: add it"
        return values[key]

    return re.sub(r"\{([a-z_]+)\}", fill, path)


def try_all(server, world, token, skip=()):
    """Every route with `token`: {(method, path): (status, body)}."""
    seen = {}
    with http(server, token) as c:
        for method, path in routes(server):
            if (method, path) in skip:
                continue
            try:
                r = c.request(method, concrete(path, world), json=None if method in ("GET", "DELETE") else {})
            except httpx.TransportError as e:
                raise AssertionError(f"{method} {path}: {e}") from e
            seen[(method, path)] = (r.status_code, r.text)
    assert len(seen) > 60, "the OpenAPI document lists the routes"
    return seen


def assert_never_data_of_a(seen, world, allowed=()):
    a = world["a"]
    secrets = [a["app"].id, a["ep"].id, a["msg"].id]
    for (method, path), (status, body) in seen.items():
        if (method, path) in allowed:
            continue
        assert status in (401, 403, 404), f"{method} {path}: {status} {body[:200]}"
        for s in secrets:
            assert s not in body, f"{method} {path} leaked {s}"


# The catalogue and the caller's own session are open to every valid token.
OPEN_TO_ALL = {
    ("GET", "/api/v1/event-type"),
    ("GET", "/api/v1/event-type/{event_type_name}"),
    ("GET", "/api/v1/auth/whoami"),
}
LOGOUT = ("POST", "/api/v1/auth/logout")


def test_tokens_of_another_application_see_nothing_of_it(server, world):
    b = world["b"]
    portal = world["svix"].authentication.app_portal_access(b["app"].id, AppPortalAccessIn())
    assert portal.token.startswith("appsk_") and portal.url
    b_api = api_token(server, appId=b["app"].uid)
    for token in (portal.token, b_api["token"]):
        seen = try_all(server, world, token, skip={LOGOUT})
        assert_never_data_of_a(seen, world, allowed=OPEN_TO_ALL)
        # The same token reaches its own application.
        with http(server, token) as c:
            r = c.get(f"/api/v1/app/{b['app'].uid}/endpoint")
            assert r.status_code == 200 and b["ep"].id in r.text, r.text


def test_read_only_tokens_change_nothing_and_show_no_secret(server, world):
    a = world["a"]
    org_ro = api_token(server, readOnly=True)["token"]
    app_ro = api_token(server, readOnly=True, appId=a["app"].id)["token"]
    view_base = world["svix"].authentication.app_portal_access(
        a["app"].id, AppPortalAccessIn(capabilities=["ViewBase"])
    ).token
    legacy_ro = world["svix"].authentication.app_portal_access(a["app"].id, AppPortalAccessIn(read_only=True)).token
    for token in (org_ro, app_ro, view_base, legacy_ro):
        seen = try_all(server, world, token, skip={LOGOUT})
        for (method, path), (status, body) in seen.items():
            if method != "GET" or path.endswith("/secret") or path.endswith("/headers") or path in (
                "/ingest/api/v1/source",
                "/ingest/api/v1/source/{source_id}",
            ):
                assert status in (403, 404), f"{method} {path}: {status} {body[:200]}"
        # Reading its application works.
        with http(server, token) as c:
            r = c.get(f"/api/v1/app/{a['app'].id}/msg")
            assert r.status_code == 200 and a["msg"].id in r.text, r.text


def test_expired_revoked_and_logged_out_tokens_are_refused_everywhere(server, world):
    a = world["a"]
    short = api_token(server, expiry=1)
    revoked = api_token(server)
    with http(server, TOKEN) as c:
        assert c.post(f"/api/v1/auth/api-token/{revoked['id']}/expire", json={}).status_code == 204
        listed = c.get("/api/v1/auth/api-token?limit=250").json()["data"]
    mine = next(t for t in listed if t["id"] == revoked["id"])
    assert "token" not in mine and revoked["token"] not in str(listed)
    assert mine["censoredToken"].endswith("…") and mine["expiresAt"]
    session = world["svix"].authentication.app_portal_access(a["app"].id, AppPortalAccessIn()).token
    # The official SDK's logout ends the session of the token it holds.
    as_token(server, session).authentication.logout()
    time.sleep(1.2)
    for token in (short["token"], revoked["token"], session, "syk_" + "x" * 43, "appsk_unknown"):
        seen = try_all(server, world, token)
        for (method, path), (status, body) in seen.items():
            assert status == 401, f"{method} {path}: {status} {body[:200]}"


def test_app_portal_sessions_through_the_sdk(server, world, receiver):
    svix = world["svix"]
    # Creating the application with the session when the uid is new.
    uid = f"portal-{uuid.uuid4().hex[:8]}"
    out = svix.authentication.app_portal_access(
        uid,
        AppPortalAccessIn(
            application=ApplicationIn(name="made by the portal call"),
            capabilities=["ViewBase", "ManageEndpoint"],
            session_id="user_1",
            expiry=3600,
        ),
    )
    app = svix.application.get(uid)
    assert app.name == "made by the portal call"
    assert out.url.endswith(out.token) and app.id in out.url
    portal = as_token(server, out.token)
    ep = portal.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/portal"))
    assert [e.id for e in portal.endpoint.list(uid).data] == [ep.id]
    with pytest.raises(HttpError) as e:
        portal.application.list()
    assert e.value.status_code == 403
    with pytest.raises(HttpError) as e:
        portal.message.create(app.id, MessageIn(event_type="x.y", payload={}))
    assert e.value.status_code == 403
    with http(server, out.token) as c:
        who = c.get("/api/v1/auth/whoami").json()
    assert who["appId"] == app.id and who["sessionId"] == "user_1" and who["kind"] == "app-portal"

    # Bad requests name the field.
    with http(server, TOKEN) as c:
        for body, field in (
            ({"expiry": 60}, "expiry"),
            ({"capabilities": ["Everything"]}, "capabilities"),
            ({"sessionId": "no spaces"}, "sessionId"),
            ({"readOnly": True, "capabilities": ["ManageEndpoint"]}, "readOnly"),
            ({"capabilities": []}, "capabilities"),
        ):
            r = c.post(f"/api/v1/auth/app-portal-access/{app.id}", json=body)
            assert r.status_code == 422 and r.json()["detail"][0]["loc"] == ["body", field], r.text
        assert c.post("/api/v1/auth/app-portal-access/no-such-app", json={}).status_code == 404

    # expire-all, by session: this session ends, another stays.
    other = svix.authentication.app_portal_access(uid, AppPortalAccessIn(session_id="user_2")).token
    svix.authentication.expire_all(uid, ApplicationTokenExpireIn(session_ids=["user_1"]))
    with http(server, out.token) as c:
        assert c.get(f"/api/v1/app/{uid}").status_code == 401
    with http(server, other) as c:
        assert c.get(f"/api/v1/app/{uid}").status_code == 200


def test_an_application_token_publishes_to_its_application_only(server, world, receiver):
    svix = world["svix"]
    app = svix.application.create(ApplicationIn(name="publisher"))
    svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/published"))
    token = api_token(server, appId=app.id)["token"]
    publisher = as_token(server, token)
    publisher.message.create(app.id, MessageIn(event_type="order.paid", payload={"n": 1}))
    assert receiver.wait(1, path="/published", timeout=20)
    with pytest.raises(HttpError) as e:
        publisher.message.create(world["b"]["app"].id, MessageIn(event_type="order.paid", payload={}))
    assert e.value.status_code == 403
    # An idempotency key is its caller's: the same key and path from the
    # admin token acts anew instead of replaying this token's answer.
    with http(server, token) as c:
        first = c.post(f"/api/v1/app/{app.id}/endpoint", json={"url": f"{receiver.base}/k1", "uid": "by-token"},
                       headers={"idempotency-key": "shared-key"})
    with http(server, TOKEN) as c:
        second = c.post(f"/api/v1/app/{app.id}/endpoint", json={"url": f"{receiver.base}/k2", "uid": "by-admin"},
                        headers={"idempotency-key": "shared-key"})
    assert first.status_code == second.status_code == 201, (first.text, second.text)
    assert first.json()["uid"] == "by-token" and second.json()["uid"] == "by-admin"
    # Only the admin token manages tokens.
    with http(server, token) as c:
        assert c.get("/api/v1/auth/api-token").status_code == 403
        assert c.post("/api/v1/auth/api-token", json={"name": "escalate"}).status_code == 403
