"""Roster versioning (RFC 6121 2.6): the stream feature, `ver` on results and pushes, an
empty result for a current version, and the changes since an older version (either the whole
roster with the new version, or an empty result followed by roster pushes)."""

from harness.client import Fail, check, push_item, q, short

USERS = ["alice"]
NS = "jabber:iq:roster"


async def get_since(ctx, c, ver: str):
    """('full', items by jid, ver) or ('pushes', [push iq], None)."""
    res = await c.roster_get(ver)
    query = res.find(q(NS, "query"))
    if query is None:
        # Empty result: changes, if any, come as pushes right after it.
        pushes = await c.roster_pushes.quiet(lambda _: True, 1.0)
        return "pushes", pushes, None
    check(query.get("ver") is not None,
          f"roster result for ver={ver!r} has a <query/> without ver: {short(res)}")
    items = {i.get("jid"): i for i in query.findall(q(NS, "item"))}
    return "full", items, query.get("ver")


async def run(ctx):
    carol = ctx.jid("carol")
    ctx.step("log in; expect the rosterver stream feature")
    c = await ctx.login("alice", presence=False, roster=True)
    check("rosterver" in c.features,
          "no <ver xmlns='urn:xmpp:features:rosterver'/> stream feature")

    # Start from a non-empty roster: Prosody 0.12 labels an account's empty roster and its
    # first stored version both "1", so a version taken before any change is not reliable.
    dave = ctx.jid("dave")
    ctx.step("add dave, so the roster has a stored version")
    await c.iq("set", f"<query xmlns='{NS}'><item jid='{dave}'/></query>")
    await c.roster_pushes.take(lambda p: push_item(p, dave) is not None, "roster push adding dave")

    ctx.step("roster get with ver='' returns the roster with a version")
    res = await c.roster_get("")
    query = res.find(q(NS, "query"))
    check(query is not None, f"roster get with ver='' returned no <query/>: {short(res)}")
    v0 = query.get("ver")
    check(v0 is not None, f"roster result has no ver attribute: {short(res)}")

    ctx.step("add carol; the push carries a new version")
    await c.iq("set", f"<query xmlns='{NS}'><item jid='{carol}' name='Carol'>"
                      f"<group>Friends</group></item></query>")
    push = await c.roster_pushes.take(lambda p: push_item(p, carol) is not None,
                                      "roster push adding carol")
    v1 = push.xml.find(q(NS, "query")).get("ver")
    check(v1 is not None, f"roster push without ver: {short(push.xml)}")
    check(v1 != v0, f"roster version unchanged ({v1!r}) after adding an item")
    item = push_item(push, carol)
    check(item.get("name") == "Carol", f"pushed item name {item.get('name')!r}")
    check(item.get("subscription", "none") == "none",
          f"pushed item subscription {item.get('subscription')!r}")
    groups = [g.text for g in item.findall(q(NS, "group"))]
    check(groups == ["Friends"], f"pushed item groups {groups}")

    ctx.step("roster get with the current version: nothing new")
    kind, got, ver = await get_since(ctx, c, v1)
    if kind == "pushes":
        if got:
            raise Fail(f"pushes sent although the version was current: {short(got[0].xml)}")
    else:
        check(ver == v1 and set(got) == {carol, dave},
              f"full roster for the current version has ver={ver!r}, items {sorted(got)}")

    ctx.step("roster get with the old version: carol's addition")
    kind, got, ver = await get_since(ctx, c, v0)
    if kind == "pushes":
        check(any(push_item(p, carol) is not None for p in got),
              f"empty result for an old version, but no push for carol followed "
              f"({len(got)} pushes)")
    else:
        check(carol in got, f"roster for an old version lacks carol: {sorted(got)}")
        check(ver == v1, f"roster for an old version has ver={ver!r}, current is {v1!r}")

    ctx.step("remove carol; the push carries yet another version")
    await c.iq("set", f"<query xmlns='{NS}'><item jid='{carol}' subscription='remove'/></query>")
    push = await c.roster_pushes.take(
        lambda p: (push_item(p, carol) is not None
                   and push_item(p, carol).get("subscription") == "remove"),
        "roster push removing carol")
    v2 = push.xml.find(q(NS, "query")).get("ver")
    check(v2 is not None and v2 not in (v0, v1),
          f"version after removal is {v2!r} (before: {v0!r}, {v1!r})")

    ctx.step("roster get with the version before the removal: carol's removal")
    kind, got, ver = await get_since(ctx, c, v1)
    if kind == "pushes":
        check(any((push_item(p, carol) is not None
                   and push_item(p, carol).get("subscription") == "remove") for p in got),
              f"no removal push for carol after an empty result ({len(got)} pushes)")
    else:
        check(carol not in got, "carol still in the roster after removal")
        check(ver == v2, f"roster has ver={ver!r}, current is {v2!r}")

    ctx.step("a new session with the current version gets nothing new")
    await c.stop()
    c2 = await ctx.login("alice", resource="second", presence=False, roster=False)
    kind, got, ver = await get_since(ctx, c2, v2)
    if kind == "full":
        check(ver == v2 and set(got) == {dave}, f"current-version roster: ver={ver!r} items {sorted(got)}")
    else:
        if got:
            raise Fail(f"pushes for a current version: {short(got[0].xml)}")
