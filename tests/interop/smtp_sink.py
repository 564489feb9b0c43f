#!/usr/bin/env python3
"""An SMTP server for kpistream's alert tests: accepts every message and keeps it.

It listens on 127.0.0.1 only, prints the port it listens on (useful with --port 0) as
the first line of standard output, then appends every message it receives to --out as
one JSON line: {"mail_from": ..., "rcpt_tos": [...], "data": "<the message as sent>",
"auth_user": <the user name it logged in with, or null>}. It runs until it is killed.

With --user and --password it offers AUTH PLAIN/LOGIN over the plain connection (no TLS:
a loopback test server) and refuses any other credentials; without them it accepts mail
from anyone.

Usage:
    smtp_sink.py --out messages.jsonl [--port 0] [--user U --password P]
Needs aiosmtpd (scripts/python-venv.sh installs it in .venv).
"""

import argparse
import asyncio
import json
import logging
import sys
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, out):
        self.out = out

    async def handle_DATA(self, server, session, envelope):
        user = session.auth_data.login.decode() if session.authenticated else None
        record = {
            "mail_from": envelope.mail_from,
            "rcpt_tos": list(envelope.rcpt_tos),
            "data": envelope.content.decode("utf-8", errors="replace"),
            "auth_user": user,
        }
        with open(self.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        return "250 Message accepted for delivery"


def authenticator(user, password):
    def check(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == user
            and auth_data.password.decode() == password
        )
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    return check


async def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="file the messages are appended to")
    parser.add_argument("--port", type=int, default=0, help="port on 127.0.0.1 (0: any free one)")
    parser.add_argument("--user", help="user name AUTH must give")
    parser.add_argument("--password", help="password AUTH must give")
    args = parser.parse_args()
    if (args.user is None) != (args.password is None):
        parser.error("--user and --password go together")

    # Plain AUTH is what this loopback test server is for: no warnings about it.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)

    sink = Sink(args.out)
    options = {}
    if args.user is not None:
        options = {
            "authenticator": authenticator(args.user, args.password),
            "auth_required": True,
            "auth_require_tls": False,
        }
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(sink, hostname="smtp-sink.test", **options), "127.0.0.1", args.port
    )
    print(server.sockets[0].getsockname()[1], flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        sys.exit(0)
