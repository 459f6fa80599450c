"""Multi-User Chat (XEP-0045) with slixmpp's xep_0045 plugin at conference.<domain>.

alice creates a room (status 201 + 110) and accepts the default configuration (an instant
room); bob joins (110 on his own presence) and each sees the other; groupchat messages reach
every occupant from room@service/nick; a subject change reaches bob from alice's occupant JID;
carol joins later and receives the last two messages as history with XEP-0203 delay stamps
(from the room, between the send and now) and then the subject; bob changes his nick (303
with the new nick to everyone, plus 110 to himself, then presence from the new nick); carol
sends bob a private message through the room; alice kicks carol (307, carol sees it with 110,
bob sees it); a password-protected room refuses a wrong password (not-authorized) and
accepts the right one; bob leaves and alice sees him go.
"""

import asyncio
import datetime as dt

from harness.client import check, error_condition, q, short

USERS = ["alice", "bob", "carol"]
TIMEOUT = 90
MUC_USER = "http://jabber.org/protocol/muc#user"
DELAY = "urn:xmpp:delay"


def codes(p) -> set[str]:
    x = p.xml.find(q(MUC_USER, "x"))
    if x is None:
        return set()
    return {s.get("code") for s in x.findall(q(MUC_USER, "status"))}


def item(p):
    x = p.xml.find(q(MUC_USER, "x"))
    return None if x is None else x.find(q(MUC_USER, "item"))


def parse_stamp(s: str) -> dt.datetime:
    return dt.datetime.fromisoformat(s.replace("Z", "+00:00"))


async def joined(ctx, client, room: str, nick: str, **kw):
    me = f"{room}/{nick}"
    ctx.step(f"{client.label}: joins {room} as {nick}")
    client.plugin["xep_0045"].join_muc(room, nick, **kw)
    p = await client.presences.take(
        lambda p: str(p["from"]) == me and ("110" in codes(p) or p["type"] == "error"),
        f"self-presence (110) from {me}")
    check(p["type"] != "error", f"{nick}'s join refused: {short(p.xml)}")
    return p


