import { KeymasterServiceDefinition } from '../../gen/proto/axis/kernel/keymaster/v1/keymaster_service';
import { createKernelClient, type KernelClient } from './kernel-client';
import type { KernelClientOptions } from './kernel-client-options';

/** A typed client of `axis.kernel.keymaster.v1.KeymasterService`. */
export type KeymasterClient = KernelClient<KeymasterServiceDefinition>;

/**
 * A KeymasterService client. To share a channel with other kernel clients, pass `channel`, or use
 * `createKernelClients(options).create(KeymasterServiceDefinition)`.
 */
export function createKeymasterClient(options: KernelClientOptions = {}): KeymasterClient {
  return createKernelClient(KeymasterServiceDefinition, options);
}

export { KeymasterServiceDefinition };
