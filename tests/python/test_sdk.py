"""The official Svix Python SDK drives Switchyard; every delivery is verified
with the official standardwebhooks library."""

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
    EndpointHeadersIn,
    EndpointIn,
    EndpointPatch,
    EndpointSecretRotateIn,
    EventTypeIn,
    MessageAttemptListByEndpointOptions,
    MessageIn,
    MessageListOptions,
    RecoverIn,
)
from svix.api.message import MessageCreateOptions, MessageGetOptions

from svix.exceptions import HttpError, HTTPValidationError

from conftest import TOKEN


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def verify(secret, request):
    """Raises unless the delivery's signature verifies with `secret`."""
    return Webhook(secret).verify(request["body"], request["headers"])


def new_app(svix):
    return svix.application.create(ApplicationIn(name="test app", uid=unique("app")))


def test_application_crud(svix):
    uid = unique("crud")
    app = svix.application.create(ApplicationIn(name="first", uid=uid, metadata={"tier": "gold"}))
    assert app.id.startswith("app_")
    assert svix.application.get(uid).id == app.id
    assert svix.application.get(app.id).metadata == {"tier": "gold"}
    same = svix.application.get_or_create(ApplicationIn(name="ignored", uid=uid))
    assert same.id == app.id
    patched = svix.application.patch(app.id, ApplicationPatch(name="second"))
    assert patched.name == "second" and patched.uid == uid
    updated = svix.application.upsert(app.id, ApplicationIn(name="third"))
    assert updated.name == "third"
    listed = svix.application.list()
    assert any(a.id == app.id for a in listed.data)
    svix.application.delete(app.id)
    with pytest.raises(HttpError) as err:
        svix.application.get(app.id)
    assert err.value.status_code == 404


def test_post_idempotency_key_replays_the_first_response(svix):
    from svix.api.application import ApplicationCreateOptions

    key = unique("create-app")
    first = svix.application.create(ApplicationIn(name="once"), ApplicationCreateOptions(idempotency_key=key))
    again = svix.application.create(ApplicationIn(name="twice"), ApplicationCreateOptions(idempotency_key=key))
    assert again.id == first.id and again.name == "once"


def test_application_pagination(svix):
    ids = {svix.application.create(ApplicationIn(name=f"p{i}")).id for i in range(5)}
    seen, iterator = [], None
    from svix.api.application import ApplicationListOptions

    while True:
        page = svix.application.list(ApplicationListOptions(limit=2, iterator=iterator))
        assert len(page.data) <= 2
        seen.extend(a.id for a in page.data)
        if page.done:
            break
        iterator = page.iterator
    assert ids <= set(seen)
    assert len(seen) == len(set(seen))


def test_event_types_and_schema_validation(svix):
    name = unique("invoice.paid").replace("-", "_")
    schema = {
        "1": {
            "type": "object",
            "properties": {"amount": {"type": "integer", "minimum": 0}},
            "required": ["amount"],
        }
    }
    et = svix.event_type.create(EventTypeIn(name=name, description="Invoice paid", schemas=schema))
    assert et.name == name and et.schemas == schema
    assert svix.event_type.get(name).description == "Invoice paid"
    app = new_app(svix)
    ok = svix.message.create(app.id, MessageIn(event_type=name, payload={"amount": 5}))
    assert ok.id.startswith("msg_")
    with pytest.raises(HTTPValidationError) as err:
        svix.message.create(app.id, MessageIn(event_type=name, payload={"amount": -1}))
    assert err.value.status_code == 422
    assert "amount" in json.dumps(err.value.to_dict())
    svix.event_type.delete(name)
    assert svix.event_type.get(name).archived is True


