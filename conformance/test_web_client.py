"""slack_sdk's WebClient against the sandbox's Web API (docs/sandbox.md section 1).

Every implemented method is called through the SDK's own method (so the SDK builds the request
its way: form, JSON or query) and its reply parsed; what the call did is read back through
the control API where the contract says it is visible there.
"""

import pytest
from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError

SECTION = {"type": "section", "text": {"type": "mrkdwn", "text": "*hello*"}}


def slack_error(call, *args, **kwargs):
    """Runs a Web API call that must fail; returns its SlackApiError's response."""
    with pytest.raises(SlackApiError) as e:
        call(*args, **kwargs)
    return e.value.response


def test_api_test_needs_no_token(sandbox):
    anonymous = WebClient(base_url=sandbox.api_url, timeout=10)
    reply = anonymous.api_test(foo="bar")
    assert reply["ok"] is True and reply["args"]["foo"] == "bar", reply.data
    err = slack_error(anonymous.api_test, error="my_error")
    assert err["error"] == "my_error", f"api.test echoes the error it is asked for: {err.data}"


def test_token_argument_and_get(sandbox, client):
    # The token as a form argument instead of the Authorization header; a GET with a query string.
    anonymous = WebClient(base_url=sandbox.api_url, timeout=10)
    assert anonymous.api_call("auth.test", params={"token": sandbox.bot_token})["user_id"] == sandbox.bot_user_id
    got = client.api_call("conversations.info", http_verb="GET", params={"channel": sandbox.channel_ids["general"]})
    assert got["channel"]["name"] == "general", got.data


def test_auth_test(sandbox, client, alice_client):
    auth = client.auth_test()
    assert auth["user_id"] == sandbox.bot_user_id, auth.data
    assert auth["team_id"] == sandbox.team_id, auth.data
    assert auth["bot_id"].startswith("B"), f"a bot token's auth.test names its bot_id: {auth.data}"
    assert auth["url"] and auth["team"], auth.data
    me = alice_client.auth_test()
    assert me["user_id"] == sandbox.user_ids["alice"] and me["user"] == "alice", me.data
    assert "bot_id" not in me, f"a user token is no bot: {me.data}"


def test_apps_connections_open(sandbox):
    app_client = WebClient(token=sandbox.app_token, base_url=sandbox.api_url, timeout=10)
    url = app_client.apps_connections_open(app_token=sandbox.app_token)["url"]
    assert url.startswith("ws://127.0.0.1:") and "ticket=" in url, url


def test_post_message_with_blocks_and_metadata(sandbox, client):
    general = sandbox.channel_ids["general"]
    metadata = {"event_type": "conformance_checked", "event_payload": {"n": 1}}
    posted = client.chat_postMessage(channel="#general", text="hello", blocks=[SECTION], metadata=metadata)
    assert posted["channel"] == general, f"the reply names the channel by id: {posted.data}"
    message = posted["message"]
    assert message["ts"] == posted["ts"] and message["text"] == "hello", posted.data
    assert message["user"] == sandbox.bot_user_id and message["bot_id"], posted.data
    assert message["blocks"][0]["text"]["text"] == "*hello*", posted.data

    history = client.conversations_history(channel=general, include_all_metadata=True, limit=5)
    mine = next((m for m in history["messages"] if m["ts"] == posted["ts"]), None)
    assert mine is not None, f"the message is in conversations.history: {history.data}"
    assert mine["metadata"]["event_type"] == "conformance_checked", mine
    assert mine["metadata"]["event_payload"] == {"n": 1}, mine
    plain = client.conversations_history(channel=general, limit=5)
    listed = next(m for m in plain["messages"] if m["ts"] == posted["ts"])
    assert "metadata" not in listed, f"metadata is listed only with include_all_metadata: {listed}"
    stored = sandbox.messages("general")
    assert any(m["ts"] == posted["ts"] and m["blocks"] for m in stored), "the control API sees the message"


