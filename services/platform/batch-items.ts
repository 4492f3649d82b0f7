import path from 'node:path';
import type { TenantTransaction } from './database/database';
import type { Logger } from './observability/logger';
import type { TraceContext } from './trace-context';

/** One item of a batch as its handler sees it. */
export interface BatchItem {
  /** 0-based position in the batch. */
  readonly index: number;
  /** The inline payload, or the decimal integer of a range source. */
  readonly payload: string;
}

/** What an item handler works with. Its effect belongs in `tx`: that is what makes it exactly-once. */
export interface BatchItemContext {
  /** The chunk's tenant transaction: effects written here commit with the item results and the checkpoint. */
  readonly tx: TenantTransaction;
  readonly tenantId: string;
  readonly batchId: string;
  readonly itemIndex: number;
  /** 1 for the first try, more after transient failures. */
  readonly attempt: number;
  /** The batch's trace (the StartBatch call's, continued by the chunk job). */
  readonly trace: TraceContext;
  readonly log: Logger;
}

/**
 * Handles one item. Resolving means it succeeded. Throwing a `PermanentItemError` skips the
 * item (recorded, counted against the skip limit); anything else thrown is transient: the item
 * is retried (up to the batch's retry limit), then counted as failed against the skip limit.
 * The handler may run more than once for an item whose chunk was rolled back — only effects in
 * `ctx.tx` are exactly-once.
 */
export type BatchItemHandler = (item: BatchItem, ctx: BatchItemContext) => Promise<void>;

/** A failure retrying cannot cure (bad data): the item is skipped. */
export class PermanentItemError extends Error {
  override readonly name = 'PermanentItemError';
}

export const isPermanentItemError = (error: unknown): boolean =>
  error instanceof PermanentItemError || (error instanceof Error && error.name === 'PermanentItemError');

const TYPE = /^[a-z0-9][a-z0-9._-]{0,99}$/;

/**
 * The item handler types this node can run, registered by code: in-process
 * (`kernel.batch.register(...)` on a RunningKernel) or by modules named in
 * KERNEL_BATCH_HANDLER_MODULES, each exporting `registerBatchItemHandlers(handlers)`.
 */
export class BatchItemHandlers {
  private readonly handlers = new Map<string, BatchItemHandler>();
  private loading: Promise<void> = Promise.resolve();

  register(type: string, handler: BatchItemHandler): void {
    if (!TYPE.test(type)) throw new Error(`batch item type "${type}" must be 1–100 characters of [a-z0-9._-]`);
    if (this.handlers.has(type)) throw new Error(`batch item type "${type}" is already registered`);
    this.handlers.set(type, handler);
  }

  get(type: string): BatchItemHandler | undefined {
    return this.handlers.get(type);
  }

  /** Resolves once the handler modules given to loadModules are loaded (rejects if one failed). */
  ready(): Promise<void> {
    return this.loading;
  }

  /** Imports modules (comma-separated absolute paths) and lets each register its handlers. */
  loadModules(paths: string | undefined, log: Logger): void {
    const list = (paths ?? '').split(',').map((p) => p.trim()).filter(Boolean);
    if (list.length === 0) return;
    this.loading = (async () => {
      for (const file of list) {
        const module = (await import(path.resolve(file))) as Record<string, unknown>;
        const register = (module.registerBatchItemHandlers ?? (module.default as Record<string, unknown> | undefined)?.registerBatchItemHandlers) as
          | ((handlers: BatchItemHandlers) => void | Promise<void>)
          | undefined;
        if (typeof register !== 'function') throw new Error(`${file} exports no registerBatchItemHandlers(handlers)`);
        await register(this);
        log.info({ module: file }, 'batch item handler module loaded');
      }
    })();
    // Surfaced at once (docs/laws.md#law-10); chunk jobs and StartBatch also fail on it rather than run without handlers.
    this.loading.catch((error) => log.error({ err: error, modules: list }, 'could not load batch item handler modules (KERNEL_BATCH_HANDLER_MODULES)'));
  }
}
