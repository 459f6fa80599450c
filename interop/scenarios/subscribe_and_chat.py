"""Two accounts subscribe to each other (RFC 6121 3.1), see each other's presence, and chat.

Checks: roster pushes after each step (none+ask, to, from, both), subscription requests and
approvals delivered from the bare JID, the contact's current presence sent on approval,
final rosters at `both`, presence updates both ways, one chat message each way with the
body intact (markup-significant and non-ASCII characters) and the sender's full JID.
"""

from harness.client import bare, check, push_item

USERS = ["alice", "bob"]


def is_available(p) -> bool:
    return p.xml.get("type") is None  # slixmpp's p["type"] reports <show/> for these


async def expect_push(ctx, client, contact: str, subscription: str, ask: str | None):
    want = f"subscription='{subscription}'" + (f" ask='{ask}'" if ask else "")
    ctx.step(f"{client.label}: roster push for {contact} with {want}")

    def fits(iq):
        item = push_item(iq, contact)
        return (item is not None and item.get("subscription", "none") == subscription
                and item.get("ask") == ask)

    await client.roster_pushes.take(fits, f"roster push for {contact} with {want}")


async def expect_presence(ctx, client, sender: str, type_: str, what: str):
    ctx.step(f"{client.label}: {what}")
    return await client.presences.take(lambda p: str(p["from"]) == sender
                                       and p.xml.get("type") == type_,
                                       f"presence type='{type_}' from {sender}")


async def run(ctx):
    alice_bare, bob_bare = ctx.jid("alice"), ctx.jid("bob")
    ctx.step("log in alice and bob, each fetching the roster (an interested resource)")
    alice = await ctx.login("alice", resource="phone", roster=True)
    bob = await ctx.login("bob", resource="laptop", roster=True)
    alice_full, bob_full = str(alice.boundjid), str(bob.boundjid)

    # alice -> bob: subscribe
    ctx.step("alice subscribes to bob")
    alice.presence(to=bob_bare, type="subscribe")
    await expect_push(ctx, alice, bob_bare, "none", "subscribe")
    await expect_presence(ctx, bob, alice_bare, "subscribe",
                          "subscription request from alice's bare JID")

    # bob approves
    ctx.step("bob approves")
    bob.presence(to=alice_bare, type="subscribed")
    await expect_push(ctx, bob, alice_bare, "from", None)
    await expect_presence(ctx, alice, bob_bare, "subscribed", "approval from bob's bare JID")
    await expect_push(ctx, alice, bob_bare, "to", None)
    ctx.step("alice receives bob's current presence after the approval (RFC 6121 3.1.5)")
    await alice.presences.take(lambda p: str(p["from"]) == bob_full and is_available(p),
                               f"available presence from {bob_full}")

    # bob -> alice: subscribe
    ctx.step("bob subscribes to alice")
    bob.presence(to=alice_bare, type="subscribe")
    await expect_push(ctx, bob, alice_bare, "from", "subscribe")
    await expect_presence(ctx, alice, bob_bare, "subscribe", "subscription request from bob")

    ctx.step("alice approves")
    alice.presence(to=bob_bare, type="subscribed")
    await expect_push(ctx, alice, bob_bare, "both", None)
    await expect_presence(ctx, bob, alice_bare, "subscribed", "approval from alice")
    await expect_push(ctx, bob, alice_bare, "both", None)
    ctx.step("bob receives alice's current presence after the approval")
    await bob.presences.take(lambda p: str(p["from"]) == alice_full and is_available(p),
                             f"available presence from {alice_full}")

    for client, contact in ((alice, bob_bare), (bob, alice_bare)):
        ctx.step(f"{client.label}: roster get shows {contact} at both")
        item = await client.roster_item(contact)
        check(item is not None, f"{client.label}: {contact} missing from the roster")
        check(item.get("subscription") == "both" and item.get("ask") is None,
              f"{client.label}: roster item for {contact} is "
              f"subscription={item.get('subscription')!r} ask={item.get('ask')!r}")

    # presence updates both ways
    ctx.step("alice changes presence; bob sees it")
    alice.send_presence(pshow="away", pstatus="in a meeting")
    p = await bob.presences.take(
        lambda p: str(p["from"]) == alice_full and p["status"] == "in a meeting",
        "alice's presence update with status 'in a meeting'")
    check(is_available(p), f"alice's update arrived as type {p['type']!r}")
    ctx.step("bob changes presence; alice sees it")
    bob.send_presence(pshow="dnd", pstatus="coding")
    p = await alice.presences.take(
        lambda p: str(p["from"]) == bob_full and p["status"] == "coding",
        "bob's presence update with status 'coding'")
    check(p["show"] == "dnd", f"bob's show arrived as {p['show']!r}, sent 'dnd'")

    # chat both ways
    body1 = "Hello Bob <&> 'single' \"double\" ünïcødé ✓ 🐦"
    ctx.step("alice sends a chat message to bob's bare JID")
    alice.message(bob_bare, body1, id="m-a2b")
    m = await bob.messages.take(lambda m: m["id"] == "m-a2b", "alice's chat message")
    check(m["type"] == "chat", f"message type {m['type']!r}, sent chat")
    check(str(m["from"]) == alice_full, f"message from {m['from']}, expected {alice_full}")
    check(m["body"] == body1, f"body arrived as {m['body']!r}, sent {body1!r}")

    body2 = "Hi Alice! ]]> & </body> fine"
    ctx.step("bob replies to alice's full JID")
    bob.message(alice_full, body2, id="m-b2a")
    m = await alice.messages.take(lambda m: m["id"] == "m-b2a", "bob's reply")
    check(m["type"] == "chat", f"reply type {m['type']!r}, sent chat")
    check(str(m["from"]) == bob_full, f"reply from {m['from']}, expected {bob_full}")
    check(bare(str(m["to"])) == alice_bare, f"reply addressed to {m['to']}")
    check(m["body"] == body2, f"reply body arrived as {m['body']!r}, sent {body2!r}")