def test_metadata_of_a_thread_reply_and_oldest(sandbox, client):
    # How a sender finds a post of its own whose reply it never saw: by its metadata, in the
    # thread's replies (or the channel's history) since a moment before it was made.
    general = sandbox.channel_ids["general"]
    parent = client.chat_postMessage(channel=general, text="parent")
    metadata = {"event_type": "outbox_post", "event_payload": {"outbox_id": 7}}
    reply = client.chat_postMessage(channel=general, thread_ts=parent["ts"], text="reply", metadata=metadata)
    replies = client.conversations_replies(channel=general, ts=parent["ts"], oldest=parent["ts"],
                                           include_all_metadata=True, limit=200)
    found = [m for m in replies["messages"] if m.get("metadata", {}).get("event_type") == "outbox_post"]
    assert [m["ts"] for m in found] == [reply["ts"]], replies.data
    assert found[0]["metadata"]["event_payload"] == {"outbox_id": 7}, found
    plain = client.conversations_replies(channel=general, ts=parent["ts"])
    assert all("metadata" not in m for m in plain["messages"]), plain.data
    later = client.conversations_history(channel=general, oldest=reply["ts"], include_all_metadata=True)
    assert all(m["ts"] > reply["ts"] for m in later["messages"]), f"oldest is exclusive: {later.data}"
    bad = slack_error(client.chat_postMessage, channel=general, text="x", metadata={"event_type": "x"})
    assert bad["error"] == "invalid_metadata_format", bad.data


def test_attachments_and_dm_by_user_id(sandbox, client):
    general = sandbox.channel_ids["general"]
    posted = client.chat_postMessage(channel=general, text="with attachment",
                                     attachments=[{"text": "a1", "color": "#ff0000", "fallback": "a1"}])
    stored = next(m for m in sandbox.messages("general") if m["ts"] == posted["ts"])
    assert stored["attachments"][0]["text"] == "a1", stored
    # As in Slack, a bot may post to a user id: the message lands in the app's DM with that user.
    bob = sandbox.user_ids["bob"]
    dm = client.chat_postMessage(channel=bob, text="straight to bob")
    assert dm["channel"].startswith("D"), dm.data
    assert any(m["text"] == "straight to bob" for m in sandbox.get(f"/dms/{bob}")["messages"])


def test_threads_and_reply_broadcast(sandbox, client):
    general = sandbox.channel_ids["general"]
    parent = client.chat_postMessage(channel=general, text="parent")
    reply = client.chat_postMessage(channel=general, text="quiet reply", thread_ts=parent["ts"])
    assert reply["message"]["thread_ts"] == parent["ts"], reply.data
    loud = client.chat_postMessage(channel=general, text="loud reply", thread_ts=parent["ts"], reply_broadcast=True)
    assert loud["message"]["thread_ts"] == parent["ts"], loud.data

    replies = client.conversations_replies(channel=general, ts=parent["ts"])
    assert [m["text"] for m in replies["messages"]] == ["parent", "quiet reply", "loud reply"], replies.data
    head = replies["messages"][0]
    assert head["reply_count"] == 2 and head["thread_ts"] == parent["ts"], head

    history = client.conversations_history(channel=general, limit=10)["messages"]
    texts = [m["text"] for m in history]
    assert "loud reply" in texts, f"a reply_broadcast reply is also in the channel: {texts}"
    assert "quiet reply" not in texts, f"a plain thread reply is not in conversations.history: {texts}"
    broadcast = next(m for m in history if m["text"] == "loud reply")
    assert broadcast.get("subtype") == "thread_broadcast", broadcast

    thread = sandbox.thread("general", parent["ts"])
    assert [m["text"] for m in thread] == ["parent", "quiet reply", "loud reply"], thread

    err = slack_error(client.conversations_replies, channel=general, ts="1.000001")
    assert err["error"] == "thread_not_found", err.data


def test_history_is_newest_first_and_paginates(sandbox, client):
    name = "paging"
    room = client.conversations_create(name=name)["channel"]["id"]
    for i in range(5):
        client.chat_postMessage(channel=room, text=f"m{i}")
    newest = client.conversations_history(channel=room, limit=2)
    assert [m["text"] for m in newest["messages"]] == ["m4", "m3"], f"newest first: {newest.data}"
    assert newest["has_more"] is True and newest["response_metadata"]["next_cursor"], newest.data
    # slack_sdk follows response_metadata.next_cursor when a reply is iterated.
    pages = [[m["text"] for m in page["messages"]] for page in client.conversations_history(channel=room, limit=2)]
    assert sum(pages, []) == ["m4", "m3", "m2", "m1", "m0"], pages
    assert len(pages) == 3, pages
    # oldest/latest bound the window, exclusive unless inclusive.
    ts = [m["ts"] for m in reversed(client.conversations_history(channel=room)["messages"])]
    window = client.conversations_history(channel=room, oldest=ts[1], latest=ts[3])["messages"]
    assert [m["text"] for m in window] == ["m2"], window
    window = client.conversations_history(channel=room, oldest=ts[1], latest=ts[3], inclusive=True)["messages"]
    assert [m["text"] for m in window] == ["m3", "m2", "m1"], window


