"""spare run unattended against a network and an endpoint that fail: what is retried for
``--retry-for`` and what is not, the lock released through an outage at the end, an endpoint that
is not an S3 server, and ``--region``.

spare runs as a real process; outages are made by :mod:`support.faultproxy` between it and the
suite's S3 server, or by nothing listening on the endpoint's port until the test starts a proxy
there.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from support.buckets import Backend, S3Server
from support.faultproxy import FaultProxy, lock_delete
from support.harness import (
    EXIT_UNREACHABLE,
    SpareRunner,
    assert_error,
    assert_ok,
    finish,
    free_port,
)

from spare.testing.trees import write_file

pytestmark = pytest.mark.timeout(180)


def s3_env(backend: Backend, password: str, endpoint: str) -> dict[str, str]:
    return {**backend.env, "SPARE_ENDPOINT": endpoint, "SPARE_PASSWORD": password}


# -- retried -----------------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["reset-before", "503"])
def test_the_lock_is_released_through_an_outage_at_the_end(
    fault: str,
    s3_backend: Backend,
    proxy: FaultProxy,
    password: str,
    run_spare: SpareRunner,
    source: Path,
) -> None:
    """Every request fails for 3 s from the lock's release on: it is tried again until the
    network is back, said with -v, and the bucket is left unlocked."""
    blip = proxy.blip(lock_delete, fault, seconds=3)
    result = run_spare(
        "create", "-v", "--path", source, env=s3_env(s3_backend, password, proxy.url)
    )
    assert_ok(result)
    assert blip.until is not None and len(proxy.injected(fault)) >= 2
    assert "lock" not in s3_backend.keys("lock")
    assert re.search(
        r"deleting objects: .+; trying again in [0-9.]+ s \(attempt 2; giving up in \d+ s\)",
        result.stderr,
    ), result.stderr


def test_an_endpoint_that_refuses_connections_is_tried_again_until_it_is_back(
    s3_backend: Backend,
    plain_http: S3Server,
    password: str,
    run_spare: SpareRunner,
    source: Path,
) -> None:
    """Nothing listens on the endpoint's port for 3 s (a server restarting at night)."""
    port = free_port()
    env = s3_env(s3_backend, password, f"http://127.0.0.1:{port}")
    running = run_spare.popen("create", "-v", "--retry-for", "60", "--path", source, env=env)
    time.sleep(3)
    proxy = FaultProxy(plain_http.url, port=port).start()
    try:
        result = finish(running, 120)
    finally:
        proxy.stop()
    assert_ok(result)
    assert re.search(r"cannot reach the endpoint .*; trying again in", result.stderr)
    assert s3_backend.keys("snapshots/")


@pytest.mark.parametrize("retry_for", [0, 2])
def test_an_endpoint_down_for_good_fails_after_retry_for(
    retry_for: int, s3_backend: Backend, password: str, run_spare: SpareRunner, source: Path
) -> None:
    """Exit 10 in one line once --retry-for has passed, saying so; 0 tries once."""
    env = s3_env(s3_backend, password, f"http://127.0.0.1:{free_port()}")
    started = time.monotonic()
    result = run_spare("create", "--retry-for", str(retry_for), "--path", source, env=env)
    took = time.monotonic() - started
    line = assert_error(result, EXIT_UNREACHABLE)
    assert "cannot reach the endpoint" in line
    if retry_for:
        retried = re.search(r"; retried for (\d+) s$", line)
        assert retried and retry_for <= int(retried[1]) <= took + 1, line
        assert took >= retry_for
    else:
        assert "retried" not in line
    assert took < retry_for + 20


