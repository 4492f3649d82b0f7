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
