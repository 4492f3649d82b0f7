-- Audit positions in commit order, and the idempotency store as one function.
--
-- Until now the integrator numbered committed audit events after the fact, in (txid, event_id)
-- order, and could only take events of transactions older than the oldest transaction running
-- anywhere on the server (pg_snapshot_xmin): one idle transaction in another database held every
-- tenant's proofs back. Now each entry gets its gap-free per-tenant seq in the transaction that
-- writes it: the insert's statement trigger advances the tenant's head row (kernel_audit_head),
-- whose row lock is held until COMMIT. A later writer of the tenant waits for that lock, so seqs
-- are handed out in commit order, and once a seq is visible every smaller one is too (a
-- transaction leaves the running set before its locks are released). The integrator then only
-- needs "positions above what it integrated", with no horizon. Writers insert their entries last
-- (the kernel sends them with COMMIT), so the head is the last lock a transaction takes.

CREATE TABLE kernel_audit_head (
  tenant_id text   NOT NULL,
  -- The seq the tenant's next entry gets (seqs start at 1).
  next_seq  bigint NOT NULL CHECK (next_seq >= 1),
  CONSTRAINT kernel_audit_head_pkey PRIMARY KEY (tenant_id)
);

CREATE TABLE kernel_audit_position (
  tenant_id text   NOT NULL,
  seq       bigint NOT NULL,
  event_id  bigint NOT NULL,
  CONSTRAINT kernel_audit_position_pkey PRIMARY KEY (tenant_id, seq)
);
CREATE UNIQUE INDEX kernel_audit_position_tenant_id_event_id_key ON kernel_audit_position (tenant_id, event_id);

-- How far each tenant's log is integrated (hashes, tree, checkpoint); the integrator's lock row.
CREATE TABLE kernel_audit_integration (
  tenant_id      text   NOT NULL,
  integrated_seq bigint NOT NULL DEFAULT 0,
  CONSTRAINT kernel_audit_integration_pkey PRIMARY KEY (tenant_id)
);

-- Existing entries keep their positions: the integrated ones their seq, the others the order the
-- old integrator would have given them. (Writers are blocked meanwhile: this migration's DDL on
-- kernel_audit_event waits for every transaction that wrote to it, then holds it.)
LOCK TABLE kernel_audit_event IN SHARE ROW EXCLUSIVE MODE;
INSERT INTO kernel_audit_position (tenant_id, seq, event_id)
SELECT s.tenant_id, s.seq, s.event_id FROM kernel_audit_sequence s;
INSERT INTO kernel_audit_position (tenant_id, seq, event_id)
SELECT e.tenant_id,
       coalesce(m.max_seq, 0) + row_number() OVER (PARTITION BY e.tenant_id ORDER BY e.txid, e.event_id),
       e.event_id
  FROM kernel_audit_event e
  LEFT JOIN (SELECT s.tenant_id, max(s.seq) AS max_seq FROM kernel_audit_sequence s GROUP BY s.tenant_id) m ON m.tenant_id = e.tenant_id
 WHERE NOT EXISTS (SELECT 1 FROM kernel_audit_sequence s WHERE s.tenant_id = e.tenant_id AND s.event_id = e.event_id);
INSERT INTO kernel_audit_head (tenant_id, next_seq)
SELECT p.tenant_id, max(p.seq) + 1 FROM kernel_audit_position p GROUP BY p.tenant_id;
INSERT INTO kernel_audit_integration (tenant_id, integrated_seq)
SELECT s.tenant_id, max(s.seq) FROM kernel_audit_sequence s GROUP BY s.tenant_id;

-- The (txid, event_id) claim is gone, and with it the cursor and the txid column.
DROP FUNCTION kernel_audit_claim(integer);
DROP TABLE kernel_audit_cursor;
DROP INDEX kernel_audit_event_txid_event_id_idx;
ALTER TABLE kernel_audit_event DROP COLUMN txid;

-- Gives the entries of one INSERT statement their positions: per tenant, the next seqs in
-- event-id order (the order the statement drew them), advancing the head — heads in tenant order,
-- so that a statement writing several tenants' entries (a system sweep) locks them in one global
-- order. Runs as the inserting role: in a tenant transaction RLS confines it to that tenant.
CREATE FUNCTION kernel_audit_assign_positions() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  WITH counts AS (
    SELECT i.tenant_id, count(*) AS n FROM inserted i GROUP BY i.tenant_id
  ), heads AS (
    INSERT INTO kernel_audit_head AS h (tenant_id, next_seq)
    SELECT c.tenant_id, c.n + 1 FROM counts c ORDER BY c.tenant_id
    ON CONFLICT (tenant_id) DO UPDATE SET next_seq = h.next_seq + excluded.next_seq - 1
    RETURNING h.tenant_id, h.next_seq
  )
  INSERT INTO kernel_audit_position (tenant_id, seq, event_id)
  SELECT i.tenant_id, heads.next_seq - counts.n - 1 + row_number() OVER (PARTITION BY i.tenant_id ORDER BY i.event_id), i.event_id
    FROM inserted i
    JOIN counts ON counts.tenant_id = i.tenant_id
    JOIN heads ON heads.tenant_id = i.tenant_id;
  RETURN NULL;
END $$;
CREATE TRIGGER kernel_audit_event_positions AFTER INSERT ON kernel_audit_event
  REFERENCING NEW TABLE AS inserted FOR EACH STATEMENT EXECUTE FUNCTION kernel_audit_assign_positions();

