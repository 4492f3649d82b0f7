-- AXIS Kernel: K-V1 secrets and certificate lifecycle.
--
-- Values are stored only as envelope ciphertext (services/platform/crypto/envelope.ts): an
-- AES-256-GCM data key per version, wrapped by a versioned master key from configuration, both
-- bound to (tenant, "secrets/<secret_id>", version). A destroyed version keeps its metadata;
-- its ciphertext, wrapped data key and master-key version are erased.

-- One secret of a tenant. The labels live here, so each is held by at most one version;
-- 0 means "no version holds it".
CREATE TABLE secret (
  tenant_id                    text        NOT NULL,
  secret_id                    text        NOT NULL,
  kind                         text        NOT NULL,
  description                  text        NOT NULL DEFAULT '',
  rotation_period_seconds      bigint,
  default_grace_period_seconds integer     NOT NULL,
  latest_version               integer     NOT NULL DEFAULT 0,
  current_version              integer     NOT NULL DEFAULT 0,
  previous_version             integer     NOT NULL DEFAULT 0,
  pending_version              integer     NOT NULL DEFAULT 0,
  current_since_time           timestamptz(6),
  create_time                  timestamptz(6) NOT NULL DEFAULT now(),
  CONSTRAINT secret_pkey PRIMARY KEY (tenant_id, secret_id),
  CONSTRAINT secret_kind_check CHECK (kind IN ('OPAQUE', 'CERTIFICATE', 'CREDENTIAL')),
  CONSTRAINT secret_periods_check CHECK (coalesce(rotation_period_seconds, 1) > 0 AND default_grace_period_seconds >= 0),
  CONSTRAINT secret_labels_check CHECK (
    current_version BETWEEN 0 AND latest_version AND previous_version BETWEEN 0 AND latest_version
    AND pending_version BETWEEN 0 AND latest_version
    AND (current_version = 0 OR (current_version <> previous_version AND current_version <> pending_version))
    AND (previous_version = 0 OR previous_version <> pending_version))
);

-- One version of a secret. `retire_time`: when the version stops being readable because
-- CURRENT moved away from it (its grace period as PREVIOUS).
CREATE TABLE secret_version (
  tenant_id           text        NOT NULL,
  secret_id           text        NOT NULL,
  version             integer     NOT NULL,
  state               text        NOT NULL,
  ciphertext          bytea,
  wrapped_key         bytea,
  kek_version         integer,
  value_size_bytes    integer     NOT NULL,
  cert_subject        text,
  cert_issuer         text,
  cert_serial_number  text,
  cert_fingerprint    text,
  cert_not_before     timestamptz(6),
  cert_not_after      timestamptz(6),
  create_time         timestamptz(6) NOT NULL DEFAULT now(),
  retire_time         timestamptz(6),
  disable_time        timestamptz(6),
  destroy_time        timestamptz(6),
  trace_id            text        NOT NULL,
  CONSTRAINT secret_version_pkey PRIMARY KEY (tenant_id, secret_id, version),
  CONSTRAINT secret_version_tenant_id_secret_id_fkey FOREIGN KEY (tenant_id, secret_id)
    REFERENCES secret (tenant_id, secret_id) ON DELETE RESTRICT ON UPDATE CASCADE,
  CONSTRAINT secret_version_state_check CHECK (state IN ('ENABLED', 'DISABLED', 'DESTROYED')),
  -- Encrypted material exists exactly until destruction.
  CONSTRAINT secret_version_material_check CHECK (
    (state = 'DESTROYED') = (ciphertext IS NULL) AND (ciphertext IS NULL) = (wrapped_key IS NULL)
    AND (wrapped_key IS NULL) = (kek_version IS NULL) AND (state = 'DESTROYED') = (destroy_time IS NOT NULL)),
  CONSTRAINT secret_version_size_check CHECK (value_size_bytes BETWEEN 1 AND 65536)
);
-- Master-key rotation finds the data keys still wrapped by an older master key.
CREATE INDEX secret_version_kek_version_idx ON secret_version (kek_version);
-- ListExpiring: certificates by notAfter.
CREATE INDEX secret_version_tenant_id_cert_not_after_idx ON secret_version (tenant_id, cert_not_after);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['secret', 'secret_version']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''axis.tenant_id'', true)) WITH CHECK (tenant_id = current_setting(''axis.tenant_id'', true))', t);
  END LOOP;
END $$;

-- No DELETE: destruction erases the material and keeps the row.
GRANT SELECT, INSERT, UPDATE ON secret, secret_version TO axis_kernel_app;
