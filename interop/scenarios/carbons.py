"""Message Carbons (XEP-0280) with slixmpp's xep_0280: two devices of alice enable carbons;
a message bob sends to one device reaches the other as a <received/> carbon, a message one
device sends reaches the other as a <sent/> carbon; the wrapper comes from alice's bare JID
to the device; a message with <private/> and <no-copy/> is delivered but not copied."""

from harness.client import check, short

USERS = ["alice", "bob"]
NS = "urn:xmpp:carbons:2"
FWD = "urn:xmpp:forward:0"
CLIENT = "jabber:client"


def carbon(msg, kind: str):
    """The forwarded message inside a carbon of `kind`, or None."""
    k = msg.xml.find(f"{{{NS}}}{kind}")
    if k is None:
        return None
    return k.find(f"{{{FWD}}}forwarded/{{{CLIENT}}}message")


def body_of(m) -> str | None:
    return m.findtext(f"{{{CLIENT}}}body")


async def run(ctx):
    alice_bare = ctx.jid("alice")
    ctx.step("log in alice twice (phone, desk) and bob; both of alice's devices enable carbons")
    phone = await ctx.login("alice", resource="phone", plugins=("xep_0280",))
    desk = await ctx.login("alice", resource="desk", plugins=("xep_0280",))
    bob = await ctx.login("bob", resource="pc")
    await phone.plugin["xep_0280"].enable()
    await desk.plugin["xep_0280"].enable()

    ctx.step("bob writes to alice's phone: the phone gets it, the desk a <received/> carbon")
    bob.message(f"{alice_bare}/phone", "to the phone", id="in-1")
    m = await phone.messages.take(lambda m: m["id"] == "in-1", "the original on the phone")
    check(m["body"] == "to the phone", f"body: {short(m.xml)}")
    w = await desk.messages.take(lambda m: (c := carbon(m, "received")) is not None
                                 and c.get("id") == "in-1", "received carbon on the desk")
    check(str(w["from"]) == alice_bare, f"carbon not from the bare JID: {short(w.xml)}")
    check(str(w["to"]) == f"{alice_bare}/desk", f"carbon not to the desk: {short(w.xml)}")
    inner = carbon(w, "received")
    check(body_of(inner) == "to the phone", f"forwarded body: {short(inner)}")
    check(inner.get("from", "").startswith(ctx.jid("bob")), f"forwarded from: {short(inner)}")

    ctx.step("the phone writes to bob: bob gets it, the desk a <sent/> carbon")
    phone.message(ctx.jid("bob"), "from the phone", id="out-1")
    m = await bob.messages.take(lambda m: m["id"] == "out-1", "the message at bob")
    check(m["body"] == "from the phone", f"body: {short(m.xml)}")
    w = await desk.messages.take(lambda m: (c := carbon(m, "sent")) is not None
                                 and c.get("id") == "out-1", "sent carbon on the desk")
    inner = carbon(w, "sent")
    check(str(w["from"]) == alice_bare, f"carbon not from the bare JID: {short(w.xml)}")
    check(inner.get("to") == ctx.jid("bob") and body_of(inner) == "from the phone",
          f"forwarded: {short(inner)}")

    ctx.step("a private message (<private/> + <no-copy/>) is delivered but not copied")
    phone.send_xml(f"<message to='{ctx.jid('bob')}' type='chat' id='priv-1'>"
                   f"<body>just here</body><private xmlns='{NS}'/>"
                   f"<no-copy xmlns='urn:xmpp:hints'/></message>")
    await bob.messages.take(lambda m: m["id"] == "priv-1", "the private message at bob")
    phone.message(ctx.jid("bob"), "marker", id="out-2")
    await desk.messages.take(lambda m: (c := carbon(m, "sent")) is not None
                             and c.get("id") == "out-2", "sent carbon of the marker")
    copied = await desk.messages.quiet(
        lambda m: any((c := carbon(m, k)) is not None and c.get("id") == "priv-1"
                      for k in ("sent", "received")), 1.0)
    check(not copied, f"the private message was copied: {[short(m.xml) for m in copied]}")
