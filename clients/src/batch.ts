import { BatchServiceDefinition } from '../../gen/proto/axis/kernel/batch/v1/batch_service';
import { createKernelClient, type KernelClient } from './kernel-client';
import type { KernelClientOptions } from './kernel-client-options';

/** A typed client of `axis.kernel.batch.v1.BatchService` (WatchBatch is an async iterable of progress). */
export type BatchClient = KernelClient<BatchServiceDefinition>;

/**
 * A BatchService client. To share a channel with other kernel clients, pass `channel`, or use
 * `createKernelClients(options).create(BatchServiceDefinition)`.
 */
export function createBatchClient(options: KernelClientOptions = {}): BatchClient {
  return createKernelClient(BatchServiceDefinition, options);
}

export { BatchServiceDefinition };
