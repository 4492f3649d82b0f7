import { parseArgs } from 'node:util';
import { Status } from 'nice-grpc-common';
import { closeKernelClient, createBatchClient, isKernelError } from '../../clients/src';
import { BatchState, type BatchProgress } from '../../gen/proto/axis/kernel/batch/v1/batch';
import { loadOrCreateDevelopmentSecret } from '../platform/auth/development-secret';
import { mintDevelopmentToken } from '../platform/auth/token-verifier';
import { ProgressBar, type ProgressOutput, type ProgressUpdate } from '../platform/cli/progress-bar';
import type { KernelConfig } from '../platform/config';

export const BATCH_USAGE = `usage: kernel batch watch <batch-id> --tenant T [--address host:port] [--token TOKEN]
  shows a live progress bar of a batch (plain lines when stdout is not a terminal) until it ends;
  the token defaults to $AXIS_TOKEN, else a development token (batch:read) is minted
`;

/** Long enough to follow any batch, short enough for a Node timer (< 2^31 ms). */
const WATCH_DEADLINE_MS = 7 * 24 * 3600_000;

const STATE_NAMES: Record<number, string> = {
  [BatchState.BATCH_STATE_RUNNING]: 'RUNNING',
  [BatchState.BATCH_STATE_SUCCEEDED]: 'SUCCEEDED',
  [BatchState.BATCH_STATE_FAILED]: 'FAILED',
  [BatchState.BATCH_STATE_CANCELLED]: 'CANCELLED',
};

function toUpdate(p: BatchProgress): ProgressUpdate {
  return {
    done: p.processedItems,
    total: p.totalItems,
    detail: `ok ${p.succeededItems.toLocaleString('en-US')}  skipped ${p.skippedItems.toLocaleString('en-US')}  failed ${p.failedItems.toLocaleString('en-US')}`,
    etaSeconds: p.eta ? p.eta.seconds + p.eta.nanos / 1e9 : undefined,
  };
}

/** `kernel batch watch <id>`: WatchBatch over gRPC, drawn with the shared progress bar. Exit 0 only when the batch succeeded. */
export async function batchCommand(config: KernelConfig, args: string[], output: ProgressOutput = process.stdout): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args,
      allowPositionals: true,
      options: { tenant: { type: 'string' }, address: { type: 'string' }, token: { type: 'string' } },
    });
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n${BATCH_USAGE}`);
    return 2;
  }
  const [action, batchId, ...extra] = parsed.positionals;
  if (action !== 'watch' || !batchId || extra.length > 0 || !parsed.values.tenant) {
    process.stderr.write(BATCH_USAGE);
    return 2;
  }
  const tenant = parsed.values.tenant;
  const token =
    parsed.values.token ??
    process.env.AXIS_TOKEN ??
    (await mintDevelopmentToken({
      secret: config.KERNEL_AUTH_SECRET ?? loadOrCreateDevelopmentSecret(config.KERNEL_DATA_DIR).secret,
      subject: 'kernel-cli',
      tenants: [tenant],
      scope: 'batch:read',
      ttlSeconds: 24 * 3600,
    }));
  const client = createBatchClient({ address: parsed.values.address ?? config.KERNEL_GRPC_ADDR, tenantId: tenant, token });
  const bar = new ProgressBar({ output, label: batchId });
  const stop = new AbortController();
  const interrupt = () => stop.abort();
  process.once('SIGINT', interrupt);
  let last: BatchProgress | undefined;
  try {
    for await (const { progress } of client.watchBatch({ batchId }, { signal: stop.signal, deadline: new Date(Date.now() + WATCH_DEADLINE_MS) })) {
      if (!progress) continue;
      last = progress;
      bar.update(toUpdate(progress));
    }
    const state = last ? STATE_NAMES[last.state] ?? 'UNKNOWN' : 'UNKNOWN';
    bar.finish(last && toUpdate(last), `batch ${batchId}: ${state}${last?.failureReason ? ` (${last.failureReason})` : ''}`);
    return last?.state === BatchState.BATCH_STATE_SUCCEEDED ? 0 : 1;
  } catch (error) {
    bar.finish(last && toUpdate(last));
    if (stop.signal.aborted) return 130;
    process.stderr.write(isKernelError(error) ? `kernel batch watch: ${Status[error.code]} ${error.reason}: ${error.message}\n` : `kernel batch watch: ${String(error)}\n`);
    return 1;
  } finally {
    process.off('SIGINT', interrupt);
    closeKernelClient(client);
  }
}
