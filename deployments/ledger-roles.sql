-- Database roles for the lineage ledger on PostgreSQL: who may append what (docs/serving.md).
--
-- The ledger's tables belong to the role that created them: the pipeline's and the approvers' `lineage`
-- commands, which append every kind of record. retail-serve appends only its own: EndpointUpdate actions
-- (their ids start with `endpoint-update-`), its Endpoint context, and the edges to and from its updates.
-- The console and evidence packs only read. Row-level security enforces it in the database, whatever the
-- client runs: a serving process that is taken over still cannot write a decision, an approver or a policy.
-- (What it may touch besides, the head row and the current-state table, is checked by every reader and by
-- `lineage verify` against the chained records, so it changes no answer.)
--
-- Run it as the tables' owner, once they exist (after the first `lineage init` or pipeline run), with the
-- names of the roles to configure (create them first: CREATE ROLE retail_serve LOGIN PASSWORD '...'):
--
--   psql "$OWNER_URL" -v serving=retail_serve -f deployments/ledger-roles.sql
--
-- A role that only reads (the console's, an auditor's) needs no more than
--   GRANT SELECT ON ledger_records, ledger_latest, ledger_head, ledger_verifications TO lineage_console;
--
-- It can be run again: it replaces its own policies.

\set ON_ERROR_STOP on
BEGIN;

ALTER TABLE ledger_records ENABLE ROW LEVEL SECURITY;  -- the owner is not subject to it (it does not FORCE)

DROP POLICY IF EXISTS ledger_read ON ledger_records;
CREATE POLICY ledger_read ON ledger_records FOR SELECT USING (true);

DROP POLICY IF EXISTS endpoint_appends ON ledger_records;
CREATE POLICY endpoint_appends ON ledger_records FOR INSERT TO :"serving" WITH CHECK (
    (kind = 'action' AND entity_type = 'EndpointUpdate' AND entity_id LIKE 'endpoint-update-%')
    OR (kind = 'context' AND entity_type = 'Endpoint')
    OR (kind = 'association' AND entity_type = 'ContributedTo'
        AND (source_id LIKE 'endpoint-update-%' OR destination_id LIKE 'endpoint-update-%'))
);

REVOKE ALL ON ledger_records, ledger_latest, ledger_head, ledger_verifications FROM :"serving";
GRANT SELECT ON ledger_records, ledger_latest, ledger_head, ledger_verifications TO :"serving";
GRANT INSERT ON ledger_records TO :"serving";
GRANT INSERT, UPDATE ON ledger_latest TO :"serving";
GRANT UPDATE ON ledger_head TO :"serving";

COMMIT;
