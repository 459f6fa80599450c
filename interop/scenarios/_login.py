"""The body shared by login_starttls and login_direct_tls."""

from harness.client import bare, check

RESOURCE = "interop-login"


async def login_and_out(ctx, *, direct_tls: bool) -> None:
    alice = ctx.jid("alice")
    how = "direct TLS" if direct_tls else "STARTTLS"
    ctx.step(f"connect with {how}, authenticate, bind")
    c = ctx.client(f"{alice}/{RESOURCE}", direct_tls=direct_tls)
    await c.start()

    check(c.tls_version() is not None, f"session started without TLS over {how}")
    if direct_tls:
        check("starttls" not in c.features, "STARTTLS negotiated inside direct TLS")
    else:
        check("starttls" in c.features, "session started without negotiating STARTTLS")
    check(c.mech.startswith("SCRAM-"), f"authenticated with {c.mech}, expected SCRAM")
    check(bare(str(c.boundjid)) == alice, f"bound {c.boundjid}, expected {alice}/...")
    check(c.boundjid.resource, f"bound JID {c.boundjid} has no resource")
    ctx.log.info("logged in as %s with %s over %s", c.boundjid, c.mech, c.tls_version())

    ctx.step("send initial presence, expect it reflected to our own resource (RFC 6121 4.2.2)")
    c.presence(status="interop login")
    me = str(c.boundjid)
    pres = await c.presences.take(
        lambda p: str(p["from"]) == me and p.xml.get("type") is None,
        f"our own initial presence from {me}", timeout=10)
    check(pres["status"] == "interop login", f"reflected presence lost its status: {pres}")

    ctx.step("close the stream; the server should close its own")
    took = await c.stop(wait=3.0)
    check(took < 2.9, f"server did not close its stream within 3s of ours ({took:.1f}s)")
