import { SequenceServiceDefinition } from '../../gen/proto/axis/kernel/sequences/v1/sequence_service';
import { createKernelClient, type KernelClient } from './kernel-client';
import type { KernelClientOptions } from './kernel-client-options';

/** A typed client of `axis.kernel.sequences.v1.SequenceService`. */
export type SequenceClient = KernelClient<SequenceServiceDefinition>;

/**
 * A SequenceService client. To share a channel with other kernel clients, pass `channel`, or use
 * `createKernelClients(options).create(SequenceServiceDefinition)`.
 */
export function createSequenceClient(options: KernelClientOptions = {}): SequenceClient {
  return createKernelClient(SequenceServiceDefinition, options);
}

export { SequenceServiceDefinition };
