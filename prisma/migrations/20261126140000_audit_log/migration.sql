-- K-W1 Audit immutability: the per-tenant tamper-evident log (RFC 6962 / RFC 9162 model).
--
-- kernel_audit_event holds what happened (inserted in the business transaction, law 3). The
-- integrator (services/audit/integrator.ts) later gives every committed event, in commit-safe
-- order, its gap-free per-tenant sequence number, its Merkle leaf hash and its hash-chain link
-- (kernel_audit_sequence), the new complete subtree hashes (kernel_audit_node) and a checkpoint
-- signed with the tenant's audit key (kernel_audit_checkpoint). Leaf i of the tree is the entry
-- with seq i + 1.
--
-- WORM: the application role may read and insert, never change or remove. Triggers refuse
-- UPDATE, DELETE and TRUNCATE to every role, except DELETE of event payloads by the retention
-- role under the tenant's retention policy (never under legal hold). Hashes, nodes and
-- checkpoints are never removed, so a purge leaves the tree and every proof intact.

-- The retention role: no login; it owns kernel_audit_purge and nothing else.
DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'axis_kernel_audit_retention') THEN
    CREATE ROLE axis_kernel_audit_retention NOLOGIN NOSUPERUSER NOBYPASSRLS;
  END IF;
EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL;
END $$;
DO $$
BEGIN
  EXECUTE format('GRANT axis_kernel_audit_retention TO %I', current_user);
EXCEPTION WHEN others THEN NULL; -- already a member
END $$;
GRANT USAGE ON SCHEMA public TO axis_kernel_audit_retention;

-- The sequencing of the spine is replaced: its tables are derived data and are rebuilt by the
-- integrator from the events (the cursor starts over; the order is the same (txid, event_id)).
DROP FUNCTION kernel_audit_integrate(integer);
DROP TABLE kernel_audit_sequence;
DROP TABLE kernel_audit_head;
UPDATE kernel_audit_cursor SET last_txid = '0'::xid8, last_event_id = 0 WHERE id = 1;

