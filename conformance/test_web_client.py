"""slack_sdk's WebClient against the sandbox: every implemented method parses, errors are Slack's."""

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import RateLimitErrorRetryHandler

from conftest import manifest


@pytest.fixture(scope="module")
def client(sandbox):
    return WebClient(token=sandbox.bot_token, base_url=sandbox.api_url)


def test_auth_and_connections(sandbox, client):
    auth = client.auth_test()
    assert auth["user_id"] == sandbox.bot_user_id and auth["team_id"] == sandbox.info["team_id"]
    app_client = WebClient(token=sandbox.app_token, base_url=sandbox.api_url)
    url = app_client.apps_connections_open(app_token=sandbox.app_token)["url"]
    assert url.startswith("ws://127.0.0.1:")


def test_chat_methods(sandbox, client):
    general = sandbox.channel_ids["general"]
    blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": "*hello*"}}]
    metadata = {"event_type": "conformance", "event_payload": {"n": 1}}
    posted = client.chat_postMessage(channel=general, text="hello", blocks=blocks, metadata=metadata)
    assert posted["message"]["blocks"][0]["text"]["text"] == "*hello*"
    reply = client.chat_postMessage(channel=general, text="in thread", thread_ts=posted["ts"], reply_broadcast=True)
    assert reply["message"]["thread_ts"] == posted["ts"]
    updated = client.chat_update(channel=general, ts=posted["ts"], text="hello again")
    assert updated["text"] == "hello again"
    link = client.chat_getPermalink(channel=general, message_ts=posted["ts"])
    assert link["permalink"].startswith(sandbox.url)
    eph = client.chat_postEphemeral(channel=general, user=sandbox.user_ids["alice"], text="psst")
    assert eph["message_ts"]
    history = client.conversations_history(channel=general)
    assert any(m["ts"] == posted["ts"] and m["text"] == "hello again" for m in history["messages"])
    replies = client.conversations_replies(channel=general, ts=posted["ts"])
    assert [m["text"] for m in replies["messages"]] == ["hello again", "in thread"]
    client.chat_delete(channel=general, ts=reply["ts"])
    assert [m["text"] for m in client.conversations_replies(channel=general, ts=posted["ts"])["messages"]] == ["hello again"]


def test_conversations(sandbox, client):
    listed = client.conversations_list(types="public_channel,private_channel")
    names = {c["name"] for c in listed["channels"]}
    assert {"general", "alerts"} <= names and "ops" not in names, "private channels the bot is not in stay hidden"
    info = client.conversations_info(channel=sandbox.channel_ids["general"])
    assert info["channel"]["name"] == "general"
    members = client.conversations_members(channel=sandbox.channel_ids["general"])
    assert sandbox.user_ids["alice"] in members["members"]
    created = client.conversations_create(name="conformance-room")
    room = created["channel"]["id"]
    client.conversations_invite(channel=room, users=f"{sandbox.user_ids['alice']},{sandbox.user_ids['bob']}")
    topic = client.conversations_setTopic(channel=room, topic="testing")
    assert topic["channel"]["topic"]["value"] == "testing"
    client.conversations_archive(channel=room)
    assert client.conversations_info(channel=room)["channel"]["is_archived"] is True
    dm = client.conversations_open(users=sandbox.user_ids["carol"])
    assert dm["channel"]["id"].startswith("D")
    # The bot is not in #random-ish new public rooms it did not create: join one.
    alice = WebClient(token=sandbox.info["tokens"]["users"]["alice"], base_url=sandbox.api_url)
    other = alice.conversations_create(name="alice-room")["channel"]["id"]
    joined = client.conversations_join(channel=other)
    assert joined["channel"]["id"] == other


