"""The GraphQL surface of ordergraph: schema, types, inputs, resolvers, subscriptions and the
GraphQL-over-HTTP view. What runs it (settings, CLI, the composition root, serving, operations) is
in ``graph/runtime/``."""
