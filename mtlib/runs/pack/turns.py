"""Turns: K threads of which exactly one runs at any time, in a fixed order, meeting in rounds.

A member runs until it ``submit``s a request; the turn then passes to the next member that has not submitted
one. When every live member has, the last to submit executes the round (all requests at once) and the members
go on, again one at a time, in order. So the runs' Python code never interleaves: whatever global state a run
touches (torch's generator while its model is built, ``torch.manual_seed``) is as if it ran alone, and the
order of everything is the same on every execution.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class Stopped(BaseException):
    """The pack was stopped (an interruption of the main thread): a member leaves at its next request."""


class Turns:
    def __init__(self, members: list[int], execute: Callable[[dict[int, Any]], dict[int, Any]]):
        """``execute({member: request}) -> {member: result or exception}`` runs a round."""
        self.cond = threading.Condition()
        self.live = list(members)
        self.execute = execute
        self.pending: dict[int, Any] = {}
        self.results: dict[int, Any] = {}
        self.turn: int | None = self.live[0] if self.live else None
        self.stopped = False
        self.rounds = 0

    def begin(self, member: int) -> None:
        """Block until it is ``member``'s turn (a member's thread calls it first)."""
        with self.cond:
            self._wait_turn(member)

    def submit(self, member: int, request: Any) -> Any:
        """Hand over a request, let the others run, return its result when the round has been computed."""
        with self.cond:
            self.pending[member] = request
            self._pass(member)
            self._wait_turn(member)
            result = self.results.pop(member)
        if isinstance(result, BaseException):
            raise result
        return result

    def leave(self, member: int) -> None:
        """The member's run ended (finished, failed or stopped): the others go on without it."""
        with self.cond:
            if member in self.live:
                self.live.remove(member)
            self.pending.pop(member, None)
            if self.turn == member or self.turn is None:
                self._pass(member)

    def stop(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()

    def _wait_turn(self, member: int) -> None:
        while self.turn != member and not self.stopped:
            self.cond.wait()
        if self.stopped:
            raise Stopped()

    def _pass(self, member: int) -> None:
        waiting = [m for m in self.live if m not in self.pending]
        if waiting:  # the next member after this one (in order) that has no request in
            after = [m for m in waiting if m > member]
            self.turn = (after or waiting)[0]
        elif self.pending:  # everyone's in: this thread computes the round
            requests, self.pending = self.pending, {}
            try:
                self.results.update(self.execute(requests))
            except Exception as err:  # noqa: BLE001 - the round's failure is every member's
                self.results.update(dict.fromkeys(requests, err))
            self.rounds += 1
            self.turn = self.live[0]
        else:
            self.turn = None
        self.cond.notify_all()
