#!/usr/bin/env python3
"""A webhook receiver for kpistream's notification tests, verifying each request with the
code docs/notifications.md gives and nothing else.

It takes the ```python block of the docs' "Verifying a webhook" section and runs it to
define `verify`, so the test fails if the documented code does not verify what the
server sends. It listens on 127.0.0.1 (--port, 0 for any free port), prints the port as
the first line of standard output, and appends every request to --out as one JSON line:
{"verified": bool, "event": <kpistream-event>, "event_id": <kpistream-event-id>,
 "body": <the parsed JSON body, or null>}. It answers 204 to a verified request and 401
to any other. The secret is read from --secret-file at each request (it may be written
after the receiver starts). It runs until it is killed.

Usage:
    webhook_receiver.py --docs docs/notifications.md --secret-file hook.secret --out events.jsonl [--port 0]
"""

import argparse
import http.server
import json
import re
import sys


def documented_verify(docs_path):
    text = open(docs_path, encoding="utf-8").read()
    section = text.split("## Verifying a webhook", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    scope = {}
    exec(code, scope)
    return scope["verify"]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--docs", required=True)
    parser.add_argument("--secret-file", required=True)
    parser.add_argument("--out", required=True)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    verify = documented_verify(args.docs)

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            try:
                secret = open(args.secret_file, encoding="utf-8").read().strip()
            except OSError:
                secret = ""
            header = self.headers.get("kpistream-signature", "")
            ok = bool(secret) and verify(secret, header, body)
            try:
                parsed = json.loads(body)
            except ValueError:
                parsed = None
            record = {
                "verified": ok,
                "event": self.headers.get("kpistream-event"),
                "event_id": self.headers.get("kpistream-event-id"),
                "body": parsed,
            }
            with open(args.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(record) + "\n")
            self.send_response(204 if ok else 401)
            self.end_headers()

        def log_message(self, *_):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.port), Handler)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
