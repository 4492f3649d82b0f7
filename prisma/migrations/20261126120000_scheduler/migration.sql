-- K-M5 Scheduler / heartbeat: jobs, leases with fencing tokens, dead letters, cron schedules.
--
-- Jobs are tenant rows (forced RLS). Claiming, completing and rescuing across tenants run in
-- SECURITY DEFINER functions (the kernel calls them through db.asSystem). A lease is the pair
-- (job, lease_token): every claim takes a fresh token from one sequence, so a worker whose lease
-- lapsed and was given to another can never complete, fail or heartbeat the job again.

CREATE SEQUENCE scheduler_lease_token_seq AS bigint;

CREATE TABLE scheduler_job (
  tenant_id         text        NOT NULL,
  job_id            text        NOT NULL,
  queue             text        NOT NULL,
  type              text        NOT NULL,
  payload           jsonb       NOT NULL,
  priority          integer     NOT NULL DEFAULT 0,
  run_at            timestamptz(6) NOT NULL DEFAULT now(),
  state             text        NOT NULL DEFAULT 'QUEUED'
                    CHECK (state IN ('QUEUED', 'RUNNING', 'SUCCEEDED', 'DEAD', 'CANCELLED')),
  attempt           integer     NOT NULL DEFAULT 0,
  max_attempts      integer     NOT NULL CHECK (max_attempts BETWEEN 1 AND 100),
  backoff_base_ms   integer     NOT NULL CHECK (backoff_base_ms > 0),
  timeout_ms        integer     NOT NULL CHECK (timeout_ms > 0),
  job_key           text,
  -- job_key while the job is QUEUED or RUNNING (NULL afterwards): the de-duplication key.
  active_job_key    text,
  schedule_id       text,
  tick_time         timestamptz(6),
  traceparent       text        NOT NULL,
  trace_id          text        NOT NULL,
  lease_token       bigint,
  lease_owner       text,
  lease_expire_time timestamptz(6),
  errors            jsonb       NOT NULL DEFAULT '[]',
  last_error        text,
  create_time       timestamptz(6) NOT NULL DEFAULT now(),
  start_time        timestamptz(6),
  finish_time       timestamptz(6),
  CONSTRAINT scheduler_job_pkey PRIMARY KEY (tenant_id, job_id)
);
-- Indexes are partial where they can be: a job's state changes twice (claim, finish) and each
-- change writes an entry into every index whose predicate the new row version satisfies.
-- job_id is a UUIDv7 (time-ordered), so the primary key also serves ListJobs' newest-first order.
CREATE UNIQUE INDEX scheduler_job_active_job_key_idx ON scheduler_job (tenant_id, active_job_key) WHERE active_job_key IS NOT NULL;
CREATE INDEX scheduler_job_schedule_idx ON scheduler_job (tenant_id, schedule_id, state) WHERE schedule_id IS NOT NULL;
-- Claiming: ready jobs per tenant and type (in-process workers claim the types they have
-- handlers for) or per tenant and queue (remote workers lease a queue), by priority then run_at.
-- Partial: only QUEUED rows, so each enqueue writes one entry in each and claims write none.
CREATE INDEX scheduler_job_ready_type_idx ON scheduler_job (tenant_id, type, priority DESC, run_at, job_id) WHERE state = 'QUEUED';
CREATE INDEX scheduler_job_ready_queue_idx ON scheduler_job (tenant_id, queue, priority DESC, run_at, job_id) WHERE state = 'QUEUED';
-- Rescue: running jobs by lease expiry (partial).
CREATE INDEX scheduler_job_lease_idx ON scheduler_job (lease_expire_time) WHERE state = 'RUNNING';
-- (No index for retention: finishing a job then writes no index entry besides the primary key's;
-- the retention sweep scans, once a minute, at most until it has found its batch.)

-- A job whose last attempt failed: its error history, kept for operators (law 10).
CREATE TABLE scheduler_dead_letter (
  tenant_id   text        NOT NULL,
  job_id      text        NOT NULL,
  queue       text        NOT NULL,
  type        text        NOT NULL,
  payload     jsonb       NOT NULL,
  attempts    integer     NOT NULL,
  errors      jsonb       NOT NULL,
  last_error  text        NOT NULL,
  trace_id    text        NOT NULL,
  create_time timestamptz(6) NOT NULL DEFAULT now(),
  CONSTRAINT scheduler_dead_letter_pkey PRIMARY KEY (tenant_id, job_id)
);

