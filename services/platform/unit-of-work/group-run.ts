import { Status } from 'nice-grpc-common';
import type { CancelSignal } from '../cancel-signal';
import type { DeferredWrite, StatementBatcher, TenantTransaction, TransactionControl } from '../database/transaction';
import { KernelError } from '../kernel-error';

/** One call of a commit group, as the group runner sees it. */
export interface GroupCall<R> {
  /** The call's cancellation: a cancelled call is not started, a running one is abandoned. */
  signal?: CancelSignal;
  execute(tx: TenantTransaction): Promise<R>;
}

export type CallOutcome<R> = { result: R } | { error: unknown };

export interface GroupRunOptions<C> {
  /** Whether calls whose only statement is a batched one may share it (the first attempt). */
  batching: boolean;
  /** Longest a handler may run (then DEADLINE_EXCEEDED, rolled back alone). */
  callTimeoutMs: number;
  /** Which calls may run, decided by a statement queued ahead of the group; absent: all. */
  admission?: Admission<C>;
}

/**
 * A decision on which of a group's calls may run, taken by a statement queued on the transaction
 * (the committer's claim of idempotency keys) that travels with the first statement any call
 * sends — so the decision costs no round trip of its own.
 */
export interface Admission<C> {
  /**
   * The decision: sends the queued statement alone if nothing has carried it yet, or asks again
   * if the message that carried it failed (called once that call's savepoint is rolled back).
   */
  decide(): Promise<(call: C) => boolean>;
}

class NotAdmitted extends Error {
  constructor() {
    super('this call was not admitted to its group (its idempotency key was claimed elsewhere or answered before)');
  }
}

/**
 * Runs a group's calls ONE AFTER ANOTHER in the group's transaction, each behind its own
 * savepoint (sent in the same round trip as the call's first statement): a call sees every
 * earlier call's change, and a call that fails is rolled back alone. The outcome of the group is
 * therefore the outcome of its calls executed in sequence, whatever the handlers do.
 *
 * With an `admission`, calls start before the decision is known — speculatively, their first
 * statement carrying the deciding one: a refused call that touched the database is rolled back
 * to its savepoint as soon as its work returns (which brings the decision), before the next call
 * starts, so no admitted call ever sees a refused call's work. Refused calls are left out of the
 * result; a refused call whose batched statement changed something makes the group 'isolate'
 * (re-run without batching: a replay of a number, say, must not consume one).
 *
 * With `batching`, a call that asks a StatementBatcher before touching the database parks: the
 * next call runs, and when every call has finished or parked, each batch runs as ONE statement
 * (batches in key order — one global lock order for every group on every node) and the parked
 * calls resume. A parked call's whole database work is its batched statement (touching the
 * database after it is refused), so it behaves as if it ran whole at that moment: the sequence
 * is kept. A parked call that fails after a batched statement that changed something cannot be
 * rolled back alone: the runner answers 'isolate' and the committer re-runs the group without
 * batching.
 */
