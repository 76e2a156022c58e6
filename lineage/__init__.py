"""The lineage ledger: entities, store, query, verification, registry and export."""
