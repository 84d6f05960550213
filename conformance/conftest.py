"""Fixtures: a sandbox process per test module, and small helpers for its control API.

The sandbox is the real `switchyard sandbox` binary (SWITCHYARD_BIN, default target/debug/switchyard)
on an ephemeral port; everything here talks to it over HTTP.
"""

import json
import os
import re
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("SWITCHYARD_BIN", str(ROOT / "target" / "debug" / "switchyard"))


class Sandbox:
    def __init__(self, proc, url):
        self.proc = proc
        self.url = url
        self.info = self.get("/info")
        self.api_url = self.info["api_url"]
        self.bot_token = self.info["tokens"]["bot"]
        self.app_token = self.info["tokens"]["app"]
        self.signing_secret = self.info["signing_secret"]
        self.bot_user_id = self.info["bot_user_id"]
        self.channel_ids = {c["name"]: c["id"] for c in self.get("/channels")["channels"]}
        self.user_ids = {u["name"]: u["id"] for u in self.get("/users")["users"]}

    def request(self, method, path, body=None, raw=None):
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        req = urllib.request.Request(
            f"{self.url}/_sandbox{path}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                return json.loads(resp.read())
        except urllib.error.HTTPError as e:
            raise AssertionError(f"{method} {path}: {e.code} {e.read().decode()}") from None

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body):
        return self.request("POST", path, body)

    def set_manifest(self, manifest):
        return self.request("PUT", "/app/manifest", raw=json.dumps(manifest).encode())

    def messages(self, channel, wait_for=None, timeout_ms=5000):
        query = f"?wait_for={wait_for}&timeout_ms={timeout_ms}" if wait_for else ""
        return self.get(f"/channels/{channel}/messages{query}")["messages"]

    def thread(self, channel, ts, wait_for=None, timeout_ms=5000):
        query = f"?wait_for={wait_for}&timeout_ms={timeout_ms}" if wait_for else ""
        return self.get(f"/channels/{channel}/threads/{ts}{query}")["messages"]

    def wait_until(self, what, check, timeout=10.0):
        """Polls `check` (falsy until done) and returns its value; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = check()
            if value:
                return value
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {what}")


def start_sandbox(*extra):
    proc = subprocess.Popen(
        [BIN, "sandbox", "--port", "0", "--retry-delays-ms", "0,200,500", *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    match = re.search(r"on (http://127\.0\.0\.1:\d+)", line)
    if not match:
        proc.kill()
        raise AssertionError(f"the sandbox did not start: {line!r}")
    return Sandbox(proc, match.group(1))


@pytest.fixture(scope="module")
def sandbox():
    sb = start_sandbox()
    yield sb
    sb.proc.terminate()
    try:
        sb.proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        sb.proc.kill()


@pytest.fixture(autouse=True)
def no_rate_limits(sandbox):
    """Slack's limits are on by default; tests that want them turn them on."""
    sandbox.request("PUT", "/rate_limits", {"enabled": False})
    yield


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def manifest(socket_mode, request_url=None, scopes=None, events=None):
    """A manifest for the app under test; URLs only in HTTP mode."""
    commands = [{"command": "/conform", "description": "conformance", "usage_hint": "x"}]
    if request_url:
        for c in commands:
            c["url"] = request_url
    settings = {
        "event_subscriptions": {"bot_events": events or ["app_mention", "message.channels"]},
        "interactivity": {"is_enabled": True},
        "socket_mode_enabled": socket_mode,
    }
    if request_url:
        settings["event_subscriptions"]["request_url"] = request_url
        settings["interactivity"]["request_url"] = request_url
    return {
        "display_information": {"name": "Conformance"},
        "features": {"bot_user": {"display_name": "conformance"}, "slash_commands": commands},
        "oauth_config": {
            "scopes": {
                "bot": scopes
                if scopes is not None
                else [
                    "app_mentions:read", "channels:history", "channels:join", "channels:manage",
                    "channels:read", "chat:write", "commands", "files:read", "files:write",
                    "groups:read", "groups:write", "im:history", "im:read", "im:write",
                    "reactions:read", "reactions:write", "usergroups:read", "users:read",
                    "users:read.email",
                ]
            }
        },
        "settings": settings,
    }
