"""Fixtures: a fresh sandbox process per test module (so modules cannot disturb each other).

The sandbox is the real `switchyard sandbox` binary (SWITCHYARD_BIN, default target/debug/switchyard)
on an ephemeral port, started with `--manifest` (the module's SANDBOX_MANIFEST, or the default
app of sandboxlib.manifest()) and `--retry-delays-ms 0,200,500`. Rate limits are off unless the
module sets SANDBOX_RATE_LIMITS = True: Slack's real limits (1 message/s per channel, burst 3)
would otherwise throttle tests that post quickly.
"""

import pytest
from slack_sdk import WebClient

from sandboxlib import manifest, start_sandbox


@pytest.fixture(scope="module")
def sandbox(request):
    sb = start_sandbox(
        manifest=getattr(request.module, "SANDBOX_MANIFEST", None) or manifest(socket_mode=True),
        rate_limits=getattr(request.module, "SANDBOX_RATE_LIMITS", False),
    )
    yield sb
    sb.stop()


@pytest.fixture(scope="module")
def client(sandbox):
    """slack_sdk's WebClient with the bot token, pointed at the sandbox's Web API."""
    return WebClient(token=sandbox.bot_token, base_url=sandbox.api_url, timeout=10)


@pytest.fixture(scope="module")
def alice_client(sandbox):
    return WebClient(token=sandbox.user_tokens["alice"], base_url=sandbox.api_url, timeout=10)


@pytest.hookimpl(tryfirst=True, hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On a failure, show the end of the sandbox's stderr: it is usually the quickest explanation."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed:
        sb = item.funcargs.get("sandbox") if hasattr(item, "funcargs") else None
        if sb is not None:
            tail = sb.stderr_tail()
            if tail:
                report.sections.append(("sandbox stderr (tail)", tail))