CREATE TABLE scheduler_schedule (
  tenant_id              text        NOT NULL,
  schedule_id            text        NOT NULL,
  cron                   text        NOT NULL,
  time_zone              text        NOT NULL,
  queue                  text        NOT NULL,
  job_type               text        NOT NULL,
  payload                jsonb       NOT NULL,
  priority               integer     NOT NULL DEFAULT 0,
  max_attempts           integer     NOT NULL,
  timeout_ms             integer     NOT NULL,
  overlap_policy         text        NOT NULL CHECK (overlap_policy IN ('SKIP', 'BUFFER_ONE', 'ALLOW_ALL')),
  catchup_window_seconds integer     NOT NULL CHECK (catchup_window_seconds >= 0),
  paused                 boolean     NOT NULL DEFAULT false,
  next_fire_time         timestamptz(6) NOT NULL,
  last_fire_time         timestamptz(6),
  create_time            timestamptz(6) NOT NULL DEFAULT now(),
  update_time            timestamptz(6) NOT NULL DEFAULT now(),
  CONSTRAINT scheduler_schedule_pkey PRIMARY KEY (tenant_id, schedule_id)
);
CREATE INDEX scheduler_schedule_next_fire_time_idx ON scheduler_schedule (next_fire_time);

-- One row per tick of a schedule: the primary key is what makes a tick fire exactly once across
-- any number of nodes. outcome: ENQUEUED (a job was created), SKIPPED (overlap policy),
-- MISSED (older than the catch-up window when it was processed).
CREATE TABLE scheduler_schedule_tick (
  tenant_id   text        NOT NULL,
  schedule_id text        NOT NULL,
  tick_time   timestamptz(6) NOT NULL,
  kind        text        NOT NULL CHECK (kind IN ('CRON', 'TRIGGER', 'BACKFILL')),
  outcome     text        NOT NULL CHECK (outcome IN ('ENQUEUED', 'SKIPPED', 'MISSED')),
  job_id      text,
  create_time timestamptz(6) NOT NULL DEFAULT now(),
  CONSTRAINT scheduler_schedule_tick_pkey PRIMARY KEY (tenant_id, schedule_id, tick_time),
  CONSTRAINT scheduler_schedule_tick_tenant_id_schedule_id_fkey FOREIGN KEY (tenant_id, schedule_id)
    REFERENCES scheduler_schedule (tenant_id, schedule_id) ON DELETE CASCADE
);

-- Wake-ups: one NOTIFY per inserting statement (not per row), delivered at commit; the payload
-- lists the job types inserted, so a node wakes only for types it has handlers for.
CREATE FUNCTION scheduler_job_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  PERFORM pg_notify('axis_scheduler_jobs', coalesce((SELECT left(string_agg(DISTINCT n.type, ','), 7000) FROM inserted n), ''));
  RETURN NULL;
END $$;
CREATE TRIGGER scheduler_job_inserted AFTER INSERT ON scheduler_job
  REFERENCING NEW TABLE AS inserted
  FOR EACH STATEMENT EXECUTE FUNCTION scheduler_job_notify();

-- Claims up to max_jobs ready jobs, fairly across tenants: the tenants with queued jobs are
-- visited round-robin starting after `after_tenant` (each worker rotates its own start), each
-- tenant contributing at most its fair share of the batch; within a tenant, higher priority
-- and then earlier run_at first. Rows another worker holds are skipped (SKIP LOCKED). Each claim
-- takes a new fencing token. queue_name NULL means every queue; job_types are the handler types.
CREATE FUNCTION scheduler_claim_jobs(worker text, queue_name text, job_types text[], max_jobs integer, lease_ms integer, after_tenant text)
RETURNS TABLE (tenant_id text, job_id text, queue text, type text, payload jsonb, attempt integer, max_attempts integer,
               backoff_base_ms integer, timeout_ms integer, traceparent text, lease_token bigint, lease_expire_time timestamptz)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  tenants text[];
  share integer;
