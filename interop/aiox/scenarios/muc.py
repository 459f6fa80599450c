"""Multi-User Chat (XEP-0045) with aioxmpp's MUCClient, two occupants: alice creates a room
at conference.<domain> (self-presence with 110 + 201, owner/moderator) and makes it an
instant room (empty submitted form); bob joins (110, no history asked); each sees the other
join (aioxmpp's on_join and the raw presence); groupchat messages both ways arrive at both
occupants from room@service/nick, bodies intact, not delayed (aioxmpp's on_message names
the sending occupant); bob changes nick to Robert: alice sees `unavailable` with 303 and
nick='Robert' (no 110 for her; 303 + 110 for bob) and aioxmpp reports the nick change on both
sides, and Robert's next message comes from room/Robert; bob leaves: alice sees the
`unavailable` (on_leave) and has only herself as occupant; bob gets no more messages.

What arrived is read from the raw stanzas (aiox/lib.py records them before aioxmpp's own
dispatch) and, separately, from aioxmpp's room signals, so both the wire and the library's
view are checked."""

import secrets

import aioxmpp
import aioxmpp.disco
import aioxmpp.forms
import aioxmpp.muc
import aioxmpp.muc.xso as muc_xso

from aiox.lib import Fail, Inbox, body, check, short

USERS = ["alice", "bob"]
TIMEOUT = 90


def codes(stanza) -> set[int]:
    ext = getattr(stanza, "xep0045_muc_user", None)
    return {int(c) for c in ext.status_codes} if ext is not None else set()


def item(stanza):
    ext = getattr(stanza, "xep0045_muc_user", None)
    return ext.items[0] if ext is not None and ext.items else None


def record(room) -> Inbox:
    """aioxmpp's view of the room: its signals, as (event, details) tuples in an inbox."""
    events = Inbox(f"{room.jid} events")
    room.on_join.connect(lambda m, **kw: events.put(("join", m.nick)))
    room.on_leave.connect(lambda m, **kw: events.put(("leave", m.nick)))
    room.on_nick_changed.connect(lambda m, old, new, **kw: events.put(("nick", old, new)))
    room.on_message.connect(
        lambda msg, m, src, **kw: events.put(("message", getattr(m, "nick", None), body(msg))))
    return events


def groupchat(m, frm, text) -> bool:
    return m.type_ == aioxmpp.MessageType.GROUPCHAT and m.from_ == frm and body(m) == text


async def joined(fut, who):
    try:
        await fut
    except aioxmpp.errors.XMPPError as e:
        raise Fail(f"{who} could not join: {e}")


