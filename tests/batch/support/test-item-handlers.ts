import type { BatchItemHandlers } from '../../../services/platform/batch-items';
import { PermanentItemError } from '../../../services/platform/batch-items';

/** The table the test handlers write their effects to (one row per effect; no unique key, so a duplicate would show). */
export const EFFECT_TABLE = 'batch_test_effect';

export const CREATE_EFFECT_TABLE = `
  CREATE TABLE IF NOT EXISTS ${EFFECT_TABLE} (tenant_id text NOT NULL, batch_id text NOT NULL, item_index bigint NOT NULL, payload text NOT NULL);
  GRANT SELECT, INSERT ON ${EFFECT_TABLE} TO axis_kernel_app;`;

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * Item handlers for the batch tests, loaded by kernels (in-process and spawned) through
 * KERNEL_BATCH_HANDLER_MODULES. Every effect is a row written in the chunk's transaction.
 *   test.record — records the item.
 *   test.slow   — records the item after BATCH_TEST_ITEM_DELAY_MS (default 5) ms.
 *   test.poison — payload `poison…`: permanent failure; `flaky:N`: transient failure on the
 *                 first N attempts, then recorded; anything else: recorded.
 *   test.noop   — does nothing (benchmark).
 */
export function registerBatchItemHandlers(handlers: BatchItemHandlers): void {
  const record: Parameters<BatchItemHandlers['register']>[1] = async (item, ctx) => {
    await ctx.tx.query(`INSERT INTO ${EFFECT_TABLE} (tenant_id, batch_id, item_index, payload) VALUES ($1, $2, $3, $4)`, [
      ctx.tenantId,
      ctx.batchId,
      item.index,
      item.payload,
    ]);
  };
  handlers.register('test.record', record);
  handlers.register('test.slow', async (item, ctx) => {
    await sleep(Number(process.env.BATCH_TEST_ITEM_DELAY_MS ?? 5));
    await record(item, ctx);
  });
  handlers.register('test.poison', async (item, ctx) => {
    if (item.payload.startsWith('poison')) {
      // Touch the database first: the failure must roll back what the item did.
      await record(item, ctx);
      throw new PermanentItemError(`item ${item.index} is poison (${item.payload})`);
    }
    const flaky = /^flaky:(\d+)$/.exec(item.payload);
    if (flaky && ctx.attempt <= Number(flaky[1])) {
      await record(item, ctx);
      throw new Error(`transient failure of item ${item.index}, attempt ${ctx.attempt}`);
    }
    await record(item, ctx);
  });
  handlers.register('test.noop', async () => undefined);
}
