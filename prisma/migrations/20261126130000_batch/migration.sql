-- K-M13 Batch framework: chunked, restartable processing of item sets.
--
-- A batch's checkpoint (next_index) advances only in the transaction that commits a chunk's
-- item effects and item results, and only from the value that chunk started at, so a chunk
-- delivered twice (scheduler jobs are at-least-once) or a crashed one changes nothing twice.

CREATE TABLE batch_run (
  tenant_id        text        NOT NULL,
  batch_id         text        NOT NULL,
  item_type        text        NOT NULL,
  state            text        NOT NULL CHECK (state IN ('RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED')),
  source_kind      text        NOT NULL CHECK (source_kind IN ('INLINE', 'RANGE')),
  range_start      bigint      NOT NULL DEFAULT 0,
  total_items      bigint      NOT NULL CHECK (total_items >= 0),
  chunk_size       integer     NOT NULL CHECK (chunk_size > 0),
  skip_limit       integer     NOT NULL CHECK (skip_limit >= 0),
  retry_limit      integer     NOT NULL CHECK (retry_limit >= 0),
  -- The checkpoint: items below it are committed (their results and effects).
  next_index       bigint      NOT NULL DEFAULT 0,
  succeeded_items  bigint      NOT NULL DEFAULT 0,
  skipped_items    bigint      NOT NULL DEFAULT 0,
  failed_items     bigint      NOT NULL DEFAULT 0,
  retried_attempts bigint      NOT NULL DEFAULT 0,
  -- The live link of the batch's chunk-job chain: bumped with every chunk job enqueued (start, resume,
  -- hand-over); a job of another link changes nothing.
  run_generation   integer     NOT NULL DEFAULT 0,
  failure_reason   text        NOT NULL DEFAULT '',
  failure_detail   text        NOT NULL DEFAULT '',
  request_hash     text        NOT NULL,
  principal        text        NOT NULL,
  trace_id         text        NOT NULL,
  -- Start of the current run and the checkpoint then: the rate behind the ETA.
  run_start_time   timestamptz(6) NOT NULL DEFAULT now(),
  run_start_index  bigint      NOT NULL DEFAULT 0,
  create_time      timestamptz(6) NOT NULL DEFAULT now(),
  update_time      timestamptz(6) NOT NULL DEFAULT now(),
  end_time         timestamptz(6),
  CONSTRAINT batch_run_pkey PRIMARY KEY (tenant_id, batch_id),
  CONSTRAINT batch_run_checkpoint_check CHECK (next_index >= 0 AND next_index <= total_items)
);

-- Inline items (a RANGE source stores none).
CREATE TABLE batch_item (
  tenant_id  text   NOT NULL,
  batch_id   text   NOT NULL,
  item_index bigint NOT NULL,
  payload    text   NOT NULL,
  CONSTRAINT batch_item_pkey PRIMARY KEY (tenant_id, batch_id, item_index),
  CONSTRAINT batch_item_tenant_id_batch_id_fkey FOREIGN KEY (tenant_id, batch_id)
    REFERENCES batch_run (tenant_id, batch_id) ON DELETE CASCADE ON UPDATE CASCADE
);

-- One row per committed item: the primary key makes "processed twice" impossible to commit.
CREATE TABLE batch_item_result (
  tenant_id  text     NOT NULL,
  batch_id   text     NOT NULL,
  item_index bigint   NOT NULL,
  outcome    smallint NOT NULL CHECK (outcome IN (1, 2, 3)), -- ItemOutcome: SUCCEEDED, SKIPPED, FAILED
  attempts   smallint NOT NULL,
  CONSTRAINT batch_item_result_pkey PRIMARY KEY (tenant_id, batch_id, item_index)
);

-- Per-item error reports of items that did not succeed (and of the item that failed the batch).
CREATE TABLE batch_item_error (
  tenant_id  text     NOT NULL,
  batch_id   text     NOT NULL,
  item_index bigint   NOT NULL,
  outcome    text     NOT NULL CHECK (outcome IN ('SKIPPED', 'FAILED', 'REJECTED')),
  attempts   integer  NOT NULL,
  message    text     NOT NULL,
  error_time timestamptz(6) NOT NULL DEFAULT now(),
  CONSTRAINT batch_item_error_pkey PRIMARY KEY (tenant_id, batch_id, item_index)
);

DO $$
DECLARE
  t text;
BEGIN
  FOREACH t IN ARRAY ARRAY['batch_run', 'batch_item', 'batch_item_result', 'batch_item_error']
  LOOP
    EXECUTE format('ALTER TABLE %I ENABLE ROW LEVEL SECURITY', t);
    EXECUTE format('ALTER TABLE %I FORCE ROW LEVEL SECURITY', t);
    EXECUTE format('CREATE POLICY tenant_isolation ON %I USING (tenant_id = current_setting(''axis.tenant_id'', true)) WITH CHECK (tenant_id = current_setting(''axis.tenant_id'', true))', t);
  END LOOP;
END $$;

GRANT SELECT, INSERT, UPDATE ON batch_run TO axis_kernel_app;
GRANT SELECT, INSERT ON batch_item, batch_item_result TO axis_kernel_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON batch_item_error TO axis_kernel_app;