async def run(ctx):
    service = f"conference.{ctx.domain}"
    room_jid = aioxmpp.JID.fromstr(f"ax-{secrets.token_hex(4)}@{service}")
    alice = await ctx.login("alice", "laptop", services=[aioxmpp.MUCClient, aioxmpp.DiscoClient])
    bob = await ctx.login("bob", "phone", services=[aioxmpp.MUCClient])

    ctx.step(f"{service} is among the domain's disco#items")
    items = await alice.summon(aioxmpp.DiscoClient).query_items(
        aioxmpp.JID.fromstr(ctx.domain), require_fresh=True)
    check(any(str(i.jid) == service for i in items.items),
          f"{service} not in {[str(i.jid) for i in items.items]}")

    ctx.step("alice creates the room as Alice: 110 + 201, owner and moderator")
    alice_muc = alice.summon(aioxmpp.MUCClient)
    room_a, fut = alice_muc.join(room_jid, "Alice", history=muc_xso.History(maxstanzas=0))
    ev_a = record(room_a)
    await joined(fut, "alice")
    p = await alice.presences.take(lambda p: p.from_ == room_jid.replace(resource="Alice")
                                   and 110 in codes(p), "alice's self-presence (110)")
    check(201 in codes(p), f"no 201 (room created) in alice's self-presence: {short(p)}")
    it = item(p)
    check(it is not None and it.affiliation == "owner" and it.role == "moderator",
          f"creator not owner/moderator: {short(p)}")

    ctx.step("alice makes it an instant room (an empty submitted configuration form)")
    await alice.send(aioxmpp.IQ(
        type_=aioxmpp.IQType.SET, to=room_jid,
        payload=muc_xso.OwnerQuery(form=aioxmpp.forms.Data(aioxmpp.forms.DataType.SUBMIT))))

    ctx.step("bob joins as Bob: 110 in his self-presence, each sees the other")
    bob_muc = bob.summon(aioxmpp.MUCClient)
    room_b, fut = bob_muc.join(room_jid, "Bob", history=muc_xso.History(maxstanzas=0))
    ev_b = record(room_b)
    await joined(fut, "bob")
    p = await bob.presences.take(lambda p: p.from_ == room_jid.replace(resource="Bob")
                                 and 110 in codes(p), "bob's self-presence (110)")
    check(201 not in codes(p), f"201 on joining an existing room: {short(p)}")
    await bob.presences.take(lambda p: p.from_ == room_jid.replace(resource="Alice")
                             and p.type_ == aioxmpp.PresenceType.AVAILABLE,
                             "alice's occupant presence at bob")
    await alice.presences.take(lambda p: p.from_ == room_jid.replace(resource="Bob")
                               and p.type_ == aioxmpp.PresenceType.AVAILABLE
                               and 110 not in codes(p), "bob's occupant presence at alice")
    await ev_a.take(lambda e: e == ("join", "Bob"), "aioxmpp on_join(Bob) at alice")
    check(sorted(m.nick for m in room_b.members) == ["Alice", "Bob"],
          f"bob's occupant list: {[m.nick for m in room_b.members]}")

    ctx.step("groupchat messages both ways reach both occupants")
    texts = [("Alice", alice, room_a, "hello from alice <&> ✓"),
             ("Bob", bob, room_b, "hi alice, bob here \U0001f426 ]]>")]
    for nick, _, room, text in texts:
        msg = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
        msg.body[None] = text
        room.send_message(msg)
        frm = room_jid.replace(resource=nick)
        for who, c, ev in (("alice", alice, ev_a), ("bob", bob, ev_b)):
            m = await c.messages.take(lambda m: groupchat(m, frm, text),
                                      f"{nick}'s message at {who}")
            check(not m.xep0203_delay, f"live message with a delay at {who}: {short(m)}")
            check(m.to.bare() == c.jid.bare(), f"message to {m.to} at {who}")
            await ev.take(lambda e: e == ("message", nick, text),
                          f"aioxmpp on_message from {nick} at {who}")

    ctx.step("bob changes nick to Robert")
    await room_b.set_nick("Robert")
    p = await alice.presences.take(lambda p: p.from_ == room_jid.replace(resource="Bob")
                                   and p.type_ == aioxmpp.PresenceType.UNAVAILABLE,
                                   "Bob's unavailable (303) at alice")
    check(303 in codes(p) and 110 not in codes(p), f"status codes at alice: {short(p)}")
    check(item(p) is not None and item(p).nick == "Robert", f"no nick='Robert': {short(p)}")
    p = await bob.presences.take(lambda p: p.from_ == room_jid.replace(resource="Bob")
                                 and p.type_ == aioxmpp.PresenceType.UNAVAILABLE,
                                 "bob's own unavailable (303 + 110)")
    check({303, 110} <= codes(p), f"status codes at bob: {short(p)}")
    await alice.presences.take(lambda p: p.from_ == room_jid.replace(resource="Robert")
                               and p.type_ == aioxmpp.PresenceType.AVAILABLE,
                               "presence from room/Robert at alice")
    await ev_a.take(lambda e: e == ("nick", "Bob", "Robert"), "aioxmpp on_nick_changed at alice")
    await ev_b.take(lambda e: e == ("nick", "Bob", "Robert"), "aioxmpp on_nick_changed at bob")
    check(room_b.me is not None and room_b.me.nick == "Robert", f"bob's own nick {room_b.me}")
    msg = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
    msg.body[None] = "now I am Robert"
    room_b.send_message(msg)
    await alice.messages.take(
        lambda m: groupchat(m, room_jid.replace(resource="Robert"), "now I am Robert"),
        "Robert's message at alice from room/Robert")
    await ev_a.take(lambda e: e == ("message", "Robert", "now I am Robert"),
                    "aioxmpp on_message from Robert at alice")

    ctx.step("bob leaves: alice sees him go; he gets nothing more")
    await room_b.leave()
    p = await bob.presences.take(lambda p: p.from_ == room_jid.replace(resource="Robert")
                                 and p.type_ == aioxmpp.PresenceType.UNAVAILABLE,
                                 "bob's own unavailable on leaving")
    check(110 in codes(p), f"no 110 in bob's leave presence: {short(p)}")
    bob.messages.items.clear()  # what the room sent before bob's leave was confirmed
    await alice.presences.take(lambda p: p.from_ == room_jid.replace(resource="Robert")
                               and p.type_ == aioxmpp.PresenceType.UNAVAILABLE,
                               "Robert's unavailable at alice")
    await ev_a.take(lambda e: e == ("leave", "Robert"), "aioxmpp on_leave(Robert) at alice")
    check([m.nick for m in room_a.members] == ["Alice"],
          f"alice's occupant list after the leave: {[m.nick for m in room_a.members]}")
    msg = aioxmpp.Message(type_=aioxmpp.MessageType.GROUPCHAT)
    msg.body[None] = "anyone still here?"
    room_a.send_message(msg)
    await alice.messages.take(
        lambda m: groupchat(m, room_jid.replace(resource="Alice"), "anyone still here?"),
        "alice's own message after bob left")
    late = await bob.messages.quiet(lambda m: m.type_ == aioxmpp.MessageType.GROUPCHAT, 1.0)
    check(not late, f"bob got groupchat after leaving: {[short(m) for m in late]}")
