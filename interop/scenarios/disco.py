"""Service discovery (XEP-0030) of the server: identity server/im, the disco#info feature and
the features of the services the other scenarios use; disco#items answers; and the server
answers disco#info for the user's own bare JID (identity account/registered)."""

from harness.client import check, q, short

USERS = ["alice"]
INFO = "http://jabber.org/protocol/disco#info"
ITEMS = "http://jabber.org/protocol/disco#items"
EXPECTED = [
    INFO,
    "urn:xmpp:ping",      # XEP-0199
    "jabber:iq:version",  # XEP-0092
    "urn:xmpp:time",      # XEP-0202
    "jabber:iq:private",  # XEP-0049
    "vcard-temp",         # XEP-0054
]


def parse_info(res):
    query = res.find(q(INFO, "query"))
    check(query is not None, f"disco#info result without <query/>: {short(res)}")
    ids = {(i.get("category"), i.get("type")) for i in query.findall(q(INFO, "identity"))}
    feats = [f.get("var") for f in query.findall(q(INFO, "feature"))]
    return ids, feats


async def run(ctx):
    c = await ctx.login("alice", presence=False)

    ctx.step("disco#info to the server")
    ids, feats = parse_info(await c.iq("get", f"<query xmlns='{INFO}'/>", to=ctx.domain))
    check(("server", "im") in ids, f"no identity category='server' type='im' in {sorted(ids)}")
    missing = [f for f in EXPECTED if f not in feats]
    check(not missing, f"features missing from the server's disco#info: {missing} "
                       f"(has {sorted(feats)})")
    check(len(feats) == len(set(feats)), f"duplicate features: {sorted(feats)}")

    ctx.step("disco#items to the server")
    res = await c.iq("get", f"<query xmlns='{ITEMS}'/>", to=ctx.domain)
    query = res.find(q(ITEMS, "query"))
    check(query is not None, f"disco#items result without <query/>: {short(res)}")
    for item in query.findall(q(ITEMS, "item")):
        check(item.get("jid"), f"disco#items item without jid: {short(item)}")

    ctx.step("disco#info to our own bare JID: the server answers for the account")
    ids, _ = parse_info(await c.iq("get", f"<query xmlns='{INFO}'/>", to=ctx.jid("alice")))
    check(("account", "registered") in ids,
          f"no identity account/registered for our bare JID in {sorted(ids)}")
