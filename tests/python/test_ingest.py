"""Incoming webhooks end to end: sources managed with the official `svix`
SDK's ingest API, requests signed by the providers' own SDKs (`stripe`,
`slack_sdk`, `twilio`, `standardwebhooks`), posted to the real binary, and
delivered to a real receiver with the raw body and Switchyard's signature."""

import http.client
import json
import os
import signal
import threading
import time
import uuid

import httpx
import pytest
import stripe
from slack_sdk.signature import SignatureVerifier
from standardwebhooks.webhooks import Webhook
from svix.api import IngestEndpointIn, IngestSourceIn, StripeConfig
from svix.models import SlackConfig, SvixConfig, ZoomConfig
from twilio.request_validator import RequestValidator

from conftest import TOKEN, Receiver, Server, drop_database, scratch_database

STRIPE_SECRET = "whsec_" + "a1b2c3d4" * 4


def admin(server):
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=10)


def stripe_event(event_type="invoice.paid", amount=100, size=0):
    event = {
        "id": f"evt_{uuid.uuid4().hex}",
        "object": "event",
        "type": event_type,
        "data": {"object": {"id": f"in_{uuid.uuid4().hex[:10]}", "amount_paid": amount}},
    }
    if size:
        event["data"]["object"]["description"] = "x" * size
    # Deliberately unusual spacing: the destination must get these exact bytes.
    return json.dumps(event, indent=3)


def post_stripe(url, body, secret=STRIPE_SECRET, timestamp=None):
    header = stripe.WebhookSignature.generate_signature_header(body, secret, timestamp=timestamp)
    return httpx.post(
        url, content=body.encode(), headers={"Stripe-Signature": header, "Content-Type": "application/json"}
    )


def make_source(svix, kind, config, name=None):
    return svix.ingest.source.create(IngestSourceIn(name=name or f"{kind} source", type=kind, config=config))


def destination(svix, source_id, url, **extra):
    return svix.ingest.endpoint.create(source_id, IngestEndpointIn(url=url, **extra))


def verify_gateway_signature(svix, source_id, endpoint_id, request):
    secret = svix.ingest.endpoint.get_secret(source_id, endpoint_id).key
    Webhook(secret).verify(request["body"], request["headers"])


def test_stripe_sdk_signed_events_reach_destination_with_raw_body(svix, server, receiver):
    src = make_source(svix, "stripe", StripeConfig(secret=STRIPE_SECRET))
    assert src.ingest_url and src.ingest_url.startswith(server.url)
    assert svix.ingest.source.get(src.id).name == "stripe source"
    ep = destination(svix, src.id, f"{receiver.base}/billing")
    body = stripe_event()
    r = post_stripe(src.ingest_url, body)
    assert r.status_code == 200, r.text
    got = receiver.wait(1, path="/billing")
    assert len(got) == 1
    request = got[0]
    assert request["body"] == body.encode(), "the provider's bytes pass through unchanged"
    # The internal service can check the provider's own signature too.
    event = stripe.Webhook.construct_event(request["body"].decode(), request["headers"]["stripe-signature"], STRIPE_SECRET)
    assert event["type"] == "invoice.paid"
    assert request["headers"]["content-type"] == "application/json"
    verify_gateway_signature(svix, src.id, ep.id, request)
    # The event is an ordinary message of the source's application: visible
    # with its attempts through the v1 API.
    msgs = svix.message.list(src.id).data
    assert [m.event_type for m in msgs] == ["invoice.paid"]
    # The attempt is recorded once the destination's answer is in, which can
    # be a moment after the request reached it.
    deadline = time.monotonic() + 10
    while True:
        attempts = svix.message_attempt.list_by_msg(src.id, msgs[0].id).data
        if attempts or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert attempts and attempts[0].response_status_code == 200


