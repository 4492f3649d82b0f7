-- AXIS Kernel: K-M6 traffic governor — each tenant's traffic policy (docs/capabilities/traffic.md).
--
-- One row per tenant that set a policy; a tenant without one runs under the configured defaults.
-- The limiter never reads this table per call: every node caches the policy (loaded on first
-- use, refreshed periodically and on the NOTIFY kernel_traffic_policy SetPolicy sends). Rates are
-- `requests` per `period_ms` with a `burst`; the principal and method limits are optional
-- (all three columns set or none).
CREATE TABLE traffic_policy (
  tenant_id           text           NOT NULL,
  tenant_requests     bigint         NOT NULL,
  tenant_period_ms    bigint         NOT NULL,
  tenant_burst        bigint         NOT NULL,
  principal_requests  bigint,
  principal_period_ms bigint,
  principal_burst     bigint,
  method_requests     bigint,
  method_period_ms    bigint,
  method_burst        bigint,
  method_costs        jsonb          NOT NULL DEFAULT '{}',
  max_in_flight       integer        NOT NULL,
  daily_quota         bigint         NOT NULL,
  update_time         timestamptz(6) NOT NULL DEFAULT now(),
  CONSTRAINT traffic_policy_pkey PRIMARY KEY (tenant_id),
  CONSTRAINT traffic_policy_tenant_check CHECK (tenant_requests BETWEEN 1 AND 1000000 AND tenant_period_ms BETWEEN 1 AND 86400000 AND tenant_burst BETWEEN 1 AND 1000000),
  CONSTRAINT traffic_policy_principal_check CHECK (
    (principal_requests IS NULL) = (principal_period_ms IS NULL) AND (principal_requests IS NULL) = (principal_burst IS NULL)
    AND coalesce(principal_requests BETWEEN 1 AND 1000000 AND principal_period_ms BETWEEN 1 AND 86400000 AND principal_burst BETWEEN 1 AND 1000000, true)),
  CONSTRAINT traffic_policy_method_check CHECK (
    (method_requests IS NULL) = (method_period_ms IS NULL) AND (method_requests IS NULL) = (method_burst IS NULL)
    AND coalesce(method_requests BETWEEN 1 AND 1000000 AND method_period_ms BETWEEN 1 AND 86400000 AND method_burst BETWEEN 1 AND 1000000, true)),
  CONSTRAINT traffic_policy_costs_check CHECK (jsonb_typeof(method_costs) = 'object'),
  CONSTRAINT traffic_policy_caps_check CHECK (max_in_flight BETWEEN 1 AND 100000 AND daily_quota BETWEEN 1 AND 1000000000000)
);

ALTER TABLE traffic_policy ENABLE ROW LEVEL SECURITY;
ALTER TABLE traffic_policy FORCE ROW LEVEL SECURITY;
CREATE POLICY tenant_isolation ON traffic_policy
  USING (tenant_id = current_setting('axis.tenant_id', true))
  WITH CHECK (tenant_id = current_setting('axis.tenant_id', true));

-- A policy is replaced whole, never deleted.
GRANT SELECT, INSERT, UPDATE ON traffic_policy TO axis_kernel_app;

-- The idempotency store's retention sweep (now the scheduler's system job
-- kernel.platform.idempotency-sweep). Its first version locked the doomed rows with FOR UPDATE SKIP
-- LOCKED, which needs UPDATE on the table — a privilege its owner, axis_kernel_system, does not
-- have (SELECT, DELETE), so every sweep failed. The sweep runs on one node per tick, so it needs
-- no row locks of its own: it picks at most `max_records` expired records by the expire_time index
-- and deletes them, re-checking the expiry under the delete's row lock so that a record a
-- concurrent call just replaced (kernel_idempotency_store renews expired keys) is kept. The owner
-- stays axis_kernel_system (CREATE OR REPLACE keeps it).
CREATE OR REPLACE FUNCTION kernel_idempotency_sweep(max_records integer) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
  WITH doomed AS (
    SELECT tenant_id, method, idempotency_key FROM kernel_idempotency_record
    WHERE expire_time <= now() ORDER BY expire_time LIMIT max_records
  ), gone AS (
    DELETE FROM kernel_idempotency_record r USING doomed
    WHERE r.tenant_id = doomed.tenant_id AND r.method = doomed.method AND r.idempotency_key = doomed.idempotency_key
      AND r.expire_time <= now()
    RETURNING 1
  )
  SELECT count(*)::integer FROM gone
$$;
