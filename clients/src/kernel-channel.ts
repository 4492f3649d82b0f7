import { ChannelCredentials, createChannel, type Channel } from 'nice-grpc';
import { KERNEL_CLIENT_DEFAULTS, type KernelClientOptions } from './kernel-client-options';

/**
 * A grpc-js channel to the kernel: `address` (default 127.0.0.1:50051) with
 * `channelCredentials` (default insecure). Share one channel between the clients of one
 * process; it multiplexes calls over one HTTP/2 connection.
 */
export function createKernelChannel(
  options: Pick<KernelClientOptions, 'address' | 'channelCredentials' | 'channelOptions'> = {},
): Channel {
  return createChannel(
    options.address ?? KERNEL_CLIENT_DEFAULTS.address,
    options.channelCredentials ?? ChannelCredentials.createInsecure(),
    options.channelOptions,
  );
}
