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
import logging
import sys
from pathlib import Path

from harness import runner
from harness.target import Target

from .lib import Client

PREFIX = "aioxmpp-"


class Ctx:
    """What a scenario sees: the target, accounts, clients, and a step label for reports."""

    def __init__(self, target: Target, work: Path, name: str, options: dict):
        self.target = target
        self.work = work
        self.name = name
        self.options = options
        self.last_step = "setup"
        self.clients: list[Client] = []
        self.log = logging.getLogger(f"scenario.{name}")

    def step(self, text: str) -> None:
        self.last_step = text
        self.log.info("STEP %s", text)

    @property
    def domain(self) -> str:
        return self.target.domain

    def jid(self, localpart: str) -> str:
        return self.target.jid(localpart)

    @staticmethod
    def password(localpart: str) -> str:
        return f"{localpart}-Secret-42"

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

    async def logout_all(self) -> None:
        for c in self.clients:
            try:
                await c.stop(wait=2.0)
            except Exception:
                pass
        self.clients = []


def load(short_name: str):
    return importlib.import_module(f"aiox.scenarios.{short_name}")


def main() -> int:
    return runner.main(load=load, make_ctx=Ctx, prefix=PREFIX)


if __name__ == "__main__":
    sys.exit(main())
