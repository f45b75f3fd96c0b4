"""Evidence service (issue 19): the read model of outcomes and pathways, its aggregates with
small cells suppressed, and the dashboard that shows them."""