def test_provider_retries_are_answered_and_not_stored_twice(server, svix, receiver):
    src = make_source(svix, "stripe", StripeConfig(secret=STRIPE_SECRET))
    destination(svix, src.id, f"{receiver.base}/dedupe")
    body = stripe_event()
    first = post_stripe(src.ingest_url, body)
    again = post_stripe(src.ingest_url, body)
    assert first.status_code == again.status_code == 200
    assert again.json() == {"id": first.json()["id"], "duplicate": True}
    assert len(receiver.wait(2, timeout=3, path="/dedupe")) == 1
    stats = admin_stats(server, src.id)
    assert (stats["accepted"], stats["duplicates"]) == (1, 1)


def admin_stats(server, source_id):
    # Not in the SDK: Switchyard's own addition beside the Svix shapes.
    with admin(server) as c:
        return c.get(f"/ingest/api/v1/source/{source_id}/stats").json()


def test_bad_signatures_get_401_with_reason_and_are_counted(server, svix, receiver):
    src = make_source(svix, "stripe", StripeConfig(secret=STRIPE_SECRET))
    destination(svix, src.id, f"{receiver.base}/never")
    body = stripe_event()
    wrong = post_stripe(src.ingest_url, body, secret="whsec_wrong")
    assert wrong.status_code == 401
    assert wrong.json()["detail"] == "no signature matches"
    stale = post_stripe(src.ingest_url, body, timestamp=int(time.time()) - 3600)
    assert stale.status_code == 401
    assert stale.json()["code"] == "timestamp_out_of_tolerance"
    missing = httpx.post(src.ingest_url, content=body)
    assert missing.status_code == 401
    assert "Stripe-Signature" in missing.json()["detail"]
    stats = admin_stats(server, src.id)
    assert stats["rejected"] == 3 and stats["accepted"] == 0
    assert stats["lastRejection"] == "missing Stripe-Signature header"
    assert svix.message.list(src.id).data == []
    assert receiver.wait(1, timeout=1.5) == []


def test_unknown_source_is_404(server):
    r = httpx.post(f"{server.url}/ingest/nosuchtoken", content=b"{}")
    assert r.status_code == 404


def test_body_limit_per_source_is_413(server, svix):
    with admin(server) as c:
        r = c.post(
            "/ingest/api/v1/source",
            json={"name": "tiny", "type": "stripe", "config": {"secret": STRIPE_SECRET}, "settings": {"maxBodyBytes": 512}},
        )
        assert r.status_code == 201, r.text
        src = r.json()
        assert src["settings"]["maxBodyBytes"] == 512
        assert "secret" not in src["config"]
    big = post_stripe(src["ingestUrl"], stripe_event(size=1024))
    assert big.status_code == 413
    assert post_stripe(src["ingestUrl"], stripe_event()).status_code == 200
    assert admin_stats(server, src["id"])["lastRejection"] == "body too large"


def test_slack_sdk_signatures_and_url_verification(svix, receiver):
    secret = "8f742231b10e8888abcd99yyyzzz85a5"
    src = make_source(svix, "slack", SlackConfig(secret=secret))
    destination(svix, src.id, f"{receiver.base}/slack")
    signer = SignatureVerifier(secret)

    def post(body, content_type):
        ts = str(int(time.time()))
        return httpx.post(
            src.ingest_url,
            content=body.encode(),
            headers={
                "X-Slack-Request-Timestamp": ts,
                "X-Slack-Signature": signer.generate_signature(timestamp=ts, body=body),
                "Content-Type": content_type,
            },
        )

    challenge = json.dumps({"token": "t", "challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P", "type": "url_verification"})
    r = post(challenge, "application/json")
    assert r.status_code == 200 and r.json() == {"challenge": "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P"}
    event = json.dumps({"type": "event_callback", "event_id": "Ev1", "event": {"type": "app_mention", "text": "hi"}})
    assert post(event, "application/json").status_code == 200
    command = "token=x&team_id=T1&command=%2Fdeploy&text=now&trigger_id=13345224609.738474920.8088930838d88f008e0"
    assert post(command, "application/x-www-form-urlencoded").status_code == 200
    from urllib.parse import urlencode

    interaction = urlencode({"payload": json.dumps({"type": "block_actions", "trigger_id": "t-1", "actions": [{"action_id": "approve"}]})})
    assert post(interaction, "application/x-www-form-urlencoded").status_code == 200
    assert post(interaction, "application/x-www-form-urlencoded").json()["duplicate"] is True
    got = receiver.wait(3, path="/slack")
    bodies = sorted(g["body"] for g in got)
    assert bodies == sorted([event.encode(), command.encode(), interaction.encode()])
    types = sorted(m.event_type for m in svix.message.list(src.id).data)
    assert types == ["/deploy", "app_mention", "block_actions"], "challenges are answered, not stored"
    form = next(g for g in got if g["body"] == command.encode())
    assert form["headers"]["content-type"] == "application/x-www-form-urlencoded"