def test_fan_out_filters_channels_and_signatures(svix, receiver):
    app = new_app(svix)
    all_ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/all"))
    typed = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/typed", event_types=["user.created"]))
    chan = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/chan", channels=["eu"]))
    off = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/off", disabled=True))
    secrets = {
        "/all": svix.endpoint.get_secret(app.id, all_ep.id).key,
        "/typed": svix.endpoint.get_secret(app.id, typed.id).key,
        "/chan": svix.endpoint.get_secret(app.id, chan.id).key,
    }
    assert off.disabled is True
    m1 = svix.message.create(app.id, MessageIn(event_type="user.created", payload={"n": 1}))
    m2 = svix.message.create(app.id, MessageIn(event_type="user.deleted", payload={"n": 2}, channels=["eu"]))
    got = receiver.wait(4)
    time.sleep(0.5)
    assert receiver.requests.empty(), "no extra deliveries expected"
    by_path = {}
    for r in got:
        by_path.setdefault(r["path"], []).append(r)
        verify(secrets[r["path"]], r)
        assert r["headers"]["content-type"] == "application/json"
    assert sorted(r["headers"]["webhook-id"] for r in by_path["/all"]) == sorted([m1.id, m2.id])
    assert [r["headers"]["webhook-id"] for r in by_path["/typed"]] == [m1.id]
    assert [r["headers"]["webhook-id"] for r in by_path["/chan"]] == [m2.id]
    assert "/off" not in by_path
    assert json.loads(by_path["/typed"][0]["body"]) == {"n": 1}


def test_idempotency_key_and_event_id(svix, receiver):
    app = new_app(svix)
    svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/idem"))
    key = unique("key")
    a = svix.message.create(
        app.id, MessageIn(event_type="a.b", payload={"x": 1}), MessageCreateOptions(idempotency_key=key, with_content=True)
    )
    b = svix.message.create(
        app.id, MessageIn(event_type="a.b", payload={"x": 2}), MessageCreateOptions(idempotency_key=key, with_content=True)
    )
    assert a.id == b.id and b.payload == {"x": 1}
    c = svix.message.create(app.id, MessageIn(event_type="a.b", payload={"x": 3}, event_id="evt-1"))
    d = svix.message.create(app.id, MessageIn(event_type="a.b", payload={"x": 4}, event_id="evt-1"))
    assert c.id == d.id
    assert svix.message.get(app.id, "evt-1").id == c.id
    assert len(receiver.wait(2)) == 2
    time.sleep(0.5)
    assert receiver.requests.empty()
    msgs = svix.message.list(app.id)
    assert len(msgs.data) == 2


def test_retries_then_success_are_listed(svix, receiver):
    app = new_app(svix)
    receiver.script("/flaky", [500, 503, 200])
    ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/flaky"))
    secret = svix.endpoint.get_secret(app.id, ep.id).key
    msg = svix.message.create(app.id, MessageIn(event_type="order.created", payload={"id": 7}))
    got = receiver.wait(3, timeout=20)
    assert len(got) == 3
    assert {r["headers"]["webhook-id"] for r in got} == {msg.id}
    for r in got:
        verify(secret, r)
    deadline = time.time() + 10
    while time.time() < deadline:
        attempts = svix.message_attempt.list_by_msg(app.id, msg.id).data
        if len(attempts) == 3:
            break
        time.sleep(0.2)
    codes = sorted(a.response_status_code for a in attempts)
    assert codes == [200, 500, 503]
    assert all(a.endpoint_id == ep.id and a.msg_id == msg.id for a in attempts)
    by_ep = svix.message_attempt.list_by_endpoint(app.id, ep.id, MessageAttemptListByEndpointOptions(status=0)).data
    assert [a.response_status_code for a in by_ep] == [200]
    one = svix.message_attempt.get(app.id, msg.id, attempts[0].id)
    assert one.id == attempts[0].id and one.url == f"{receiver.base}/flaky"
    dest = svix.message_attempt.list_attempted_destinations(app.id, msg.id).data
    assert [d.id for d in dest] == [ep.id] and int(dest[0].status) == 0
    stats = svix.endpoint.get_stats(app.id, ep.id)
    assert stats.success == 1 and stats.fail == 0


