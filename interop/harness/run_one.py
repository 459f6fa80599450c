"""Run one scenario against one fresh server instance and print one line.

    python -m harness.run_one --target oriole|prosody --scenario NAME --work DIR

The slixmpp side of the shared runner (harness/runner.py, which does the server, the
timeouts and the result line): a loader for scenarios/NAME.py and the context they see.
Prints `PASS NAME`, `FAIL NAME: reason` or `SKIP NAME: reason` on standard output (details go
to DIR/client.log, DIR/admin.log and the server's log in DIR). Exit status: 0 pass, 1 fail,
3 skip. The server is stopped before this returns, whatever happened, and also on SIGTERM.

A scenario is a module in scenarios/ with:
    USERS = ["alice", "bob"]      # accounts created (with ctx.password(name)) before start
    TIMEOUT = 60                   # seconds for the whole scenario (optional)
    REGISTRATION = False           # start the server with in-band registration (optional)
    async def run(ctx): ...        # raise Fail/Skip; return normally to pass
"""

from __future__ import annotations

import asyncio
import importlib
import sys

from . import runner
from .client import Client


class Ctx(runner.BaseCtx):
    """What a scenario sees: BaseCtx plus slixmpp clients."""

    def client(self, localpart_or_jid: str, password: str | None = None, **kw) -> Client:
        jid = localpart_or_jid if "@" in localpart_or_jid else self.jid(localpart_or_jid)
        localpart = jid.split("@", 1)[0]
        c = Client(self, jid, password if password is not None else self.password(localpart), **kw)
        self.clients.append(c)
        return c

    async def login(self, localpart: str, *, resource: str = "interop", presence: bool = True,
                    roster: bool = False, **kw) -> Client:
        """Connect, authenticate, bind `resource`; with roster=True fetch the roster (which
        makes this an "interested resource" for roster pushes, RFC 6121 2.1.6); then, by
        default, send initial presence."""
        c = self.client(f"{self.jid(localpart)}/{resource}", self.password(localpart), **kw)
        await c.start()
        if roster:
            await c.roster_get()
        if presence:
            c.presence()
        return c

    async def restart_server(self) -> int:
        """Close all clients, SIGTERM the server, wait, start it again; return its exit code."""
        await self.logout_all()
        code = await asyncio.get_running_loop().run_in_executor(None, self.target.stop)
        await asyncio.get_running_loop().run_in_executor(None, self.target.start)
        return code

    async def admin(self, fn, *args):
        """Run a blocking admin action (user add, ...) off the event loop."""
        return await asyncio.get_running_loop().run_in_executor(None, fn, *args)


def load(name: str):
    return importlib.import_module(f"scenarios.{name}")


def main() -> int:
    return runner.main(load=load, make_ctx=Ctx)


if __name__ == "__main__":
    sys.exit(main())
