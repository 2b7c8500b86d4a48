#!/usr/bin/env python3
"""Times the hostile JSON Schema shapes of issue 10 against a running server
and prints its resident memory after each step.

    SWITCHYARD_DATA_DIR=$(mktemp -d) SWITCHYARD_ADMIN_TOKEN=t \
      SWITCHYARD_LISTEN=127.0.0.1:18555 target/release/switchyard serve &
    python3 bench/schema_limits.py http://127.0.0.1:18555 t $!

Each line: the step, the HTTP status, the wall time in ms, the server's RSS.
"""
import json
import sys
import time
import urllib.error
import urllib.request

base, token, pid = sys.argv[1], sys.argv[2], int(sys.argv[3])


def rss():
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS"):
                return " ".join(line.split()[1:])
    return "?"


def post(path, body):
    request = urllib.request.Request(
        base + path,
        data=json.dumps(body).encode(),
        headers={"Authorization": f"Bearer {token}", "content-type": "application/json"},
    )
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            status = response.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, round((time.monotonic() - started) * 1000, 1)


def step(label, path, body):
    status, ms = post(path, body)
    print(f"{label:<38} {status}  {ms:>8} ms  rss {rss()}")


def nested(depth, leaf):
    value = leaf
    for _ in range(depth):
        value = {"a": value}
    return value


def event_type(name, schema):
    return {"name": name, "description": "d", "schemas": {"1": schema}}


step("start: create application", "/api/v1/app", {"name": "a", "uid": "schema-limits"})
app = "/api/v1/app/schema-limits/msg"
step("issue input: allOf [$ref #]", "/api/v1/event-type", event_type("loop", {"allOf": [{"$ref": "#"}]}))
step("  message of that type", app, {"eventType": "loop", "payload": {"a": 1}})
chain = {"d0": {"type": "integer"}}
for i in range(1, 501):
    chain[f"d{i}"] = {"properties": {"a": {"$ref": f"#/$defs/d{i - 1}"}}}
step("500-link reference chain", "/api/v1/event-type", event_type("chain", {"$defs": chain, "$ref": "#/$defs/d500"}))
step("  message 120 deep", app, {"eventType": "chain", "payload": nested(120, 1)})
big = {f"p{i}": {"type": "integer"} for i in range(2000)}
refs = {f"r{i}": {"$ref": "#/$defs/big"} for i in range(1000)}
step("1,000 refs to a 2,000-property def", "/api/v1/event-type", event_type("big", {"$defs": {"big": {"properties": big}}, "properties": refs}))
step("  message with 1,000 members", app, {"eventType": "big", "payload": {f"r{i}": {} for i in range(1000)}})
doubling = {"allOf": [{"properties": {"a": {"$ref": "#"}}}, {"properties": {"a": {"$ref": "#"}}}]}
step("work doubling per level", "/api/v1/event-type", event_type("dbl", doubling))
for depth in (10, 16, 20, 60):
    step(f"  message {depth} deep", app, {"eventType": "dbl", "payload": nested(depth, {})})
enum = {"properties": {"x": {"type": "array", "items": {"enum": list(range(50000))}}}}
step("50,000-value enum", "/api/v1/event-type", event_type("enum", enum))
step("  message of 50,000 items", app, {"eventType": "enum", "payload": {"x": [49999] * 50000}})