def test_twilio_sdk_signatures_form_and_json(server, svix, receiver):
    auth_token = "12345abcdef"
    with admin(server) as c:
        src = c.post("/ingest/api/v1/source", json={"name": "sms", "type": "twilio", "config": {"secret": auth_token}}).json()
        c.post(f"/ingest/api/v1/source/{src['id']}/endpoint", json={"url": f"{receiver.base}/sms"}).raise_for_status()
    validator = RequestValidator(auth_token)
    params = {"MessageSid": "SM1", "From": "+14158675309", "Body": "hello", "MessageStatus": "received"}
    url = src["ingestUrl"] + "?lang=en"
    sig = validator.compute_signature(url, params)
    r = httpx.post(url, data=params, headers={"X-Twilio-Signature": sig})
    assert r.status_code == 200, r.text
    bad = httpx.post(url, data={**params, "Body": "tampered"}, headers={"X-Twilio-Signature": sig})
    assert bad.status_code == 401
    body = json.dumps({"EventType": "com.twilio.messaging.inbound-message.received", "id": 1})
    json_url = src["ingestUrl"] + "?bodySHA256=" + validator.compute_hash(body)
    r = httpx.post(
        json_url,
        content=body,
        headers={"X-Twilio-Signature": validator.compute_signature(json_url, {}), "Content-Type": "application/json"},
    )
    assert r.status_code == 200, r.text
    got = receiver.wait(2)
    assert {g["path"] for g in got} == {"/sms?lang=en", "/sms?bodySHA256=" + validator.compute_hash(body)}
    types = sorted(m.event_type for m in svix.message.list(src["id"]).data)
    assert types == ["com.twilio.messaging.inbound-message.received", "received"]


def test_standard_webhooks_source_and_secret_rotation_overlap(server, svix, receiver):
    old = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    src = make_source(svix, "svix", SvixConfig(secret=old))
    destination(svix, src.id, f"{receiver.base}/sw")

    def post(secret, msg_id):
        body = json.dumps({"type": "user.created", "data": {"id": msg_id}})
        ts = int(time.time())
        from datetime import datetime, timezone

        signature = Webhook(secret).sign(msg_id, datetime.fromtimestamp(ts, tz=timezone.utc), body)
        return httpx.post(
            src.ingest_url,
            content=body,
            headers={"svix-id": msg_id, "svix-timestamp": str(ts), "svix-signature": signature, "content-type": "application/json"},
        )

    assert post(old, "msg_1").status_code == 200
    with admin(server) as c:
        r = c.post(f"/ingest/api/v1/source/{src.id}/secret/rotate", json={"gracePeriodSeconds": 60})
        assert r.status_code == 200, r.text
        new = r.json()["secret"]
    assert new.startswith("whsec_") and new != old
    assert post(new, "msg_2").status_code == 200
    assert post(old, "msg_3").status_code == 200, "the old secret verifies during the grace period"
    with admin(server) as c:
        c.post(f"/ingest/api/v1/source/{src.id}/secret/rotate", json={"gracePeriodSeconds": 0}).raise_for_status()
    assert post(new, "msg_4").status_code == 401, "a rotation without grace drops the previous secret"
    assert post(old, "msg_5").status_code == 200, "secrets retired earlier keep their own expiry"
    got = receiver.wait(4, path="/sw")
    assert len(got) == 4
    assert post(old, "msg_1").json()["duplicate"] is True, "webhook-id dedupes"


