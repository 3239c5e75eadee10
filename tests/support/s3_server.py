#!/usr/bin/env python3
"""A real S3-compatible server for the integration tests (moto, offline).

    python tests/support/s3_server.py BUCKET...

Starts moto's server on 127.0.0.1 on a free port (bound as port 0, so
parallel tests never clash) with request authentication ON: signatures are
checked against the secret of an IAM user made at start, so a wrong secret
is refused as AWS refuses it. Creates each BUCKET (with that user's keys),
then prints one line

    ready <port> <access key> <secret>

once the server answers. It exits when killed, or when its stdin closes: a
test that dies without running its cleanup does not leave a server behind,
as long as it gave the server a piped stdin.

Needs `moto[server]` (scripts/test.sh installs it into a venv).
"""

import json
import logging
import os
import sys

# The first requests (the IAM calls below, made before any key exists) are
# let through; every later one must be signed with a key moto knows. Read by
# moto when it is imported.
UNSIGNED_SETUP_CALLS = 3
os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(UNSIGNED_SETUP_CALLS)
os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")

import boto3  # noqa: E402
from moto.server import ThreadedMotoServer  # noqa: E402

REGION = "us-east-1"


def main():
    buckets = sys.argv[1:]
    # One line per request on stderr would drown the test's own output.
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    _, port = server.get_host_and_port()
    endpoint = f"http://127.0.0.1:{port}"

    setup = dict(
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    iam = boto3.client("iam", **setup)
    iam.create_user(UserName="basalt")
    key = iam.create_access_key(UserName="basalt")["AccessKey"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
    }
    iam.put_user_policy(UserName="basalt", PolicyName="s3", PolicyDocument=json.dumps(policy))

    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=REGION,
        aws_access_key_id=key["AccessKeyId"],
        aws_secret_access_key=key["SecretAccessKey"],
    )
    for bucket in buckets:
        s3.create_bucket(Bucket=bucket)
    # The server answers signed requests: it is ready.
    s3.list_buckets()

    print(f"ready {port} {key['AccessKeyId']} {key['SecretAccessKey']}", flush=True)
    try:
        sys.stdin.read()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
