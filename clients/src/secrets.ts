import { SecretServiceDefinition } from '../../gen/proto/axis/kernel/secrets/v1/secret_service';
import { createKernelClient, type KernelClient } from './kernel-client';
import type { KernelClientOptions } from './kernel-client-options';

/** A typed client of `axis.kernel.secrets.v1.SecretService`. */
export type SecretClient = KernelClient<SecretServiceDefinition>;

/**
 * A SecretService client. To share a channel with other kernel clients, pass `channel`, or use
 * `createKernelClients(options).create(SecretServiceDefinition)`. AccessSecretVersion needs a
 * token with the `secrets:access` scope.
 */
export function createSecretClient(options: KernelClientOptions = {}): SecretClient {
  return createKernelClient(SecretServiceDefinition, options);
}

export { SecretServiceDefinition };