def test_zoom_url_validation_challenge(svix):
    secret = "zoom_webhook_secret_token"
    src = make_source(svix, "zoom", ZoomConfig(secret=secret))
    import hashlib
    import hmac

    body = json.dumps({"event": "endpoint.url_validation", "payload": {"plainToken": "qgg8vlvZRS6UYooatFL8Aw"}, "event_ts": 1})
    ts = str(int(time.time()))
    sig = "v0=" + hmac.new(secret.encode(), f"v0:{ts}:{body}".encode(), hashlib.sha256).hexdigest()
    r = httpx.post(src.ingest_url, content=body, headers={"x-zm-signature": sig, "x-zm-request-timestamp": ts})
    assert r.status_code == 200
    assert r.json() == {
        "plainToken": "qgg8vlvZRS6UYooatFL8Aw",
        "encryptedToken": hmac.new(secret.encode(), b"qgg8vlvZRS6UYooatFL8Aw", hashlib.sha256).hexdigest(),
    }
    assert svix.message.list(src.id).data == []
    unsigned = httpx.post(src.ingest_url, content=body)
    assert unsigned.status_code == 401, "the challenge is only answered to Zoom"


def test_token_rotation_keeps_old_url_working(svix, receiver):
    src = make_source(svix, "stripe", StripeConfig(secret=STRIPE_SECRET))
    destination(svix, src.id, f"{receiver.base}/rot")
    rotated = svix.ingest.source.rotate_token(src.id)
    assert rotated.ingest_url != src.ingest_url
    assert post_stripe(src.ingest_url, stripe_event()).status_code == 200
    assert post_stripe(rotated.ingest_url, stripe_event()).status_code == 200
    assert len(receiver.wait(2, path="/rot")) == 2
    assert svix.ingest.source.get(src.id).ingest_url == rotated.ingest_url


def test_routing_by_event_type_pattern_and_payload_filter(server, svix, receiver):
    src = make_source(svix, "stripe", StripeConfig(secret=STRIPE_SECRET))
    with admin(server) as c:
        for path, extra in [
            ("/invoices", {"filterTypes": ["invoice.*"]}),
            ("/big", {"payloadFilter": {"and": [{"path": "/data/object/amount_paid", "gte": 1000}, {"path": "/type", "ne": "invoice.voided"}]}}),
            ("/all", {}),
        ]:
            r = c.post(f"/ingest/api/v1/source/{src.id}/endpoint", json={"url": receiver.base + path, **extra})
            assert r.status_code == 201, r.text
        bad = c.post(f"/ingest/api/v1/source/{src.id}/endpoint", json={"url": receiver.base, "payloadFilter": {"path": "/a", "gt": "x"}})
        assert bad.status_code == 422 and bad.json()["detail"][0]["loc"][-1] == "payloadFilter"
    for event_type, amount in [("invoice.paid", 50), ("charge.succeeded", 5000), ("invoice.voided", 5000)]:
        assert post_stripe(src.ingest_url, stripe_event(event_type, amount)).status_code == 200
    got = receiver.wait(6, timeout=5)
    by_path = {}
    for g in got:
        by_path.setdefault(g["path"], []).append(json.loads(g["body"])["type"])
    assert sorted(by_path["/invoices"]) == ["invoice.paid", "invoice.voided"]
    assert by_path["/big"] == ["charge.succeeded"]
    assert sorted(by_path["/all"]) == ["charge.succeeded", "invoice.paid", "invoice.voided"]