export async function runSerially<C extends GroupCall<R>, R>(
  tx: TransactionControl,
  calls: readonly C[],
  options: GroupRunOptions<C>,
): Promise<Array<{ call: C; outcome: CallOutcome<R> }> | 'isolate'> {
  // Deferred writes are handed to the transaction only at the end, for admitted calls.
  const done: Array<{ call: C; outcome: CallOutcome<R>; slot?: CallSlot<R> }> = [];
  const parked: Array<CallSlot<R> & { call: C }> = [];
  let savepointOpen = false;
  let admits: ((call: C) => boolean) | undefined = options.admission ? undefined : () => true;
  const decide = async () => (admits ??= await options.admission!.decide());
  const admitted = () =>
    done
      .filter(({ call }) => admits!(call))
      .map(({ call, outcome, slot }) => {
        if ('result' in outcome) slot?.applyDeferred();
        return { call, outcome };
      });

  for (const call of calls) {
    if (admits && !admits(call)) continue;
    if (call.signal?.aborted) {
      done.push({ call, outcome: { error: new KernelError(Status.CANCELLED, 'CANCELLED', 'the call was cancelled (or its deadline passed) before it started') } });
      continue;
    }
    tx.prefixNextQuery(savepointOpen ? 'RELEASE SAVEPOINT call; SAVEPOINT call' : 'SAVEPOINT call');
    const slot = new CallSlot<R>(tx, options.batching);
    const step = await slot.start(call, options.callTimeoutMs);
    // A call that never reached the database consumed no savepoint and needs no rollback.
    if (!tx.dropPendingPrefix()) savepointOpen = true;
    if (step === 'parked') {
      parked.push(Object.assign(slot, { call }));
      continue;
    }
    if ('error' in slot.outcome! && slot.touched) await tx.query('ROLLBACK TO SAVEPOINT call');
    // Its first message carried the admission's statement: the decision is in (or asked again).
    if (slot.touched) await decide();
    if (admits && !admits(call)) {
      if ('result' in slot.outcome! && slot.touched) await tx.query('ROLLBACK TO SAVEPOINT call');
      continue;
    }
    done.push({ call, outcome: slot.outcome!, slot });
  }
  if (parked.length === 0) {
    await decide();
    return admitted();
  }

  // Every call has finished or parked: run the batches, in one global key order. A parked call
  // already refused gets no share (it changed nothing; its handler is ended with an error).
  if (savepointOpen) tx.prefixNextQuery('RELEASE SAVEPOINT call');
  const batches = new Map<string, { batcher: StatementBatcher<unknown, unknown>; asks: Array<CallSlot<R>> }>();
  for (const slot of parked) {
    if (admits && !admits(slot.call)) {
      slot.deliver(new NotAdmitted());
      continue;
    }
    const id = `${slot.parkedOn!.batcher.name}\u0000${slot.parkedOn!.key}`;
    const batch = batches.get(id);
    if (batch) batch.asks.push(slot);
    else batches.set(id, { batcher: slot.parkedOn!.batcher, asks: [slot] });
  }
  for (const id of [...batches.keys()].sort()) {
    const { batcher, asks } = batches.get(id)!;
    let results: ReadonlyArray<unknown>;
    try {
      results = await batcher.run(tx, asks.map((s) => s.parkedOn!.ask));
    } catch {
      // The statement failed as a whole (and left the transaction aborted): without batching,
      // each ask runs in its own call's savepoint and only the culprit fails.
      return 'isolate';
    }
    asks.forEach((slot, i) => slot.deliver(results[i]));
  }
  // The first batch carried the admission's statement if no call had.
  await decide();
  for (const slot of parked) {
    await slot.finished(options.callTimeoutMs);
    if (!admits!(slot.call)) {
      // Refused after its batched statement ran for it: if that changed something, only a re-run
      // without batching can leave it out.
      if (!slot.parkedOn!.batcher.changesNothing && !slot.answeredWithError) return 'isolate';
      continue;
    }
    // A failure after a batched statement that changed something for this call cannot be
    // undone alone. (An ask answered with an Error changed nothing, by the batcher's contract.)
    if ('error' in slot.outcome! && !slot.parkedOn!.batcher.changesNothing && !slot.answeredWithError) return 'isolate';
    done.push({ call: slot.call, outcome: slot.outcome!, slot });
  }
  return admitted();
}

/**
 * One call's view of the group transaction: tracks whether it touched the database, parks its
 * batched ask, keeps its deferred writes and commit callbacks until it succeeds (a call rolled
 * back to its savepoint must leave nothing), and is revoked once the call is abandoned.
 */
class CallSlot<R> implements TenantTransaction {
  touched = false;
  outcome?: CallOutcome<R>;
  parkedOn?: { batcher: StatementBatcher<unknown, unknown>; key: string; ask: unknown; resolve(result: unknown): void; reject(error: unknown): void };
  /** The batch answered this call's ask with an Error: the statement changed nothing for it. */
  answeredWithError = false;
  private delivered = false;
  private revoked = false;
  private readonly deferred: Array<[DeferredWrite<unknown>, unknown]> = [];
  private readonly commitCallbacks: Array<() => void> = [];
  private running?: Promise<void>;
  private signalParked?: () => void;

  constructor(
    private readonly tx: TransactionControl,
    private readonly batching: boolean,
  ) {}

