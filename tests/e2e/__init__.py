"""End to end: a running app over real HTTP and WebSocket, and real browsers."""
