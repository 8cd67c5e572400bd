"""The read side of ordergraph: projection tables, projections, projector, queries."""
