import type { DeferredWrite } from '../database/transaction';

/** The stored response of one keyed mutating call. */
export interface IdempotencyRecord {
  method: string;
  idempotencyKey: string;
  requestHash: Buffer;
  response: Buffer;
  retentionSeconds: number;
}

/**
 * SQLSTATE kernel_idempotency_store raises when a record could not be stored because a live one
 * holds the key: another node's twin committed between our key check and our commit. The commit
 * is refused and the call answered IDEMPOTENCY_KEY_IN_USE (its retry replays the twin's answer).
 */
export const IDEMPOTENCY_STORE_CONFLICT = 'KA001';

/**
 * Every keyed call's response, stored with COMMIT (one statement for the group). An expired
 * record under the same key is replaced.
 */
export const IDEMPOTENCY_RECORDS: DeferredWrite<IdempotencyRecord> = {
  name: 'idempotency records',
  order: 10,
  statement: (tenantId, records) => ({
    text: 'SELECT kernel_idempotency_store($1, $2::text[], $3::text[], $4::bytea[], $5::bytea[], $6::float8[])',
    params: [
      tenantId,
      records.map((r) => r.method),
      records.map((r) => r.idempotencyKey),
      records.map((r) => r.requestHash),
      records.map((r) => r.response),
      records.map((r) => r.retentionSeconds),
    ],
  }),
};
