"""Slack's error shapes as slack_sdk sees them: auth, scopes, arguments, Block Kit limits, rate limits
(real ones and injected), server errors and resets, and the SDK's retry handlers recovering."""

import time

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler, ServerErrorRetryHandler

from sandboxlib import ALL_SCOPES, manifest

# Slack's limits are on in this module (and turned off again by the tests that need them off).
SANDBOX_RATE_LIMITS = True


def slack_error(call, *args, **kwargs):
    with pytest.raises(SlackApiError) as e:
        call(*args, **kwargs)
    return e.value.response


def header(response, name):
    """A reply header, by name in any case, as one string (slack_sdk keeps what urllib gives)."""
    for k, v in response.headers.items():
        if k.lower() == name.lower():
            return v[0] if isinstance(v, list) else v
    return None


@pytest.fixture(autouse=True)
def clean(sandbox):
    sandbox.control("DELETE", "/faults")
    sandbox.put("/rate_limits", {"enabled": False})
    yield
    sandbox.control("DELETE", "/faults")
    sandbox.put("/rate_limits", {"enabled": False})


def test_auth_errors(sandbox, client):
    err = slack_error(WebClient(token="xoxb-wrong", base_url=sandbox.api_url).auth_test)
    assert err["ok"] is False and err["error"] == "invalid_auth", err.data
    assert err.status_code == 200, "Slack answers errors with HTTP 200"
    err = slack_error(WebClient(base_url=sandbox.api_url).auth_test)
    assert err["error"] == "not_authed", err.data
    app_client = WebClient(token=sandbox.app_token, base_url=sandbox.api_url)
    err = slack_error(app_client.auth_test)
    assert err["error"] == "not_allowed_token_type", f"an xapp- token outside apps.connections.open: {err.data}"
    err = slack_error(app_client.chat_postMessage, channel="general", text="x")
    assert err["error"] == "not_allowed_token_type", err.data
    err = slack_error(client.apps_connections_open, app_token=sandbox.bot_token)
    assert err["error"] == "not_allowed_token_type", f"apps.connections.open wants the app-level token: {err.data}"


def test_unknown_method(client):
    err = slack_error(client.api_call, "nothing.here")
    assert err["error"] == "unknown_method", err.data


def test_argument_and_block_errors(sandbox, client):
    general = sandbox.channel_ids["general"]
    err = slack_error(client.chat_postMessage, channel="C0NOPE000", text="x")
    assert err["error"] == "channel_not_found", err.data
    err = slack_error(client.api_call, "chat.postMessage", params={"channel": general})
    assert err["error"] == "no_text", f"neither text nor blocks nor attachments: {err.data}"
    err = slack_error(client.chat_postMessage, channel=general, text="x", blocks=[{"type": "divider"}] * 51)
    assert err["error"] == "invalid_blocks", f"51 blocks: {err.data}"
    client.chat_postMessage(channel=general, text="x", blocks=[{"type": "divider"}] * 50)
    err = slack_error(client.chat_postMessage, channel=general, text="x" * 40_001)
    assert err["error"] == "msg_too_long", err.data
    long_section = {"type": "section", "text": {"type": "mrkdwn", "text": "y" * 3001}}
    err = slack_error(client.chat_postMessage, channel=general, text="x", blocks=[long_section])
    assert err["error"] == "invalid_blocks", f"a section text over 3,000 characters: {err.data}"
    buttons = [{"type": "button", "text": {"type": "plain_text", "text": str(i)}, "action_id": f"a{i}"} for i in range(26)]
    err = slack_error(client.chat_postMessage, channel=general, text="x", blocks=[{"type": "actions", "elements": buttons}])
    assert err["error"] == "invalid_blocks", f"26 elements in an actions block: {err.data}"
    many_chars = [{"type": "section", "text": {"type": "mrkdwn", "text": "y" * 2900}}] * 5
    err = slack_error(client.chat_postMessage, channel=general, text="x", blocks=many_chars)
    assert err["error"] == "msg_blocks_too_long", f"14,500 characters of blocks: {err.data}"
    err = slack_error(client.chat_postMessage, channel=general, text="x", blocks=[{"type": "markdown", "text": "z" * 12_001}])
    assert err["error"] == "invalid_blocks", f"a markdown block over 12,000 characters: {err.data}"
    bad = {"type": "section"}  # neither text nor fields
    err = slack_error(client.chat_postMessage, channel=general, text="x", blocks=[bad])
    assert err["error"] == "invalid_blocks", err.data
    err = slack_error(client.users_info, user="U0NOPE000")
    assert err["error"] == "user_not_found", err.data


def test_missing_scope(sandbox, client):
    sandbox.set_manifest(manifest(socket_mode=True, scopes=["channels:read", "users:read"]))
    try:
        err = slack_error(client.chat_postMessage, channel=sandbox.channel_ids["general"], text="x")
        assert err["error"] == "missing_scope", err.data
        assert err["needed"] == "chat:write", err.data
        assert set(err["provided"].split(",")) == {"channels:read", "users:read"}, err.data
        assert client.users_info(user=sandbox.user_ids["alice"])["ok"], "a call within the scopes still works"
    finally:
        sandbox.set_manifest(manifest(socket_mode=True, scopes=ALL_SCOPES))
    assert client.chat_postMessage(channel=sandbox.channel_ids["general"], text="back")["ok"]


def test_injected_rate_limit_is_a_429_with_retry_after(sandbox, client):
    sandbox.post("/faults", {"target": "web_api", "method": "auth.test", "fault": "rate_limited", "retry_after": 1, "times": 1})
    err = slack_error(client.auth_test)
    assert err.status_code == 429, err.status_code
    assert err["error"] == "ratelimited", err.data
    assert header(err, "Retry-After") == "1", err.headers
    assert client.auth_test()["ok"], "the rule fired once (times: 1)"


