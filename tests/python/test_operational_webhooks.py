"""Operational webhooks through the official Svix Python SDK's
`operational_webhook.endpoint` API; every event is verified with the
official standardwebhooks library and checked against Svix's payload shapes."""

import json
import time
import uuid
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from standardwebhooks import Webhook
from svix.api import (
    ApplicationIn,
    ApplicationPatch,
    EndpointIn,
    EndpointPatch,
    MessageIn,
    OperationalWebhookEndpointHeadersIn,
    OperationalWebhookEndpointIn,
    OperationalWebhookEndpointSecretIn,
    OperationalWebhookEndpointUpsertIn,
    RecoverIn,
)
from svix.exceptions import HttpError, HTTPValidationError

from conftest import TOKEN, Server, drop_database, scratch_database

# Five attempts a message: the fourth failure is "failing", the fifth "exhausted".
RETRIES = "300ms,300ms,300ms,300ms"


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def ops_server(request):
    env = {"SWITCHYARD_RETRY_SCHEDULE": RETRIES}
    if request.param == "sqlite":
        s = Server(env)
        yield s
        s.stop()
        return
    name, url = scratch_database()
    try:
        s = Server({**env, "SWITCHYARD_DATABASE_URL": url})
        yield s
        s.stop()
    finally:
        drop_database(name)


@pytest.fixture
def svix(ops_server):
    return ops_server.client()


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def events_of(receiver, path, secret, app_id, want, timeout=30.0):
    """Collects the operational events about `app_id` that arrive at `path`
    (each verified with `secret`) until every type in `want` has come, and
    returns them in arrival order, one per webhook-id."""
    got, seen = [], set()
    deadline = time.time() + timeout
    while time.time() < deadline and not set(want) <= {e["type"] for e in got}:
        for request in receiver.wait(1, timeout=max(0.1, deadline - time.time()), path=path):
            event = Webhook(secret).verify(request["body"], request["headers"])
            msg_id = request["headers"]["webhook-id"]
            if event["data"].get("appId") == app_id and msg_id not in seen:
                seen.add(msg_id)
                got.append(event)
    missing = set(want) - {e["type"] for e in got}
    assert not missing, f"never arrived: {missing}; got {[e['type'] for e in got]}"
    return got


def test_operational_endpoint_api_through_the_sdk(svix, receiver):
    ops = svix.operational_webhook.endpoint
    uid = unique("ops")
    created = ops.create(
        OperationalWebhookEndpointIn(
            url=f"{receiver.base}/ops-api",
            uid=uid,
            description="alerts",
            event_types=["endpoint.disabled"],
            metadata={"team": "platform"},
            headers={"X-Team": "platform", "Authorization": "Bearer s3cret"},
        )
    )
    assert created.id.startswith("ep_") and created.uid == uid
    assert created.event_types == ["endpoint.disabled"] and created.metadata == {"team": "platform"}
    assert ops.get(uid).id == created.id
    assert created.id in [e.id for e in ops.list().data]

    updated = ops.upsert(
        created.id,
        OperationalWebhookEndpointUpsertIn(url=f"{receiver.base}/ops-api2", event_types=None, description="all"),
    )
    assert updated.url.endswith("/ops-api2") and updated.description == "all" and updated.event_types is None
    made = ops.upsert(unique("made"), OperationalWebhookEndpointUpsertIn(url=f"{receiver.base}/ops-made"))
    assert made.id.startswith("ep_")

    headers = ops.get_headers(created.id)
    assert headers.headers == {"X-Team": "platform"} and headers.sensitive == ["Authorization"]
    ops.set_headers(created.id, OperationalWebhookEndpointHeadersIn(headers={"X-Other": "1"}))
    assert ops.get_headers(created.id).headers == {"X-Other": "1"}

    old = ops.get_secret(created.id).key
    assert old.startswith("whsec_")
    ops.rotate_secret(created.id, OperationalWebhookEndpointSecretIn())
    assert ops.get_secret(created.id).key not in ("", old)
    chosen = "whsec_" + "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    ops.rotate_secret(created.id, OperationalWebhookEndpointSecretIn(key=chosen))
    assert ops.get_secret(created.id).key == chosen

    with pytest.raises(HTTPValidationError) as bad:
        ops.create(OperationalWebhookEndpointIn(url="ftp://example.com/x"))
    assert bad.value.detail[0].loc == ["body", "url"]
    # A filter that matches no operational event would receive nothing.
    with pytest.raises(HTTPValidationError) as typo:
        ops.create(OperationalWebhookEndpointIn(url=f"{receiver.base}/x", event_types=["endpoint.creatd"]))
    assert typo.value.detail[0].loc == ["body", "eventTypes"]
    with pytest.raises(HTTPValidationError) as typo:
        ops.upsert(created.id, OperationalWebhookEndpointUpsertIn(url=f"{receiver.base}/x", event_types=["nope"]))
    assert typo.value.detail[0].loc == ["body", "eventTypes"]
    wide = ops.create(OperationalWebhookEndpointIn(url=f"{receiver.base}/x", event_types=["message.attempt.*"]))
    ops.delete(wide.id)

    ops.delete(created.id)
    ops.delete(made.id)
    with pytest.raises(HttpError) as gone:
        ops.get(created.id)
    assert gone.value.status_code == 404
    # The operational endpoints are endpoints of no customer application.
    assert created.id not in [e.id for e in ops.list().data]