-- Positions are as permanent as the rest of the log (a purge removes payloads, never positions).
CREATE TRIGGER kernel_audit_position_worm BEFORE UPDATE OR DELETE ON kernel_audit_position
  FOR EACH ROW EXECUTE FUNCTION kernel_audit_reject_change();
CREATE TRIGGER kernel_audit_position_worm_truncate BEFORE TRUNCATE ON kernel_audit_position
  FOR EACH STATEMENT EXECUTE FUNCTION kernel_audit_reject_change();

-- The tenants whose log has positions not yet integrated (the integrator's work list), with how
-- far. A join of two one-row-per-tenant tables: no scan of the log itself.
CREATE FUNCTION kernel_audit_pending(max_tenants integer)
RETURNS TABLE (tenant_id text, integrated_seq bigint, last_seq bigint)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT h.tenant_id, coalesce(i.integrated_seq, 0), h.next_seq - 1
    FROM kernel_audit_head h
    LEFT JOIN kernel_audit_integration i ON i.tenant_id = h.tenant_id
   WHERE h.next_seq - 1 > coalesce(i.integrated_seq, 0)
   ORDER BY h.tenant_id
   LIMIT max_tenants
$$;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['kernel_audit_head', 'kernel_audit_position', 'kernel_audit_integration']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''axis.tenant_id'', true)) WITH CHECK (tenant_id = current_setting(''axis.tenant_id'', true))', t);
  END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE ON kernel_audit_head, kernel_audit_integration TO axis_kernel_app;
GRANT SELECT, INSERT ON kernel_audit_position TO axis_kernel_app;
GRANT SELECT ON kernel_audit_position TO axis_kernel_audit_retention;
REVOKE EXECUTE ON FUNCTION kernel_audit_pending(integer) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel_audit_pending(integer) TO axis_kernel_app;

-- Stores the responses of a commit group's keyed calls (idempotency records), replacing expired
-- records under the same key. A live record under one of the keys means another node's twin
-- committed after our key check: the whole commit is refused (SQLSTATE KA001), and the call's
-- retry replays the twin's answer. Runs as the caller: RLS confines it to the tenant.
CREATE FUNCTION kernel_idempotency_store(p_tenant text, p_methods text[], p_keys text[], p_hashes bytea[], p_responses bytea[], p_retention_seconds float8[])
RETURNS void LANGUAGE plpgsql AS $$
DECLARE
  stored integer;
BEGIN
  WITH s AS (
    INSERT INTO kernel_idempotency_record AS r (tenant_id, method, idempotency_key, request_hash, response, expire_time)
    SELECT p_tenant, u.method, u.idempotency_key, u.request_hash, u.response, now() + make_interval(secs => u.retention_seconds)
      FROM unnest(p_methods, p_keys, p_hashes, p_responses, p_retention_seconds) AS u(method, idempotency_key, request_hash, response, retention_seconds)
    ON CONFLICT (tenant_id, method, idempotency_key) DO UPDATE
      SET request_hash = excluded.request_hash, response = excluded.response, create_time = now(), expire_time = excluded.expire_time
      WHERE r.expire_time <= now()
    RETURNING 1
  )
  SELECT count(*) INTO stored FROM s;
  IF stored <> cardinality(p_methods) THEN
    RAISE EXCEPTION 'an idempotency key of this commit was stored by a concurrent call' USING ERRCODE = 'KA001';
  END IF;
END $$;
REVOKE EXECUTE ON FUNCTION kernel_idempotency_store(text, text[], text[], bytea[], bytea[], float8[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION kernel_idempotency_store(text, text[], text[], bytea[], bytea[], float8[]) TO axis_kernel_app;

-- Scheduler: renewing a node's leases never waits on a job row another transaction holds (its
-- completion being written, a rescue looking at it): such a lease is reported as still held and
-- renewed on the next round, instead of the whole renewal statement waiting — past the lock
-- timeout, which would have left every other lease of the node unrenewed. Returns the jobs whose
-- lease is still held: renewed now, or busy.
CREATE OR REPLACE FUNCTION scheduler_extend_leases(tenant_ids text[], job_ids text[], tokens bigint[], lease_ms integer)
RETURNS TABLE (tenant_id text, job_id text)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
  WITH wanted AS (
    SELECT d.tenant_id, d.job_id, d.token FROM unnest(tenant_ids, job_ids, tokens) AS d(tenant_id, job_id, token)
  ), free AS (
    SELECT j.tenant_id, j.job_id FROM scheduler_job j JOIN wanted w ON j.tenant_id = w.tenant_id AND j.job_id = w.job_id
     WHERE j.lease_token = w.token AND j.state = 'RUNNING'
       FOR UPDATE OF j SKIP LOCKED
  ), renewed AS (
    UPDATE scheduler_job j SET lease_expire_time = now() + make_interval(secs => lease_ms / 1000.0)
      FROM free f WHERE j.tenant_id = f.tenant_id AND j.job_id = f.job_id
    RETURNING j.tenant_id, j.job_id
  )
  SELECT r.tenant_id, r.job_id FROM renewed r
  UNION ALL
  SELECT w.tenant_id, w.job_id FROM wanted w
   WHERE NOT EXISTS (SELECT 1 FROM free f WHERE f.tenant_id = w.tenant_id AND f.job_id = w.job_id)
     AND EXISTS (SELECT 1 FROM scheduler_job j WHERE j.tenant_id = w.tenant_id AND j.job_id = w.job_id AND j.lease_token = w.token AND j.state = 'RUNNING')
$$;
