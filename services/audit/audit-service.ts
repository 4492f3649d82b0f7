import { createHash } from 'node:crypto';
import { Status } from 'nice-grpc-common';
import { z } from 'zod';
import { AuditOutcome, ProblemKind, type AuditEvent, type Checkpoint, type RetentionPolicy } from '../../gen/proto/axis/kernel/audit/v1/audit';
import type { AuditServiceImplementation, ExportLogResponse } from '../../gen/proto/axis/kernel/audit/v1/audit_service';
import type { KernelCallContext } from '../platform/call-context';
import type { TenantTransaction } from '../platform/database/database';
import { failedPrecondition, invalidArgument, KernelError, notFound } from '../platform/kernel-error';
import { paginate } from '../platform/page-token';
import { protoEnum } from '../platform/proto-enum';
import { parseRequest } from '../platform/request-validation';
import {
  findCheckpoint,
  findEvent,
  listCheckpoints,
  listLog,
  purgedThrough,
  readLog,
  type CheckpointRecord,
  type EventFilter,
  type StoredEntry,
} from './audit-store';
import type { AuditSigner } from './audit-key';
import { leafText } from './log-entry';
import { LogVerifier, verifiableCheckpoint, type ProblemKind as ProblemKindName } from './log-verifier';
import { consistencyRanges, inclusionRanges, MissingNodeError, rangeHashes } from './merkle';
import { logOrigin, parseVerifierKey, type NoteVerifier } from './signed-note';
import { logHead, storedFrontier, storedNodes } from './tree-store';

export interface AuditServiceOptions {
  /** The shortest retention a tenant may set (seconds). */
  minRetentionSeconds: number;
  /** The tenants' audit keys (their verifier keys are served with checkpoints and proofs). */
  signer: AuditSigner;
}

export const EXPORT_FORMAT = 'axis-audit-export/1';
const MAX_EVENTS_PER_CALL = 500;
const MAX_DETAIL_BYTES = 16 * 1024;
/** Entries read per transaction by VerifyLog and ExportLog. */
const PAGE = 2000;

const auditOutcomes = protoEnum<'OK' | 'DENIED' | 'FAILED', AuditOutcome>({
  OK: AuditOutcome.AUDIT_OUTCOME_OK,
  DENIED: AuditOutcome.AUDIT_OUTCOME_DENIED,
  FAILED: AuditOutcome.AUDIT_OUTCOME_FAILED,
});
const problemKinds = protoEnum<ProblemKindName, ProblemKind>({
  PAYLOAD_CHANGED: ProblemKind.PROBLEM_KIND_PAYLOAD_CHANGED,
  ENTRY_MISSING: ProblemKind.PROBLEM_KIND_ENTRY_MISSING,
  ORDER_CHANGED: ProblemKind.PROBLEM_KIND_ORDER_CHANGED,
  CHAIN_BROKEN: ProblemKind.PROBLEM_KIND_CHAIN_BROKEN,
  CHECKPOINT_MISMATCH: ProblemKind.PROBLEM_KIND_CHECKPOINT_MISMATCH,
  CHECKPOINT_INVALID: ProblemKind.PROBLEM_KIND_CHECKPOINT_INVALID,
});
/** A stored outcome as the proto enum (UNSPECIFIED for a name this kernel does not know). */
const outcomeValue = (outcome: string): AuditOutcome =>
  (auditOutcomes.names as readonly string[]).includes(outcome) ? auditOutcomes.toProto(outcome as 'OK') : AuditOutcome.AUDIT_OUTCOME_UNSPECIFIED;

/** RFC 6962 §2.1: the hash of the empty tree, SHA-256 of the empty string. */
export const EMPTY_TREE_ROOT = createHash('sha256').digest();

const reason = (r: string) => ({ params: { reason: r } });
// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001f\u007f]/;