def test_users_groups_reactions_views(sandbox, client):
    alice = sandbox.user_ids["alice"]
    assert client.users_info(user=alice)["user"]["name"] == "alice"
    assert len(client.users_list()["members"]) >= 4
    assert client.users_lookupByEmail(email="alice@example.com")["user"]["id"] == alice
    groups = client.usergroups_list(include_users=True)["usergroups"]
    assert groups[0]["handle"] == "oncall" and alice in groups[0]["users"]
    general = sandbox.channel_ids["general"]
    ts = client.chat_postMessage(channel=general, text="react to me")["ts"]
    client.reactions_add(channel=general, timestamp=ts, name="eyes")
    message = client.conversations_history(channel=general, limit=1)["messages"][0]
    assert message["reactions"][0]["name"] == "eyes"
    client.reactions_remove(channel=general, timestamp=ts, name="eyes")
    home = {"type": "home", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "Home"}}]}
    published = client.views_publish(user_id=alice, view=home)
    assert published["view"]["type"] == "home"


def test_files_upload_v2(sandbox, client):
    general = sandbox.channel_ids["general"]
    done = client.files_upload_v2(channel=general, content="hello file", filename="hello.txt", title="Hello", initial_comment="a file")
    assert done["file"]["title"] == "Hello"
    latest = client.conversations_history(channel=general, limit=1)["messages"][0]
    assert latest["files"][0]["id"] == done["file"]["id"] and latest["text"] == "a file"


def test_errors_are_slacks(sandbox, client):
    with pytest.raises(SlackApiError) as e:
        WebClient(token="xoxb-wrong", base_url=sandbox.api_url).auth_test()
    assert e.value.response["error"] == "invalid_auth"
    with pytest.raises(SlackApiError) as e:
        client.api_call("nothing.here")
    assert e.value.response["error"] == "unknown_method"
    with pytest.raises(SlackApiError) as e:
        client.chat_postMessage(channel="C_NOPE", text="x")
    assert e.value.response["error"] == "channel_not_found"
    too_many = [{"type": "divider"}] * 51
    with pytest.raises(SlackApiError) as e:
        client.chat_postMessage(channel=sandbox.channel_ids["general"], text="x", blocks=too_many)
    assert e.value.response["error"] == "invalid_blocks"
    with pytest.raises(SlackApiError) as e:
        client.chat_postMessage(channel=sandbox.channel_ids["general"], text="x" * 40_001)
    assert e.value.response["error"] == "msg_too_long"


def test_missing_scope(sandbox, client):
    sandbox.set_manifest(manifest(True, scopes=["channels:read"]))
    try:
        with pytest.raises(SlackApiError) as e:
            client.chat_postMessage(channel=sandbox.channel_ids["general"], text="x")
        assert e.value.response["error"] == "missing_scope"
        assert e.value.response["needed"] == "chat:write"
        assert e.value.response["provided"] == "channels:read"
    finally:
        sandbox.set_manifest(manifest(True))


def test_rate_limits_surface_as_429(sandbox, client):
    sandbox.post("/faults", {"target": "web_api", "method": "auth.test", "fault": "rate_limited", "retry_after": 1, "times": 1})
    with pytest.raises(SlackApiError) as e:
        client.auth_test()
    assert e.value.response.status_code == 429
    assert e.value.response.headers["Retry-After"] in ("1", ["1"])
    sandbox.post("/faults", {"target": "web_api", "method": "auth.test", "fault": "rate_limited", "retry_after": 1, "times": 1})
    patient = WebClient(token=sandbox.bot_token, base_url=sandbox.api_url, retry_handlers=[RateLimitErrorRetryHandler(max_retry_count=1)])
    assert patient.auth_test()["ok"] is True


def test_real_rate_limit_per_channel(sandbox, client):
    sandbox.request("PUT", "/rate_limits", {"enabled": True})
    alerts = sandbox.channel_ids["alerts"]
    statuses = []
    for i in range(6):
        try:
            client.chat_postMessage(channel=alerts, text=f"burst {i}")
            statuses.append(200)
        except SlackApiError as e:
            statuses.append(e.response.status_code)
            assert int(e.response.headers["Retry-After"]) >= 1
    assert statuses[:3] == [200, 200, 200] and 429 in statuses, statuses
