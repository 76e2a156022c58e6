"""The gate rules, the one place they live: imported by the stages (tasks), the flows and the ledger
(lineage), and importing none of them."""