const eventInput = z.object({
  action: z
    .string()
    .refine((a) => /^[A-Za-z0-9._:/-]{1,200}$/.test(a), { message: 'must be 1–200 characters of [A-Za-z0-9._:/-]', ...reason('ACTION_INVALID') })
    .refine((a) => !a.startsWith('axis.kernel.') && !a.startsWith('kernel.'), { message: 'actions under axis.kernel. and kernel. are the kernel\'s', ...reason('ACTION_RESERVED') }),
  resource: z.string().refine((r) => r.length <= 500 && !CONTROL.test(r), { message: 'at most 500 characters, no control characters', ...reason('RESOURCE_INVALID') }),
  // UNSPECIFIED means OK.
  outcome: auditOutcomes.filter('ENUM_INVALID'),
  detail: z
    .record(z.string(), z.unknown())
    .optional()
    .refine((d) => Buffer.byteLength(JSON.stringify(d ?? {})) <= MAX_DETAIL_BYTES, { message: `at most ${MAX_DETAIL_BYTES} bytes as JSON`, ...reason('DETAIL_TOO_LARGE') }),
});
const appendSchema = z.object({
  events: z
    .array(z.unknown())
    .refine((a) => a.length > 0, { message: 'at least one event', ...reason('EVENTS_REQUIRED') })
    .refine((a) => a.length <= MAX_EVENTS_PER_CALL, { message: `at most ${MAX_EVENTS_PER_CALL} events per call`, ...reason('TOO_MANY_EVENTS') })
    .pipe(z.array(eventInput)),
});

/** An integer ≥ min, refused with `why` (refine carries the reason; min() does not). */
const atLeast = (min: number, why: string) => z.number().int().refine((n) => n >= min, { message: `must be ≥ ${min}`, ...reason(why) });
const treeSize = atLeast(1, 'TREE_SIZE_INVALID');
const inclusionSchema = z
  .object({ leafIndex: atLeast(0, 'LEAF_INDEX_INVALID'), treeSize })
  .refine((r) => r.leafIndex < r.treeSize, { path: ['leafIndex'], message: 'must be below tree_size', ...reason('LEAF_INDEX_INVALID') });
const consistencySchema = z
  .object({ firstSize: treeSize, secondSize: treeSize })
  .refine((r) => r.firstSize <= r.secondSize, { path: ['firstSize'], message: 'must not exceed second_size', ...reason('TREE_SIZE_INVALID') });
const checkpointSchema = z.object({ treeSize: treeSize.optional() });
const eventSchema = z.object({
  selector: z.discriminatedUnion('$case', [
    z.object({ $case: z.literal('seq'), value: z.number().int().min(1, 'must be ≥ 1') }),
    z.object({ $case: z.literal('eventId'), value: z.string().regex(/^[1-9][0-9]{0,18}$/, 'must be an event id (digits)') }),
  ]),
});
const listSchema = z.object({
  fromSeq: z.number().int().min(0, 'must be ≥ 0'),
  action: z.string().max(201, 'at most 200 characters'),
  principal: z.string().max(500),
  resourcePrefix: z.string().max(500),
  traceId: z.string().max(64),
  outcome: auditOutcomes.filter(),
  pageSize: z.number(),
  pageToken: z.string(),
});
const exportSchema = z
  .object({ fromSeq: z.number().int().min(0, 'must be ≥ 0'), toSize: z.number().int().min(0, 'must be ≥ 0') })
  .refine((r) => r.toSize === 0 || Math.max(1, r.fromSeq) <= r.toSize + 1, { path: ['fromSeq'], message: 'must not be beyond to_size + 1' });
/** Longest retention a policy may name (100 years): beyond it, "keep forever" is the honest setting. */
const MAX_RETENTION_SECONDS = 100 * 366 * 86_400;
const retentionSchema = z.object({
  retention: z
    .object({ seconds: z.number().int().max(MAX_RETENTION_SECONDS, 'at most 100 years; leave retention unset to keep forever'), nanos: z.number().int() })
    .optional(),
});
const legalHoldSchema = z
  .object({ hold: z.boolean(), reason: z.string().max(500, 'at most 500 characters') })
  .refine((r) => !r.hold || r.reason.trim() !== '', { path: ['reason'], message: 'placing a legal hold needs a reason', ...reason('REASON_REQUIRED') });
const purgeSchema = z.object({ maxEntries: z.number().int().min(0).max(100_000, 'at most 100,000') });

function eventMessage(stored: StoredEntry, purged: boolean): AuditEvent {
  const e = stored.entry;
  return {
    seq: stored.seq,
    leafIndex: stored.seq - 1,
    eventId: stored.eventId ?? '',
    eventTime: e ? new Date(e.time) : undefined,
    principal: e?.principal ?? '',
    action: e?.action ?? '',
    resource: e?.resource ?? '',
    outcome: e ? outcomeValue(e.outcome) : AuditOutcome.AUDIT_OUTCOME_UNSPECIFIED,
    traceId: e?.traceId ?? '',
    idempotencyKey: e?.idempotencyKey ?? '',
    requestDigest: e?.requestDigest ?? '',
    detail: (e?.detail as Record<string, unknown>) ?? undefined,
    leafData: e && stored.seq > 0 ? leafText(e) : '',
    leafHash: stored.seq > 0 ? stored.leafHash : Buffer.alloc(0),
    chainHash: stored.seq > 0 ? stored.chainHash : Buffer.alloc(0),
    purged,
  };
}

