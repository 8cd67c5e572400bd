"""The write side of ordergraph: the pure model at the top (commands, events, the Order aggregate,
values, limits, access rules), the command handlers and bus, and ``eventstore/`` beneath them."""