def test_update_and_delete(sandbox, client, alice_client):
    general = sandbox.channel_ids["general"]
    posted = client.chat_postMessage(channel=general, text="v1")
    updated = client.chat_update(channel=general, ts=posted["ts"], text="v2", blocks=[SECTION])
    assert updated["ts"] == posted["ts"] and updated["channel"] == general and updated["text"] == "v2", updated.data
    stored = next(m for m in sandbox.messages("general") if m["ts"] == posted["ts"])
    assert stored["text"] == "v2" and stored["blocks"][0]["text"]["text"] == "*hello*", stored

    err = slack_error(client.chat_update, channel=general, ts="1.000002", text="x")
    assert err["error"] == "message_not_found", err.data
    theirs = alice_client.chat_postMessage(channel=general, text="alice's own")
    err = slack_error(client.chat_update, channel=general, ts=theirs["ts"], text="hijacked")
    assert err["error"] == "cant_update_message", err.data

    deleted = client.chat_delete(channel=general, ts=posted["ts"])
    assert deleted["ts"] == posted["ts"] and deleted["channel"] == general, deleted.data
    assert all(m["ts"] != posted["ts"] for m in sandbox.messages("general")), "the deleted message is gone"
    err = slack_error(client.chat_delete, channel=general, ts=posted["ts"])
    assert err["error"] == "message_not_found", err.data


def test_post_ephemeral(sandbox, client):
    general, alice = sandbox.channel_ids["general"], sandbox.user_ids["alice"]
    eph = client.chat_postEphemeral(channel=general, user=alice, text="psst", blocks=[SECTION])
    assert eph["message_ts"], eph.data
    seen = sandbox.ephemerals(alice, general, wait_for=1)
    assert any(e["message"]["text"] == "psst" for e in seen), seen
    assert all(m.get("text") != "psst" for m in sandbox.messages("general")), "an ephemeral is not in the channel"


def test_get_permalink(sandbox, client):
    general = sandbox.channel_ids["general"]
    ts = client.chat_postMessage(channel=general, text="link me")["ts"]
    link = client.chat_getPermalink(channel=general, message_ts=ts)
    assert link["channel"] == general, link.data
    assert f"/archives/{general}/p{ts.replace('.', '')}" in link["permalink"], (
        f"Slack's permalink shape …/archives/<channel>/p<ts without the dot>: {link['permalink']}"
    )
    err = slack_error(client.chat_getPermalink, channel=general, message_ts="1.000003")
    assert err["error"] == "message_not_found", err.data


def test_conversations_list_info_members(sandbox, client, alice_client):
    listed = client.conversations_list(types="public_channel,private_channel")
    names = {c["name"] for c in listed["channels"]}
    assert {"general", "alerts"} <= names, names
    assert "ops" not in names, "a private channel the bot is not in stays hidden"
    outside = alice_client.conversations_create(name="not-the-bots")["channel"]["id"]
    listed = {c["id"]: c for c in client.conversations_list()["channels"]}
    assert outside in listed and listed[outside]["is_member"] is False, "public channels are listed, is_member false"
    # Cursor pagination, followed by the SDK.
    paged = [c["name"] for page in client.conversations_list(limit=1) for c in page["channels"]]
    assert set(paged) >= {"general", "alerts"} and len(paged) == len(set(paged)), paged

    general = sandbox.channel_ids["general"]
    info = client.conversations_info(channel=general)["channel"]
    assert info["id"] == general and info["name"] == "general", info
    assert info["is_channel"] is True and info["is_private"] is False and info["is_member"] is True, info
    assert info["topic"]["value"] == "Company-wide announcements", info
    err = slack_error(client.conversations_info, channel=sandbox.channel_ids["ops"])
    assert err["error"] == "channel_not_found", f"a private channel the bot is not in: {err.data}"
    err = slack_error(client.conversations_info, channel="C0NOPE000")
    assert err["error"] == "channel_not_found", err.data

    members = client.conversations_members(channel=general)["members"]
    assert {sandbox.user_ids["alice"], sandbox.user_ids["bob"], sandbox.bot_user_id} <= set(members), members