def test_path_suffix_query_and_custom_response(server, receiver):
    with admin(server) as c:
        src = c.post(
            "/ingest/api/v1/source",
            json={
                "name": "partner",
                "type": "api-key",
                "config": {"header": "X-Partner-Key", "key": "k-123"},
                "settings": {"response": {"status": 202, "body": "queued", "contentType": "text/plain"}, "eventType": {"value": "partner.event"}},
            },
        ).json()
        c.post(f"/ingest/api/v1/source/{src['id']}/endpoint", json={"url": f"{receiver.base}/partner"}).raise_for_status()
        bad = c.post("/ingest/api/v1/source", json={"name": "x", "type": "generic-webhook", "config": {}})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "config", "secret"]
    r = httpx.post(src["ingestUrl"] + "/orders/7?full=1", content=b"<order id='7'/>", headers={"X-Partner-Key": "k-123", "Content-Type": "application/xml"})
    assert r.status_code == 202 and r.text == "queued"
    assert httpx.post(src["ingestUrl"], content=b"x", headers={"X-Partner-Key": "nope"}).status_code == 401
    got = receiver.wait(1, path="/partner/orders/7?full=1")
    assert got and got[0]["body"] == b"<order id='7'/>"
    trailing = httpx.post(src["ingestUrl"] + "/orders/", content=b"<x/>", headers={"X-Partner-Key": "k-123"})
    assert trailing.status_code == 202
    assert receiver.wait(1, path="/partner/orders/"), "a trailing slash is passed on as sent"
    assert got[0]["headers"]["content-type"] == "application/xml"
    assert "x-partner-key" not in got[0]["headers"], "credentials are not passed on"


def post_verbatim(ingest_url, target_suffix, body):
    """A Stripe-signed POST whose request line carries the path exactly as
    written (httpx would resolve `%2e%2e` before sending)."""
    url = httpx.URL(ingest_url)
    conn = http.client.HTTPConnection(url.host, url.port, timeout=10)
    header = stripe.WebhookSignature.generate_signature_header(body, STRIPE_SECRET)
    conn.request("POST", url.raw_path.decode() + target_suffix, body=body.encode(),
                 headers={"Stripe-Signature": header, "Content-Type": "application/json"})
    resp = conn.getresponse()
    answer = (resp.status, json.loads(resp.read() or b"null"))
    conn.close()
    return answer


def test_forwarded_path_stays_under_the_destination(server, svix, receiver):
    src = make_source(svix, "stripe", StripeConfig(secret=STRIPE_SECRET))
    destination(svix, src.id, receiver.base + "/stripe/hook")
    for suffix in ["/%2e%2e/%2e%2e/admin?q=1", "/..;x/admin", "/%252e%252e/admin", "/a%2F..%2F..%2Fadmin"]:
        status, answer = post_verbatim(src.ingest_url, suffix, stripe_event())
        assert status == 400 and answer["code"] == "invalid_path", (suffix, answer)
    status, _ = post_verbatim(src.ingest_url, "/admin?q=1", stripe_event())
    assert status == 200
    got = receiver.wait(1, path="/stripe/hook/admin?q=1")
    assert got, "a plain suffix still goes under the destination's path"
    assert receiver.wait(1, timeout=0.5) == [], "nothing else reached the service"


