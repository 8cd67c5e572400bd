"""The command bus: routes each command to its one handler through an explicit registry."""

from __future__ import annotations

from collections.abc import Mapping

from domain.commands import Command
from domain.errors import UnknownCommand
from domain.eventstore.store import EventStore
from domain.handlers import COMMAND_HANDLERS, CommandResult, Handler, HandlerContext


class CommandBus:
    def __init__(self, context: HandlerContext, handlers: Mapping[type[Command], Handler]) -> None:
        self._context = context
        self._handlers = dict(handlers)

    async def dispatch(self, command: Command) -> CommandResult:
        handler = self._handlers.get(type(command))
        if handler is None:
            raise UnknownCommand(type(command).__name__)
        return await handler(command, self._context)


def build_bus(store: EventStore, context: HandlerContext | None = None) -> CommandBus:
    """The bus with every order command wired to its handler."""
    return CommandBus(context or HandlerContext(store), COMMAND_HANDLERS)