def test_exhausted_retries_fail_then_recover_and_resend(svix, receiver):
    app = new_app(svix)
    receiver.script("/down", [500, 500, 500])
    ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/down"))
    since = datetime.now(timezone.utc) - timedelta(seconds=5)
    msg = svix.message.create(app.id, MessageIn(event_type="x.y", payload={"a": 1}))
    assert len(receiver.wait(3, timeout=20)) == 3
    deadline = time.time() + 10
    while time.time() < deadline and svix.endpoint.get_stats(app.id, ep.id).fail != 1:
        time.sleep(0.2)
    assert svix.endpoint.get_stats(app.id, ep.id).fail == 1
    attempted = svix.message_attempt.list_attempted_messages(app.id, ep.id).data
    assert [m.id for m in attempted] == [msg.id] and int(attempted[0].status) == 2
    # Recover re-sends the failed message; the receiver now answers 200.
    svix.endpoint.recover(app.id, ep.id, RecoverIn(since=since))
    got = receiver.wait(1, timeout=10)
    assert [r["headers"]["webhook-id"] for r in got] == [msg.id]
    # A manual resend sends it once more, recorded as a manual attempt.
    svix.message_attempt.resend(app.id, msg.id, ep.id)
    got = receiver.wait(1, timeout=10)
    assert [r["headers"]["webhook-id"] for r in got] == [msg.id]
    deadline = time.time() + 10
    while time.time() < deadline:
        attempts = svix.message_attempt.list_by_msg(app.id, msg.id).data
        if len(attempts) == 5:
            break
        time.sleep(0.2)
    assert len(attempts) == 5
    assert sorted(int(a.trigger_type) for a in attempts) == [0, 0, 0, 0, 1]


def test_secret_rotation_signs_with_both(svix, receiver):
    app = new_app(svix)
    ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/rot"))
    old = svix.endpoint.get_secret(app.id, ep.id).key
    rotated = svix.endpoint.rotate_secret(app.id, ep.id, EndpointSecretRotateIn())
    new = svix.endpoint.get_secret(app.id, ep.id).key
    assert rotated.key == new and new != old
    svix.message.create(app.id, MessageIn(event_type="r.t", payload={"r": 1}))
    [req] = receiver.wait(1)
    assert len(req["headers"]["webhook-signature"].split(" ")) == 2
    verify(old, req)
    verify(new, req)
    # With no grace period the previous secret stops signing at once.
    svix.endpoint.rotate_secret(app.id, ep.id, EndpointSecretRotateIn(grace_period_seconds=0))
    newest = svix.endpoint.get_secret(app.id, ep.id).key
    svix.message.create(app.id, MessageIn(event_type="r.t", payload={"r": 2}))
    [req] = receiver.wait(1)
    verify(newest, req)
    with pytest.raises(Exception):
        verify(new, req) if len(req["headers"]["webhook-signature"].split(" ")) == 1 else (_ for _ in ()).throw(
            AssertionError("unexpected extra signature")
        )


