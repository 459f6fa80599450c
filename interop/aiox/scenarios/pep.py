"""PEP (XEP-0163) notifications driven by aioxmpp's AvatarService (XEP-0084 User Avatar),
the way a client shows a contact's avatar: bob's client claims the avatar metadata node with
+notify and advertises it through aioxmpp's EntityCapsService (XEP-0115 caps in presence;
the server asks bob's disco#info); alice and bob, alice and carol are mutually subscribed;
carol's client has no +notify. alice publishes an avatar (data node, then metadata node).
bob's client gets the metadata notification from alice's bare JID (the service's
on_metadata_changed signal), with the PNG's SHA-1 as id, its size and type, and fetches the
image bytes from alice's data node: the same bytes. carol gets no notification."""

import asyncio
import hashlib
import struct
import zlib

import aioxmpp
import aioxmpp.avatar
import aioxmpp.entitycaps

from aiox.lib import Fail, check, short, subscribe_mutual

USERS = ["alice", "bob", "carol"]
TIMEOUT = 90


def png(width: int, height: int) -> bytes:
    """A small valid PNG (gradient), made here."""
    def chunk(kind, data):
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + bytes((x * 7 + y * 3) & 0xFF for x in range(width * 3))
                    for y in range(height))
    return (b"\x89PNG\r\n\x1a\n"
            + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


def is_event(m, from_bare):
    return getattr(m, "xep0060_event", None) is not None and m.from_ is not None \
        and m.from_.bare() == from_bare


async def run(ctx):
    alice_bare = aioxmpp.JID.fromstr(ctx.jid("alice"))
    AV = aioxmpp.avatar.AvatarService
    CAPS = aioxmpp.entitycaps.EntityCapsService
    RC = aioxmpp.RosterClient  # fetches the roster: an interested resource (RFC 6121 2.1.6)
    ctx.step("alice (avatar service), bob (avatar service with +notify, caps), carol log in")
    alice = await ctx.login("alice", "phone", services=(RC, AV))
    bob = await ctx.login("bob", "pc", services=(RC, AV, CAPS))
    carol = await ctx.login("carol", "pc", services=(RC,))
    for c in (alice, bob):
        c.summon(AV).synchronize_vcard = False
        c.summon(AV).advertise_vcard = False
    for c in (alice, bob, carol):
        await c.send(aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE))

    ctx.step("alice <-> bob and alice <-> carol subscribe to each other")
    await subscribe_mutual(alice, bob)
    await subscribe_mutual(alice, carol)

    ctx.step("bob sends presence with caps naming urn:xmpp:avatar:metadata+notify")
    await bob.send(aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE))
    feats = bob.summon(aioxmpp.DiscoServer).iter_features()
    check("urn:xmpp:avatar:metadata+notify" in set(feats), "bob's client lacks the +notify feature")
    await alice.presences.take(lambda p: p.from_ == bob.jid
                               and p.type_ == aioxmpp.PresenceType.AVAILABLE
                               and getattr(p, "xep0115_caps", None) is not None,
                               "bob's presence with caps at alice")
    await asyncio.sleep(1.0)  # the server queries bob's disco#info for the caps hash

    ctx.step("alice publishes an avatar")
    image = png(24, 16)
    sha1 = hashlib.sha1(image).hexdigest()
    changed = asyncio.get_running_loop().create_future()
    bob.summon(AV).on_metadata_changed.connect(
        lambda jid, md: changed.done() or jid != alice_bare or changed.set_result(md))
    aset = aioxmpp.avatar.AvatarSet()
    aset.add_avatar_image("image/png", image_bytes=image, width=24, height=16)
    await alice.summon(AV).publish_avatar_set(aset)

    ctx.step("bob's client gets the metadata notification and fetches the image")
    try:
        md = await asyncio.wait_for(changed, 10)
    except asyncio.TimeoutError:
        raise Fail("bob's client got no avatar metadata notification from alice within 10s")
    ev = await bob.messages.take(lambda m: is_event(m, alice_bare), "the PEP event message")
    check(ev.from_ == alice_bare, f"event not from alice's bare JID: {short(ev)}")
    pngs = [d for d in md if d.mime_type == "image/png"]
    check(len(pngs) == 1, f"metadata descriptors {md}")
    d = pngs[0]
    check(d.id_ == sha1 and d.nbytes == len(image), f"descriptor id {d.id_} bytes {d.nbytes}, "
          f"expected {sha1} / {len(image)}")
    got = await asyncio.wait_for(d.get_image_bytes(), 10)
    check(got == image, f"fetched {len(got)} bytes, not the published image")

    ctx.step("carol (no +notify) gets no notification")
    stray = await carol.messages.quiet(lambda m: is_event(m, alice_bare), 1.5)
    check(not stray, f"carol got a notification without +notify: {[short(m) for m in stray]}")