def test_source_crud_through_the_sdk(server, svix):
    src = make_source(svix, "github", {"secret": "gh"}, name="repo hooks")
    # A verifier the SDK has no type for is shown as generic-webhook with
    # config.verifier, so SDK listings keep parsing.
    with admin(server) as c:
        paddle = c.post("/ingest/api/v1/source", json={"name": "p", "type": "paddle", "config": {"secret": "pdl"}}).json()
    assert (paddle["type"], paddle["config"], paddle["verifier"]) == ("generic-webhook", {"verifier": "paddle"}, "paddle")
    listed = {s.id: s for s in svix.ingest.source.list().data}
    assert src.id in listed and listed[paddle["id"]].type == "generic-webhook"
    same = svix.ingest.source.upsert(paddle["id"], IngestSourceIn(name="p2", type="generic-webhook", config={"verifier": "paddle", "secret": "pdl2"}))
    assert same.config == {"verifier": "paddle"}
    updated = svix.ingest.source.upsert(src.id, IngestSourceIn(name="renamed", type="github", config={"secret": "gh2"}))
    assert updated.name == "renamed"
    ep = destination(svix, src.id, "https://example.com/internal")
    assert svix.ingest.endpoint.get(src.id, ep.id).url == "https://example.com/internal"
    assert [e.id for e in svix.ingest.endpoint.list(src.id).data] == [ep.id]
    svix.ingest.endpoint.delete(src.id, ep.id)
    svix.ingest.source.delete(src.id)
    with pytest.raises(Exception):
        svix.ingest.source.get(src.id)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_sigkill_after_the_provider_got_2xx_loses_nothing(backend):
    db = None
    env = {"SWITCHYARD_RETRY_SCHEDULE": "1,1,1,1,1"}
    if backend == "postgres":
        db, url = scratch_database()
        env["SWITCHYARD_DATABASE_URL"] = url
    receiver = Receiver()
    server = Server(env)
    try:
        with admin(server) as c:
            src = c.post("/ingest/api/v1/source", json={"name": "s", "type": "stripe", "config": {"secret": STRIPE_SECRET}}).json()
            c.post(f"/ingest/api/v1/source/{src['id']}/endpoint", json={"url": f"{receiver.base}/k"}).raise_for_status()
        accepted, stop = [], threading.Event()

        def produce():
            with httpx.Client(timeout=5) as http:
                while not stop.is_set():
                    body = stripe_event()
                    header = stripe.WebhookSignature.generate_signature_header(body, STRIPE_SECRET)
                    try:
                        r = http.post(src["ingestUrl"], content=body, headers={"Stripe-Signature": header})
                    except httpx.HTTPError:
                        return
                    if r.status_code == 200:
                        accepted.append(json.loads(body)["id"])

        producers = [threading.Thread(target=produce) for _ in range(8)]
        for p in producers:
            p.start()
        time.sleep(1.5)
        os.kill(server.proc.pid, signal.SIGKILL)
        stop.set()
        for p in producers:
            p.join()
        server.proc.wait()
        assert len(accepted) > 20
        server = Server(env, data_dir=server.data_dir)
        wanted = set(accepted)
        seen = set()
        deadline = time.time() + 30
        while not wanted <= seen and time.time() < deadline:
            for g in receiver.wait(1, timeout=1):
                seen.add(json.loads(g["body"])["id"])
        assert wanted - seen == set(), f"{len(wanted - seen)} of {len(wanted)} acknowledged events were lost"
    finally:
        server.stop()
        receiver.stop()
        if db:
            drop_database(db)


def test_payload_filters_and_wildcards_on_outgoing_endpoints(server, svix, receiver):
    from svix.api import ApplicationIn, MessageIn

    app = svix.application.create(ApplicationIn(name="filters"))
    with admin(server) as c:
        for path, extra in [
            ("/eu-orders", {"filterTypes": ["order.*"], "payloadFilter": {"path": "/region", "in": ["eu", "uk"]}}),
            ("/no-test", {"payloadFilter": {"not": {"path": "/test", "exists": True}}}),
        ]:
            r = c.post(f"/api/v1/app/{app.id}/endpoint", json={"url": receiver.base + path, **extra})
            assert r.status_code == 201, r.text
            assert r.json()["payloadFilter"] == extra["payloadFilter"]
        deep = {"not": {}}
        node = deep
        for _ in range(40):
            node["not"] = {"not": {}}
            node = node["not"]
        bad = c.post(f"/api/v1/app/{app.id}/endpoint", json={"url": receiver.base, "payloadFilter": deep})
        assert bad.status_code == 422, "over-deep filters are refused"
    for event_type, payload in [
        ("order.created", {"region": "eu"}),
        ("order.created", {"region": "us"}),
        ("invoice.paid", {"region": "eu", "test": True}),
    ]:
        svix.message.create(app.id, MessageIn(event_type=event_type, payload=payload))
    got = receiver.wait(3, timeout=4)
    routed = sorted((g["path"], json.loads(g["body"]).get("region")) for g in got)
    assert routed == [("/eu-orders", "eu"), ("/no-test", "eu"), ("/no-test", "us")]
