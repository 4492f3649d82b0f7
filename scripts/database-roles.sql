-- The AXIS Kernel's roles on a production PostgreSQL cluster. Run once, as a superuser:
--
--   psql -h <host> -U postgres -v ON_ERROR_STOP=1 \
--        -v owner_password="$OWNER_PASSWORD" -v runtime_password="$RUNTIME_PASSWORD" \
--        -f scripts/database-roles.sql
--
-- (optional: -v owner_role=… -v runtime_role=… -v database=… to choose other names), then run
-- the kernel with
--   DATABASE_URL=postgresql://axis_kernel_owner:$OWNER_PASSWORD@<host>/axis_kernel                 (migrations, start-up checks)
--   KERNEL_APP_DATABASE_URL=postgresql://axis_kernel_runtime:$RUNTIME_PASSWORD@<host>/axis_kernel   (every request)
--   KERNEL_ENV=production
--
-- Who is who:
--   owner (axis_kernel_owner)      LOGIN. Owns the kernel's database and schema and runs its
--                                  migrations. Not a superuser; holds ADMIN on the roles below so
--                                  that migrations can grant them their privileges.
--   runtime (axis_kernel_runtime)  LOGIN, NOINHERIT. The runtime pool's login: holds nothing
--                                  itself and switches to axis_kernel_app in every transaction, so
--                                  a RESET ROLE inside a transaction leaves it no privilege at all.
--   axis_kernel_app                NOLOGIN. What every request runs as: row-level security
--                                  applies; the audit tables accept only SELECT and INSERT.
--   axis_kernel_system             NOLOGIN, BYPASSRLS. Owns the SECURITY DEFINER functions that
--                                  do cross-tenant work (job claims, sweeps), with only the table
--                                  privileges they use (migration 20261203110000_system_role).
--   axis_kernel_audit_retention    NOLOGIN. The only role that may remove audit payloads, and only
--                                  under the tenant's retention policy (a trigger checks it).
-- The kernel refuses to start in production when its runtime login is a superuser, BYPASSRLS,
-- owns the kernel tables, or cannot act as axis_kernel_app. The shared NOLOGIN roles are created
-- only if missing (several kernel databases on one cluster share them).

\if :{?owner_role}
\else
  \set owner_role axis_kernel_owner
\endif
\if :{?runtime_role}
\else
  \set runtime_role axis_kernel_runtime
\endif
\if :{?database}
\else
  \set database axis_kernel
\endif

SELECT format('CREATE ROLE %I NOLOGIN NOSUPERUSER NOBYPASSRLS', name) FROM unnest(ARRAY['axis_kernel_app', 'axis_kernel_audit_retention']) AS name
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = name) \gexec
SELECT 'CREATE ROLE axis_kernel_system NOLOGIN NOSUPERUSER BYPASSRLS'
 WHERE NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'axis_kernel_system') \gexec

SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE PASSWORD %L', :'owner_role', :'owner_password') \gexec
SELECT format('CREATE ROLE %I LOGIN NOSUPERUSER NOBYPASSRLS NOINHERIT NOCREATEDB NOCREATEROLE PASSWORD %L', :'runtime_role', :'runtime_password') \gexec

SELECT format('GRANT %I TO %I WITH ADMIN OPTION', name, :'owner_role') FROM unnest(ARRAY['axis_kernel_app', 'axis_kernel_audit_retention', 'axis_kernel_system']) AS name \gexec
SELECT format('GRANT axis_kernel_app TO %I', :'runtime_role') \gexec

SELECT format('CREATE DATABASE %I OWNER %I', :'database', :'owner_role') \gexec
\connect :database
SELECT format('ALTER SCHEMA public OWNER TO %I', :'owner_role') \gexec
REVOKE ALL ON SCHEMA public FROM PUBLIC;
-- Roles that own kernel functions need CREATE on their schema (PostgreSQL's rule for owners).
GRANT USAGE, CREATE ON SCHEMA public TO axis_kernel_audit_retention, axis_kernel_system;
