"""Request bodies the Svix server accepts, beyond what today's SDK sends:
older field names, both names of a renamed field at once, and `null` to
clear. Each test is one difference found by reading the Svix server's
request types; raw requests, since the SDK would not send these shapes."""

import uuid

import httpx

from conftest import TOKEN

AUTH = {"authorization": f"Bearer {TOKEN}"}


def unique(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def test_application_takes_rate_limit_and_throttle_rate_together(server):
    # Svix reads both fields (`throttleRate` wins); they are not one field
    # under two names, so sending both is not a duplicate.
    r = httpx.post(
        f"{server.url}/api/v1/app",
        json={"name": "a", "uid": unique("rl"), "rateLimit": 5, "throttleRate": 7},
        headers=AUTH,
    )
    assert r.status_code == 201, r.text
    assert r.json()["throttleRate"] == 7 and r.json()["rateLimit"] == 7
    app = r.json()["id"]
    r = httpx.patch(f"{server.url}/api/v1/app/{app}", json={"rateLimit": 3, "throttleRate": 4}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["throttleRate"] == 4
    # The older name alone still works, and `null` under either clears it.
    r = httpx.patch(f"{server.url}/api/v1/app/{app}", json={"rateLimit": 9}, headers=AUTH)
    assert r.json()["throttleRate"] == 9, r.text
    r = httpx.patch(f"{server.url}/api/v1/app/{app}", json={"throttleRate": None}, headers=AUTH)
    assert r.status_code == 200 and r.json()["throttleRate"] is None, r.text


def test_endpoint_takes_rate_limit_and_throttle_rate_together(server):
    app = httpx.post(f"{server.url}/api/v1/app", json={"name": "a", "uid": unique("ep")}, headers=AUTH).json()["id"]
    base = f"{server.url}/api/v1/app/{app}/endpoint"
    r = httpx.post(base, json={"url": "http://127.0.0.1:9/e", "rateLimit": 5, "throttleRate": 7}, headers=AUTH)
    assert r.status_code == 201, r.text
    assert r.json()["throttleRate"] == 7
    ep = r.json()["id"]
    r = httpx.patch(f"{base}/{ep}", json={"rateLimit": 1, "throttleRate": 2}, headers=AUTH)
    assert r.status_code == 200 and r.json()["throttleRate"] == 2, r.text
    r = httpx.put(f"{base}/{ep}", json={"url": "http://127.0.0.1:9/e", "rateLimit": 3, "throttleRate": 4}, headers=AUTH)
    assert r.status_code == 200 and r.json()["throttleRate"] == 4, r.text


def test_ingest_destination_takes_rate_limit_and_throttle_rate_together(server):
    base = f"{server.url}/ingest/api/v1/source"
    src = httpx.post(base, json={"name": "n", "type": "none", "config": {}}, headers=AUTH).json()
    r = httpx.post(
        f"{base}/{src['id']}/endpoint",
        json={"url": "http://127.0.0.1:9/d", "rateLimit": 5, "throttleRate": 7},
        headers=AUTH,
    )
    assert r.status_code == 201 and r.json()["throttleRate"] == 7, r.text


def test_event_type_patch_takes_the_single_feature_flag(server):
    # Svix's EventTypePatch has a nullable `featureFlag`: a value sets it,
    # null clears it.
    name = f"ff.{uuid.uuid4().hex[:8]}"
    r = httpx.post(f"{server.url}/api/v1/event-type", json={"name": name, "description": "d"}, headers=AUTH)
    assert r.status_code == 201, r.text
    url = f"{server.url}/api/v1/event-type/{name}"
    r = httpx.patch(url, json={"featureFlag": "beta"}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["featureFlag"] == "beta" and r.json()["featureFlags"] == ["beta"]
    r = httpx.patch(url, json={"featureFlag": None}, headers=AUTH)
    assert r.status_code == 200, r.text
    assert r.json()["featureFlag"] is None and r.json()["featureFlags"] is None


def test_message_payload_may_be_sent_as_data(server):
    # Svix reads `data` as an older name of `payload`.
    app = httpx.post(f"{server.url}/api/v1/app", json={"name": "a", "uid": unique("data")}, headers=AUTH).json()["id"]
    r = httpx.post(f"{server.url}/api/v1/app/{app}/msg", json={"eventType": "d.d", "data": {"k": 1}}, headers=AUTH)
    assert r.status_code == 202, r.text
    assert r.json()["payload"] == {"k": 1}