CREATE TABLE kernel_audit_sequence (
  tenant_id  text   NOT NULL,
  seq        bigint NOT NULL,
  event_id   bigint NOT NULL,
  -- SHA-256(0x00 || leaf data): the RFC 6962 leaf hash of the entry's canonical form.
  leaf_hash  bytea  NOT NULL,
  -- SHA-256(0x02 || previous chain hash || leaf hash); the chain before seq 1 is 32 zero bytes.
  chain_hash bytea  NOT NULL,
  CONSTRAINT kernel_audit_sequence_pkey PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX kernel_audit_sequence_tenant_id_event_id_key ON kernel_audit_sequence (tenant_id, event_id);

-- Every complete subtree of level >= 1: node (level, idx) covers leaves [idx * 2^level, (idx + 1) * 2^level).
CREATE TABLE kernel_audit_node (
  tenant_id text     NOT NULL,
  level     smallint NOT NULL,
  idx       bigint   NOT NULL,
  hash      bytea    NOT NULL,
  CONSTRAINT kernel_audit_node_pkey PRIMARY KEY (tenant_id, level, idx)
);

-- Signed checkpoints (C2SP tlog-checkpoint in a C2SP signed note, Ed25519).
CREATE TABLE kernel_audit_checkpoint (
  tenant_id   text           NOT NULL,
  tree_size   bigint         NOT NULL,
  root_hash   bytea          NOT NULL,
  chain_hash  bytea          NOT NULL,
  create_time timestamptz(6) NOT NULL,
  key_alias   text           NOT NULL,
  key_version integer        NOT NULL,
  note        text           NOT NULL,
  CONSTRAINT kernel_audit_checkpoint_pkey PRIMARY KEY (tenant_id, tree_size)
);

-- Retention and legal hold, per tenant. No row (or a NULL retention) keeps everything forever.
CREATE TABLE kernel_audit_policy (
  tenant_id         text           NOT NULL,
  retention_seconds bigint CHECK (retention_seconds > 0),
  legal_hold        boolean        NOT NULL DEFAULT false,
  legal_hold_reason text           NOT NULL DEFAULT '',
  update_time       timestamptz(6) NOT NULL DEFAULT now(),
  CONSTRAINT kernel_audit_policy_pkey PRIMARY KEY (tenant_id)
);

-- The entry's time as it enters the leaf: UTC, microseconds (the column's precision).
CREATE FUNCTION kernel_audit_time_text(t timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $$
  SELECT to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"')
$$;

-- WORM triggers. UPDATE and TRUNCATE: refused to everyone. DELETE: only event payloads, only
-- by the retention role, only past the tenant's retention and never under legal hold.
DROP TRIGGER kernel_audit_event_worm ON kernel_audit_event;
CREATE TRIGGER kernel_audit_event_worm BEFORE UPDATE ON kernel_audit_event
  FOR EACH ROW EXECUTE FUNCTION kernel_audit_reject_change();

CREATE FUNCTION kernel_audit_guard_purge() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  policy kernel_audit_policy%ROWTYPE;
BEGIN
  IF current_user <> 'axis_kernel_audit_retention' THEN
    RAISE EXCEPTION 'audit log is append-only: DELETE on % refused (only the retention role purges)', TG_TABLE_NAME
      USING ERRCODE = 'insufficient_privilege';
  END IF;
  SELECT * INTO policy FROM kernel_audit_policy WHERE tenant_id = OLD.tenant_id;
  IF NOT FOUND OR policy.retention_seconds IS NULL THEN
    RAISE EXCEPTION 'audit purge refused: tenant % has no retention policy', OLD.tenant_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF policy.legal_hold THEN
    RAISE EXCEPTION 'audit purge refused: tenant % is under legal hold', OLD.tenant_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF OLD.event_time > now() - make_interval(secs => policy.retention_seconds) THEN
    RAISE EXCEPTION 'audit purge refused: event % is within its retention period', OLD.event_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  IF NOT EXISTS (SELECT 1 FROM kernel_audit_sequence s WHERE s.tenant_id = OLD.tenant_id AND s.event_id = OLD.event_id) THEN
    RAISE EXCEPTION 'audit purge refused: event % is not in the log yet', OLD.event_id USING ERRCODE = 'insufficient_privilege';
  END IF;
  RETURN OLD;
END $$;
CREATE TRIGGER kernel_audit_event_purge BEFORE DELETE ON kernel_audit_event
  FOR EACH ROW EXECUTE FUNCTION kernel_audit_guard_purge();

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['kernel_audit_sequence', 'kernel_audit_node', 'kernel_audit_checkpoint']
  LOOP
    EXECUTE format('CREATE TRIGGER %I BEFORE UPDATE OR DELETE ON %I FOR EACH ROW EXECUTE FUNCTION kernel_audit_reject_change()', t || '_worm', t);
    EXECUTE format('CREATE TRIGGER %I BEFORE TRUNCATE ON %I FOR EACH STATEMENT EXECUTE FUNCTION kernel_audit_reject_change()', t || '_worm_truncate', t);
  END LOOP;
END $$;

-- Hands the integrator the next committed, not yet sequenced events (every tenant), in
-- (txid, event_id) order, and moves the cursor past them — in the caller's transaction, so a
-- failed integration rolls the cursor back with everything else. Only events of transactions
-- older than the oldest running one are taken: no transaction still running can add an event
-- before them, so nothing committed is ever skipped although transactions commit out of id
-- order. One integrator at a time (the cursor row lock); others get no rows at once.
CREATE FUNCTION kernel_audit_claim(max_events integer)
RETURNS TABLE (tenant_id text, event_id bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  cursor_row kernel_audit_cursor%ROWTYPE;
BEGIN
  SELECT * INTO cursor_row FROM kernel_audit_cursor c WHERE c.id = 1 FOR UPDATE SKIP LOCKED;
  IF NOT FOUND THEN
    RETURN;
  END IF;
  RETURN QUERY
  WITH batch AS (
    SELECT e.tenant_id, e.event_id, e.txid
      FROM kernel_audit_event e
     WHERE (e.txid, e.event_id) > (cursor_row.last_txid, cursor_row.last_event_id)
       AND e.txid < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY e.txid, e.event_id
     LIMIT max_events
  ), moved AS (
    UPDATE kernel_audit_cursor c SET last_txid = l.txid, last_event_id = l.event_id
      FROM (SELECT b.txid, b.event_id FROM batch b ORDER BY b.txid DESC, b.event_id DESC LIMIT 1) l
     WHERE c.id = 1
     RETURNING 1
  )
  SELECT b.tenant_id, b.event_id FROM batch b LEFT JOIN moved ON true ORDER BY b.txid, b.event_id;
END $$;

-- Removes the payloads of the tenant's oldest entries past its retention (at most max_events,
-- a prefix of the log in seq order), as the retention role; the tenant is the transaction's.
-- The caller records the purge in the log in the same transaction.
CREATE FUNCTION kernel_audit_purge(max_events integer)
RETURNS TABLE (purged bigint, through_seq bigint)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  tenant text := current_setting('axis.tenant_id', true);
  policy kernel_audit_policy%ROWTYPE;
BEGIN
  SELECT * INTO policy FROM kernel_audit_policy p WHERE p.tenant_id = tenant;
  IF NOT FOUND OR policy.retention_seconds IS NULL OR policy.legal_hold THEN
    RETURN QUERY SELECT 0::bigint, 0::bigint;
    RETURN;
  END IF;
  RETURN QUERY
  WITH remaining AS (
    SELECT s.seq, s.event_id, e.event_time < now() - make_interval(secs => policy.retention_seconds) AS expired
      FROM kernel_audit_sequence s
      JOIN kernel_audit_event e ON e.tenant_id = s.tenant_id AND e.event_id = s.event_id
     WHERE s.tenant_id = tenant
     ORDER BY s.seq
     LIMIT max_events
  ), prefix AS (
    SELECT r.seq, r.event_id, bool_and(r.expired) OVER (ORDER BY r.seq) AS expired FROM remaining r
  ), gone AS (
    DELETE FROM kernel_audit_event e USING prefix p
     WHERE p.expired AND e.tenant_id = tenant AND e.event_id = p.event_id
    RETURNING p.seq
  )
  SELECT count(*)::bigint, coalesce(max(g.seq), 0)::bigint FROM gone g;
END $$;
ALTER FUNCTION kernel_audit_purge(integer) OWNER TO axis_kernel_audit_retention;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['kernel_audit_sequence', 'kernel_audit_node', 'kernel_audit_checkpoint', 'kernel_audit_policy']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''axis.tenant_id'', true)) WITH CHECK (tenant_id = current_setting(''axis.tenant_id'', true))', t);
  END LOOP;