function checkpointMessage(tenantId: string, c: CheckpointRecord, verifierKey: string): Checkpoint {
  return {
    treeSize: c.treeSize,
    rootHash: c.rootHash,
    chainHash: c.chainHash,
    createTime: c.time,
    keyVersion: c.keyVersion,
    note: c.note,
    verifierKey,
    origin: logOrigin(tenantId),
  };
}

function policyMessage(row: { retention_seconds: string | null; legal_hold: boolean; legal_hold_reason: string; update_time: Date } | undefined): RetentionPolicy {
  return {
    retention: row?.retention_seconds ? { seconds: Number(row.retention_seconds), nanos: 0 } : undefined,
    legalHold: row?.legal_hold ?? false,
    legalHoldReason: row?.legal_hold_reason ?? '',
    updateTime: row?.update_time,
  };
}

const POLICY_SELECT = 'SELECT retention_seconds::text, legal_hold, legal_hold_reason, update_time FROM kernel_audit_policy WHERE tenant_id = $1';

/** The log's size, and the refusal of a size beyond it. */
async function requireSize(tx: TenantTransaction, size: number): Promise<number> {
  const head = await logHead(tx);
  if (size > head.size) {
    throw new KernelError(Status.OUT_OF_RANGE, 'TREE_SIZE_BEYOND_LOG', `the log holds ${head.size} entries; tree size ${size} does not exist (yet)`, {
      metadata: { log_size: String(head.size) },
    });
  }
  return head.size;
}

/** A missing stored node is DATA_LOSS: the tree tables were altered. */
async function orDataLoss<T>(read: Promise<T>): Promise<T> {
  try {
    return await read;
  } catch (error) {
    if (error instanceof MissingNodeError) {
      throw new KernelError(Status.DATA_LOSS, 'TREE_NODE_MISSING', `the stored Merkle tree lacks node ${error.node.level}/${error.node.index}; run VerifyLog`);
    }
    throw error;
  }
}

/** Stored node hashes for proofs. */
const proofHashes = (tx: TenantTransaction, ranges: ReturnType<typeof inclusionRanges>) => orDataLoss(rangeHashes(ranges, storedNodes(tx)));

/**
 * Walks the log from `fromSeq` through `toSize` in pages (one read-only transaction each; the
 * log only grows, so pages agree), yielding entries in seq order with each stored checkpoint
 * right after the entry at its size; checkpoints beyond the stored entries come last.
 */
async function* walkLog(ctx: KernelCallContext, fromSeq: number, toSize: number): AsyncGenerator<{ entry: StoredEntry } | { checkpoint: CheckpointRecord }> {
  const tenantId = ctx.tenantId;
  let after = fromSeq - 1;
  for (;;) {
    const { entries, checkpoints } = await ctx.unitOfWork.run(async (tx) => {
      const page = await readLog(tx, after, PAGE, toSize);
      const through = page.length < PAGE ? toSize : page[page.length - 1].seq;
      return { entries: page, checkpoints: await listCheckpoints(tx, after, through) };
    });
    let c = 0;
    for (const entry of entries) {
      yield { entry };
      while (c < checkpoints.length && checkpoints[c].treeSize <= entry.seq) yield { checkpoint: checkpoints[c++] };
    }
    while (c < checkpoints.length) yield { checkpoint: checkpoints[c++] };
    if (entries.length < PAGE) return;
    after = entries[entries.length - 1].seq;
    if (ctx.signal.aborted) return;
  }
}

