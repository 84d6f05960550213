"""HTTP deliveries (docs/sandbox.md section 4) as a Slack app receives them: slack_sdk's
SignatureVerifier accepts every request the sandbox signs (events, the url_verification handshake,
commands, interactions, retries), and retries follow Slack's rules."""

import json
import time
import urllib.parse

import pytest
from slack_sdk import WebClient
from slack_sdk.signature import SignatureVerifier

from receiver import Receiver
from sandboxlib import manifest


@pytest.fixture
def app(sandbox):
    """A recording receiver installed as the app's request URLs (HTTP mode), one per kind."""
    receiver = Receiver()
    receiver.install = lambda **kw: sandbox.set_manifest(manifest(
        socket_mode=False,
        events_url=f"{receiver.url}/events",
        commands_url=f"{receiver.url}/commands",
        interactivity_url=f"{receiver.url}/interactive",
        **kw,
    ))
    sandbox.control("DELETE", "/faults")
    yield receiver
    sandbox.control("DELETE", "/faults")
    sandbox.set_manifest(manifest(socket_mode=True))
    receiver.close()


def is_event(event_type):
    def check(r):
        if r.path != "/events":
            return False
        payload = r.json
        return payload.get("type") == "event_callback" and payload["event"]["type"] == event_type
    return check


def assert_signed(verifier, r):
    ts, sig = r.headers.get("x-slack-request-timestamp"), r.headers.get("x-slack-signature")
    assert ts and sig and sig.startswith("v0="), f"signature headers on {r}: {r.headers}"
    assert abs(time.time() - int(ts)) < 60, f"a current timestamp: {ts}"
    assert verifier.is_valid(r.body, ts, sig), f"SignatureVerifier rejects {r}"
    assert verifier.is_valid_request(r.body, r.headers), f"is_valid_request rejects {r}"
    assert not verifier.is_valid(r.body + " ", ts, sig), "a changed body must not verify"


def mention(sandbox, text="hi"):
    return sandbox.post("/messages", {"user": "alice", "channel": "general", "text": f"<@{sandbox.bot_user_id}> {text}"})


def test_url_verification_then_signed_events(sandbox, app):
    app.install()
    posted = mention(sandbox)
    verifier = SignatureVerifier(sandbox.signing_secret)
    [event] = app.wait_for("the app_mention event", is_event("app_mention"))
    app.wait_for("the message event", is_event("message"))

    to_events = [r for r in app.received if r.path == "/events"]
    first = to_events[0].json
    assert first["type"] == "url_verification" and first["challenge"], f"the handshake comes first: {to_events}"
    for r in to_events:
        assert r.headers["content-type"].startswith("application/json"), r.headers
        assert_signed(verifier, r)

    envelope = event.json
    assert envelope["team_id"] == sandbox.team_id and envelope["api_app_id"] == sandbox.app_id, envelope
    assert envelope["event_id"].startswith("Ev") and envelope["event_time"] > 0, envelope
    assert envelope["event_id"] in posted["event_ids"], f"the control API names the event ids: {posted}"
    inner = envelope["event"]
    assert inner["user"] == sandbox.user_ids["alice"] and inner["channel"] == sandbox.channel_ids["general"], inner
    assert inner["ts"] == posted["ts"] and f"<@{sandbox.bot_user_id}>" in inner["text"], inner
    assert "x-slack-retry-num" not in event.headers, event.headers


def test_commands_and_interactions_are_signed_forms(sandbox, app, client):
    app.install()
    verifier = SignatureVerifier(sandbox.signing_secret)

    result = sandbox.post("/commands", {"user": "alice", "channel": "general", "command": "/conform", "text": "x y"})
    assert result.get("error") is None and result["trigger_id"] and result["response_url"], result
    [command] = app.wait_for("the command", lambda r: r.path == "/commands")
    assert command.headers["content-type"].startswith("application/x-www-form-urlencoded"), command.headers
    assert_signed(verifier, command)
    fields = dict(urllib.parse.parse_qsl(command.body))
    assert fields["command"] == "/conform" and fields["text"] == "x y", fields
    assert fields["user_id"] == sandbox.user_ids["alice"] and fields["channel_id"] == sandbox.channel_ids["general"], fields
    assert fields["team_id"] == sandbox.team_id and fields["api_app_id"] == sandbox.app_id, fields
    assert fields["trigger_id"] == result["trigger_id"] and fields["response_url"] == result["response_url"], fields

    button = {"type": "actions", "block_id": "b1", "elements": [
        {"type": "button", "action_id": "approve", "value": "v1", "text": {"type": "plain_text", "text": "Approve"}}]}
    ts = client.chat_postMessage(channel=sandbox.channel_ids["general"], text="approve?", blocks=[button])["ts"]
    clicked = sandbox.post("/actions", {"user": "bob", "channel": "general", "ts": ts, "action_id": "approve"})
    assert clicked.get("error") is None, clicked
    [click] = app.wait_for("the block_actions payload", lambda r: r.path == "/interactive")
    assert click.headers["content-type"].startswith("application/x-www-form-urlencoded"), click.headers
    assert_signed(verifier, click)
    payload = json.loads(dict(urllib.parse.parse_qsl(click.body))["payload"])
    assert payload["type"] == "block_actions", payload
    assert payload["user"]["id"] == sandbox.user_ids["bob"] and payload["team"]["id"] == sandbox.team_id, payload
    assert payload["channel"]["id"] == sandbox.channel_ids["general"] and payload["message"]["ts"] == ts, payload
    action = payload["actions"][0]
    assert (action["action_id"], action["block_id"], action["value"]) == ("approve", "b1", "v1"), action
    assert payload["response_url"] and payload["trigger_id"] and payload["api_app_id"] == sandbox.app_id, payload