async def run(ctx):
    service = f"conference.{ctx.domain}"
    room = f"lounge@{service}"
    plugins = ("xep_0030", "xep_0004", "xep_0045")
    alice = await ctx.login("alice", resource="a", plugins=plugins)
    bob = await ctx.login("bob", resource="b", plugins=plugins)

    ctx.step("disco#items of the server lists the chatroom service")
    items = await alice.plugin["xep_0030"].get_items(jid=ctx.domain, timeout=10)
    jids = {str(i[0]) for i in items["disco_items"]["items"]}
    check(service in jids, f"{service} not in the server's disco#items: {jids}")

    p = await joined(ctx, alice, room, "Alice")
    check("201" in codes(p), f"the creator's presence lacks status 201: {short(p.xml)}")
    it = item(p)
    check(it is not None and it.get("affiliation") == "owner" and it.get("role") == "moderator",
          f"the creator is not owner/moderator: {short(p.xml)}")
    ctx.step("alice accepts the default configuration (instant room)")
    await alice.iq("set", "<query xmlns='http://jabber.org/protocol/muc#owner'>"
                          "<x xmlns='jabber:x:data' type='submit'/></query>", to=room)

    p = await joined(ctx, bob, room, "Bob")
    check(str(p["to"]).startswith(ctx.jid("bob")), f"self-presence to {p['to']}")
    ctx.step("bob receives alice's occupant presence")
    await bob.presences.take(lambda p: str(p["from"]) == f"{room}/Alice", "presence of Alice")
    ctx.step("alice receives bob's occupant presence")
    await alice.presences.take(lambda p: str(p["from"]) == f"{room}/Bob" and p["type"] != "unavailable",
                               "presence of Bob")

    t_sent = dt.datetime.now(dt.timezone.utc) - dt.timedelta(seconds=2)
    for i, (who, nick) in enumerate([(alice, "Alice"), (bob, "Bob"), (alice, "Alice")]):
        body = f"message {i} from {nick} <&> ✓"
        ctx.step(f"{nick} says {body!r}; both receive it from {room}/{nick}")
        who.message(room, body, type="groupchat", id=f"g{i}")
        for c in (alice, bob):
            m = await c.messages.take(lambda m, i=i: m["id"] == f"g{i}" and m["type"] == "groupchat",
                                      f"groupchat g{i}")
            check(str(m["from"]) == f"{room}/{nick}", f"from {m['from']}, expected {room}/{nick}")
            check(m["body"] == body, f"body {m['body']!r}")
            check(m.xml.find(q(DELAY, "delay")) is None, f"live message with delay: {short(m.xml)}")

    ctx.step("alice sets the subject; bob sees it from Alice's occupant JID")
    alice.plugin["xep_0045"].set_subject(room, "Lounge talk")
    s = await bob.messages.take(lambda m: m["subject"] == "Lounge talk", "subject change")
    check(str(s["from"]) == f"{room}/Alice", f"subject from {s['from']}")
    check(s["type"] == "groupchat", f"subject type {s['type']}")

    carol = await ctx.login("carol", resource="c", plugins=plugins)
    await joined(ctx, carol, room, "Carol", maxhistory="2")
    ctx.step("carol receives the last two messages as history, with delay, then the subject")
    got = []
    now = dt.datetime.now(dt.timezone.utc) + dt.timedelta(seconds=2)
    for _ in range(2):
        m = await carol.messages.take(lambda m: m["type"] == "groupchat" and m["body"] != "",
                                      "history message")
        d = m.xml.find(q(DELAY, "delay"))
        check(d is not None, f"history without delay: {short(m.xml)}")
        stamp = parse_stamp(d.get("stamp", ""))
        check(stamp.tzinfo is not None and t_sent <= stamp <= now,
              f"delay stamp {d.get('stamp')} not between {t_sent} and {now}")
        check(d.get("from") in (None, room), f"delay from {d.get('from')}, expected {room}")
        got.append((m["id"], str(m["from"])))
    check(got == [("g1", f"{room}/Bob"), ("g2", f"{room}/Alice")],
          f"history {got}, expected g1 from Bob, g2 from Alice")
    s = await carol.messages.take(lambda m: m["subject"] != "" and m["body"] == "", "subject")
    check(s["subject"] == "Lounge talk", f"subject {s['subject']!r}")
    for c in (alice, bob):
        await c.presences.take(lambda p: str(p["from"]) == f"{room}/Carol", "presence of Carol")

    ctx.step("bob changes his nick to Robert: 303 with the new nick, then presence as Robert")
    bob.send_xml(f"<presence to='{room}/Robert'/>")
    for c, mine in ((bob, True), (alice, False), (carol, False)):
        p = await c.presences.take(lambda p: str(p["from"]) == f"{room}/Bob" and p["type"] == "unavailable",
                                   f"{c.label}: unavailable from Bob")
        check("303" in codes(p), f"nick change without 303: {short(p.xml)}")
        check(("110" in codes(p)) == mine, f"110 {'missing' if mine else 'wrongly'} on {short(p.xml)}")
        it = item(p)
        check(it is not None and it.get("nick") == "Robert", f"item nick not Robert: {short(p.xml)}")
        p = await c.presences.take(lambda p: str(p["from"]) == f"{room}/Robert" and p["type"] != "unavailable",
                                   f"{c.label}: presence of Robert")
        check(("110" in codes(p)) == mine, f"110 {'missing' if mine else 'wrongly'} on {short(p.xml)}")

    ctx.step("carol sends Robert a private message through the room")
    carol.message(f"{room}/Robert", "just between us", type="chat", id="pm")
    pm = await bob.messages.take(lambda m: m["id"] == "pm", "private message")
    check(str(pm["from"]) == f"{room}/Carol", f"private message from {pm['from']}")
    check(pm["body"] == "just between us", f"body {pm['body']!r}")
    stray = await alice.messages.quiet(lambda m: m["id"] == "pm", 0.5)
    check(not stray, f"alice got the private message too: {stray and short(stray[0].xml)}")

    ctx.step("alice kicks carol (role none): 307 to carol with 110, and to the others")
    await alice.plugin["xep_0045"].set_role(room, "Carol", "none", reason="too loud", timeout=10)
    for c, mine in ((carol, True), (alice, False), (bob, False)):
        p = await c.presences.take(lambda p: str(p["from"]) == f"{room}/Carol" and p["type"] == "unavailable",
                                   f"{c.label}: unavailable from Carol")
        check("307" in codes(p), f"kick without 307: {short(p.xml)}")
        check(("110" in codes(p)) == mine, f"110 {'missing' if mine else 'wrongly'} on {short(p.xml)}")
        it = item(p)
        check(it is not None and it.get("role") == "none", f"kicked item role: {short(p.xml)}")
    ctx.step("carol's groupchat message after the kick reaches nobody")
    carol.message(room, "still here?", type="groupchat", id="after-kick")
    stray = await bob.messages.quiet(lambda m: m["id"] == "after-kick", 1.0)
    check(not stray, f"a kicked occupant's message was delivered: {stray and short(stray[0].xml)}")

    secret = f"vault@{service}"
    await joined(ctx, alice, secret, "Alice")
    ctx.step("alice configures the room with a password (muc#roomconfig form)")
    form = await alice.plugin["xep_0045"].get_room_config(secret, timeout=10)
    fields = form.get_fields()
    # XEP-0045 10.2: muc#roomconfig_roomsecret; the boolean passwordprotectedroom is offered
    # by some servers (Oriole) and not others (Prosody 0.12), so it is sent only if offered.
    check("muc#roomconfig_roomsecret" in fields,
          f"config form lacks muc#roomconfig_roomsecret: {sorted(fields)}")
    submit = alice.plugin["xep_0004"].make_form(ftype="submit")
    submit.add_field(var="FORM_TYPE", ftype="hidden",
                     value="http://jabber.org/protocol/muc#roomconfig")
    if "muc#roomconfig_passwordprotectedroom" in fields:
        submit.add_field(var="muc#roomconfig_passwordprotectedroom", ftype="boolean", value=True)
    submit.add_field(var="muc#roomconfig_roomsecret", value="sesame")
    await alice.plugin["xep_0045"].set_room_config(secret, submit, timeout=10)

    ctx.step("bob joins the password room with a wrong password: not-authorized")
    bob.plugin["xep_0045"].join_muc(secret, "Bob", password="wrong")
    p = await bob.presences.take(lambda p: str(p["from"]).startswith(secret), f"answer from {secret}")
    check(p["type"] == "error", f"wrong password accepted: {short(p.xml)}")
    check(error_condition(p.xml) == "not-authorized", f"error {error_condition(p.xml)}: {short(p.xml)}")
    check(str(p["from"]) == f"{secret}/Bob", f"error from {p['from']}")
    ctx.step("bob joins without a password: not-authorized")
    bob.send_xml(f"<presence to='{secret}/Bob'><x xmlns='http://jabber.org/protocol/muc'/></presence>")
    p = await bob.presences.take(lambda p: str(p["from"]).startswith(secret), f"answer from {secret}")
    check(p["type"] == "error" and error_condition(p.xml) == "not-authorized",
          f"join without password: {short(p.xml)}")
    await joined(ctx, bob, secret, "Bob", password="sesame")
    await alice.presences.take(lambda p: str(p["from"]) == f"{secret}/Bob", "presence of Bob in the vault")

    ctx.step("Robert leaves the lounge; alice sees him go")
    bob.plugin["xep_0045"].leave_muc(room, "Robert")
    await alice.presences.take(lambda p: str(p["from"]) == f"{room}/Robert" and p["type"] == "unavailable",
                               "unavailable from Robert")
    await asyncio.sleep(0)