BEGIN
  -- Distinct tenants with queued jobs, by an index skip scan (one probe per tenant).
  WITH RECURSIVE t AS (
    (SELECT j.tenant_id FROM scheduler_job j WHERE j.state = 'QUEUED' ORDER BY j.tenant_id LIMIT 1)
    UNION ALL
    SELECT (SELECT j.tenant_id FROM scheduler_job j WHERE j.state = 'QUEUED' AND j.tenant_id > t.tenant_id ORDER BY j.tenant_id LIMIT 1)
    FROM t WHERE t.tenant_id IS NOT NULL
  )
  SELECT array_agg(t.tenant_id ORDER BY (t.tenant_id <= coalesce(after_tenant, '')), t.tenant_id)
  INTO tenants FROM t WHERE t.tenant_id IS NOT NULL;
  IF tenants IS NULL THEN
    RETURN;
  END IF;
  share := greatest(1, ceil(max_jobs::numeric / cardinality(tenants)));

  -- The picked rows are locked by this statement, so their ctid is stable: the UPDATE finds
  -- them by TID instead of joining the whole table.
  -- Per tenant, the best `share` jobs over the wanted types (one index range per type, so
  -- queued jobs of other types — say, for remote workers — are never scanned).
  RETURN QUERY
  WITH picked AS (
    SELECT p.ctid
    FROM unnest(tenants) WITH ORDINALITY AS tn(tenant_id, ord)
    CROSS JOIN LATERAL (
      SELECT x.ctid FROM unnest(job_types) AS ty(type)
      CROSS JOIN LATERAL (
        SELECT j.ctid, j.priority, j.run_at, j.job_id FROM scheduler_job j
        WHERE j.tenant_id = tn.tenant_id AND j.type = ty.type AND j.state = 'QUEUED' AND j.run_at <= now()
          AND (queue_name IS NULL OR j.queue = queue_name)
        ORDER BY j.priority DESC, j.run_at, j.job_id
        LIMIT share
        FOR UPDATE SKIP LOCKED
      ) x
      ORDER BY x.priority DESC, x.run_at, x.job_id
      LIMIT share
    ) p
    ORDER BY tn.ord
    LIMIT max_jobs
  )
  UPDATE scheduler_job j
  SET state = 'RUNNING', attempt = j.attempt + 1, lease_token = nextval('scheduler_lease_token_seq'),
      lease_owner = worker, lease_expire_time = now() + make_interval(secs => lease_ms / 1000.0),
      start_time = now()
  WHERE j.ctid = ANY (ARRAY(SELECT picked.ctid FROM picked))
  RETURNING j.tenant_id, j.job_id, j.queue, j.type, j.payload, j.attempt, j.max_attempts, j.backoff_base_ms,
            j.timeout_ms, j.traceparent, j.lease_token, j.lease_expire_time;
END $$;

-- Completes leased jobs (in-process workers batch their completions). Returns the jobs that were
-- completed; a pair whose lease was lost (token or state changed) is left alone.
CREATE FUNCTION scheduler_complete_jobs(tenant_ids text[], job_ids text[], tokens bigint[])
RETURNS TABLE (tenant_id text, job_id text)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
  UPDATE scheduler_job j
  SET state = 'SUCCEEDED', finish_time = now(), active_job_key = NULL, lease_expire_time = NULL
  FROM unnest(tenant_ids, job_ids, tokens) AS d(tenant_id, job_id, token)
  WHERE j.tenant_id = d.tenant_id AND j.job_id = d.job_id AND j.lease_token = d.token AND j.state = 'RUNNING'
  RETURNING j.tenant_id, j.job_id
$$;

-- Records a failed attempt of a leased job: back to QUEUED at now() + retry_delay_ms, or, after
-- the last attempt, DEAD with a dead-letter row and an audit entry in the same transaction.
-- Returns the new state, or NULL when the lease was lost.
CREATE FUNCTION scheduler_fail_job(p_tenant text, p_job text, p_token bigint, p_error text, retry_delay_ms bigint, p_trace_id text)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  j scheduler_job%ROWTYPE;
  entry jsonb;