def test_a_500_is_retried_with_the_same_event_id(sandbox, app):
    app.install(bot_events=["app_mention"])
    answered = []

    def fail_first_event(r):
        if is_event("app_mention")(r) and not answered:
            answered.append(r)
            return 500, "", {}
        return None

    app.respond = fail_first_event
    mention(sandbox, "retry me")
    first, retry = app.wait_for("the retried event", is_event("app_mention"), count=2)
    assert first.json["event_id"] == retry.json["event_id"], (first, retry)
    assert retry.headers.get("x-slack-retry-num") == "1", retry.headers
    assert retry.headers.get("x-slack-retry-reason") == "http_error", retry.headers
    assert_signed(SignatureVerifier(sandbox.signing_secret), retry)
    delivery = sandbox.wait_until(
        "the delivery to be acked",
        lambda: next((d for d in sandbox.deliveries() if d.get("event_id") == first.json["event_id"] and d["outcome"] == "acked"), None),
    )
    assert [a["retry_num"] for a in delivery["attempts"]] == [0, 1], delivery
    assert all(a["transport"] == "http" for a in delivery["attempts"]), delivery


def test_no_retry_header_stops_retries(sandbox, app):
    app.install(bot_events=["app_mention"])
    app.respond = lambda r: (500, "", {"X-Slack-No-Retry": "1"}) if is_event("app_mention")(r) else None
    mention(sandbox, "do not retry")
    [event] = app.wait_for("the event", is_event("app_mention"))
    event_id = event.json["event_id"]
    delivery = sandbox.wait_until(
        "the delivery's outcome",
        lambda: next((d for d in sandbox.deliveries() if d.get("event_id") == event_id and d["outcome"] != "pending"), None),
    )
    assert delivery["outcome"] == "no_retry", delivery
    time.sleep(0.3)  # the first retry would come at once (--retry-delays-ms 0,…)
    assert len([r for r in app.received if is_event("app_mention")(r)]) == 1, app.received


def test_duplicate_fault_delivers_twice_as_a_retry(sandbox, app):
    app.install(bot_events=["app_mention"])
    sandbox.post("/faults", {"target": "events", "kind": "event", "fault": "duplicate", "times": 1})
    mention(sandbox, "twice")
    first, second = app.wait_for("the duplicated event", is_event("app_mention"), count=2)
    time.sleep(0.3)
    assert len([r for r in app.received if is_event("app_mention")(r)]) == 2, f"twice, not more: {app.received}"
    assert first.json["event_id"] == second.json["event_id"], (first, second)
    assert second.headers.get("x-slack-retry-num") == "1", second.headers
    assert_signed(SignatureVerifier(sandbox.signing_secret), second)


def test_a_failing_command_url_is_dispatch_failed(sandbox, app):
    app.install()
    app.respond = lambda r: (500, "", {}) if r.path == "/commands" else None
    result = sandbox.post("/commands", {"user": "alice", "channel": "general", "command": "/conform", "text": ""})
    assert result.get("error") == "dispatch_failed", f"a non-2xx to a command: {result}"
    time.sleep(0.3)
    assert len([r for r in app.received if r.path == "/commands"]) == 1, "commands are not retried"


def test_a_slow_answer_is_retried_as_http_timeout(sandbox, app):
    app.install(bot_events=["app_mention"])
    sandbox.put("/delivery", {"ack_timeout_ms": 300})
    slow = []

    def slow_first(r):
        if is_event("app_mention")(r) and not slow:
            slow.append(r)
            time.sleep(0.8)
        return None

    app.respond = slow_first
    try:
        mention(sandbox, "slowly")
        first, retry = app.wait_for("the retry after a timeout", is_event("app_mention"), count=2)
    finally:
        sandbox.put("/delivery", {"ack_timeout_ms": 3000})
    assert first.json["event_id"] == retry.json["event_id"], (first, retry)
    assert retry.headers.get("x-slack-retry-num") == "1", retry.headers
    assert retry.headers.get("x-slack-retry-reason") == "http_timeout", retry.headers


def test_drop_fault_is_retried_as_after_a_timeout(sandbox, app):
    app.install(bot_events=["app_mention"])
    sandbox.post("/faults", {"target": "events", "kind": "event", "fault": "drop", "times": 1})
    posted = mention(sandbox, "dropped")
    [event] = app.wait_for("the retried event", is_event("app_mention"))
    assert event.json["event_id"] in posted["event_ids"], (event, posted)
    assert event.headers.get("x-slack-retry-num") == "1", f"the first attempt was dropped: {event.headers}"
    assert event.headers.get("x-slack-retry-reason") == "http_timeout", event.headers


def test_an_undeclared_command_does_not_exist(sandbox, app):
    app.install()
    refused = sandbox.control("POST", "/commands", {"user": "alice", "channel": "general", "command": "/nope", "text": ""},
                              expect_status="4xx")
    assert refused["ok"] is False and refused["error"], refused
    time.sleep(0.2)
    assert not [r for r in app.received if r.path == "/commands"], "nothing was sent to the app"