def test_create_invite_topic_archive(sandbox, client):
    created = client.conversations_create(name="conformance-room")["channel"]
    room = created["id"]
    assert room.startswith("C") and created["name"] == "conformance-room" and created["is_member"] is True, created
    err = slack_error(client.conversations_create, name="conformance-room")
    assert err["error"] == "name_taken", err.data

    alice, bob = sandbox.user_ids["alice"], sandbox.user_ids["bob"]
    invited = client.conversations_invite(channel=room, users=f"{alice},{bob}")
    assert invited["channel"]["id"] == room, invited.data
    assert {alice, bob} <= set(client.conversations_members(channel=room)["members"])

    topic = client.conversations_setTopic(channel=room, topic="testing")
    assert topic["channel"]["topic"]["value"] == "testing", topic.data
    assert client.conversations_info(channel=room)["channel"]["topic"]["value"] == "testing"

    client.conversations_archive(channel=room)
    assert client.conversations_info(channel=room)["channel"]["is_archived"] is True
    err = slack_error(client.chat_postMessage, channel=room, text="too late")
    assert err["error"] == "is_archived", err.data


def test_join_and_leave(sandbox, client, alice_client):
    room = alice_client.conversations_create(name="alice-room")["channel"]["id"]
    err = slack_error(client.chat_postMessage, channel=room, text="hi")
    assert err["error"] == "not_in_channel", f"the bot is not in alice's new channel: {err.data}"
    joined = client.conversations_join(channel=room)
    assert joined["channel"]["id"] == room, joined.data
    assert sandbox.bot_user_id in client.conversations_members(channel=room)["members"]
    client.chat_postMessage(channel=room, text="hi")
    client.conversations_leave(channel=room)
    assert sandbox.bot_user_id not in alice_client.conversations_members(channel=room)["members"]
    err = slack_error(client.chat_postMessage, channel=room, text="hi again")
    assert err["error"] == "not_in_channel", err.data


def test_open_dm(sandbox, client):
    carol = sandbox.user_ids["carol"]
    dm = client.conversations_open(users=carol)["channel"]["id"]
    assert dm.startswith("D"), dm
    assert client.conversations_open(users=carol)["channel"]["id"] == dm, "the same DM every time"
    client.chat_postMessage(channel=dm, text="hello carol")
    assert [m["text"] for m in sandbox.get(f"/dms/{carol}")["messages"]] == ["hello carol"]
    assert client.conversations_history(channel=dm)["messages"][0]["text"] == "hello carol"


def test_users(sandbox, client):
    alice = sandbox.user_ids["alice"]
    user = client.users_info(user=alice)["user"]
    assert user["id"] == alice and user["name"] == "alice" and user["team_id"] == sandbox.team_id, user
    assert user["real_name"] == "Alice Admin" and user["profile"]["email"] == "alice@example.com", user
    assert user["is_bot"] is False and user["is_admin"] is True, user
    err = slack_error(client.users_info, user="U0NOPE000")
    assert err["error"] == "user_not_found", err.data

    members = client.users_list()["members"]
    by_name = {m["name"]: m for m in members}
    assert {"alice", "bob", "carol"} <= set(by_name), sorted(by_name)
    bots = [m for m in members if m["is_bot"]]
    assert any(m["id"] == sandbox.user_ids["deploybot"] for m in bots), "deploybot is a bot user"

    paged = [m["id"] for page in client.users_list(limit=2) for m in page["members"]]
    assert sorted(paged) == sorted(m["id"] for m in members), "users.list pages add up to the whole list"

    assert client.users_lookupByEmail(email="bob@example.com")["user"]["id"] == sandbox.user_ids["bob"]
    err = slack_error(client.users_lookupByEmail, email="nobody@example.com")
    assert err["error"] == "users_not_found", err.data


