"""Task identity: the ECS metadata endpoint when present, else host and pid."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

from container.identity import METADATA_VARIABLE, discover

ARN = "arn:aws:ecs:us-east-1:123456789012:task/wakeful/0123456789abcdef"


class _Metadata(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"TaskARN": ARN, "Family": "wakeful"}).encode()
        self.send_response(200 if self.path.endswith("/task") else 404)
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_task_arn_from_the_metadata_endpoint():
    server = HTTPServer(("127.0.0.1", 0), _Metadata)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        uri = f"http://127.0.0.1:{server.server_address[1]}/v4/abc"
        identity = discover({METADATA_VARIABLE: uri})
    finally:
        server.shutdown()
    assert identity.holder == ARN
    assert identity.task_arn == ARN


def test_falls_back_to_host_and_pid_when_the_endpoint_is_unreachable():
    identity = discover({METADATA_VARIABLE: "http://127.0.0.1:9/v4/none"}, timeout=0.5)
    assert identity.task_arn is None
    assert identity.holder.endswith(f":{os.getpid()}")


def test_host_and_pid_outside_ecs():
    assert discover({}).holder.endswith(f":{os.getpid()}")


def test_every_process_start_is_another_boot():
    first, second = discover({}), discover({})
    assert first.holder == second.holder
    assert first.boot != second.boot and len(first.boot) >= 16