def test_every_event_arrives_signed_in_svix_shapes(svix, receiver):
    ops = svix.operational_webhook.endpoint.create(OperationalWebhookEndpointIn(url=f"{receiver.base}/ops"))
    secret = svix.operational_webhook.endpoint.get_secret(ops.id).key
    try:
        app = svix.application.create(ApplicationIn(name="ops events", uid=unique("app")))
        ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/customer", uid=unique("ep")))
        svix.endpoint.patch(app.id, ep.id, EndpointPatch(description="changed"))
        svix.endpoint.patch(app.id, ep.id, EndpointPatch(disabled=True))
        svix.endpoint.patch(app.id, ep.id, EndpointPatch(disabled=False))
        # One message fails five times (exhausted), one fails four times and
        # then succeeds (failing, then recovered).
        receiver.script("/customer", [500] * 9)
        first = svix.message.create(app.id, MessageIn(event_type="a.b", payload={"n": 1}, event_id=unique("evt")))
        events = events_of(receiver, "/ops", secret, app.id, ["message.attempt.exhausted"])
        second = svix.message.create(app.id, MessageIn(event_type="a.b", payload={"n": 2}))
        events += events_of(receiver, "/ops", secret, app.id, ["message.attempt.recovered"])
        svix.endpoint.delete(app.id, ep.id)
        events += events_of(receiver, "/ops", secret, app.id, ["endpoint.deleted"])
    finally:
        svix.operational_webhook.endpoint.delete(ops.id)

    by_type = {}
    for e in events:
        by_type.setdefault(e["type"], []).append(e["data"])
    for kind in ("endpoint.created", "endpoint.updated", "endpoint.disabled", "endpoint.enabled", "endpoint.deleted"):
        assert kind in by_type, f"{kind} missing: {list(by_type)}"
        data = by_type[kind][0]
        assert data["appId"] == app.id and data["appUid"] == app.uid
        assert data["endpointId"] == ep.id and data["endpointUid"] == ep.uid
    assert len(by_type["endpoint.updated"]) == 3
    assert by_type["endpoint.disabled"][0]["trigger"] == "manual"
    assert "failSince" not in by_type["endpoint.disabled"][0]

    failing = [d for d in by_type["message.attempt.failing"]]
    assert sorted(d["msgId"] for d in failing) == sorted([first.id, second.id])
    (exhausted,) = by_type["message.attempt.exhausted"]
    assert exhausted["msgId"] == first.id and exhausted["msgEventId"] == first.event_id
    assert exhausted["endpointId"] == ep.id and exhausted["appId"] == app.id
    assert exhausted["lastAttempt"]["responseStatusCode"] == 500
    assert exhausted["lastAttempt"]["id"].startswith("atmpt_") and exhausted["lastAttempt"]["timestamp"]
    (recovered,) = by_type["message.attempt.recovered"]
    assert recovered["msgId"] == second.id and recovered["lastAttempt"]["responseStatusCode"] == 200
    # The events are messages like any other: listed with their attempts.
    assert all(isinstance(e.get("timestamp"), str) for e in events)


