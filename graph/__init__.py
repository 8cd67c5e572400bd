"""The GraphQL surface of ordergraph: schema, resolvers, subscriptions, ASGI app, CLI."""
