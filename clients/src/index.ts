/** The typed client package of the AXIS Kernel. */
export {
  KERNEL_ERROR_DOMAIN,
  KernelClientError,
  isKernelError,
  type FieldViolation,
  type KernelClientErrorInit,
  type PreconditionViolation,
  type QuotaViolation,
} from './kernel-client-error';
export {
  KERNEL_CLIENT_DEFAULTS,
  type KernelCallOptionsExt,
  type KernelClientOptions,
  type TokenSource,
} from './kernel-client-options';
export { createKernelChannel } from './kernel-channel';
export {
  closeKernelClient,
  createKernelClient,
  createKernelClients,
  type KernelClient,
  type KernelClients,
} from './kernel-client';
export { kernelMiddleware, kernelMiddlewareList } from './kernel-middleware';
export { composeKernelMiddleware } from './client-chain';
export type { KernelCallOptions, KernelMiddleware, KernelMiddlewareCall } from './middleware/kernel-middleware-type';
export { isRetryable, retryDelayMs, type BackoffPolicy } from './retry-policy';
export { REPLAYED_TRAILER, readResponseInfo, type KernelResponseInfo } from './response-trailer';
export { STATUS_DETAILS_TRAILER, TRACE_ID_TRAILER } from './to-kernel-client-error';
export { IDEMPOTENCY_KEY_HEADER } from './middleware/idempotency-key';
export { createSequenceClient, SequenceServiceDefinition, type SequenceClient } from './sequences';
export { createSchedulerClient, SchedulerServiceDefinition, type SchedulerClient } from './scheduler';
export { BatchServiceDefinition, createBatchClient, type BatchClient } from './batch';
export { createKeymasterClient, KeymasterServiceDefinition, type KeymasterClient } from './keymaster';
export { createSecretClient, SecretServiceDefinition, type SecretClient } from './secrets';
export { createTrafficClient, TrafficServiceDefinition, type TrafficClient } from './traffic';