END $$;

GRANT SELECT, INSERT ON kernel_audit_sequence, kernel_audit_node, kernel_audit_checkpoint TO axis_kernel_app;
GRANT SELECT, INSERT, UPDATE ON kernel_audit_policy TO axis_kernel_app;
GRANT SELECT, DELETE ON kernel_audit_event TO axis_kernel_audit_retention;
GRANT SELECT ON kernel_audit_sequence, kernel_audit_policy TO axis_kernel_audit_retention;
REVOKE EXECUTE ON FUNCTION kernel_audit_claim(integer), kernel_audit_purge(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel_audit_claim(integer), kernel_audit_purge(integer) TO axis_kernel_app;
-- Entries appended in a batch take their ids up front (AuditLog.appendMany returns them in order).
DO $$
BEGIN
  EXECUTE format('GRANT USAGE ON SEQUENCE %s TO axis_kernel_app', pg_get_serial_sequence('kernel_audit_event', 'event_id'));
END $$;

-- The purges recorded in a tenant's log (how far payloads are gone) are found without a scan.
CREATE INDEX kernel_audit_event_purge_idx ON kernel_audit_event (tenant_id, event_id)
  WHERE action = 'axis.kernel.audit.v1.AuditService/PurgeExpired';

-- The tenants whose retention policy may purge something now (the purge sweep's work list).
CREATE FUNCTION kernel_audit_retention_tenants() RETURNS SETOF text
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT p.tenant_id FROM kernel_audit_policy p WHERE p.retention_seconds IS NOT NULL AND NOT p.legal_hold ORDER BY p.tenant_id
$$;
REVOKE EXECUTE ON FUNCTION kernel_audit_retention_tenants() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel_audit_retention_tenants() TO axis_kernel_app;
