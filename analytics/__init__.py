"""Step events, pricing, budgets, DuckDB queries and plotly figures."""
