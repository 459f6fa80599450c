"""Authentication with a wrong password, and for an unknown account, fails with
<not-authorized/> (RFC 6120 6.5.10) and no session; the right password still works after."""

from harness.client import Fail, check

USERS = ["alice"]


async def expect_refused(ctx, jid: str, password: str, what: str) -> None:
    ctx.step(f"log in {what}")
    c = ctx.client(f"{jid}/bad", password)
    try:
        await c.start(timeout=15)
    except Fail:
        pass
    else:
        raise Fail(f"{what}: session started")
    check(c.auth_failures, f"{what}: no SASL <failure/> received "
                           f"(stream errors: {c.stream_errors or 'none'})")
    wrong = [f for f in c.auth_failures if f != "not-authorized"]
    check(not wrong, f"{what}: SASL failure conditions {c.auth_failures}, "
                     f"expected not-authorized")
    await c.stop(wait=1.0)


async def run(ctx):
    alice = ctx.jid("alice")
    await expect_refused(ctx, alice, "not-" + ctx.password("alice"), "with a wrong password")
    await expect_refused(ctx, ctx.jid("nobody"), "whatever-99", "as an unknown account")
    ctx.step("log in with the right password")
    c = await ctx.login("alice", presence=False)
    check(c.mech.startswith("SCRAM-"), f"authenticated with {c.mech}")
