"""In-band registration (XEP-0077), run only when the run enables it (--enable-register):
the stream feature, the form's fields, creating an account before authentication and logging
in with it, <conflict/> for a taken username, changing the password from a session, and
cancelling the registration, after which the account cannot log in."""

from harness.client import Fail, StanzaErrorReply, check, q, short

USERS = ["alice"]
REGISTRATION = True
NS = "jabber:iq:register"


def registering_client(ctx, localpart: str, password: str, outcome: dict):
    """A client that, on the pre-auth register feature, submits localpart/password."""
    c = ctx.client(f"{ctx.jid(localpart)}/reg", password, plugins=("xep_0077",))
    c.plugin["xep_0077"].create_account = True

    async def on_register(form):
        outcome["form"] = form.xml
        try:
            # Built through slixmpp's register stanza: before authentication slixmpp only
            # lets IQs out that it knows to be part of the negotiation.
            iq = c.make_iq_set()
            iq["register"]["username"] = localpart
            iq["register"]["password"] = password
            res = await c.send_iq(iq)
            outcome["result"] = res
        except StanzaErrorReply as e:
            outcome["error"] = e
        except Fail as e:
            outcome["fail"] = e

    c.add_event_handler("register", on_register)
    return c


async def run(ctx):
    newbie, pw1, pw2 = "newbie", "first-Secret-1", "second-Secret-2"

    ctx.step("register newbie in-band before authenticating, then log in as newbie")
    out: dict = {}
    c = registering_client(ctx, newbie, pw1, out)
    try:
        await c.start()
    except Fail as e:
        if "form" not in out:
            raise Fail(f"no in-band registration feature offered, or no form: {e}")
        raise Fail(f"registration {out.get('error') or out.get('fail') or 'ok'}, "
                   f"then login failed: {e}")
    check("form" in out, "session started without the registration step")
    query = out["form"].find(q(NS, "query"))
    check(query is not None, f"registration form without <query/>: {short(out['form'])}")
    check(query.find(q(NS, "username")) is not None and query.find(q(NS, "password")) is not None,
          f"registration form lacks <username/> or <password/>: {short(query)}")
    check("result" in out, f"registration refused: {out.get('error') or out.get('fail')}")

    ctx.step("registering a taken username gets <conflict/>")
    out2: dict = {}
    c2 = registering_client(ctx, "alice", ctx.password("alice"), out2)
    await c2.start()  # alice's own password: the login after the refused registration works
    check("error" in out2, f"registering 'alice' again: {out2.get('result') or out2.get('fail')}")
    check(out2["error"].condition == "conflict",
          f"registering a taken username: <{out2['error'].condition}/>, expected conflict")
    await c2.stop()

    ctx.step("change newbie's password from the session")
    await c.iq("set", f"<query xmlns='{NS}'><username>{newbie}</username>"
                      f"<password>{pw2}</password></query>")
    await c.stop()
    ctx.step("log in with the new password")
    c3 = ctx.client(f"{ctx.jid(newbie)}/after", pw2)
    await c3.start()

    ctx.step("cancel the registration")
    try:
        await c3.iq("set", f"<query xmlns='{NS}'><remove/></query>", timeout=5)
    except Fail:
        pass  # XEP-0077 3.2: the server may close the stream before the result arrives
    await c3.stop(wait=1.0)

    ctx.step("newbie can no longer log in")
    c4 = ctx.client(f"{ctx.jid(newbie)}/gone", pw2)
    try:
        await c4.start(timeout=10)
    except Fail:
        check(c4.auth_failures, "login of the removed account failed without a SASL failure")
        return
    raise Fail("the removed account could still log in")
