-- Least privilege for the kernel's cross-tenant system work.
--
-- The SECURITY DEFINER functions that see every tenant (job claims and bookkeeping, sweeps, the
-- audit integrator's work list) ran as the migrating role — in practice a superuser. They now
-- belong to axis_kernel_system: no login, no superuser, BYPASSRLS (it must see every tenant's
-- rows), and only the table privileges these functions use. The runtime itself logs in as a role
-- that is neither superuser nor BYPASSRLS in production (the kernel checks at start-up) and works
-- as axis_kernel_app; scripts/database-roles.sql sets the roles up for a production cluster.

DO $$
BEGIN
  IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'axis_kernel_system') THEN
    CREATE ROLE axis_kernel_system NOLOGIN NOSUPERUSER BYPASSRLS;
  END IF;
EXCEPTION
  WHEN duplicate_object OR unique_violation THEN NULL; -- created concurrently (roles are cluster-wide)
  WHEN insufficient_privilege THEN
    RAISE EXCEPTION 'the migrating role cannot create the BYPASSRLS role axis_kernel_system: run scripts/database-roles.sql as a superuser first';
END $$;
DO $$
BEGIN
  EXECUTE format('GRANT axis_kernel_system TO %I', current_user);
EXCEPTION WHEN others THEN NULL; -- already a member (or a superuser, who needs no membership)
END $$;

-- CREATE: PostgreSQL requires it of a function's owner on the function's schema.
GRANT USAGE, CREATE ON SCHEMA public TO axis_kernel_system;
GRANT SELECT, DELETE ON kernel_idempotency_record TO axis_kernel_system;
GRANT SELECT, UPDATE ON sequence_number TO axis_kernel_system;
GRANT SELECT, UPDATE ON keymaster_key_version TO axis_kernel_system;
GRANT SELECT, UPDATE, DELETE ON scheduler_job TO axis_kernel_system;
GRANT INSERT ON scheduler_dead_letter TO axis_kernel_system;
GRANT SELECT ON scheduler_schedule TO axis_kernel_system;
GRANT SELECT, DELETE ON scheduler_schedule_tick TO axis_kernel_system;
GRANT USAGE ON SEQUENCE scheduler_lease_token_seq TO axis_kernel_system;
-- System entries of the audit log (reservation expiry, key destruction, dead letters), with their
-- positions (the insert trigger runs as the inserting role).
GRANT SELECT, INSERT ON kernel_audit_event TO axis_kernel_system;
GRANT SELECT, INSERT, UPDATE ON kernel_audit_head TO axis_kernel_system;
GRANT SELECT, INSERT ON kernel_audit_position TO axis_kernel_system;
GRANT SELECT ON kernel_audit_integration, kernel_audit_policy TO axis_kernel_system;
DO $$
BEGIN
  EXECUTE format('GRANT USAGE ON SEQUENCE %s TO axis_kernel_system', pg_get_serial_sequence('kernel_audit_event', 'event_id'));
END $$;

ALTER FUNCTION kernel_idempotency_sweep(integer) OWNER TO axis_kernel_system;
ALTER FUNCTION sequence_expire_reservations(integer, text) OWNER TO axis_kernel_system;
ALTER FUNCTION keymaster_destroy_due_versions(integer, text) OWNER TO axis_kernel_system;
ALTER FUNCTION scheduler_claim_jobs(text, text, text[], integer, integer, text) OWNER TO axis_kernel_system;
ALTER FUNCTION scheduler_complete_jobs(text[], text[], bigint[]) OWNER TO axis_kernel_system;
ALTER FUNCTION scheduler_fail_job(text, text, bigint, text, bigint, text) OWNER TO axis_kernel_system;
ALTER FUNCTION scheduler_heartbeat(text, text, bigint, integer) OWNER TO axis_kernel_system;
ALTER FUNCTION scheduler_extend_leases(text[], text[], bigint[], integer) OWNER TO axis_kernel_system;
ALTER FUNCTION scheduler_release_jobs(text[], text[], bigint[]) OWNER TO axis_kernel_system;
ALTER FUNCTION scheduler_rescue_expired(integer) OWNER TO axis_kernel_system;
ALTER FUNCTION scheduler_due_schedules(integer) OWNER TO axis_kernel_system;
ALTER FUNCTION scheduler_sweep_finished(integer, integer) OWNER TO axis_kernel_system;
ALTER FUNCTION kernel_audit_pending(integer) OWNER TO axis_kernel_system;
ALTER FUNCTION kernel_audit_retention_tenants() OWNER TO axis_kernel_system;

-- Master-key rotation across tenants without an RLS bypass: the data keys of every tenant are
-- counted (start-up checks, `kernel keys status`) and the tenants still holding data keys under
-- an older master key are listed (`kernel keys rewrap`, which then re-wraps tenant by tenant in
-- tenant transactions) by these two functions — counts and tenant ids only, never the keys.
-- They read only the tables axis_kernel_system may read (the sealed tables granted below).
GRANT SELECT ON secret_version TO axis_kernel_system;

CREATE FUNCTION kernel_data_key_inventory(table_name text)
RETURNS TABLE (kek_version integer, data_keys bigint)
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN QUERY EXECUTE format('SELECT kek_version, count(*) FROM %I WHERE kek_version IS NOT NULL GROUP BY kek_version ORDER BY kek_version', table_name);
END $$;

CREATE FUNCTION kernel_data_key_tenants(table_name text, active_kek_version integer)
RETURNS SETOF text
LANGUAGE plpgsql STABLE SECURITY DEFINER SET search_path = public AS $$
BEGIN
  RETURN QUERY EXECUTE format('SELECT DISTINCT tenant_id FROM %I WHERE kek_version IS NOT NULL AND kek_version <> $1 ORDER BY tenant_id', table_name)
    USING active_kek_version;
END $$;

ALTER FUNCTION kernel_data_key_inventory(text) OWNER TO axis_kernel_system;
ALTER FUNCTION kernel_data_key_tenants(text, integer) OWNER TO axis_kernel_system;
REVOKE EXECUTE ON FUNCTION kernel_data_key_inventory(text), kernel_data_key_tenants(text, integer) FROM PUBLIC;
DO $$
BEGIN
  -- The owner (start-up checks, operator commands) and the application role may call them.
  EXECUTE format('GRANT EXECUTE ON FUNCTION kernel_data_key_inventory(text), kernel_data_key_tenants(text, integer) TO axis_kernel_app, %I', current_user);
END $$;
