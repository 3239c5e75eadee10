#!/usr/bin/env python3
"""A tiny real SMTP server for the integration tests.

    python3 tests/support/smtp_sink.py DIR [--auth USER:PASSWORD]

Listens on 127.0.0.1 on a free port (bound as port 0, so parallel tests never
clash), prints one line `ready <port>` once it accepts connections, and
stores every message it receives as `DIR/<n>.eml` (the raw DATA, as sent).
Each file is written under a temporary name and renamed, so a test polling
DIR never reads half a message. With --auth it requires AUTH (PLAIN or LOGIN,
allowed without TLS: the sink is local) with exactly those credentials, and
refuses mail from anyone else with 530/535 as a real relay does.

It exits when killed, or when its stdin closes: a test that dies without
running its cleanup (a panic with abort, a killed runner) does not leave a
server behind, as long as it gave the sink a piped stdin.
"""

import argparse
import asyncio
import itertools
import logging
import os
import sys
import threading
import warnings

from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    async def handle_DATA(self, server, session, envelope):
        n = next(self.counter)
        tmp = os.path.join(self.directory, f".{n}.tmp")
        with open(tmp, "wb") as f:
            f.write(envelope.original_content or b"")
        os.replace(tmp, os.path.join(self.directory, f"{n:04}.eml"))
        return "250 Message accepted for delivery"


def authenticator_for(credentials):
    user, _, password = credentials.partition(":")
    expected = (user.encode(), password.encode())

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == expected
        # handled=False: aiosmtpd then answers 535 itself.
        return AuthResult(success=ok, handled=False, auth_data=auth_data)

    return authenticator


def exit_on_stdin_eof():
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    os._exit(0)


async def main(directory, credentials):
    os.makedirs(directory, exist_ok=True)
    handler = Sink(directory)
    options = {"hostname": "smtp-sink.test"}
    if credentials is not None:
        options.update(
            auth_required=True,
            auth_require_tls=False,
            authenticator=authenticator_for(credentials),
        )
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, **options), host="127.0.0.1", port=0
    )
    port = server.sockets[0].getsockname()[1]
    print(f"ready {port}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    # Quiet on the tests' stderr: AUTH without TLS is the point of a local
    # sink, and aiosmtpd's own deprecation notices are not ours to fix.
    warnings.simplefilter("ignore")
    logging.getLogger("mail.log").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description="SMTP sink for the tests")
    parser.add_argument("dir", help="where received messages are stored")
    parser.add_argument("--auth", metavar="USER:PASSWORD", help="require these credentials")
    args = parser.parse_args()
    threading.Thread(target=exit_on_stdin_eof, daemon=True).start()
    try:
        asyncio.run(main(args.dir, args.auth))
    except KeyboardInterrupt:
        pass