export function auditService(options: AuditServiceOptions): AuditServiceImplementation<KernelCallContext> {
  const verifiersOf = async (tx: TenantTransaction): Promise<{ keys: Map<number, string>; verifiers: NoteVerifier[] }> => {
    const keys = await options.signer.verifierKeys(tx);
    return { keys, verifiers: [...keys.values()].map(parseVerifierKey) };
  };

  return {
    async appendEvents(request, ctx) {
      const input = parseRequest(appendSchema, request);
      const eventIds = await ctx.unitOfWork.recordAuditEvents(
        input.events.map((e) => ({
          action: e.action,
          resource: e.resource,
          outcome: e.outcome ?? 'OK',
          detail: e.detail ?? {},
        })),
      );
      return { eventIds };
    },

    async getEvent(request, ctx) {
      if (!request.selector) throw invalidArgument('SELECTOR_REQUIRED', 'seq or event_id is required', [{ field: 'selector', description: 'seq or event_id' }]);
      const input = parseRequest(eventSchema, request);
      const found = await ctx.unitOfWork.run(async (tx) => {
        if (input.selector.$case === 'eventId') {
          const stored = await findEvent(tx, input.selector.value);
          return stored && { stored, purged: false };
        }
        const [stored] = await readLog(tx, input.selector.value - 1, 1, input.selector.value);
        if (!stored) return undefined;
        if (stored.entry) return { stored, purged: false };
        if (stored.seq <= (await purgedThrough(tx))) return { stored, purged: true };
        throw new KernelError(Status.DATA_LOSS, 'ENTRY_MISSING', `the entry at seq ${stored.seq} is gone and no retention purge covers it; run VerifyLog`);
      });
      if (!found) throw notFound('EVENT_NOT_FOUND', 'no such entry in this tenant\'s log');
      return { event: eventMessage(found.stored, found.purged) };
    },

    async listEvents(request, ctx) {
      const input = parseRequest(listSchema, request);
      const filter: EventFilter = {
        fromSeq: Math.max(1, input.fromSeq),
        action: input.action === '' ? undefined : input.action.endsWith('*') ? { prefix: input.action.slice(0, -1) } : { exact: input.action },
        principal: input.principal || undefined,
        resourcePrefix: input.resourcePrefix || undefined,
        traceId: input.traceId || undefined,
        outcome: input.outcome,
      };
      const { items, nextPageToken } = await paginate(ctx, request, {
        position: z.number().int().min(0),
        fetch: (after, limit) =>
          ctx.unitOfWork.run(async (tx) => {
            const rows = await listLog(tx, filter, after ?? 0, limit);
            const purged = rows.some((r) => !r.entry) ? await purgedThrough(tx) : 0;
            return rows.map((stored) => ({ stored, purged: !stored.entry && stored.seq <= purged }));
          }),
        positionOf: (item) => item.stored.seq,
        maxSize: 500,
      });
      return { events: items.map((item) => eventMessage(item.stored, item.purged)), nextPageToken };
    },

    async getCheckpoint(request, ctx) {
      const input = parseRequest(checkpointSchema, request);
      const result = await ctx.unitOfWork.run(async (tx) => {
        const found = await findCheckpoint(tx, input.treeSize);
        return found && { found, keys: await options.signer.verifierKeys(tx) };
      });
      if (result) return { checkpoint: checkpointMessage(ctx.tenantId, result.found, result.keys.get(result.found.keyVersion) ?? '') };
      if (input.treeSize !== undefined) throw notFound('CHECKPOINT_NOT_FOUND', `no checkpoint at tree size ${input.treeSize}`);
      // No signed checkpoint yet (an empty log, or entries not integrated yet): the size-0
      // checkpoint, which every log extends. Unsigned: there is nothing to sign (see Checkpoint).
      return {
        checkpoint: {
          treeSize: 0,
          rootHash: EMPTY_TREE_ROOT,
          chainHash: Buffer.alloc(32),
          createTime: undefined,
          keyVersion: 0,
          note: '',
          verifierKey: '',
          origin: logOrigin(ctx.tenantId),
        },
      };
    },

    async getInclusionProof(request, ctx) {
      const input = parseRequest(inclusionSchema, request);
      return ctx.unitOfWork.run(async (tx) => {
        await requireSize(tx, input.treeSize);
        const hashes = await proofHashes(tx, [[input.leafIndex, input.leafIndex + 1], ...inclusionRanges(input.leafIndex, 0, input.treeSize)]);
        const checkpoint = await findCheckpoint(tx, input.treeSize);
        const keys = checkpoint ? await options.signer.verifierKeys(tx) : new Map<number, string>();
        return {
          inclusionProof: { leafIndex: input.leafIndex, treeSize: input.treeSize, leafHash: hashes[0], hashes: hashes.slice(1) },
          checkpoint: checkpoint && checkpointMessage(tx.tenantId, checkpoint, keys.get(checkpoint.keyVersion) ?? ''),
        };
      });
    },

    async getConsistencyProof(request, ctx) {
      const input = parseRequest(consistencySchema, request);
      return ctx.unitOfWork.run(async (tx) => {
        await requireSize(tx, input.secondSize);
        const hashes = await proofHashes(tx, consistencyRanges(input.firstSize, 0, input.secondSize));
        return { consistencyProof: { firstSize: input.firstSize, secondSize: input.secondSize, hashes } };
      });
    },

    async verifyLog(request, ctx) {
      const origin = logOrigin(ctx.tenantId);
      const { verifiers, purged } = await ctx.unitOfWork.run(async (tx) => ({ ...(await verifiersOf(tx)), purged: await purgedThrough(tx) }));
      let trusted: { size: number; root: Buffer } | undefined;
      if (request.trustedCheckpoint !== '') {
        const checked = verifiableCheckpoint(request.trustedCheckpoint, verifiers, origin);
        if (checked.invalid) {
          throw invalidArgument('CHECKPOINT_INVALID', `trusted_checkpoint: ${checked.invalid}`, [{ field: 'trusted_checkpoint', description: checked.invalid }]);
        }
        trusted = checked;
      }
      const verifier = new LogVerifier();
      const feedTrusted = (upTo: number) => {
        if (trusted && trusted.size <= upTo) {
          verifier.addCheckpoint(trusted);
          trusted = undefined;
        }
      };
      for await (const item of walkLog(ctx, 1, Number.MAX_SAFE_INTEGER)) {
        if ('entry' in item) {
          const s = item.entry;
          verifier.addEntry({
            seq: s.seq,
            data: s.entry ? Buffer.from(leafText(s.entry), 'utf8') : null,
            purged: !s.entry && s.seq <= purged,
            storedLeaf: s.leafHash,
            storedChain: s.chainHash,
          });
          feedTrusted(s.seq);
        } else {
          const c = item.checkpoint;
          verifier.addCheckpoint(verifiableCheckpoint(c.note, verifiers, origin, { size: c.treeSize, root: c.rootHash }));
        }
        if (verifier.failed) break;
      }
      feedTrusted(Number.MAX_SAFE_INTEGER);
      const result = verifier.finish();
      return {
        ok: result.ok,
        verifiedSize: result.entries,
        purgedEntries: result.purged,
        checkpointsVerified: result.checkpoints,
        rootHash: result.root,
        problem: result.problem && { seq: result.problem.seq, kind: problemKinds.toProto(result.problem.kind), detail: result.problem.detail },
      };
    },

    async *exportLog(request, ctx) {
      const input = parseRequest(exportSchema, request);
      const tenantId = ctx.tenantId;
      const fromSeq = Math.max(1, input.fromSeq);
      const header = await ctx.unitOfWork.run(async (tx) => {
        const latest = await findCheckpoint(tx);
        const toSize = input.toSize === 0 ? (latest?.treeSize ?? 0) : input.toSize;
        await requireSize(tx, toSize);
        const startSize = Math.min(fromSeq - 1, toSize);
        const [before] = startSize > 0 ? await readLog(tx, startSize - 1, 1, startSize) : [];
        const { keys } = await verifiersOf(tx);
        return {
          format: EXPORT_FORMAT,
          tenantId,
          origin: logOrigin(tenantId),
          startSize,
          startFrontier: await orDataLoss(storedFrontier(tx, startSize)),
          startChainHash: before?.chainHash ?? Buffer.alloc(32),
          endSize: toSize,
          purgedThroughSeq: await purgedThrough(tx),
          verifierKeys: [...keys.values()],
          keys,
        };
      });
      const { keys: keyOf, ...headerRecord } = header;
      yield { record: { $case: 'header', value: headerRecord } } satisfies ExportLogResponse;
      if (header.endSize === 0) return;
      let previous: number | undefined;
      for await (const item of walkLog(ctx, header.startSize + 1, header.endSize)) {
        if ('entry' in item) {
          const s = item.entry;
          yield {
            record: {
              $case: 'entry',
              value: { seq: s.seq, leafData: s.entry ? leafText(s.entry) : '', leafHash: s.leafHash, chainHash: s.chainHash, purged: !s.entry && s.seq <= header.purgedThroughSeq },
            },
          } satisfies ExportLogResponse;
          continue;
        }
        const c = item.checkpoint;
        yield { record: { $case: 'checkpoint', value: checkpointMessage(tenantId, c, keyOf.get(c.keyVersion) ?? '') } } satisfies ExportLogResponse;
        if (previous !== undefined) {
          const from = previous;
          const hashes = await ctx.unitOfWork.run((tx) => proofHashes(tx, consistencyRanges(from, 0, c.treeSize)));
          yield { record: { $case: 'consistency', value: { firstSize: from, secondSize: c.treeSize, hashes } } } satisfies ExportLogResponse;
        }
        previous = c.treeSize;
      }
    },

    async getRetentionPolicy(_request, ctx) {
      const [row] = await ctx.unitOfWork.run((tx) => tx.query<Parameters<typeof policyMessage>[0] & object>(POLICY_SELECT, [tx.tenantId]));
      return { policy: policyMessage(row) };
    },

    async setRetentionPolicy(request, ctx) {
      const input = parseRequest(retentionSchema, request);
      const seconds = input.retention ? input.retention.seconds + (input.retention.nanos > 0 ? 1 : 0) : null;
      if (seconds !== null && seconds < options.minRetentionSeconds) {
        throw invalidArgument('RETENTION_TOO_SHORT', `retention must be at least ${options.minRetentionSeconds} s`, [{ field: 'retention', description: `≥ ${options.minRetentionSeconds} s` }], {
          minimum_seconds: String(options.minRetentionSeconds),
        });
      }
      const [row] = await ctx.unitOfWork.run((tx) =>
        tx.query<Parameters<typeof policyMessage>[0] & object>(
          `INSERT INTO kernel_audit_policy AS p (tenant_id, retention_seconds) VALUES ($1, $2)
           ON CONFLICT (tenant_id) DO UPDATE SET retention_seconds = excluded.retention_seconds, update_time = now()
           RETURNING retention_seconds::text, legal_hold, legal_hold_reason, update_time`,
          [tx.tenantId, seconds],
        ),
      );
      ctx.unitOfWork.describeChange('retention-policy', { retention_seconds: seconds });
      return { policy: policyMessage(row) };
    },

    async setLegalHold(request, ctx) {
      const input = parseRequest(legalHoldSchema, request);
      const [row] = await ctx.unitOfWork.run((tx) =>
        tx.query<Parameters<typeof policyMessage>[0] & object>(
          `INSERT INTO kernel_audit_policy AS p (tenant_id, legal_hold, legal_hold_reason) VALUES ($1, $2, $3)
           ON CONFLICT (tenant_id) DO UPDATE SET legal_hold = excluded.legal_hold, legal_hold_reason = excluded.legal_hold_reason, update_time = now()
           RETURNING retention_seconds::text, legal_hold, legal_hold_reason, update_time`,
          [tx.tenantId, input.hold, input.hold ? input.reason.trim() : ''],
        ),
      );
      ctx.unitOfWork.describeChange('retention-policy', { legal_hold: input.hold, legal_hold_reason: input.hold ? input.reason.trim() : '' });
      return { policy: policyMessage(row) };
    },

    async purgeExpired(request, ctx) {
      const input = parseRequest(purgeSchema, request);
      const result = await ctx.unitOfWork.run(async (tx) => {
        const [policy] = await tx.query<{ retention_seconds: string | null; legal_hold: boolean }>(POLICY_SELECT, [tx.tenantId]);
        if (policy?.legal_hold) throw failedPrecondition('LEGAL_HOLD_ACTIVE', 'the log is under legal hold: nothing is purged', { resource: 'retention-policy' });
        if (!policy?.retention_seconds) throw failedPrecondition('NO_RETENTION_POLICY', 'the tenant keeps its log forever (no retention policy)', { resource: 'retention-policy' });
        return purge(tx, input.maxEntries || 10_000);
      });
      ctx.unitOfWork.describeChange('log', { purged: result.purged, through_seq: result.throughSeq });
      return { purgedEntries: result.purged, purgedThroughSeq: result.purgedThrough };
    },
  };
}

/** Purges (as the retention role, under the policy) in the caller's transaction; the caller records it. */
export async function purge(tx: TenantTransaction, maxEntries: number): Promise<{ purged: number; throughSeq: number; purgedThrough: number }> {
  const before = await purgedThrough(tx);
  const [row] = await tx.query<{ purged: string; through_seq: string }>('SELECT purged::text, through_seq::text FROM kernel_audit_purge($1)', [maxEntries]);
  const throughSeq = Number(row.through_seq);
  return { purged: Number(row.purged), throughSeq, purgedThrough: Math.max(before, throughSeq) };
}