def test_events_filter_by_type_and_survive_the_operator_endpoint_being_down(svix, receiver):
    # Down for its first six requests: every event is retried until it arrives.
    receiver.script("/ops-down", [503] * 6)
    ops = svix.operational_webhook.endpoint.create(
        OperationalWebhookEndpointIn(url=f"{receiver.base}/ops-down", event_types=["endpoint.created", "endpoint.deleted"])
    )
    secret = svix.operational_webhook.endpoint.get_secret(ops.id).key
    try:
        app = svix.application.create(ApplicationIn(name="ops down", uid=unique("app")))
        ids = [svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/c{i}")).id for i in range(4)]
        for ep in ids:
            svix.endpoint.patch(app.id, ep, EndpointPatch(description="not subscribed"))
            svix.endpoint.delete(app.id, ep)
        want = {("endpoint.created", ep) for ep in ids} | {("endpoint.deleted", ep) for ep in ids}
        got = set()
        deadline = time.time() + 30
        while time.time() < deadline and got != want:
            for request in receiver.wait(1, timeout=1, path="/ops-down"):
                event = Webhook(secret).verify(request["body"], request["headers"])
                if event["data"]["appId"] == app.id:
                    assert event["type"] in ("endpoint.created", "endpoint.deleted"), event
                    got.add((event["type"], event["data"]["endpointId"]))
        assert got == want
        attempts = svix.message_attempt.list_by_endpoint("app_operational", ops.id).data
        assert any(int(a.status) == 2 for a in attempts), "the failed tries are in the attempt log"
    finally:
        svix.operational_webhook.endpoint.delete(ops.id)


def test_recovery_is_reported_again_and_refusals_are_not_exhaustion(svix, receiver):
    ops = svix.operational_webhook.endpoint.create(
        OperationalWebhookEndpointIn(url=f"{receiver.base}/ops-again", event_types=["message.attempt.failing", "message.attempt.exhausted", "message.attempt.recovered"])
    )
    secret = svix.operational_webhook.endpoint.get_secret(ops.id).key
    try:
        app = svix.application.create(ApplicationIn(name="ops again", uid=unique("app")))
        ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/again"))
        receiver.script("/again", [500] * 10)
        msg = svix.message.create(app.id, MessageIn(event_type="a.b", payload={}))
        first = events_of(receiver, "/ops-again", secret, app.id, ["message.attempt.exhausted"])
        # Recovered, it fails all over again: both events come again (found
        # by a hostile review: they were taken for repeats and dropped).
        svix.endpoint.recover(app.id, ep.id, RecoverIn(since=datetime.now(timezone.utc) - timedelta(minutes=5)))
        second = events_of(receiver, "/ops-again", secret, app.id, ["message.attempt.exhausted"])
        assert [e["type"] for e in first] == ["message.attempt.failing", "message.attempt.exhausted"]
        assert [e["type"] for e in second] == ["message.attempt.failing", "message.attempt.exhausted"]
        assert {e["data"]["msgId"] for e in first + second} == {msg.id}
        # Deliveries refused because their endpoint is disabled exhausted
        # nothing: no events (one per queued delivery before).
        receiver.script("/again", [500] * 50)
        for _ in range(3):
            svix.message.create(app.id, MessageIn(event_type="a.b", payload={}))
        svix.endpoint.patch(app.id, ep.id, EndpointPatch(disabled=True))
        time.sleep(2)
        later = [
            Webhook(secret).verify(r["body"], r["headers"])
            for r in receiver.wait(50, timeout=1, path="/ops-again")
        ]
        assert all(e["data"].get("appId") != app.id or e["type"] == "message.attempt.failing" for e in later), later
    finally:
        svix.operational_webhook.endpoint.delete(ops.id)


def test_switchyards_own_applications_are_not_changed_through_the_app_api(svix, receiver, ops_server):
    svix.operational_webhook.endpoint.list()
    assert "app_operational" not in [a.uid for a in svix.application.list().data]
    for call in (
        lambda: svix.application.upsert("app_operational", ApplicationIn(name="x", uid="renamed")),
        lambda: svix.application.patch("app_operational", ApplicationPatch(name="x")),
        lambda: svix.application.delete("app_operational"),
        lambda: svix.message.create("app_operational", MessageIn(event_type="endpoint.deleted", payload={"data": {}})),
    ):
        with pytest.raises(HttpError) as refused:
            call()
        assert refused.value.status_code == 409
    # Its messages and attempts can still be read.
    svix.message.list("app_operational")
    # A source's application is Switchyard's too: changed through the source API only.
    source = httpx.post(
        f"{ops_server.url}/ingest/api/v1/source",
        headers={"authorization": f"Bearer {TOKEN}"},
        json={"name": "s", "type": "none"},
    ).json()
    for call in (
        lambda: svix.application.upsert(source["id"], ApplicationIn(name="x")),
        lambda: svix.application.delete(source["id"]),
        lambda: svix.message.create(source["id"], MessageIn(event_type="a.b", payload={})),
    ):
        with pytest.raises(HttpError) as refused:
            call()
        assert refused.value.status_code == 409
