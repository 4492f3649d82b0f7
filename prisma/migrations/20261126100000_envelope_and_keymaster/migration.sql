-- AXIS Kernel: envelope-encryption bookkeeping and K-M4 Keymaster (signing keys).
--
-- Private keys are stored only as envelope ciphertext (AES-256-GCM under a per-version data key,
-- the data key wrapped by a versioned master key from configuration). A destroyed version keeps
-- its public key and metadata; its ciphertext and wrapped data key are erased.

-- The master-key versions this database has seen, by fingerprint (HMAC of the key, never the
-- key): a node configured with a different key under a known version is refused at start-up.
-- System table: the application role has no access.
CREATE TABLE kernel_master_key (
  version     integer     NOT NULL,
  fingerprint bytea       NOT NULL,
  create_time timestamptz(6) NOT NULL DEFAULT now(),
  CONSTRAINT kernel_master_key_pkey PRIMARY KEY (version)
);

-- Kernel-wide secret keys (not per tenant), sealed like every other value: e.g. the key of the
-- keyed request digests in audit entries and idempotency records. System table: the application
-- role has no access; master-key rotation re-wraps them with everything else.
CREATE TABLE kernel_sealed_key (
  name        text        NOT NULL,
  ciphertext  bytea       NOT NULL,
  wrapped_key bytea       NOT NULL,
  kek_version integer     NOT NULL,
  create_time timestamptz(6) NOT NULL DEFAULT now(),
  CONSTRAINT kernel_sealed_key_pkey PRIMARY KEY (name)
);

-- One signing key of a tenant.
CREATE TABLE keymaster_key (
  tenant_id          text        NOT NULL,
  alias              text        NOT NULL,
  algorithm          text        NOT NULL,
  primary_version    integer     NOT NULL,
  min_sign_version   integer     NOT NULL DEFAULT 1,
  min_verify_version integer     NOT NULL DEFAULT 1,
  create_time        timestamptz(6) NOT NULL DEFAULT now(),
  update_time        timestamptz(6) NOT NULL DEFAULT now(),
  CONSTRAINT keymaster_key_pkey PRIMARY KEY (tenant_id, alias),
  CONSTRAINT keymaster_key_algorithm_check CHECK (algorithm IN ('ED25519', 'ECDSA_P256_SHA256', 'RSA_PSS_3072_SHA256')),
  CONSTRAINT keymaster_key_policy_check CHECK (1 <= min_verify_version AND min_verify_version <= min_sign_version AND min_sign_version <= primary_version)
);

-- One key pair of a key. `restore_state` is the state a scheduled destruction returns to.
CREATE TABLE keymaster_key_version (
  tenant_id     text        NOT NULL,
  alias         text        NOT NULL,
  version       integer     NOT NULL,
  state         text        NOT NULL,
  restore_state text,
  public_key    bytea       NOT NULL,
  ciphertext    bytea,
  wrapped_key   bytea,
  kek_version   integer,
  create_time   timestamptz(6) NOT NULL DEFAULT now(),
  destroy_time  timestamptz(6),
  CONSTRAINT keymaster_key_version_pkey PRIMARY KEY (tenant_id, alias, version),
  CONSTRAINT keymaster_key_version_tenant_id_alias_fkey FOREIGN KEY (tenant_id, alias)
    REFERENCES keymaster_key (tenant_id, alias) ON DELETE RESTRICT ON UPDATE CASCADE,
  CONSTRAINT keymaster_key_version_state_check CHECK (state IN ('ENABLED', 'DISABLED', 'DESTRUCTION_SCHEDULED', 'DESTROYED')),
  -- Key material exists exactly until destruction; a scheduled destruction knows when.
  CONSTRAINT keymaster_key_version_material_check CHECK (
    (state = 'DESTROYED') = (ciphertext IS NULL) AND (ciphertext IS NULL) = (wrapped_key IS NULL) AND (wrapped_key IS NULL) = (kek_version IS NULL)),
  CONSTRAINT keymaster_key_version_schedule_check CHECK (
    (state = 'DESTRUCTION_SCHEDULED') = (restore_state IS NOT NULL) AND (state IN ('ENABLED', 'DISABLED') OR destroy_time IS NOT NULL))
);
-- Master-key rotation finds the data keys still wrapped by an older master key.
CREATE INDEX keymaster_key_version_kek_version_idx ON keymaster_key_version (kek_version);

-- Erases the versions whose restore window has passed, in every tenant, each with its audit
-- entry. (A due version is refused before this runs: the kernel treats destroy_time <= now()
-- as destroyed.) SKIP LOCKED lets several kernel nodes share the work.
CREATE FUNCTION keymaster_destroy_due_versions(max_versions integer, sweep_trace_id text) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  destroyed integer;
BEGIN
  WITH due AS (
    SELECT tenant_id, alias, version
    FROM keymaster_key_version
    WHERE state = 'DESTRUCTION_SCHEDULED' AND destroy_time <= now()
    ORDER BY destroy_time
    LIMIT max_versions
    FOR UPDATE SKIP LOCKED
  ), erased AS (
    UPDATE keymaster_key_version v
    SET state = 'DESTROYED', restore_state = NULL, ciphertext = NULL, wrapped_key = NULL, kek_version = NULL
    FROM due
    WHERE v.tenant_id = due.tenant_id AND v.alias = due.alias AND v.version = due.version
    RETURNING v.tenant_id, v.alias, v.version
  )
  INSERT INTO kernel_audit_event (tenant_id, principal, action, resource, outcome, trace_id, detail)
  SELECT tenant_id, 'system:kernel', 'axis.kernel.keymaster.v1.KeymasterService/DestroyKeyVersion',
         format('keys/%s/versions/%s', alias, version), 'OK', sweep_trace_id, jsonb_build_object('state', 'DESTROYED')
  FROM erased;
  GET DIAGNOSTICS destroyed = ROW_COUNT;
  RETURN destroyed;
END $$;

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['keymaster_key', 'keymaster_key_version']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''axis.tenant_id'', true)) WITH CHECK (tenant_id = current_setting(''axis.tenant_id'', true))', t);
  END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE ON keymaster_key, keymaster_key_version TO axis_kernel_app;
REVOKE ALL ON kernel_master_key, kernel_sealed_key FROM PUBLIC;
REVOKE EXECUTE ON FUNCTION keymaster_destroy_due_versions(integer, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION keymaster_destroy_due_versions(integer, text) TO axis_kernel_app;
