"""The gates, the one place they live (gates/table.py lists them): imported by the stages (tasks), the flows and
the ledger (lineage), and importing none of them."""
