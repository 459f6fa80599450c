"""Run one aioxmpp scenario against one fresh server instance and print one line.

    python -m aiox.run_one --target oriole|prosody --scenario NAME --work DIR

The aioxmpp twin of harness/run_one.py (same targets from harness/target.py, same output:
`PASS aioxmpp-NAME`, `FAIL aioxmpp-NAME: reason` or `SKIP ...`; exit 0 pass, 1 fail, 3 skip).
Details go to DIR/client.log (aioxmpp's debug log: every stanza sent and received) and the
server's log in DIR. The server is stopped before this returns, also on SIGTERM.

A scenario is a module in aiox/scenarios/ with USERS, optionally TIMEOUT, and
`async def run(ctx)` that raises Fail/Skip or returns.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import signal
import sys
import traceback
from pathlib import Path

from harness.target import TARGETS, Target, TargetError

from .lib import Client, Fail, Skip

PREFIX = "aioxmpp-"


class Terminated(BaseException):
    pass


class Ctx:
    """What a scenario sees: the target, accounts, clients, and a step label for reports."""

    def __init__(self, target: Target, name: str):
        self.target = target
        self.name = name
        self.last_step = "setup"
        self.clients: list[Client] = []
        self.log = logging.getLogger(f"scenario.{name}")

    def step(self, text: str) -> None:
        self.last_step = text
        self.log.info("STEP %s", text)

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


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=sorted(TARGETS), required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--enable-register", action="store_true")
    args = ap.parse_args()

    short_name = args.scenario.removeprefix(PREFIX)
    name = PREFIX + short_name
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    logging.basicConfig(
        filename=str(work / "client.log"), level=logging.DEBUG,
        format="%(asctime)s.%(msecs)03d %(levelname)s %(name)s %(message)s", datefmt="%H:%M:%S",
    )

    def on_term(signum, frame):
        raise Terminated()

    signal.signal(signal.SIGTERM, on_term)

    result = ("FAIL", "internal error")
    target: Target | None = None
    ctx: Ctx | None = None
    try:
        mod = importlib.import_module(f"aiox.scenarios.{short_name}")
        target = TARGETS[args.target](work, registration=args.enable_register)
        target.extra_modules = tuple(getattr(mod, "PROSODY_MODULES", ()))
        ctx = Ctx(target, name)
        target.prepare()
        for user in getattr(mod, "USERS", []):
            ctx.step(f"create account {user}")
            target.add_user(user, ctx.password(user))
        ctx.step("start server")
        target.start()
        timeout = getattr(mod, "TIMEOUT", 60)

        async def body():
            try:
                await asyncio.wait_for(mod.run(ctx), timeout)
            except asyncio.TimeoutError:
                raise Fail(f"timed out after {timeout}s at step: {ctx.last_step}")
            finally:
                await ctx.logout_all()

        asyncio.run(body())
        ctx.step("stop server")
        if target.crashed():
            raise Fail(target.crashed() or "server died")
        code = target.stop()
        if code != 0:
            raise Fail(f"scenario passed, but the server exited with {code} on SIGTERM")
        result = ("PASS", "")
    except Skip as e:
        result = ("SKIP", str(e))
    except Fail as e:
        step = f" [step: {ctx.last_step}]" if ctx else ""
        result = ("FAIL", f"{e}{step}")
    except TargetError as e:
        result = ("FAIL", f"{e}")
    except Terminated:
        step = f" at step: {ctx.last_step}" if ctx else ""
        result = ("FAIL", f"killed by the run's timeout{step}")
    except Exception as e:  # a bug in the scenario or an unexpected reply shape
        logging.exception("scenario raised")
        tb = traceback.extract_tb(e.__traceback__)[-1]
        step = f" [step: {ctx.last_step}]" if ctx else ""
        result = ("FAIL", f"{type(e).__name__}: {e} "
                          f"({Path(tb.filename).name}:{tb.lineno}){step}")
    finally:
        if target is not None:
            died = target.crashed()
            if died and result[0] == "FAIL" and "died" not in result[1]:
                result = ("FAIL", f"{result[1]}; {died}")
            if target.running():
                try:
                    target.stop(timeout=5)
                except TargetError:
                    target.kill()
            target.kill()

    status, reason = result
    reason = " ".join(reason.split())
    if len(reason) > 600:
        reason = reason[:600] + "..."
    print(f"{status} {name}" + (f": {reason}" if reason else ""), flush=True)
    logging.info("RESULT %s %s %s", status, name, reason)
    return {"PASS": 0, "FAIL": 1, "SKIP": 3}[status]


if __name__ == "__main__":
    sys.exit(main())
