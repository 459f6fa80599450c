"""The one scenario runner both client libraries use (harness/run_one.py for slixmpp,
aiox/run_one.py for aioxmpp): start a fresh server instance, run one scenario against it,
stop the server whatever happened (also on SIGTERM), print one line.

Output on standard output: `PASS NAME`, `FAIL NAME: reason` or `SKIP NAME: reason` (details
go to WORK/client.log, WORK/admin.log and the server's log in WORK). Exit status: 0 pass,
1 fail, 3 skip.

A scenario is a module with:
    USERS = ["alice", "bob"]      # accounts created (with ctx.password(name)) before start
    TIMEOUT = 60                   # seconds for the whole scenario (optional)
    REGISTRATION = False           # start the server with in-band registration (optional)
    PROSODY_MODULES = ()           # community modules its Prosody loads (optional)
    async def run(ctx): ...        # raise Fail/Skip; return normally to pass

This module imports no client library: each library's run_one gives `main` a loader (scenario
name -> module) and a context factory (target, work, name, options -> its Ctx, a subclass of BaseCtx below, which has
`step()`, `password()`, `last_step` and `async logout_all()`), and raises subclasses of the
Fail/Skip defined here.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import traceback
from pathlib import Path
import time
from types import ModuleType
from typing import Any, Callable

from .target import TARGETS, Target, TargetError


class BaseCtx:
    """What a scenario sees, whatever the client library: the target, accounts, a step label
    for reports, and the clients it made (`client()`/`login()` are the library's, in each
    run_one's subclass, which appends to `clients`)."""

    # Seconds each client gets to close its stream in logout_all().
    STOP_WAIT = 1.0

    def __init__(self, target: Target, work: Path, name: str, options: dict):
        self.target = target
        self.work = work
        self.name = name
        self.options = options
        self.last_step = "setup"
        self.clients: list = []
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

    async def logout_all(self) -> None:
        for c in self.clients:
            try:
                await c.stop(wait=self.STOP_WAIT)
            except Exception:
                pass
        self.clients = []


class Fail(Exception):
    """The scenario found the server misbehaving; the message is the reason printed."""


class Skip(Exception):
    """The scenario does not apply to this configuration."""



class Inbox:
    """Stanzas received, in order, and a way to wait for the first one that fits.

    Each client library's side may override `fits` (how a predicate is applied), `render`
    (how an item is shown in a failure) and `failure` (the Fail class raised)."""

    failure: type = Fail

    @staticmethod
    def fits(pred: Callable[[Any], bool], item: Any) -> bool:
        return pred(item)

    @staticmethod
    def render(item: Any, limit: int) -> str:
        text = str(item)
        return text if len(text) <= limit else text[:limit] + "..."

    def __init__(self, what: str):
        self.what = what
        self.items: list[Any] = []
        self._changed = asyncio.Event()

    def put(self, item: Any) -> None:
        self.items.append(item)
        self._changed.set()

    async def take(self, pred: Callable[[Any], bool], what: str, timeout: float = 10) -> Any:
        """Remove and return the first item (oldest first) for which pred is true."""
        deadline = time.monotonic() + timeout
        while True:
            for i, item in enumerate(self.items):
                if self.fits(pred, item):
                    return self.items.pop(i)
            left = deadline - time.monotonic()
            if left <= 0:
                seen = "; ".join(self.render(x, 200) for x in self.items[-3:])
                raise self.failure(f"waited {timeout}s for {what}; other {self.what} seen: {seen or 'none'}")
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), left)
            except asyncio.TimeoutError:
                pass

    async def take_next(self, what: str, timeout: float = 10) -> Any:
        return await self.take(lambda _: True, what, timeout)

    async def quiet(self, pred: Callable[[Any], bool], seconds: float) -> list[Any]:
        """Wait `seconds` and return (and remove) whatever arrived that fits pred."""
        await asyncio.sleep(seconds)
        hits, rest = [], []
        for x in self.items:
            (hits if self.fits(pred, x) else rest).append(x)
        self.items = rest
        return hits


class Terminated(BaseException):
    """SIGTERM (interop/run's outer timeout or its cleanup) arrived."""


def _classify(exc: BaseException, ctx: Any) -> tuple[str, str]:
    """The result line's status and reason for what a scenario raised."""
    step = f" [step: {ctx.last_step}]" if ctx is not None else ""
    if isinstance(exc, Skip):
        return "SKIP", str(exc)
    if isinstance(exc, Fail):
        return "FAIL", f"{exc}{step}"
    if isinstance(exc, TargetError):
        return "FAIL", str(exc)
    if isinstance(exc, Terminated):
        at = f" at step: {ctx.last_step}" if ctx is not None else ""
        return "FAIL", f"killed by the run's timeout{at}"
    # A bug in the scenario or an unexpected reply shape.
    logging.error("scenario raised", exc_info=exc)
    tb = traceback.extract_tb(exc.__traceback__)
    where = f" ({Path(tb[-1].filename).name}:{tb[-1].lineno})" if tb else ""
    return "FAIL", f"{type(exc).__name__}: {exc}{where}{step}"


def _stop(target: Target, result: tuple[str, str]) -> tuple[str, str]:
    """Stop the server (SIGTERM, then SIGKILL); note a crash in a failure's reason."""
    died = target.crashed()
    if died and result[0] == "FAIL" and "died" not in result[1]:
        result = ("FAIL", f"{result[1]}; {died}")
    if target.running():
        try:
            target.stop(timeout=5)
        except TargetError:
            target.kill()
    target.kill()
    return result


def main(*, load: Callable[[str], ModuleType],
         make_ctx: Callable[[Target, Path, str, dict], Any], prefix: str = "") -> int:
    """Parse `--target --scenario --work [--enable-register]`, run, print, return the exit
    status. `prefix` is put before the scenario's name in the output (`aioxmpp-`) and is
    accepted on the name given."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", choices=sorted(TARGETS), required=True)
    ap.add_argument("--scenario", required=True)
    ap.add_argument("--work", required=True)
    ap.add_argument("--enable-register", action="store_true")
    args = ap.parse_args()

    short_name = args.scenario.removeprefix(prefix) if prefix else args.scenario
    name = prefix + short_name
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
    ctx: Any = None
    try:
        mod = load(short_name)
        # A scenario that needs in-band registration gets a server of its own with it on
        # (every scenario starts its own server), so it always runs.
        registration = getattr(mod, "REGISTRATION", False) or args.enable_register
        target = TARGETS[args.target](work, registration=registration)
        target.extra_modules = tuple(getattr(mod, "PROSODY_MODULES", ()))
        ctx = make_ctx(target, work, name, {"register": registration})
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
    except (Exception, Terminated) as e:
        result = _classify(e, ctx)
    finally:
        if target is not None:
            result = _stop(target, result)

    status, reason = result
    reason = " ".join(reason.split())
    if len(reason) > 600:
        reason = reason[:600] + "..."
    print(f"{status} {name}" + (f": {reason}" if reason else ""), flush=True)
    logging.info("RESULT %s %s %s", status, name, reason)
    return {"PASS": 0, "FAIL": 1, "SKIP": 3}[status]