def test_endpoint_update_patch_headers_and_disable(svix, receiver):
    app = new_app(svix)
    ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/h1", uid=unique("ep"), headers={"X-Team": "payments"}))
    assert svix.endpoint.get(app.id, ep.uid).id == ep.id
    hdrs = svix.endpoint.get_headers(app.id, ep.id)
    assert hdrs.headers == {"X-Team": "payments"}
    svix.endpoint.set_headers(app.id, ep.id, EndpointHeadersIn(headers={"X-Team": "billing", "Authorization": "Bearer s"}))
    hdrs = svix.endpoint.get_headers(app.id, ep.id)
    assert hdrs.headers == {"X-Team": "billing"} and hdrs.sensitive == ["Authorization"]
    svix.message.create(app.id, MessageIn(event_type="h.h", payload={}))
    [req] = receiver.wait(1)
    assert req["headers"]["x-team"] == "billing" and req["headers"]["authorization"] == "Bearer s"
    patched = svix.endpoint.patch(app.id, ep.id, EndpointPatch(url=f"{receiver.base}/h2", description="moved"))
    assert patched.url == f"{receiver.base}/h2" and patched.description == "moved"
    svix.message.create(app.id, MessageIn(event_type="h.h", payload={}))
    [req] = receiver.wait(1)
    assert req["path"] == "/h2"
    svix.endpoint.patch(app.id, ep.id, EndpointPatch(disabled=True))
    svix.message.create(app.id, MessageIn(event_type="h.h", payload={}))
    assert receiver.wait(1, timeout=1.5) == []
    listed = svix.endpoint.list(app.id).data
    assert [e.id for e in listed] == [ep.id]
    svix.endpoint.delete(app.id, ep.id)
    with pytest.raises(HttpError) as err:
        svix.endpoint.get(app.id, ep.id)
    assert err.value.status_code == 404


def test_message_list_filters_and_content(server, svix):
    app = new_app(svix)
    svix.message.create(app.id, MessageIn(event_type="a.one", payload={"i": 1}, channels=["c1"]))
    svix.message.create(app.id, MessageIn(event_type="a.two", payload={"i": 2}))
    svix.message.create(app.id, MessageIn(event_type="a.two", payload={"i": 3}))
    everything = svix.message.list(app.id, MessageListOptions(with_content=True)).data
    assert [m.payload["i"] for m in everything] == [3, 2, 1]
    assert len(svix.message.list(app.id, MessageListOptions(event_types=["a.two"])).data) == 2
    assert [m.payload["i"] for m in svix.message.list(app.id, MessageListOptions(channel="c1", with_content=True)).data] == [1]
    bare = svix.message.list(app.id, MessageListOptions(with_content=False)).data
    assert all(m.payload == {} for m in bare)
    first = svix.message.list(app.id, MessageListOptions(limit=1, with_content=True))
    assert len(first.data) == 1 and not first.done
    rest = svix.message.list(app.id, MessageListOptions(limit=5, iterator=first.iterator, with_content=True))
    assert [m.payload["i"] for m in rest.data] == [2, 1] and rest.done
    raw = httpx.get(f"{server.url}/api/v1/app/{app.id}/msg/{everything[0].id}/content", headers={"authorization": f"Bearer {TOKEN}"})
    assert raw.status_code == 200 and raw.json() == {"i": 3}
    svix.message.expunge_content(app.id, everything[0].id)
    raw = httpx.get(f"{server.url}/api/v1/app/{app.id}/msg/{everything[0].id}/content", headers={"authorization": f"Bearer {TOKEN}"})
    assert raw.status_code == 410
    assert svix.message.get(app.id, everything[0].id, MessageGetOptions(with_content=True)).payload == {}
    assert svix.message.get(app.id, everything[1].id, MessageGetOptions(with_content=True)).payload == {"i": 2}


