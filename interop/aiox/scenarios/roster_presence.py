"""Roster and presence subscription (RFC 6121) between two accounts with aioxmpp's
RosterClient, PresenceClient and PresenceServer, as an IM client drives them: alice adds bob
with a name and a group (the roster push updates her client's roster); she asks for bob's
presence (pending: ask=subscribe); bob's client gets the request (on_subscribe, from alice's
bare JID) and approves: alice's entry becomes `to`, bob's `from`, and alice's client sees bob
available; the same the other way makes both `both`; bob's status change (away + text)
reaches alice's PresenceClient; bob going offline is seen; a fresh login of alice gets the
stored roster (bob, `both`, name and group kept)."""

import aioxmpp

from aiox.lib import check, until

USERS = ["alice", "bob"]
TIMEOUT = 90


async def run(ctx):
    alice_bare = aioxmpp.JID.fromstr(ctx.jid("alice"))
    bob_bare = aioxmpp.JID.fromstr(ctx.jid("bob"))
    RC, PC, PS = aioxmpp.RosterClient, aioxmpp.PresenceClient, aioxmpp.PresenceServer
    ctx.step("alice and bob log in with the roster and presence services; rosters empty")
    alice = await ctx.login("alice", "phone", services=(RC, PC, PS))
    bob = await ctx.login("bob", "pc", services=(RC, PC, PS))
    ar, br = alice.summon(RC), bob.summon(RC)
    check(not ar.items and not br.items, f"rosters not empty: {ar.items} {br.items}")
    requests = {"alice": [], "bob": []}
    ar.on_subscribe.connect(lambda st: requests["alice"].append(st.from_))
    br.on_subscribe.connect(lambda st: requests["bob"].append(st.from_))
    for c in (alice, bob):
        c.summon(PS).set_presence(aioxmpp.PresenceState(True))

    ctx.step("alice adds bob with a name and a group")
    await ar.set_entry(bob_bare, name="Bob <B>", add_to_groups={"Friends"})
    item = await until(lambda: ar.items.get(bob_bare), "bob in alice's roster")
    check(item.name == "Bob <B>" and item.groups == {"Friends"},
          f"entry name {item.name!r} groups {item.groups}")
    check(item.subscription == "none", f"new entry subscription {item.subscription}")

    ctx.step("alice subscribes to bob: pending, bob's client gets the request")
    ar.subscribe(bob_bare)
    await until(lambda: ar.items[bob_bare].ask == "subscribe", "ask=subscribe on alice's entry")
    await until(lambda: requests["bob"], "the subscription request at bob's client")
    check(requests["bob"][0] == alice_bare, f"request from {requests['bob'][0]}, not {alice_bare}")

    ctx.step("bob approves: alice `to`, bob `from`; alice sees bob available")
    br.approve(alice_bare)
    await until(lambda: ar.items[bob_bare].subscription == "to", "alice's entry becoming `to`")
    check(ar.items[bob_bare].ask is None, "ask still set after approval")
    await until(lambda: (i := br.items.get(alice_bare)) and i.subscription == "from",
                "bob's entry for alice becoming `from`")
    await until(lambda: alice.summon(PC).get_peer_resources(bob_bare).get("pc"),
                "bob/pc available at alice's client")

    ctx.step("bob subscribes back, alice approves: both `both`")
    br.subscribe(alice_bare)
    await until(lambda: requests["alice"], "the request at alice's client")
    check(requests["alice"][0] == bob_bare, f"request from {requests['alice'][0]}")
    ar.approve(bob_bare)
    await until(lambda: ar.items[bob_bare].subscription == "both", "alice's entry `both`")
    await until(lambda: br.items[alice_bare].subscription == "both", "bob's entry `both`")
    await until(lambda: bob.summon(PC).get_peer_resources(alice_bare).get("phone"),
                "alice/phone available at bob's client")

    ctx.step("bob goes away with a status text; alice's client sees it")
    bob.summon(PS).set_presence(aioxmpp.PresenceState(True, aioxmpp.PresenceShow.AWAY),
                                status="in a meeting")

    def away():
        st = alice.summon(PC).get_stanza(bob.jid)
        return st is not None and st.show == aioxmpp.PresenceShow.AWAY \
            and st.status.any() == "in a meeting"
    await until(away, "bob away with status at alice")

    ctx.step("bob goes offline; alice sees him unavailable")
    await bob.stop()
    await until(lambda: not alice.summon(PC).get_peer_resources(bob_bare),
                "bob gone from alice's presence view")

    ctx.step("a new login of alice gets the stored roster")
    again = await ctx.login("alice", "desk", services=(RC,))
    item = await until(lambda: again.summon(RC).items.get(bob_bare),
                       "bob in the roster fetched at login", timeout=5)
    check(item.subscription == "both" and item.name == "Bob <B>" and item.groups == {"Friends"},
          f"stored entry: subscription {item.subscription} name {item.name!r} groups {item.groups}")
