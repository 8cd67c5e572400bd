"""The write side of ordergraph: commands, events, the Order aggregate, handlers, bus, store."""
