"""Account administration while the server runs (`oriole user add/passwd/list/del`; for
Prosody, prosodyctl): a new account can log in at once, a password change takes effect at
the next login, and a deleted account can no longer log in."""

from harness.client import Fail, check

USERS: list[str] = []


async def login_fails(ctx, localpart: str, password: str, what: str) -> None:
    c = ctx.client(f"{ctx.jid(localpart)}/cli", password)
    try:
        await c.start(timeout=15)
    except Fail:
        check(c.auth_failures, f"{what}: login failed, but not with a SASL failure")
        return
    raise Fail(f"{what}: login succeeded")


async def run(ctx):
    t = ctx.target
    pw1, pw2 = "live-Secret-1", "live-Secret-2"

    ctx.step("add carol while the server runs")
    await ctx.admin(t.add_user, "carol", pw1)
    c = ctx.client(f"{ctx.jid('carol')}/cli", pw1)
    await c.start()
    await c.stop()

    ctx.step("list accounts")
    users = await ctx.admin(t.list_users)
    check(any(ctx.jid("carol") in u for u in users), f"carol not listed: {users}")

    ctx.step("change carol's password")
    await ctx.admin(t.set_password, "carol", pw2)
    await login_fails(ctx, "carol", pw1, "old password after the change")
    c = ctx.client(f"{ctx.jid('carol')}/cli2", pw2)
    await c.start()
    await c.stop()

    ctx.step("delete carol")
    await ctx.admin(t.del_user, "carol")
    await login_fails(ctx, "carol", pw2, "deleted account")
    users = await ctx.admin(t.list_users)
    check(not any(ctx.jid("carol") in u for u in users), f"carol still listed: {users}")
