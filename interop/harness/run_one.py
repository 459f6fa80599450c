"""Run one scenario against one fresh server instance and print one line.

    python -m harness.run_one --target oriole|prosody --scenario NAME --work DIR

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

import argparse
import asyncio
import importlib
import logging
import signal
import sys
import traceback
from pathlib import Path

from .client import Client, Fail, Skip
from .target import TARGETS, Target, TargetError


class Terminated(BaseException):
    pass


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

    async def logout_all(self) -> None:
        for c in self.clients:
            try:
                await c.stop(wait=1.0)
            except Exception:
                pass
        self.clients = []

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


async def run_scenario(mod, ctx: Ctx) -> None:
    await mod.run(ctx)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=sorted(TARGETS), required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--enable-register", action="store_true")
    args = ap.parse_args()

    name = args.scenario
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
        mod = load(name)
        # A scenario that needs in-band registration gets a server of its own with it on
        # (every scenario starts its own server), so it always runs.
        registration = getattr(mod, "REGISTRATION", False) or args.enable_register
        target = TARGETS[args.target](work, registration=registration)
        target.extra_modules = tuple(getattr(mod, "PROSODY_MODULES", ()))
        ctx = Ctx(target, work, name, {"register": registration})
        target.prepare()
        for user in getattr(mod, "USERS", []):
            ctx.step(f"create account {user}")
            target.add_user(user, ctx.password(user))
        ctx.step("start server")
        target.start()
        timeout = getattr(mod, "TIMEOUT", 60)

        async def body():
            try:
                await asyncio.wait_for(run_scenario(mod, ctx), timeout)
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
