"""Credentials never reach logs, job errors or HTTP replies, even when Label Studio echoes them back.

A real backend process (the toy backend: the same server, client and job code as the product
backends) runs at DEBUG with a legacy token and Basic auth configured, against a misbehaving
"Label Studio" that answers every call with 401 and the Authorization header it received in the body
(a proxy or a debug page can do that). Then everything the process wrote is grepped.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
import time

import requests

from tests.conftest import sample
from tests.harness import wait_until

TOKEN = "f0e1d2c3b4a5968778695a4b3c2d1e0f12345678"  # a legacy token's shape: 40 hex characters
PASSWORD = "basic-auth-pass-7391"


class EchoingLabelStudio(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802
        body = json.dumps({"detail": "Invalid token", "you_sent": self.headers.get("Authorization")}).encode()
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_tokens_and_passwords_never_leave_the_process(start_backend, tmp_path):
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), EchoingLabelStudio)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    ls_url = f"http://127.0.0.1:{server.server_address[1]}"
    proc, url = start_backend("tests.toy_backend", {
        "DATA_DIR": tmp_path / "data", "LABEL_STUDIO_URL": ls_url, "LABEL_STUDIO_API_KEY": TOKEN,
        "BASIC_AUTH_USER": "ls", "BASIC_AUTH_PASS": PASSWORD, "LOG_LEVEL": "DEBUG", "TRAIN_DEBOUNCE_S": 0})
    auth = ("ls", PASSWORD)
    replies = []
    try:
        replies.append(requests.post(f"{url}/setup", json={**sample("setup"), "access_token": TOKEN}, auth=auth, timeout=10))
        replies.append(requests.post(f"{url}/setup", json=sample("setup"), auth=("ls", PASSWORD[:-1]), timeout=10))
        replies.append(requests.post(f"{url}/setup", json=sample("setup"),
                                     headers={"Authorization": f"Token {TOKEN}"}, timeout=10))
        body = sample("predict")
        body["params"] = {"login": "ls", "password": PASSWORD, "context": None}
        replies.append(requests.post(f"{url}/predict", json=body, auth=auth, timeout=30))  # image on the echoing LS
        replies.append(requests.post(f"{url}/webhook", json=sample("webhook-start_training"), auth=auth, timeout=10))
        project = sample("webhook-start_training")["project"]["id"]

        def failed_job():
            listed = requests.get(f"{url}/jobs?project={project}", auth=auth, timeout=5).json()["jobs"]
            return [j for j in listed if j["state"] == "failed"]

        (job,) = wait_until(failed_job, 60, "the training job to fail on the 401")
        assert "401" in json.dumps(job), job  # the error says what went wrong ...
        time.sleep(0.5)  # let the last log lines flush
    finally:
        server.shutdown()
    everything = proc.log_tail(10_000_000) + "".join(r.text for r in replies) + json.dumps(job)
    assert TOKEN not in everything and TOKEN[:16] not in everything, "the API token leaked"
    assert PASSWORD not in everything, "the Basic auth password leaked"
    assert base64.b64encode(f"ls:{PASSWORD}".encode()).decode() not in everything
    assert [r.status_code for r in replies[:3]] == [200, 401, 401]
