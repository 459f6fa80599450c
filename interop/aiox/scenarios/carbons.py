"""Message Carbons (XEP-0280) with aioxmpp's CarbonsClient, the way a phone + desktop use
them: both of alice's devices enable carbons (the service checks the account's disco#info
first); a message bob sends to the phone reaches the desk as a <received/> carbon, a message
the phone sends reaches the desk as a <sent/> carbon. The wrapper comes from alice's bare JID
to the device; the forwarded message keeps id, addresses and body. No carbon of a message
arrives at the device that sent it or received it directly."""

import aioxmpp
import aioxmpp.carbons

from aiox.lib import body, check, short

USERS = ["alice", "bob"]


def inner(m, kind):
    w = getattr(m, f"xep0280_{kind}", None)
    return None if w is None else w.stanza


async def run(ctx):
    alice = aioxmpp.JID.fromstr(ctx.jid("alice"))
    bob_jid = aioxmpp.JID.fromstr(ctx.jid("bob"))
    ctx.step("alice logs in on phone and desk, bob on pc; both of alice's devices enable carbons")
    phone = await ctx.login("alice", "phone")
    desk = await ctx.login("alice", "desk")
    bob = await ctx.login("bob", "pc")
    for c in (phone, desk, bob):
        await c.send(aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE))
    await phone.summon(aioxmpp.carbons.CarbonsClient).enable()
    await desk.summon(aioxmpp.carbons.CarbonsClient).enable()

    ctx.step("bob writes to the phone: the phone gets it, the desk a <received/> carbon")
    await bob.send(bob.message(alice.replace(resource="phone"), "to the phone", id="ax-in-1"))
    m = await phone.messages.take(lambda m: m.id_ == "ax-in-1" and inner(m, "received") is None,
                                  "the message on the phone")
    check(body(m) == "to the phone", f"body on the phone: {short(m)}")
    w = await desk.messages.take(lambda m: inner(m, "received") is not None
                                 and inner(m, "received").id_ == "ax-in-1",
                                 "<received/> carbon on the desk")
    check(w.from_ == alice, f"carbon not from alice's bare JID: {short(w)}")
    check(w.to == alice.replace(resource="desk"), f"carbon not to the desk: {short(w)}")
    fw = inner(w, "received")
    check(body(fw) == "to the phone", f"forwarded body: {short(w)}")
    check(fw.from_ == bob_jid.replace(resource="pc"), f"forwarded from: {short(w)}")
    check(fw.to == alice.replace(resource="phone"), f"forwarded to: {short(w)}")

    ctx.step("the phone writes to bob: bob gets it, the desk a <sent/> carbon")
    await phone.send(phone.message(bob_jid, "from the phone", id="ax-out-1"))
    m = await bob.messages.take(lambda m: m.id_ == "ax-out-1", "the message at bob")
    check(body(m) == "from the phone", f"body at bob: {short(m)}")
    check(m.from_ == alice.replace(resource="phone"), f"from at bob: {short(m)}")
    w = await desk.messages.take(lambda m: inner(m, "sent") is not None
                                 and inner(m, "sent").id_ == "ax-out-1",
                                 "<sent/> carbon on the desk")
    fw = inner(w, "sent")
    check(w.from_ == alice, f"carbon not from alice's bare JID: {short(w)}")
    check(fw.to == bob_jid and body(fw) == "from the phone", f"forwarded: {short(w)}")
    check(fw.from_ == alice.replace(resource="phone"), f"forwarded from: {short(w)}")

    ctx.step("no carbon went back to the phone")
    back = await phone.messages.quiet(
        lambda m: inner(m, "sent") is not None or inner(m, "received") is not None, 1.0)
    check(not back, f"the phone got carbons of its own traffic: {[short(x) for x in back]}")
