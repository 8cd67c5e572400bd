"""Every projection of ordergraph, by name."""

from __future__ import annotations

from readmodels.customer_summaries import CustomerSummaries
from readmodels.daily_sales import DailySales
from readmodels.order_views import OrderViews
from readmodels.projection import Projection


def all_projections() -> list[Projection]:
    return [OrderViews(), CustomerSummaries(), DailySales()]