BEGIN
  SELECT * INTO j FROM scheduler_job
  WHERE tenant_id = p_tenant AND job_id = p_job AND lease_token = p_token AND state = 'RUNNING'
  FOR UPDATE;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  entry := jsonb_build_object('attempt', j.attempt, 'error', p_error, 'time', now());
  IF j.attempt >= j.max_attempts THEN
    UPDATE scheduler_job SET state = 'DEAD', finish_time = now(), active_job_key = NULL, lease_expire_time = NULL,
      errors = errors || entry, last_error = p_error
    WHERE tenant_id = p_tenant AND job_id = p_job;
    INSERT INTO scheduler_dead_letter (tenant_id, job_id, queue, type, payload, attempts, errors, last_error, trace_id)
    VALUES (j.tenant_id, j.job_id, j.queue, j.type, j.payload, j.attempt, j.errors || entry, p_error, j.trace_id);
    INSERT INTO kernel_audit_event (tenant_id, principal, action, resource, outcome, trace_id, detail)
    VALUES (j.tenant_id, 'system:kernel', 'axis.kernel.scheduler.v1.SchedulerService/DeadLetterJob', 'jobs/' || j.job_id, 'OK',
            coalesce(p_trace_id, j.trace_id), jsonb_build_object('type', j.type, 'attempts', j.attempt, 'last_error', left(p_error, 500)));
    PERFORM pg_notify('axis_scheduler_dead_letter', j.tenant_id || '/' || j.job_id);
    RETURN 'DEAD';
  END IF;
  entry := entry || jsonb_build_object('retry_delay_ms', retry_delay_ms, 'retry_at', now() + make_interval(secs => retry_delay_ms / 1000.0));
  UPDATE scheduler_job SET state = 'QUEUED', run_at = now() + make_interval(secs => retry_delay_ms / 1000.0),
    lease_expire_time = NULL, lease_owner = NULL, errors = errors || entry, last_error = p_error
  WHERE tenant_id = p_tenant AND job_id = p_job;
  RETURN 'QUEUED';
END $$;

-- Extends a lease. Returns the new expiry, or NULL when the lease was lost.
CREATE FUNCTION scheduler_heartbeat(p_tenant text, p_job text, p_token bigint, lease_ms integer)
RETURNS timestamptz
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
  UPDATE scheduler_job SET lease_expire_time = now() + make_interval(secs => lease_ms / 1000.0)
  WHERE tenant_id = p_tenant AND job_id = p_job AND lease_token = p_token AND state = 'RUNNING'
  RETURNING lease_expire_time
$$;