def test_errors_are_clear(server, svix):
    app = new_app(svix)
    with pytest.raises(HttpError) as err:
        svix.application.get("app_does_not_exist_00000")
    assert err.value.status_code == 404
    with pytest.raises(HTTPValidationError) as err:
        svix.endpoint.create(app.id, EndpointIn(url="ftp://example.com"))
    assert err.value.status_code == 422 and "url" in json.dumps(err.value.to_dict())
    with pytest.raises(HTTPValidationError):
        svix.message.create(app.id, MessageIn(event_type="bad name!", payload={}))
    with pytest.raises(HttpError) as err:
        svix.application.create(ApplicationIn(name="dup", uid=app.uid))
    assert err.value.status_code == 409
    raw = httpx.post(f"{server.url}/api/v1/app/{app.id}/msg", content=b'{"eventType": "x"', headers={"authorization": f"Bearer {TOKEN}"})
    assert raw.status_code == 422 and "malformed JSON" in raw.json()["detail"][0]["msg"]
    raw = httpx.post(f"{server.url}/api/v1/app/{app.id}/msg", json={"eventType": "x.y"}, headers={"authorization": f"Bearer {TOKEN}"})
    assert raw.status_code == 422 and raw.json()["detail"][0]["loc"] == ["body"] and "payload" in raw.json()["detail"][0]["msg"]
    raw = httpx.get(f"{server.url}/api/v1/app", headers={"authorization": "Bearer wrong"})
    assert raw.status_code == 401 and raw.json()["code"] == "authentication_failed"
    big = b'{"eventType":"x.y","payload":{"p":"' + b"a" * (1 << 20) + b'"}}'
    raw = httpx.post(f"{server.url}/api/v1/app/{app.id}/msg", content=big, headers={"authorization": f"Bearer {TOKEN}"})
    assert raw.status_code == 413 and raw.json()["code"] == "payload_too_large"
    assert httpx.get(f"{server.url}/api/v1/health").status_code == 204
    raw = httpx.delete(f"{server.url}/api/v1/app", headers={"authorization": f"Bearer {TOKEN}"})
    assert raw.status_code == 405 and raw.json()["code"] == "method_not_allowed"
    spec = httpx.get(f"{server.url}/api/v1/openapi.json").json()
    assert "/api/v1/app/{app_id}/msg" in spec["paths"]


def test_app_created_with_message(svix, receiver):
    uid = unique("auto")
    msg = svix.message.create(uid, MessageIn(event_type="a.b", payload={"k": 1}, application=ApplicationIn(name="auto")))
    assert msg.id.startswith("msg_")
    assert svix.application.get(uid).name == "auto"


def test_patch_headers_with_null_values_deletes_them(svix, server, receiver):
    # Svix types the PATCH map's values as nullable: older SDKs and
    # hand-written clients delete a header by sending it as null.
    app = new_app(svix)
    ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/n", uid=unique("ep"), headers={"X-A": "1", "X-B": "2"}))
    auth = {"authorization": f"Bearer {TOKEN}"}
    url = f"{server.url}/api/v1/app/{app.id}/endpoint/{ep.id}/headers"
    r = httpx.patch(url, json={"headers": {"X-A": None, "x-c": "3"}}, headers=auth)
    assert r.status_code == 204, r.text
    assert svix.endpoint.get_headers(app.id, ep.id).headers == {"X-B": "2", "x-c": "3"}
    # Names match in any case, and deleteHeaders may be null.
    r = httpx.patch(url, json={"headers": {"x-b": None, "X-C": "4"}, "deleteHeaders": None}, headers=auth)
    assert r.status_code == 204, r.text
    assert svix.endpoint.get_headers(app.id, ep.id).headers == {"X-C": "4"}
    svix.message.create(app.id, MessageIn(event_type="h.h", payload={}))
    [req] = receiver.wait(1)
    assert req["headers"]["x-c"] == "4" and "x-a" not in req["headers"] and "x-b" not in req["headers"]
    # PUT takes values only.
    r = httpx.put(url, json={"headers": {"X-A": None}}, headers=auth)
    assert r.status_code == 422, r.text


def test_patch_destination_headers_with_null_values_deletes_them(server):
    auth = {"authorization": f"Bearer {TOKEN}"}
    base = f"{server.url}/ingest/api/v1/source"
    src = httpx.post(base, json={"name": "n", "type": "none", "config": {}}, headers=auth).json()
    dest = httpx.post(f"{base}/{src['id']}/endpoint", json={"url": "http://127.0.0.1:9/d", "headers": {"X-A": "1"}}, headers=auth).json()
    url = f"{base}/{src['id']}/endpoint/{dest['id']}/headers"
    r = httpx.patch(url, json={"headers": {"X-A": None, "X-B": "2"}}, headers=auth)
    assert r.status_code == 204, r.text
    r = httpx.get(url, headers=auth)
    assert r.json()["headers"] == {"X-B": "2"}, r.text