def test_usergroups(sandbox, client):
    groups = client.usergroups_list(include_users=True)["usergroups"]
    oncall = next((g for g in groups if g["handle"] == "oncall"), None)
    assert oncall is not None, groups
    assert oncall["id"].startswith("S"), oncall
    assert set(oncall["users"]) == {sandbox.user_ids["alice"], sandbox.user_ids["bob"]}, oncall
    # slack_sdk sends this one as a GET with query arguments.
    members = client.usergroups_users_list(usergroup=oncall["id"])["users"]
    assert set(members) == {sandbox.user_ids["alice"], sandbox.user_ids["bob"]}, members
    err = slack_error(client.usergroups_users_list, usergroup="S0NOPE")
    assert err["error"] == "no_such_subteam", err.data


def test_reactions(sandbox, client):
    general = sandbox.channel_ids["general"]
    ts = client.chat_postMessage(channel=general, text="react to me")["ts"]
    client.reactions_add(channel=general, timestamp=ts, name="eyes")
    err = slack_error(client.reactions_add, channel=general, timestamp=ts, name="eyes")
    assert err["error"] == "already_reacted", err.data

    got = client.reactions_get(channel=general, timestamp=ts)
    reactions = got["message"]["reactions"]
    assert reactions == [{"name": "eyes", "users": [sandbox.bot_user_id], "count": 1}], got.data
    stored = next(m for m in sandbox.messages("general") if m["ts"] == ts)
    assert stored["reactions"][0]["name"] == "eyes", stored

    client.reactions_remove(channel=general, timestamp=ts, name="eyes")
    assert "reactions" not in client.reactions_get(channel=general, timestamp=ts)["message"]
    err = slack_error(client.reactions_remove, channel=general, timestamp=ts, name="eyes")
    assert err["error"] == "no_reaction", err.data


def test_views_publish_home(sandbox, client):
    alice = sandbox.user_ids["alice"]
    home = {"type": "home", "blocks": [SECTION]}
    published = client.views_publish(user_id=alice, view=home)["view"]
    assert published["id"].startswith("V") and published["type"] == "home" and published["hash"], published
    again = client.views_publish(user_id=alice, view={**home, "blocks": [SECTION, {"type": "divider"}]}, hash=published["hash"])
    assert again["view"]["id"] == published["id"] and len(again["view"]["blocks"]) == 2, again.data
    err = slack_error(client.views_publish, user_id=alice, view=home, hash=published["hash"])
    assert err["error"] == "hash_conflict", f"an outdated hash: {err.data}"
    views = sandbox.views(alice)
    assert any(v["type"] == "home" and v["id"] == published["id"] for v in views), views


def test_views_need_a_valid_trigger(sandbox, client):
    modal = {"type": "modal", "title": {"type": "plain_text", "text": "x"}, "blocks": [SECTION]}
    err = slack_error(client.views_open, trigger_id="12345.98765.abcd2358fdea", view=modal)
    assert err["error"] in ("invalid_trigger_id", "expired_trigger_id"), err.data
    err = slack_error(client.views_update, view_id="V0NOPE000", view=modal)
    assert err["error"] == "not_found", err.data
    err = slack_error(client.views_publish, user_id=sandbox.user_ids["alice"], view=modal)
    assert err["error"] == "invalid_arguments" and err["response_metadata"]["messages"], (
        f"a modal is no Home tab: {err.data}"
    )
    # views.open with a real trigger_id is exercised by the Bolt tests (a slash command's).


def test_files_upload_v2(sandbox, client):
    general = sandbox.channel_ids["general"]
    done = client.files_upload_v2(
        channel=general, content="hello file", filename="hello.txt", title="Hello", initial_comment="a file"
    )
    file = done["file"]
    assert file["id"].startswith("F") and file["title"] == "Hello" and file["name"] == "hello.txt", done.data
    info = client.files_info(file=file["id"])["file"]
    assert info["id"] == file["id"] and info["size"] == len("hello file"), info
    latest = sandbox.messages("general")[-1]
    assert latest["text"] == "a file" and latest["files"][0]["id"] == file["id"], latest
    # The SDK's three steps: getUploadURLExternal, a POST of the bytes to that URL, completeUploadExternal.
    assert [c["ok"] for c in sandbox.api_calls("files.getUploadURLExternal")] == [True]
    complete = sandbox.api_calls("files.completeUploadExternal")
    assert [c["ok"] for c in complete] == [True], complete