-- Extends the leases of many jobs at once (a node's in-process workers). Returns those still held.
CREATE FUNCTION scheduler_extend_leases(tenant_ids text[], job_ids text[], tokens bigint[], lease_ms integer)
RETURNS TABLE (tenant_id text, job_id text)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
  UPDATE scheduler_job j SET lease_expire_time = now() + make_interval(secs => lease_ms / 1000.0)
  FROM unnest(tenant_ids, job_ids, tokens) AS d(tenant_id, job_id, token)
  WHERE j.tenant_id = d.tenant_id AND j.job_id = d.job_id AND j.lease_token = d.token AND j.state = 'RUNNING'
  RETURNING j.tenant_id, j.job_id
$$;

-- Gives back leased jobs that never started (a stopping node's local queue): QUEUED again, the
-- attempt not counted.
CREATE FUNCTION scheduler_release_jobs(tenant_ids text[], job_ids text[], tokens bigint[]) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
  WITH released AS (
    UPDATE scheduler_job j SET state = 'QUEUED', attempt = j.attempt - 1, lease_owner = NULL, lease_expire_time = NULL, start_time = NULL
    FROM unnest(tenant_ids, job_ids, tokens) AS d(tenant_id, job_id, token)
    WHERE j.tenant_id = d.tenant_id AND j.job_id = d.job_id AND j.lease_token = d.token AND j.state = 'RUNNING'
    RETURNING 1
  )
  SELECT count(*)::integer FROM released
$$;

-- Rescues jobs whose lease expired (the holder crashed or stalled): the attempt counts as failed
-- with error LEASE_EXPIRED; retried at once, or dead-lettered after the last attempt. Returns
-- the rescued jobs.
CREATE FUNCTION scheduler_rescue_expired(max_jobs integer)
RETURNS TABLE (tenant_id text, job_id text, state text)
LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
DECLARE
  r record;
BEGIN
  FOR r IN
    SELECT j.tenant_id, j.job_id, j.lease_token, j.trace_id FROM scheduler_job j
    WHERE j.state = 'RUNNING' AND j.lease_expire_time < now()
    ORDER BY j.lease_expire_time LIMIT max_jobs FOR UPDATE SKIP LOCKED
  LOOP
    tenant_id := r.tenant_id;
    job_id := r.job_id;
    state := scheduler_fail_job(r.tenant_id, r.job_id, r.lease_token, 'LEASE_EXPIRED: the lease lapsed without completion', 0, r.trace_id);
    RETURN NEXT;
  END LOOP;
END $$;

-- Schedules due to fire (next_fire_time passed, not paused), for the nodes' cron loops; the
-- firing itself happens in a tenant transaction that locks the schedule row.
CREATE FUNCTION scheduler_due_schedules(max_schedules integer)
RETURNS TABLE (tenant_id text, schedule_id text)
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
  SELECT s.tenant_id, s.schedule_id FROM scheduler_schedule s
  WHERE NOT s.paused AND s.next_fire_time <= now()
  ORDER BY s.next_fire_time LIMIT max_schedules
$$;

-- Retention: deletes finished (SUCCEEDED / CANCELLED) jobs older than the given age, and the
-- kernel's own (tenant '') schedule ticks of that age. Tenant schedule ticks are kept.
CREATE FUNCTION scheduler_sweep_finished(older_than_seconds integer, max_jobs integer) RETURNS integer
LANGUAGE sql SECURITY DEFINER SET search_path = public AS $$
  WITH old_ticks AS (
    DELETE FROM scheduler_schedule_tick t
    WHERE t.tenant_id = '' AND t.tick_time < now() - make_interval(secs => older_than_seconds)
    RETURNING 1
  ), doomed AS (
    SELECT j.tenant_id, j.job_id FROM scheduler_job j
    WHERE j.state IN ('SUCCEEDED', 'CANCELLED') AND j.finish_time < now() - make_interval(secs => older_than_seconds)
    ORDER BY j.finish_time LIMIT max_jobs FOR UPDATE SKIP LOCKED
  ), gone AS (
    DELETE FROM scheduler_job j USING doomed WHERE j.tenant_id = doomed.tenant_id AND j.job_id = doomed.job_id RETURNING 1
  )
  SELECT (SELECT count(*)::integer FROM gone) + 0 * (SELECT count(*)::integer FROM old_ticks)
$$;

-- ---------------------------------------------------------------------------------------------
-- Tenant isolation: forced RLS on every tenant table, one policy each.
DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['scheduler_job', 'scheduler_dead_letter', 'scheduler_schedule', 'scheduler_schedule_tick']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''axis.tenant_id'', true)) WITH CHECK (tenant_id = current_setting(''axis.tenant_id'', true))', t);
  END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE ON scheduler_job TO axis_kernel_app;
GRANT SELECT ON scheduler_dead_letter TO axis_kernel_app;
GRANT SELECT, INSERT, UPDATE ON scheduler_schedule TO axis_kernel_app;
GRANT SELECT, INSERT ON scheduler_schedule_tick TO axis_kernel_app;
GRANT USAGE ON SEQUENCE scheduler_lease_token_seq TO axis_kernel_app;
REVOKE EXECUTE ON FUNCTION scheduler_claim_jobs(text, text, text[], integer, integer, text), scheduler_complete_jobs(text[], text[], bigint[]),
  scheduler_fail_job(text, text, bigint, text, bigint, text), scheduler_heartbeat(text, text, bigint, integer),
  scheduler_rescue_expired(integer), scheduler_due_schedules(integer), scheduler_sweep_finished(integer, integer),
  scheduler_extend_leases(text[], text[], bigint[], integer), scheduler_release_jobs(text[], text[], bigint[]) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION scheduler_claim_jobs(text, text, text[], integer, integer, text), scheduler_complete_jobs(text[], text[], bigint[]),
  scheduler_fail_job(text, text, bigint, text, bigint, text), scheduler_heartbeat(text, text, bigint, integer),
  scheduler_rescue_expired(integer), scheduler_due_schedules(integer), scheduler_sweep_finished(integer, integer),
  scheduler_extend_leases(text[], text[], bigint[], integer), scheduler_release_jobs(text[], text[], bigint[]) TO axis_kernel_app;
