import { createClientFactory, type Channel, type Client, type CompatServiceDefinition } from 'nice-grpc';
import { createKernelChannel } from './kernel-channel';
import type { KernelCallOptionsExt, KernelClientOptions } from './kernel-client-options';
import { kernelMiddleware } from './kernel-middleware';

/** A typed nice-grpc client of one kernel service, accepting the kernel call options. */
export type KernelClient<Service extends CompatServiceDefinition> = Client<Service, KernelCallOptionsExt>;

/** Clients of any number of kernel services over one channel, with one configuration. */
export interface KernelClients {
  /** The channel every client of this set uses. */
  readonly channel: Channel;
  /** A typed client for `definition` (a ts-proto / nice-grpc service definition). */
  create<Service extends CompatServiceDefinition>(definition: Service): KernelClient<Service>;
  /** Closes the channel, unless it was passed in as `options.channel` (its owner closes it). */
  close(): void;
}

/**
 * Creates the client set: one channel (the given `channel`, or a new one to `address`) and the
 * kernel middleware (auth, tenant, trace, idempotency key, deadline, retry, rich errors).
 */
export function createKernelClients(options: KernelClientOptions = {}): KernelClients {
  const ownsChannel = options.channel === undefined;
  const channel = options.channel ?? createKernelChannel(options);
  const factory = createClientFactory().use(kernelMiddleware(options));
  return {
    channel,
    create: (definition) => factory.create(definition, channel),
    close: () => {
      if (ownsChannel) channel.close();
    },
  };
}

// Which clients own their channel; a WeakMap rather than a `close` property on the client,
// which could collide with an RPC named Close.
const ownedClientSets = new WeakMap<object, KernelClients>();

/**
 * Creates a typed client of one service. Without `options.channel` the client gets its own
 * channel: release it with {@link closeKernelClient}.
 */
export function createKernelClient<Service extends CompatServiceDefinition>(
  definition: Service,
  options: KernelClientOptions = {},
): KernelClient<Service> {
  const clients = createKernelClients(options);
  const client = clients.create(definition);
  ownedClientSets.set(client, clients);
  return client;
}

/** Closes the channel a {@link createKernelClient} client created; a shared channel is left open. */
export function closeKernelClient(client: object): void {
  ownedClientSets.get(client)?.close();
  ownedClientSets.delete(client);
}
