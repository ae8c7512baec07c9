"""A real S3-compatible server for the tests: moto's standalone server, in its own process on a
free loopback port, spoken to over HTTP exactly as AWS would be (pyarrow's S3 filesystem, the
endpoint from AWS_ENDPOINT_URL, credentials and region from the environment). Nothing is
monkeypatched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pyarrow.fs as pafs

ACCESS_KEY = "fsj-test-access"
SECRET_KEY = "fsj-test-secret-Kq8Zr2"  # must never appear in a message, a report or a footer


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    env: dict[str, str]  # what a client process needs: endpoint, credentials, region

    def filesystem(self) -> pafs.S3FileSystem:
        return pafs.S3FileSystem(
            access_key=ACCESS_KEY,
            secret_key=SECRET_KEY,
            region="us-east-1",
            endpoint_override=self.endpoint,
            allow_bucket_creation=True,
        )


@contextmanager
def s3_server(port: int) -> Iterator[S3Server]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    server = S3Server(endpoint, env)
    try:
        deadline = time.time() + 30
        while True:
            try:
                server.filesystem().get_file_info(pafs.FileSelector("", recursive=False))
                break
            except OSError:
                if proc.poll() is not None or time.time() > deadline:
                    raise RuntimeError(f"the S3 test server did not start on {endpoint}") from None
                time.sleep(0.1)
        yield server
    finally:
        proc.terminate()
        proc.wait(10)


def environ_with(server: S3Server) -> dict[str, str]:
    return {**os.environ, **server.env}
