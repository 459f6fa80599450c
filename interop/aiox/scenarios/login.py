"""Login with aioxmpp: STARTTLS with the server's certificate verified (chain + host name
`localhost`, trusting only that certificate), SASL SCRAM, bind with the requested resource;
initial presence reflected with its status; a wrong password is refused."""

import aioxmpp

from aiox.lib import Fail, check

USERS = ["alice"]


async def run(ctx):
    alice = ctx.jid("alice")
    ctx.step("connect (STARTTLS), verify the certificate, SCRAM, bind")
    c = await ctx.login("alice", "ax-login")
    check(c.tls_version() in ("TLSv1.2", "TLSv1.3"), f"session TLS version {c.tls_version()}")
    check(c.sasl.used and c.sasl.used.startswith("SCRAM-"), f"mechanism {c.sasl.used}")
    check(str(c.jid) == f"{alice}/ax-login", f"bound {c.jid}, expected {alice}/ax-login")
    ctx.log.info("logged in as %s with %s over %s", c.jid, c.sasl.used, c.tls_version())

    ctx.step("initial presence is reflected to our resource with its status")
    p = aioxmpp.Presence(type_=aioxmpp.PresenceType.AVAILABLE)
    p.status[None] = "aioxmpp login"
    await c.send(p)
    got = await c.presences.take(lambda x: x.from_ == c.jid and x.type_ == aioxmpp.PresenceType.AVAILABLE,
                                 "our own presence reflected")
    check(got.status.any() == "aioxmpp login", f"status {got.status.any()!r}")

    ctx.step("a wrong password is refused")
    bad = ctx.client("alice", "ax-bad")
    bad.sasl.password = "not-the-password"
    try:
        await bad.start(timeout=15)
    except Fail as e:
        check("uthentication" in str(e) or "not-authorized" in str(e) or "SASL" in str(e),
              f"wrong password failed, but not with an authentication failure: {e}")
    else:
        raise Fail("logged in with a wrong password")
