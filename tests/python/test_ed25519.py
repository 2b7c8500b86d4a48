"""Standard Webhooks `v1a` (ed25519) signatures end to end: endpoints given a
`whsk_` signing key through the official Svix SDK, or created while
Switchyard generates ed25519 keys, get deliveries whose `v1a` signature
verifies with the `whpk_` public key the API shows (checked with the
`cryptography` package's Ed25519); the signing key never leaves Switchyard."""

import base64

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from standardwebhooks import Webhook
from svix.api import ApplicationIn, EndpointIn, EndpointSecretRotateIn, MessageIn
from svix.exceptions import HTTPValidationError

from conftest import Server


def new_signing_key():
    """A `whsk_` key as Svix issues them: the 32-byte seed, then the public key."""
    private = Ed25519PrivateKey.generate()
    seed = private.private_bytes_raw()
    public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return "whsk_" + base64.b64encode(seed + public).decode(), "whpk_" + base64.b64encode(public).decode()


def v1a_verifies(public_key, request):
    """Whether any `v1a` entry of the delivery's signature header verifies."""
    assert public_key.startswith("whpk_")
    key = Ed25519PublicKey.from_public_bytes(base64.b64decode(public_key[5:]))
    h = request["headers"]
    content = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + request["body"]
    for entry in h["webhook-signature"].split(" "):
        version, _, sig = entry.partition(",")
        if version != "v1a":
            continue
        try:
            key.verify(base64.b64decode(sig), content)
            return True
        except InvalidSignature:
            pass
    return False


def deliver(svix, receiver, app_id, path):
    msg = svix.message.create(app_id, MessageIn(event_type="order.paid", payload={"total": 42}))
    got = receiver.wait(1, path=path, timeout=20)
    assert got, "not delivered"
    assert got[0]["headers"]["webhook-id"] == msg.id
    return got[0]


def test_a_whsk_key_signs_v1a_and_the_api_shows_only_the_public_key(svix, receiver):
    app = svix.application.create(ApplicationIn(name="ed25519"))
    signing, public = new_signing_key()
    ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/v1a", secret=signing))
    assert svix.endpoint.get_secret(app.id, ep.id).key == public
    request = deliver(svix, receiver, app.id, "/v1a")
    assert request["headers"]["webhook-signature"].startswith("v1a,")
    assert v1a_verifies(public, request)
    # Another key's public half does not verify it.
    assert not v1a_verifies(new_signing_key()[1], request)

    # A rotation to a new key pair: both sign during the grace period.
    next_signing, next_public = new_signing_key()
    svix.endpoint.rotate_secret(app.id, ep.id, EndpointSecretRotateIn(key=next_signing))
    assert svix.endpoint.get_secret(app.id, ep.id).key == next_public
    request = deliver(svix, receiver, app.id, "/v1a")
    assert request["headers"]["webhook-signature"].count("v1a,") == 2
    assert v1a_verifies(next_public, request) and v1a_verifies(public, request)

    # A generated rotation keeps the endpoint's scheme.
    svix.endpoint.rotate_secret(app.id, ep.id, EndpointSecretRotateIn())
    assert svix.endpoint.get_secret(app.id, ep.id).key.startswith("whpk_")

    # A public key cannot sign; a key pair whose halves differ is refused.
    with pytest.raises(HTTPValidationError) as refused:
        svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/x", secret=public))
    assert "whpk_" in str(refused.value.to_dict())
    other_public = base64.b64decode(new_signing_key()[1][5:])
    mismatched = "whsk_" + base64.b64encode(base64.b64decode(signing[5:])[:32] + other_public).decode()
    with pytest.raises(HTTPValidationError):
        svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/x", secret=mismatched))


def test_hmac_endpoints_beside_ed25519_ones_stay_v1(svix, receiver):
    app = svix.application.create(ApplicationIn(name="mixed"))
    svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/ed", secret=new_signing_key()[0]))
    hmac = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/hmac"))
    svix.message.create(app.id, MessageIn(event_type="order.paid", payload={}))
    got = {r["path"]: r for r in receiver.wait(2, timeout=20)}
    assert got["/ed"]["headers"]["webhook-signature"].startswith("v1a,")
    secret = svix.endpoint.get_secret(app.id, hmac.id).key
    assert secret.startswith("whsec_")
    Webhook(secret).verify(got["/hmac"]["body"], got["/hmac"]["headers"])


def test_generated_secrets_are_ed25519_when_configured(receiver):
    server = Server({"SWITCHYARD_SIGNATURE_SCHEME": "ed25519"})
    try:
        svix = server.client()
        app = svix.application.create(ApplicationIn(name="generated"))
        ep = svix.endpoint.create(app.id, EndpointIn(url=f"{receiver.base}/gen"))
        public = svix.endpoint.get_secret(app.id, ep.id).key
        assert public.startswith("whpk_")
        assert v1a_verifies(public, deliver(svix, receiver, app.id, "/gen"))
        # A whsec_ secret given explicitly is still HMAC.
        given = svix.endpoint.create(
            app.id, EndpointIn(url=f"{receiver.base}/given", secret="whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        )
        assert svix.endpoint.get_secret(app.id, given.id).key == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    finally:
        server.stop()
