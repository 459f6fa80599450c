"""Connect on the STARTTLS port, upgrade to TLS, SCRAM, bind, send presence, disconnect."""

from ._login import login_and_out

USERS = ["alice"]


async def run(ctx):
    await login_and_out(ctx, direct_tls=False)
