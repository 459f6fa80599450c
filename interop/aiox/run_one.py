"""Run one aioxmpp scenario against one fresh server instance and print one line.

    python -m aiox.run_one --target oriole|prosody --scenario NAME --work DIR

The aioxmpp side of the shared runner (harness/runner.py: same targets, server handling,
timeouts and output: `PASS aioxmpp-NAME`, `FAIL aioxmpp-NAME: reason` or `SKIP ...`; exit 0
pass, 1 fail, 3 skip): a loader for aiox/scenarios/NAME.py and the context they see.
Details go to DIR/client.log (aioxmpp's debug log: every stanza sent and received) and the
server's log in DIR. The server is stopped before this returns, also on SIGTERM.

A scenario is a module in aiox/scenarios/ with USERS, optionally TIMEOUT, and
`async def run(ctx)` that raises Fail/Skip (aiox/lib.py's, subclasses of the runner's) or
returns.
"""

from __future__ import annotations

import importlib
import sys

from harness import runner

from .lib import Client

PREFIX = "aioxmpp-"


class Ctx(runner.BaseCtx):
    """What a scenario sees: BaseCtx plus aioxmpp clients."""

    STOP_WAIT = 2.0

    def client(self, localpart: str, resource: str) -> Client:
        c = Client(self, f"{self.jid(localpart)}/{resource}", self.password(localpart))
        self.clients.append(c)
        return c

    async def login(self, localpart: str, resource: str, services=()) -> Client:
        """Connect, authenticate, bind; `services` (aioxmpp service classes) are summoned
        before the stream starts, as an application does (they hook stream establishment)."""
        c = self.client(localpart, resource)
        for cls in services:
            c.summon(cls)
        return await c.start()


def load(short_name: str):
    return importlib.import_module(f"aiox.scenarios.{short_name}")


def main() -> int:
    return runner.main(load=load, make_ctx=Ctx, prefix=PREFIX)


if __name__ == "__main__":
    sys.exit(main())
