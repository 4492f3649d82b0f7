import { TrafficServiceDefinition } from '../../gen/proto/axis/kernel/traffic/v1/traffic_service';
import { createKernelClient, type KernelClient } from './kernel-client';
import type { KernelClientOptions } from './kernel-client-options';

/** A typed client of `axis.kernel.traffic.v1.TrafficService`. */
export type TrafficClient = KernelClient<TrafficServiceDefinition>;

/**
 * A TrafficService client (a tenant's traffic policy and usage). To share a channel with other
 * kernel clients, pass `channel`, or use `createKernelClients(options).create(TrafficServiceDefinition)`.
 */
export function createTrafficClient(options: KernelClientOptions = {}): TrafficClient {
  return createKernelClient(TrafficServiceDefinition, options);
}

export { TrafficServiceDefinition };
