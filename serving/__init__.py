"""The prediction endpoint (`retail-serve`): serves the production model version, verified by md5, and
follows the ledger's production pointer. Imports tasks and lineage; neither imports it."""
