"""Connect with direct TLS (XEP-0368 port), SCRAM, bind, send presence, disconnect."""

from ._login import login_and_out

USERS = ["alice"]


async def run(ctx):
    await login_and_out(ctx, direct_tls=True)
