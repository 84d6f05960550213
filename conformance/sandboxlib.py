"""A running `switchyard sandbox` process and a small stdlib client for its control API.

Nothing here uses Slack's SDKs: the control API (`/_sandbox/…`, docs/sandbox.md section 5) is the
sandbox's own, and the tests read back through it what the SDKs did.
"""

import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BIN = os.environ.get("SWITCHYARD_BIN", str(ROOT / "target" / "debug" / "switchyard"))
STARTUP_TIMEOUT = 20.0
HTTP_TIMEOUT = 15.0

# Every bot scope the tests need; a manifest with fewer is made on purpose (missing_scope).
ALL_SCOPES = [
    "app_mentions:read", "channels:history", "channels:join", "channels:manage", "channels:read",
    "chat:write", "commands", "files:read", "files:write", "groups:history", "groups:read",
    "groups:write", "im:history", "im:read", "im:write", "reactions:read", "reactions:write",
    "usergroups:read", "users:read", "users:read.email",
]


class ControlError(AssertionError):
    def __init__(self, method, path, status, body):
        super().__init__(f"{method} /_sandbox{path}: HTTP {status}: {body!r}")
        self.status = status
        self.body = body


class Sandbox:
    """One sandbox process. `control()` is the whole control API; the rest are shorthands."""

    def __init__(self, proc, url, workdir, stdout_lines):
        self.proc = proc
        self.url = url
        self.workdir = workdir
        self.stdout_lines = stdout_lines
        self.info = self.control("GET", "/info")
        self.api_url = self.info["api_url"]
        self.bot_token = self.info["tokens"]["bot"]
        self.app_token = self.info["tokens"]["app"]
        self.user_tokens = self.info["tokens"]["users"]
        self.signing_secret = self.info["signing_secret"]
        self.bot_user_id = self.info["bot_user_id"]
        self.team_id = self.info["team_id"]
        self.app_id = self.info["app_id"]
        self.channel_ids = {c["name"]: c["id"] for c in self.control("GET", "/channels")["channels"]}
        self.user_ids = {u["name"]: u["id"] for u in self.control("GET", "/users")["users"]}

    # -- the control API -------------------------------------------------------------------

    def control(self, method, path, body=None, *, raw=None, expect_status=None, timeout=HTTP_TIMEOUT):
        """`method /_sandbox{path}` with a JSON body; returns the JSON reply.

        A 4xx/5xx raises ControlError unless it is `expect_status` (a status, or "4xx" for any client
        error), in which case its JSON is returned.
        """
        def expected(status):
            if expect_status == "4xx":
                return 400 <= status < 500
            return status == expect_status

        if raw is not None:
            data = raw if isinstance(raw, bytes) else raw.encode()
        elif body is not None:
            data = json.dumps(body).encode()
        else:
            data = None
        req = urllib.request.Request(
            f"{self.url}/_sandbox{path}", data=data, method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                status, text = resp.status, resp.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
            if not expected(status):
                raise ControlError(method, path, status, text) from None
        if expect_status is not None and not expected(status):
            raise ControlError(method, path, status, f"(expected {expect_status}) {text}")
        return json.loads(text) if text else {}

    def get(self, path, **query):
        q = {k: v for k, v in query.items() if v is not None}
        return self.control("GET", path + ("?" + urllib.parse.urlencode(q) if q else ""))

    def post(self, path, body):
        return self.control("POST", path, body)

    def put(self, path, body):
        return self.control("PUT", path, body)

    def set_manifest(self, manifest):
        return self.control("PUT", "/app/manifest", manifest)

    # -- long-polled reads (`wait_for` items, at most `timeout_ms`) ---------------------------

    def messages(self, channel, wait_for=None, timeout_ms=5000):
        q = {"wait_for": wait_for, "timeout_ms": timeout_ms} if wait_for else {}
        return self.get(f"/channels/{channel}/messages", **q)["messages"]

    def thread(self, channel, ts, wait_for=None, timeout_ms=5000):
        q = {"wait_for": wait_for, "timeout_ms": timeout_ms} if wait_for else {}
        return self.get(f"/channels/{channel}/threads/{ts}", **q)["messages"]

    def ephemerals(self, user, channel, wait_for=None, timeout_ms=5000):
        q = {"wait_for": wait_for, "timeout_ms": timeout_ms} if wait_for else {}
        return self.get("/ephemerals", user=user, channel=channel, **q)["ephemerals"]

    def views(self, user, wait_for=None, timeout_ms=5000):
        q = {"wait_for": wait_for, "timeout_ms": timeout_ms} if wait_for else {}
        return self.get("/views", user=user, **q)["views"]

    def api_calls(self, method, wait_for=None, timeout_ms=5000):
        q = {"wait_for": wait_for, "timeout_ms": timeout_ms} if wait_for else {}
        return self.get("/api_calls", method=method, **q)["calls"]

    def deliveries(self, wait_for=None, timeout_ms=5000):
        q = {"wait_for": wait_for, "timeout_ms": timeout_ms} if wait_for else {}
        return self.get("/deliveries", **q)["deliveries"]

    def wait_until(self, what, check, timeout=8.0, interval=0.05):
        """For conditions no list's `wait_for` expresses (an edit, a count of one kind):
        polls `check` until it returns something truthy, and returns that; fails after `timeout` s."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(interval)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")

    # -- the process -------------------------------------------------------------------------

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def stderr_tail(self, n=40):
        try:
            return "\n".join((Path(self.workdir) / "stderr.log").read_text().splitlines()[-n:])
        except OSError:
            return ""


def start_sandbox(manifest=None, rate_limits=False, extra_args=()):
    """Starts `switchyard sandbox --port 0` and waits for its first line (`… on http://…`)."""
    if not os.path.exists(BIN):
        raise AssertionError(f"no sandbox binary at {BIN}: run `cargo build -p switchyard` or set SWITCHYARD_BIN")
    workdir = tempfile.mkdtemp(prefix="switchyard-conformance-")
    args = [BIN, "sandbox", "--port", "0", "--retry-delays-ms", "0,200,500"]
    if not rate_limits:
        args.append("--no-rate-limits")
    if manifest is not None:
        path = Path(workdir) / "manifest.json"
        path.write_text(json.dumps(manifest))
        args += ["--manifest", str(path)]
    args += list(extra_args)
    stderr = open(Path(workdir) / "stderr.log", "w")
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=stderr, stdin=subprocess.DEVNULL, text=True)
    stderr.close()

    # Read stdout on a thread for the whole run: the first line gives the URL, and a pipe nobody
    # drains would eventually block the sandbox.
    lines, first = [], threading.Event()

    def drain():
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
            first.set()
        first.set()

    threading.Thread(target=drain, daemon=True).start()
    first.wait(STARTUP_TIMEOUT)
    match = re.search(r"on (http://127\.0\.0\.1:\d+)", lines[0]) if lines else None
    if not match:
        proc.kill()
        err = (Path(workdir) / "stderr.log").read_text()[-2000:]
        raise AssertionError(f"the sandbox did not start ({args}): stdout {lines[:3]!r}, stderr {err!r}")
    return Sandbox(proc, match.group(1), workdir, lines)


def manifest(socket_mode=True, events_url=None, commands_url=None, interactivity_url=None, scopes=None,
             bot_events=None, commands=("/conform",)):
    """The app under test, as a Slack app manifest. In HTTP mode the URLs say where each kind goes."""
    slash_commands = []
    for c in commands:
        cmd = {"command": c, "description": "conformance", "usage_hint": "[text]", "should_escape": False}
        if commands_url:
            cmd["url"] = commands_url
        slash_commands.append(cmd)
    settings = {
        "event_subscriptions": {
            "bot_events": list(bot_events or ["app_mention", "message.channels", "app_home_opened"]),
        },
        "interactivity": {"is_enabled": True},
        "org_deploy_enabled": False,
        "socket_mode_enabled": socket_mode,
        "token_rotation_enabled": False,
    }
    if events_url:
        settings["event_subscriptions"]["request_url"] = events_url
    if interactivity_url:
        settings["interactivity"]["request_url"] = interactivity_url
    return {
        "display_information": {"name": "Conformance"},
        "features": {
            "app_home": {"home_tab_enabled": True, "messages_tab_enabled": False},
            "bot_user": {"display_name": "conformance", "always_online": True},
            "slash_commands": slash_commands,
        },
        "oauth_config": {"scopes": {"bot": list(ALL_SCOPES if scopes is None else scopes)}},
        "settings": settings,
    }