  get tenantId(): string {
    return this.tx.tenantId;
  }

  query<Row>(text: string, params?: readonly unknown[]): Promise<Row[]> {
    this.refuseIfFinished();
    this.touched = true;
    return this.tx.query<Row>(text, params);
  }

  batch<Ask, Result>(batcher: StatementBatcher<Ask, Result>, ask: Ask): Promise<Result> {
    this.refuseIfFinished();
    if (!this.batching || this.touched || this.parkedOn) {
      // Not its only statement: it runs now, as part of the call's own work.
      return batcher.run(this, [ask]).then(([result]) => {
        if (result instanceof Error) throw result;
        return result as Result;
      });
    }
    return new Promise<Result>((resolve, reject) => {
      this.parkedOn = { batcher: batcher as StatementBatcher<unknown, unknown>, key: batcher.key(ask), ask, resolve: resolve as (r: unknown) => void, reject };
      this.signalParked?.();
    });
  }

  defer<Item>(write: DeferredWrite<Item>, item: Item): void {
    this.deferred.push([write as DeferredWrite<unknown>, item]);
  }

  onCommit(fn: () => void): void {
    this.commitCallbacks.push(fn);
  }

  /** Starts the call; resolves when it has finished (outcome set), parked on a batch, or was abandoned. */
  start(call: GroupCall<R>, timeoutMs: number): Promise<'finished' | 'parked'> {
    this.running = Promise.resolve()
      .then(() => call.execute(this))
      .then(
        (result) => this.finish({ result }),
        (error: unknown) => this.finish({ error }),
      );
    return this.bounded(call.signal, timeoutMs, true);
  }

  /** Hands the batch's result for this call's ask back to it. */
  deliver(result: unknown): void {
    this.delivered = true;
    this.answeredWithError = result instanceof Error;
    if (result instanceof Error) this.parkedOn!.reject(result);
    else this.parkedOn!.resolve(result);
  }

  /** Waits for a resumed call to finish (bounded like any call). */
  async finished(timeoutMs: number): Promise<void> {
    await this.bounded(undefined, timeoutMs, false);
  }

  applyDeferred(): void {
    for (const [write, item] of this.deferred) this.tx.defer(write, item);
    for (const fn of this.commitCallbacks) this.tx.onCommit(fn);
  }

  private finish(outcome: CallOutcome<R>): void {
    this.outcome ??= outcome;
  }

  /**
   * Resolves when the call finishes, parks (if `mayPark`), is cancelled, or runs past the
   * timeout — in the last two cases the call is abandoned: answered with the error, its view
   * closed, so nothing it still does can reach the transaction.
   */
  private bounded(signal: CancelSignal | undefined, timeoutMs: number, mayPark: boolean): Promise<'finished' | 'parked'> {
    if (this.outcome) return Promise.resolve('finished');
    return new Promise((resolve) => {
      const settle = (step: 'finished' | 'parked') => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.signalParked = undefined;
        resolve(step);
      };
      const abandon = (error: KernelError) => {
        this.revoked = true;
        this.finish({ error });
        settle('finished');
      };
      const timer = setTimeout(
        () => abandon(new KernelError(Status.DEADLINE_EXCEEDED, 'CALL_TIMEOUT', `the call ran longer than ${timeoutMs} ms inside its commit group`)),
        timeoutMs,
      );
      const onAbort = () => abandon(new KernelError(Status.CANCELLED, 'CANCELLED', 'the call was cancelled (or its deadline passed) while it ran'));
      signal?.addEventListener('abort', onAbort, { once: true });
      if (mayPark) this.signalParked = () => settle('parked');
      void this.running!.then(() => settle('finished'));
    });
  }

  private refuseIfFinished(): void {
    if (this.revoked) throw new Error('this call was abandoned (timeout or cancellation): its transaction view is closed');
    if (this.parkedOn && !this.delivered) throw new Error(`${this.parkedOn.batcher.name}: a call waiting on its batched statement may not issue another`);
    if (this.delivered) {
      throw new Error(`${this.parkedOn!.batcher.name}: a call whose batched statement has run may not touch the database again (see StatementBatcher)`);
    }
  }
}