def test_rate_limit_retry_handler_recovers(sandbox):
    sandbox.post("/faults", {"target": "web_api", "method": "auth.test", "fault": "rate_limited", "retry_after": 1, "times": 1})
    patient = WebClient(
        token=sandbox.bot_token, base_url=sandbox.api_url, timeout=10,
        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)],
    )
    started = time.monotonic()
    assert patient.auth_test()["ok"] is True
    assert time.monotonic() - started >= 0.9, "the handler waited Retry-After before the second try"
    calls = sandbox.api_calls("auth.test")
    assert [c["status"] for c in calls[-2:]] == [429, 200], calls[-2:]


def test_per_method_override(sandbox, client):
    sandbox.put("/rate_limits", {"enabled": True, "overrides": {"users.list": {"per_minute": 60, "burst": 1}}})
    settings = sandbox.get("/rate_limits")
    assert settings["rate_limits"]["overrides"]["users.list"]["burst"] == 1, settings
    client.users_list()
    err = slack_error(client.users_list)
    assert err.status_code == 429 and err["error"] == "ratelimited", err.data
    assert int(header(err, "Retry-After")) >= 1, err.headers
    patient = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url, timeout=10,
                        retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=2)])
    assert patient.users_list()["ok"] is True


def test_real_per_channel_message_limit(sandbox, client):
    sandbox.put("/rate_limits", {"enabled": True})
    statuses = []
    for i in range(6):
        try:
            client.chat_postMessage(channel=sandbox.channel_ids["alerts"], text=f"burst {i}")
            statuses.append(200)
        except SlackApiError as e:
            statuses.append(e.response.status_code)
            assert e.response["error"] == "ratelimited" and int(header(e.response, "Retry-After")) >= 1
    assert statuses[:3] == [200, 200, 200] and 429 in statuses, f"1/s per channel, burst 3: {statuses}"
    # Another channel has its own budget.
    assert client.chat_postMessage(channel=sandbox.channel_ids["general"], text="elsewhere")["ok"]


def test_server_error_and_its_retry_handler(sandbox, client):
    sandbox.post("/faults", {"target": "web_api", "method": "auth.test", "fault": "server_error", "status": 503, "times": 1})
    err = slack_error(client.auth_test)
    assert err.status_code == 503, err.status_code
    sandbox.post("/faults", {"target": "web_api", "method": "auth.test", "fault": "server_error", "times": 1})
    sturdy = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url, timeout=10,
                       retry_handlers=[ServerErrorRetryHandler(max_retry_count=1)])
    assert sturdy.auth_test()["ok"] is True


def test_reset_is_retried_by_the_default_handler(sandbox, client):
    # slack_sdk's WebClient retries a connection error once by default (ConnectionErrorRetryHandler).
    sandbox.post("/faults", {"target": "web_api", "method": "auth.test", "fault": "reset", "times": 1})
    assert client.auth_test()["ok"] is True


def test_slow_call_times_out_in_the_client(sandbox):
    sandbox.post("/faults", {"target": "web_api", "method": "users.list", "fault": "slow", "delay_ms": 1500, "times": 1})
    hasty = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url, timeout=0.5, retry_handlers=[])
    with pytest.raises(Exception) as e:
        hasty.users_list()
    assert "timed out" in str(e.value).lower(), repr(e.value)


SCOPED_CALLS = [
    # (the scope taken away, the call that needs it)
    ("chat:write", lambda c, sb: c.chat_postMessage(channel=sb.channel_ids["general"], text="x")),
    ("channels:history", lambda c, sb: c.conversations_history(channel=sb.channel_ids["general"])),
    ("channels:read", lambda c, sb: c.conversations_info(channel=sb.channel_ids["general"])),
    ("channels:manage", lambda c, sb: c.conversations_create(name="scoped")),
    ("reactions:write", lambda c, sb: c.reactions_add(channel=sb.channel_ids["general"], timestamp="1.000001", name="x")),
    ("users:read", lambda c, sb: c.users_info(user=sb.user_ids["alice"])),
    ("users:read.email", lambda c, sb: c.users_lookupByEmail(email="alice@example.com")),
    ("usergroups:read", lambda c, sb: c.usergroups_list()),
    ("files:write", lambda c, sb: c.files_getUploadURLExternal(filename="a.txt", length=1)),
]


@pytest.mark.parametrize("scope,call", SCOPED_CALLS, ids=[s for s, _ in SCOPED_CALLS])
def test_each_method_is_gated_by_its_scope(sandbox, client, scope, call):
    sandbox.set_manifest(manifest(socket_mode=True, scopes=[s for s in ALL_SCOPES if s != scope]))
    try:
        err = slack_error(call, client, sandbox)
        assert err["error"] == "missing_scope", err.data
        assert scope in err["needed"].split(","), f"needed names {scope}: {err.data}"
        assert scope not in err["provided"].split(","), err.data
    finally:
        sandbox.set_manifest(manifest(socket_mode=True, scopes=ALL_SCOPES))


def test_incoming_webhook_rate_limit(sandbox):
    from slack_sdk.webhook import WebhookClient

    sandbox.put("/rate_limits", {"enabled": True})
    url = sandbox.post("/webhooks", {"channel": "general"})["url"]
    hook = WebhookClient(url, timeout=10)
    answers = [hook.send(text=f"hook {i}") for i in range(6)]
    statuses = [a.status_code for a in answers]
    assert statuses[:3] == [200, 200, 200] and 429 in statuses, f"1/s per channel, burst 3: {statuses}"
    limited = next(a for a in answers if a.status_code == 429)
    assert limited.body == "rate_limited" and int(header(limited, "Retry-After")) >= 1, (limited.body, limited.headers)
