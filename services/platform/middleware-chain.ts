import type { AuditLog } from './audit/audit-log';
import type { TokenVerifier } from './auth/token-verifier';
import type { KernelCallContext } from './call-context';
import type { Database } from './database/database';
import type { MethodRegistry } from './method-registry';
import type { MutationCommitter } from './unit-of-work/mutation-committer';
import { authenticationMiddleware } from './middleware/authentication';
import { errorMappingMiddleware } from './middleware/error-mapping';
import { idempotencyMiddleware } from './middleware/idempotency';
import { performanceBudgetMiddleware } from './middleware/performance-budget';
import { tenantMiddleware } from './middleware/tenant';
import { tracingMiddleware } from './middleware/tracing';
import { trafficMiddleware } from './middleware/traffic';
import type { TrafficGovernor } from './traffic/governor';
import { MiddlewareChain } from './middleware/typed-chain';
import { derivePageTokenKey, PageTokenCodec } from './page-token';
import { requestGuardMiddleware } from './request-guard';
import type { Logger } from './observability/logger';
import type { Metrics } from './observability/metrics';
import type { Telemetry } from './observability/telemetry';

export interface ChainDependencies {
  registry: MethodRegistry;
  db: Database;
  verifier: TokenVerifier;
  audit: AuditLog;
  log: Logger;
  metrics: Metrics;
  telemetry: Telemetry;
  budgetsMs: Record<string, number>;
  idempotencyRetentionHours: number;
  /** Keys request digests (audit entries, idempotency records), so they cannot be checked against guesses. */
  requestDigestKey: Buffer;
  committer: MutationCommitter;
  /** Traffic limits (docs/capabilities/traffic.md) (cached policies; Redis or this node). */
  governor: TrafficGovernor;
}

/**
 * The one ordered middleware chain every kernel service runs behind, outermost first.
 * Each one's types name the context it needs, and MiddlewareChain checks every `.use` against
 * what the middleware before it provide: a wrong order does not compile.
 *
 * 1. tracing — first, so every later step (and every error) has the trace id, and the
 *    `x-trace-id` trailer and the call's log line are written whatever happens below.
 * 2. error mapping — turns KernelError into google.rpc.Status (in the `grpc-status-details-bin`
 *    trailer) and masks everything else as INTERNAL; above auth so that authentication failures
 *    get the same envelope.
 * 3. authentication — nothing tenant- or data-related runs for an unauthenticated caller.
 * 4. tenant (+ scope) — needs the principal; fixes the one tenant the call runs in (and hands
 *    handlers the page-token codec, whose tokens are bound to the tenant).
 * 5. traffic governor — needs the tenant and the principal (every limit is keyed by them); before
 *    everything that costs: a call over its tenant's limits is refused RESOURCE_EXHAUSTED
 *    (RetryInfo, QuotaFailure) without a database round trip, an idempotency record or a pooled
 *    connection, so a noisy tenant cannot slow a quiet one down (its policy is cached in process).
 * 6. request guard — what the wrapped decode refused (oversized, undecodable, invalid UTF-8,
 *    Timestamp/Duration out of range), U+0000 in strings and keys and non-finite numbers are
 *    refused before anything (the idempotency hash included) reads the request; after auth, so
 *    an anonymous caller learns nothing about its request.
 * 7. idempotency / unit of work — needs the tenant: hands the call to the group committer,
 *    whose tenant transaction holds the replay record, the change and its audit entry.
 * 8. performance budget — innermost, so it measures up to the handler's end without counting
 *    calls refused earlier.
 */
export function kernelMiddlewareChain(deps: ChainDependencies): MiddlewareChain<KernelCallContext> {
  // One codec for every call; its key is derived from the request-digest key (nothing stored).
  const pageTokens = new PageTokenCodec(derivePageTokenKey(deps.requestDigestKey));
  return MiddlewareChain.start()
    .use(tracingMiddleware(deps))
    .use(errorMappingMiddleware(deps))
    .use(authenticationMiddleware(deps))
    .use(tenantMiddleware({ audit: deps.audit, pageTokens }))
    .use(trafficMiddleware({ governor: deps.governor }))
    .use(requestGuardMiddleware())
    .use(idempotencyMiddleware({ db: deps.db, committer: deps.committer, retentionHours: deps.idempotencyRetentionHours, audit: deps.audit, digestKey: deps.requestDigestKey, metrics: deps.metrics }))
    .use(performanceBudgetMiddleware(deps));
}
