-- Scheduler queue depth and lag for the node's metrics (kernel.scheduler.queue.depth and
-- kernel.scheduler.queue.lag): per queue, across tenants, the jobs that are due and not yet
-- claimed and how long the oldest of them has been due. Counts only, never a tenant's payloads.
-- Reads the partial index of QUEUED rows; called once per metrics collection, not per job.
CREATE FUNCTION scheduler_queue_stats()
RETURNS TABLE (queue text, ready bigint, oldest_due_ms float8)
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = public AS $$
  SELECT j.queue, count(*), coalesce(extract(epoch FROM now() - min(j.run_at)) * 1000, 0)
    FROM scheduler_job j
   WHERE j.state = 'QUEUED' AND j.run_at <= now()
   GROUP BY j.queue
$$;
ALTER FUNCTION scheduler_queue_stats() OWNER TO axis_kernel_system;
REVOKE EXECUTE ON FUNCTION scheduler_queue_stats() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION scheduler_queue_stats() TO axis_kernel_app;
