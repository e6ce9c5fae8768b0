"""A webhook receiver for scripts/faults: answers every POST with 204 and appends the request's
Idempotency-Key to a file, one per line, in the order received (one request at a time).

Usage: python3 scripts/lib/webhook_receiver.py PORT FILE
"""
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with open(sys.argv[2], "a") as keys:
            keys.write(self.headers.get("Idempotency-Key", "") + "\n")
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
