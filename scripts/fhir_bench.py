"""Client side of scripts/bench-fhir: a SMART Backend Services client key, and timed Observation searches.

  fhir_bench.py keygen DIR            writes DIR/key.pem (P-384) and DIR/jwks.json (kid bench-1)
  fhir_bench.py run --base URL --token-url URL --client-id ID --key PEM --patient P --since DATE [--rounds N]
      gets a token (ES384 assertion signed with PyJWT), then N times pages through
      GET [base]/Observation?patient=P&date=geDATE&_count=1000 following next links, and prints one
      JSON line per round: observations, pages, seconds, observations_per_second, slowest_page_ms.
"""
import argparse
import base64
import json
import sys
import time
import urllib.parse
import urllib.request
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec


def b64(n, length):
    return base64.urlsafe_b64encode(n.to_bytes(length, "big")).rstrip(b"=").decode()


def keygen(directory):
    key = ec.generate_private_key(ec.SECP384R1())
    with open(f"{directory}/key.pem", "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    numbers = key.public_key().public_numbers()
    jwk = {"kty": "EC", "crv": "P-384", "kid": "bench-1", "alg": "ES384", "x": b64(numbers.x, 48), "y": b64(numbers.y, 48)}
    with open(f"{directory}/jwks.json", "w") as f:
        json.dump({"keys": [jwk]}, f)


def token(a):
    with open(a.key, "rb") as f:
        key = f.read()
    now = int(time.time())
    assertion = jwt.encode({"iss": a.client_id, "sub": a.client_id, "aud": a.token_url, "exp": now + 240, "jti": str(uuid.uuid4())},
                           key, algorithm="ES384", headers={"kid": "bench-1", "typ": "JWT"})
    body = urllib.parse.urlencode({"grant_type": "client_credentials", "scope": "system/Observation.rs",
                                   "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                                   "client_assertion": assertion}).encode()
    with urllib.request.urlopen(urllib.request.Request(a.token_url, data=body), timeout=10) as r:
        return json.load(r)["access_token"]


def run(a):
    bearer = token(a)
    for _ in range(a.rounds):
        url = f"{a.base}/Observation?" + urllib.parse.urlencode({"patient": a.patient, "date": "ge" + a.since, "_count": "1000"})
        count = pages = 0
        slowest = 0.0
        ids = set()
        start = time.monotonic()
        while url:
            t = time.monotonic()
            request = urllib.request.Request(url, headers={"Authorization": f"Bearer {bearer}", "Accept": "application/fhir+json"})
            with urllib.request.urlopen(request, timeout=30) as r:
                bundle = json.load(r)
            slowest = max(slowest, time.monotonic() - t)
            entries = bundle.get("entry", [])
            count += len(entries)
            ids.update(e["resource"]["id"] for e in entries)
            pages += 1
            url = next((l["url"] for l in bundle.get("link", []) if l["relation"] == "next"), None)
        seconds = time.monotonic() - start
        if len(ids) != count:
            print("an Observation came twice", file=sys.stderr)
            sys.exit(1)
        print(json.dumps({"observations": count, "pages": pages, "seconds": round(seconds, 3),
                          "observations_per_second": int(count / seconds), "slowest_page_ms": int(slowest * 1000)}))


def main():
    if sys.argv[1] == "keygen":
        keygen(sys.argv[2])
        return
    p = argparse.ArgumentParser()
    p.add_argument("command")
    for name in ("--base", "--token-url", "--client-id", "--key", "--patient", "--since"):
        p.add_argument(name, required=True)
    p.add_argument("--rounds", type=int, default=5)
    run(p.parse_args())


if __name__ == "__main__":
    main()
