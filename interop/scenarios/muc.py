"""Multi-User Chat (XEP-0045) with slixmpp's xep_0045 plugin at conference.<domain>: alice
creates a room (status 201) and accepts the default configuration (an instant room), bob joins
and sees alice; both talk (groupchat messages reflected to everyone from the occupant JID);
carol joins later and receives the history (with XEP-0203 delay) and the subject; a private
message between occupants; bob leaves and the others see him go.
"""

import asyncio

from harness.client import check, q, short

USERS = ["alice", "bob", "carol"]
MUC_USER = "http://jabber.org/protocol/muc#user"
MUC_OWNER = "http://jabber.org/protocol/muc#owner"
DELAY = "urn:xmpp:delay"


def codes(p) -> set[str]:
    x = p.xml.find(q(MUC_USER, "x"))
    if x is None:
        return set()
    return {s.get("code") for s in x.findall(q(MUC_USER, "status"))}


async def joined(ctx, client, room: str, nick: str, extra=None):
    me = f"{room}/{nick}"
    ctx.step(f"{client.label}: joins {room} as {nick}")
    client.plugin["xep_0045"].join_muc(room, nick, **(extra or {}))
    return await client.presences.take(
        lambda p: str(p["from"]) == me and "110" in codes(p) or p["type"] == "error",
        f"self-presence from {me}")


async def run(ctx):
    service = f"conference.{ctx.domain}"
    room = f"lounge@{service}"
    plugins = ("xep_0030", "xep_0045")
    alice = await ctx.login("alice", resource="a", plugins=plugins)
    bob = await ctx.login("bob", resource="b", plugins=plugins)

    ctx.step("disco#items of the server lists the chatroom service")
    items = await alice.plugin["xep_0030"].get_items(jid=ctx.domain, timeout=10)
    jids = {str(i[0]) for i in items["disco_items"]["items"]}
    check(service in jids, f"{service} not in the server's disco#items: {jids}")

    p = await joined(ctx, alice, room, "Alice")
    check(p["type"] != "error", f"join refused: {short(p.xml)}")
    check("201" in codes(p), f"the creator's presence lacks status 201: {short(p.xml)}")
    ctx.step("alice accepts the default configuration (instant room)")
    await alice.iq("set", f"<query xmlns='{MUC_OWNER}'><x xmlns='jabber:x:data' type='submit'/></query>",
                   to=room)

    p = await joined(ctx, bob, room, "Bob")
    check(p["type"] != "error", f"bob's join refused: {short(p.xml)}")
    ctx.step("bob receives alice's occupant presence")
    await bob.presences.take(lambda p: str(p["from"]) == f"{room}/Alice", "presence of Alice")
    ctx.step("alice receives bob's occupant presence")
    await alice.presences.take(lambda p: str(p["from"]) == f"{room}/Bob", "presence of Bob")

    for i, (who, nick) in enumerate([(alice, "Alice"), (bob, "Bob"), (alice, "Alice")]):
        body = f"message {i} from {nick} <&> ✓"
        ctx.step(f"{nick} says {body!r}; both receive it from {room}/{nick}")
        who.message(room, body, type="groupchat", id=f"g{i}")
        for c in (alice, bob):
            m = await c.messages.take(lambda m, i=i: m["id"] == f"g{i}" and m["type"] == "groupchat",
                                      f"groupchat g{i}")
            check(str(m["from"]) == f"{room}/{nick}", f"from {m['from']}, expected {room}/{nick}")
            check(m["body"] == body, f"body {m['body']!r}")

    ctx.step("alice sets the subject")
    alice.send_xml(f"<message to='{room}' type='groupchat' id='subj'><subject>Lounge talk</subject></message>")
    await bob.messages.take(lambda m: m["subject"] == "Lounge talk", "subject change")

    carol = await ctx.login("carol", resource="c", plugins=plugins)
    p = await joined(ctx, carol, room, "Carol", {"maxhistory": "2"})
    check(p["type"] != "error", f"carol's join refused: {short(p.xml)}")
    ctx.step("carol receives the last two messages as history, with delay, then the subject")
    got = []
    for _ in range(2):
        m = await carol.messages.take(lambda m: m["type"] == "groupchat" and m["body"] != "",
                                      "history message")
        check(m.xml.find(q(DELAY, "delay")) is not None, f"history without delay: {short(m.xml)}")
        got.append(m["id"])
    check(got == ["g1", "g2"], f"history ids {got}, expected ['g1', 'g2']")
    s = await carol.messages.take(lambda m: m["subject"] != "" and m["body"] == "", "subject")
    check(s["subject"] == "Lounge talk", f"subject {s['subject']!r}")

    ctx.step("carol sends bob a private message through the room")
    carol.message(f"{room}/Bob", "just between us", type="chat", id="pm")
    pm = await bob.messages.take(lambda m: m["id"] == "pm", "private message")
    check(str(pm["from"]) == f"{room}/Carol", f"private message from {pm['from']}")
    check(pm["body"] == "just between us", f"body {pm['body']!r}")

    ctx.step("bob leaves; alice and carol see him go")
    bob.plugin["xep_0045"].leave_muc(room, "Bob")
    for c in (alice, carol):
        await c.presences.take(lambda p: str(p["from"]) == f"{room}/Bob" and p["type"] == "unavailable",
                               "unavailable from Bob")
    await asyncio.sleep(0)
