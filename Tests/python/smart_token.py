"""Gets a SMART Backend Services access token, as an EHR's integration engine would (the README's example).

Usage: smart_token.py --token-url URL --client-id ID --key PEM --kid KID [--alg ES384|RS384]
                      [--scope "system/Observation.rs"] [--jti JTI] [--exp-seconds 240] [--assertion-only]
Prints the token endpoint's JSON answer (or, with --assertion-only, the signed assertion) and exits 0
on HTTP 200, 1 otherwise.
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid

import jwt  # PyJWT


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--token-url", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--key", required=True, help="PEM private key (P-384 for ES384, RSA for RS384)")
    p.add_argument("--kid", required=True)
    p.add_argument("--alg", default="ES384", choices=["ES384", "RS384"])
    p.add_argument("--scope", default="system/Observation.rs")
    p.add_argument("--jti", default=None)
    p.add_argument("--exp-seconds", type=int, default=240, help="exp relative to now; negative for an expired assertion")
    p.add_argument("--assertion-only", action="store_true")
    a = p.parse_args()
    with open(a.key, "rb") as f:
        key = f.read()
    now = int(time.time())
    claims = {"iss": a.client_id, "sub": a.client_id, "aud": a.token_url, "exp": now + a.exp_seconds,
              "jti": a.jti or str(uuid.uuid4())}
    assertion = jwt.encode(claims, key, algorithm=a.alg, headers={"kid": a.kid, "typ": "JWT"})
    if a.assertion_only:
        print(assertion)
        return 0
    body = urllib.parse.urlencode({
        "grant_type": "client_credentials", "scope": a.scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion}).encode()
    request = urllib.request.Request(a.token_url, data=body,
                                     headers={"Content-Type": "application/x-www-form-urlencoded", "Accept": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            print(r.read().decode())
            return 0
    except urllib.error.HTTPError as e:
        print(json.dumps({"status": e.code, "body": json.loads(e.read().decode() or "{}")}))
        return 1


if __name__ == "__main__":
    sys.exit(main())
