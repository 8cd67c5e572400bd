"""The projections' names, said once: what ``projections`` lists, what ``projectionUpdated`` and
``caughtUp`` take, and what each checkpoint row is keyed by. Imports nothing, so the CLI's
``--help`` can name them without loading the read side."""

ORDER_VIEWS = "order_views"
CUSTOMER_SUMMARIES = "customer_summaries"
DAILY_SALES = "daily_sales"

PROJECTION_NAMES = (ORDER_VIEWS, CUSTOMER_SUMMARIES, DAILY_SALES)