def test_a_host_name_that_does_not_exist_is_not_retried(
    password: str, run_spare: SpareRunner, source: Path
) -> None:
    """A typo in --endpoint fails at once (the default --retry-for is 10 minutes)."""
    host = "no-such-host.invalid"
    try:
        socket.getaddrinfo(host, 80)
    except socket.gaierror as exc:
        if exc.errno != socket.EAI_NONAME:
            pytest.skip(f"this host's DNS cannot say that {host} does not exist ({exc})")
    else:
        pytest.skip(f"this host's DNS resolves {host}")
    env = {
        "SPARE_ENDPOINT": f"http://{host}:9000",
        "SPARE_ACCESS_KEY": "key",
        "SPARE_SECRET_KEY": "secret",
        "SPARE_BUCKET": "spare-test-no-such-host",
        "SPARE_PASSWORD": password,
    }
    line = assert_error(
        run_spare("create", "--path", source, env=env, timeout=60), EXIT_UNREACHABLE
    )
    assert "host name does not exist" in line and "check --endpoint" in line


# -- not an S3 server --------------------------------------------------------------------------
#: What a web server or a proxy answers to every request: a page that parses as XML, or not; or
#: a captive portal's login page, with 200.
NOT_S3_REPLIES = {
    "404-xhtml": (404, b"<html><body><h1>404 Not Found</h1></body></html>"),
    "404-html": (404, b"<html><body>Not Found<br>nothing here</body></html>"),
    "200-portal": (200, b"<html><body><form>Log in to the guest network</form></body></html>"),
}


@pytest.fixture(params=sorted(NOT_S3_REPLIES))
def web_server(request: pytest.FixtureRequest) -> Iterator[str]:
    """An HTTP server on a free loopback port that answers one status and an HTML page to
    everything."""
    status, page = NOT_S3_REPLIES[request.param]

    class NotFound(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(page)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(page)

        do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    server = ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize("command", ["create", "restore"])
def test_an_endpoint_that_is_not_an_s3_server_is_an_endpoint_error(
    command: str, web_server: str, password: str, run_spare: SpareRunner, tmp_path: Path
) -> None:
    """Not "damaged" (exit 14) nor "no backup" (exit 15): exit 10, naming the endpoint, at once
    (the default --retry-for is 10 minutes). A page sent with 200 parsed as an empty listing:
    restore said there was no backup."""
    env = {
        "SPARE_ENDPOINT": web_server,
        "SPARE_ACCESS_KEY": "key",
        "SPARE_SECRET_KEY": "secret",
        "SPARE_BUCKET": "spare-test-web-server",
        "SPARE_PASSWORD": password,
    }
    path = tmp_path / ("source" if command == "create" else "restored")
    if command == "create":
        write_file(path / "a.txt", b"a\n", 0o644)
    line = assert_error(run_spare(command, "--path", path, env=env, timeout=60), EXIT_UNREACHABLE)
    assert f"{web_server} does not answer as an S3 server" in line, line
    assert line.endswith("check --endpoint"), line


# -- region ------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("given", "location"),
    [
        (["--region", "eu-west-1"], "eu-west-1"),
        (["AWS_REGION=eu-central-1"], "eu-central-1"),
        # us-east-1 is never named: AWS refuses it as a LocationConstraint.
        (["--region", "us-east-1"], None),
        ([], None),
    ],
    ids=["option", "AWS_REGION", "us-east-1", "none"],
)
def test_a_bucket_is_created_in_the_region_given(
    given: list[str],
    location: str | None,
    s3_backend: Backend,
    password: str,
    run_spare: SpareRunner,
    source: Path,
) -> None:
    """The S3 server says the bucket is where --region (or AWS_REGION) put it; and a create
    signed for that region works."""
    options = [arg for arg in given if "=" not in arg]
    variables = dict(arg.split("=", 1) for arg in given if "=" in arg)
    env = {**s3_backend.env, "SPARE_PASSWORD": password}
    assert_ok(run_spare("create", *options, "--path", source, env={**env, **variables}))
    client: Any = s3_backend.client  # type: ignore[attr-defined]
    assert client.get_bucket_location(Bucket=s3_backend.bucket).get("LocationConstraint") == (
        location
    )
    assert_ok(run_spare("verify", *options, "--path", source, env={**env, **variables}))
