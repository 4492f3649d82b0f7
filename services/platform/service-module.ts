import type { TsProtoServiceDefinition } from 'nice-grpc';
import type { AuditLog } from './audit/audit-log';
import type { KernelConfig } from './config';
import type { Database } from './database/database';
import type { Logger } from './observability/logger';
import type { Metrics } from './observability/metrics';

/** What one kernel node shares with the capabilities it serves. */
export interface KernelDependencies {
  readonly config: KernelConfig;
  readonly db: Database;
  readonly log: Logger;
  readonly metrics: Metrics;
  readonly audit: AuditLog;
}

/** One capability's gRPC service as the kernel registers it. */
export interface KernelServiceModule {
  /** The ts-proto generated definition (nice-grpc generic definitions). */
  readonly definition: TsProtoServiceDefinition;
  /** Its implementation (a `…ServiceImplementation<KernelCallContext>`). */
  readonly implementation: object;
  /** Method name → required scope, where `<capability>:read|write` is not right. */
  readonly scopes?: Record<string, string>;
  /** NO_SIDE_EFFECTS methods whose every call is still audited (see KernelMethod.auditedRead). */
  readonly auditedReads?: readonly string[];
}
