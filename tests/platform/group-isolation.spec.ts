import { randomUUID } from 'node:crypto';
import * as fc from 'fast-check';
import { Status } from 'nice-grpc-common';
import { Client } from 'pg';
import {
  closeKernelClient,
  createKeymasterClient,
  createSchedulerClient,
  createSecretClient,
  createSequenceClient,
  isKernelError,
  type KeymasterClient,
  type SchedulerClient,
  type SecretClient,
  type SequenceClient,
} from '../../clients/src';
import { Algorithm, KeyVersionState } from '../../gen/proto/axis/kernel/keymaster/v1/key';
import { OverlapPolicy, TickOutcome } from '../../gen/proto/axis/kernel/scheduler/v1/job';
import { SecretKind, SecretLabel, SecretVersionState } from '../../gen/proto/axis/kernel/secrets/v1/secret';
import { NumberStatus, ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { createBackendDatabase, startTestKernel, TEST_BACKEND, type TestBackendDatabase, type TestKernel } from '../support/test-kernel';

/**
 * The outcome of a commit group is the outcome of its calls executed one after another — on one
 * node (calls sharing one group transaction) and on two nodes (groups racing each other).
 *
 * Each round creates fresh resources, then sends a random multiset of CONFLICTING calls at once
 * (commit/void of one reservation; promote/destroy/disable of one secret version; disable,
 * enable, sign, rotate and policy changes of one key; triggers and pauses of one schedule).
 * To put them into one group, a filler call is sent first and held in its group by a row lock the
 * test holds until every call has arrived. The answers and the final state must then equal a
 * sequential execution of the calls in SOME order (serializability), checked against a model of
 * each capability; each successful call must have left exactly one audit entry.
 */
const ROUNDS = Number(process.env.ISOLATION_ROUNDS ?? 8);
const TENANT = 'iso';

type Outcome = string; // 'OK …' or '<STATUS> <REASON>'

interface OpKind<State> {
  name: string;
  /** Sends the call; answers its outcome. */
  send(client: Clients, round: Round): Promise<Outcome>;
  /** The sequential model: the outcome this call has in `state`, and the state after it. */
  model(state: State): { outcome: Outcome; next: State };
  /** The audit entry a successful call leaves (action suffix, resource). */
  audit(round: Round): { action: string; resource: string };
}

interface Family<State> {
  name: string;
  ops: Array<OpKind<State>>;
  setup(client: Clients, round: Round): Promise<void>;
  initial: State;
  final(client: Clients, round: Round): Promise<State>;
}

interface Clients {
  sequences: SequenceClient;
  secrets: SecretClient;
  keymaster: KeymasterClient;
  scheduler: SchedulerClient;
}

interface Round {
  id: string;
  /** Filled by setup. */
  value?: number;
  period?: string;
}

const ok = (detail = '') => (detail ? `OK ${detail}` : 'OK');
const outcomeOf = async (call: Promise<unknown>, detail?: (r: never) => string): Promise<Outcome> => {
  try {
    const response = await call;
    return ok(detail ? detail(response as never) : '');
  } catch (error) {
    if (isKernelError(error)) return `${Status[error.code]} ${error.reason}`;
    throw error;
  }
};

// --- sequences (docs/capabilities/sequences.md): one reservation, committed twice and voided -------------------------------------
type Reservation = { status: 'RESERVED' | 'ISSUED' | 'VOIDED'; subject: string };
const commitOp = (subject: string): OpKind<Reservation> => ({
  name: `commit(${subject})`,
  send: (c, r) => outcomeOf(c.sequences.commitReservation({ seriesId: r.id, period: r.period!, value: r.value!, subjectRef: subject })),
  model: (s) => (s.status === 'RESERVED' ? { outcome: ok(), next: { status: 'ISSUED', subject } } : { outcome: 'FAILED_PRECONDITION NUMBER_NOT_RESERVED', next: s }),
  audit: (r) => ({ action: 'CommitReservation', resource: `series/${r.id}/periods/-/numbers/${r.value}` }),
});
const reservationFamily: Family<Reservation> = {
  name: 'reservation',
  ops: [
    commitOp('a'),
    commitOp('b'),
    {
      name: 'void',
      send: (c, r) => outcomeOf(c.sequences.voidNumber({ seriesId: r.id, period: r.period!, value: r.value!, reason: 'test' })),
      model: (s) => (s.status === 'VOIDED' ? { outcome: 'FAILED_PRECONDITION NUMBER_ALREADY_VOIDED', next: s } : { outcome: ok(), next: { ...s, status: 'VOIDED' } }),
      audit: (r) => ({ action: 'VoidNumber', resource: `series/${r.id}/periods/-/numbers/${r.value}` }),
    },
  ],
  async setup(c, r) {
    await c.sequences.createSeries({ series: { seriesId: r.id, pattern: 'R{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    const { number } = await c.sequences.reserveNumber({ seriesId: r.id, subjectRef: 'reserved', ttl: { seconds: 3600, nanos: 0 } });
    r.value = number!.value;
    r.period = number!.period;
  },
  initial: { status: 'RESERVED', subject: 'reserved' },
  async final(c, r) {
    const { numbers } = await c.sequences.listNumbers({ seriesId: r.id });
    const n = numbers.find((x) => x.value === r.value)!;
    const status = ({ [NumberStatus.NUMBER_STATUS_RESERVED]: 'RESERVED', [NumberStatus.NUMBER_STATUS_ISSUED]: 'ISSUED', [NumberStatus.NUMBER_STATUS_VOIDED]: 'VOIDED' } as Record<number, Reservation['status']>)[n.status];
    return { status, subject: n.subjectRef };
  },
};

// --- secrets (docs/capabilities/secrets.md): one PENDING version, promoted, destroyed and disabled ---------------------------
type Rotation = { current: number; previous: number; pending: number; v2: 'ENABLED' | 'DISABLED' | 'DESTROYED' };
const dropLabels = (s: Rotation): Rotation => ({ ...s, previous: s.previous === 2 ? 0 : s.previous, pending: s.pending === 2 ? 0 : s.pending });
const rotationFamily: Family<Rotation> = {
  name: 'secret rotation',
  ops: [
    {
      name: 'promote',
      send: (c, r) => outcomeOf(c.secrets.promoteVersion({ secretId: r.id, version: 2 })),
      model: (s) => {
        if (s.v2 === 'DESTROYED') return { outcome: 'FAILED_PRECONDITION VERSION_DESTROYED', next: s };
        if (s.v2 === 'DISABLED') return { outcome: 'FAILED_PRECONDITION VERSION_DISABLED', next: s };
        if (s.current === 2) return { outcome: 'FAILED_PRECONDITION VERSION_ALREADY_CURRENT', next: s };
        return { outcome: ok(), next: { ...s, previous: s.current, current: 2, pending: 0 } };
      },
      audit: (r) => ({ action: 'PromoteVersion', resource: `secrets/${r.id}/versions/2` }),
    },
    {
      name: 'destroy',
      send: (c, r) => outcomeOf(c.secrets.destroySecretVersion({ secretId: r.id, version: 2 })),
      model: (s) => {
        if (s.v2 === 'DESTROYED') return { outcome: 'FAILED_PRECONDITION VERSION_DESTROYED', next: s };
        if (s.current === 2) return { outcome: 'FAILED_PRECONDITION VERSION_IS_CURRENT', next: s };
        return { outcome: ok(), next: { ...dropLabels(s), v2: 'DESTROYED' } };
      },
      audit: (r) => ({ action: 'DestroySecretVersion', resource: `secrets/${r.id}/versions/2` }),
    },
    {
      name: 'disable',
      send: (c, r) => outcomeOf(c.secrets.disableSecretVersion({ secretId: r.id, version: 2 })),
      model: (s) => {
        if (s.v2 === 'DESTROYED') return { outcome: 'FAILED_PRECONDITION VERSION_DESTROYED', next: s };
        if (s.current === 2) return { outcome: 'FAILED_PRECONDITION VERSION_IS_CURRENT', next: s };
        if (s.v2 === 'DISABLED') return { outcome: 'FAILED_PRECONDITION VERSION_ALREADY_DISABLED', next: s };
        return { outcome: ok(), next: { ...dropLabels(s), v2: 'DISABLED' } };
      },
      audit: (r) => ({ action: 'DisableSecretVersion', resource: `secrets/${r.id}/versions/2` }),
    },
  ],
  async setup(c, r) {
    await c.secrets.createSecret({ secret: { secretId: r.id, kind: SecretKind.SECRET_KIND_OPAQUE } });
    await c.secrets.addSecretVersion({ secretId: r.id, value: Buffer.from('one') });
    await c.secrets.startRotation({ secretId: r.id, value: Buffer.from('two') });
  },
  initial: { current: 1, previous: 0, pending: 2, v2: 'ENABLED' },
  async final(c, r) {
    const { versions } = await c.secrets.listSecretVersions({ secretId: r.id });
    const label = (l: SecretLabel) => versions.find((v) => v.labels.includes(l))?.version ?? 0;
    const v2 = versions.find((v) => v.version === 2)!;
    const state = ({ [SecretVersionState.SECRET_VERSION_STATE_ENABLED]: 'ENABLED', [SecretVersionState.SECRET_VERSION_STATE_DISABLED]: 'DISABLED', [SecretVersionState.SECRET_VERSION_STATE_DESTROYED]: 'DESTROYED' } as Record<number, Rotation['v2']>)[v2.state];
    const current = label(SecretLabel.SECRET_LABEL_CURRENT);
    // CURRENT must always be readable (a destroyed CURRENT was the bug).
    const read = await c.secrets.accessSecretVersion({ secretId: r.id, selector: { $case: 'label', value: SecretLabel.SECRET_LABEL_CURRENT } });
    expect(Buffer.from(read.value).toString()).toBe(current === 2 ? 'two' : 'one');
    return { current, previous: label(SecretLabel.SECRET_LABEL_PREVIOUS), pending: label(SecretLabel.SECRET_LABEL_PENDING), v2: state };
  },
};

// --- keymaster (docs/capabilities/keymaster.md): version 1 of a rotated key: disabled, enabled, used, outranked ----------------------
type KeyState = { v1: 'ENABLED' | 'DISABLED'; minSign: number; primary: number };
const keyFamily: Family<KeyState> = {
  name: 'key versions',
  ops: [
    {
      name: 'disable(v1)',
      send: (c, r) => outcomeOf(c.keymaster.disableKeyVersion({ keyId: r.id, version: 1 })),
      model: (s) => (s.v1 !== 'ENABLED' ? { outcome: 'FAILED_PRECONDITION KEY_VERSION_NOT_ENABLED', next: s } : { outcome: ok(), next: { ...s, v1: 'DISABLED' } }),
      audit: (r) => ({ action: 'DisableKeyVersion', resource: `keys/${r.id}/versions/1` }),
    },
    {
      name: 'enable(v1)',
      send: (c, r) => outcomeOf(c.keymaster.enableKeyVersion({ keyId: r.id, version: 1 })),
      model: (s) => (s.v1 !== 'DISABLED' ? { outcome: 'FAILED_PRECONDITION KEY_VERSION_NOT_DISABLED', next: s } : { outcome: ok(), next: { ...s, v1: 'ENABLED' } }),
      audit: (r) => ({ action: 'EnableKeyVersion', resource: `keys/${r.id}/versions/1` }),
    },
    {
      name: 'sign(v1)',
      send: (c, r) => outcomeOf(c.keymaster.sign({ keyId: r.id, version: 1, input: { $case: 'message', value: Buffer.from('m') } })),
      model: (s) => {
        if (s.v1 !== 'ENABLED') return { outcome: 'FAILED_PRECONDITION KEY_VERSION_DISABLED', next: s };
        if (s.minSign > 1) return { outcome: 'FAILED_PRECONDITION BELOW_MIN_SIGN_VERSION', next: s };
        return { outcome: ok(), next: s };
      },
      audit: (r) => ({ action: 'Sign', resource: `keys/${r.id}/versions/1` }),
    },
    {
      name: 'policy(minSign 2)',
      send: (c, r) => outcomeOf(c.keymaster.updateKeyPolicy({ keyId: r.id, minSignVersion: 2, minVerifyVersion: 1 })),
      model: (s) => ({ outcome: ok(), next: { ...s, minSign: 2 } }),
      audit: (r) => ({ action: 'UpdateKeyPolicy', resource: `keys/${r.id}` }),
    },
    {
      name: 'rotate',
      send: (c, r) => outcomeOf(c.keymaster.rotateKey({ keyId: r.id })),
      model: (s) => ({ outcome: ok(), next: { ...s, primary: s.primary + 1 } }),
      audit: (r) => ({ action: 'RotateKey', resource: `keys/${r.id}` }),
    },
  ],
  async setup(c, r) {
    await c.keymaster.createKey({ key: { keyId: r.id, algorithm: Algorithm.ALGORITHM_ED25519 } });
    await c.keymaster.rotateKey({ keyId: r.id });
  },
  initial: { v1: 'ENABLED', minSign: 1, primary: 2 },
  async final(c, r) {
    const { key } = await c.keymaster.getKey({ keyId: r.id });
    const v1 = key!.versions.find((v) => v.version === 1)!;
    return { v1: v1.state === KeyVersionState.KEY_VERSION_STATE_ENABLED ? 'ENABLED' : 'DISABLED', minSign: key!.minSignVersion, primary: key!.primaryVersion };
  },
};

// --- scheduler (docs/capabilities/scheduler.md): one SKIP-overlap schedule, triggered twice, paused and resumed ----------------------
type ScheduleState = { jobs: number; paused: boolean };
const triggerOp = (n: number): OpKind<ScheduleState> => ({
  name: `trigger#${n}`,
  send: (c, r) =>
    outcomeOf(c.scheduler.triggerSchedule({ scheduleId: r.id }), (res: { tick?: { outcome: TickOutcome } }) =>
      res.tick!.outcome === TickOutcome.TICK_OUTCOME_ENQUEUED ? 'ENQUEUED' : 'SKIPPED',
    ),
  model: (s) => (s.jobs === 0 ? { outcome: ok('ENQUEUED'), next: { ...s, jobs: 1 } } : { outcome: ok('SKIPPED'), next: s }),
  audit: (r) => ({ action: 'TriggerSchedule', resource: `schedules/${r.id}` }),
});
const pauseOp = (paused: boolean): OpKind<ScheduleState> => ({
  name: paused ? 'pause' : 'resume',
  send: (c, r) => outcomeOf(c.scheduler.pauseSchedule({ scheduleId: r.id, paused })),
  model: (s) => ({ outcome: ok(), next: { ...s, paused } }),
  audit: (r) => ({ action: 'PauseSchedule', resource: `schedules/${r.id}` }),
});
const scheduleFamily: Family<ScheduleState> = {
  name: 'schedule',
  ops: [triggerOp(1), triggerOp(2), pauseOp(true), pauseOp(false)],
  async setup(c, r) {
    await c.scheduler.createSchedule({
      schedule: {
        scheduleId: r.id,
        cron: '0 0 1 1 *',
        timeZone: 'UTC',
        queue: 'iso-remote',
        jobType: 'iso.no-handler',
        overlapPolicy: OverlapPolicy.OVERLAP_POLICY_SKIP,
      },
    });
  },
  initial: { jobs: 0, paused: false },
  async final(c, r) {
    const { schedule } = await c.scheduler.getSchedule({ scheduleId: r.id });
    const jobs = await su.query(`SELECT count(*)::int AS n FROM scheduler_job WHERE tenant_id = $1 AND schedule_id = $2`, [TENANT, r.id]);
    return { jobs: jobs.rows[0].n, paused: schedule!.paused };
  },
};

const FAMILIES = [reservationFamily, rotationFamily, keyFamily, scheduleFamily] as Array<Family<unknown>>;

/** Some order of the calls that the model answers exactly as the kernel did and that ends in the observed state. */
function sequentialExplanation<S>(family: Family<S>, ops: Array<OpKind<S>>, outcomes: Outcome[], final: S): string[] | undefined {
  const search = (left: number[], state: S, order: string[]): string[] | undefined => {
    if (left.length === 0) return JSON.stringify(state) === JSON.stringify(final) ? order : undefined;
    for (const i of left) {
      const { outcome, next } = ops[i].model(state);
      if (outcome !== outcomes[i]) continue;
      const found = search(
        left.filter((j) => j !== i),
        next,
        [...order, ops[i].name],
      );
      if (found) return found;
    }
    return undefined;
  };
  return search(
    ops.map((_, i) => i),
    family.initial,
    [],
  );
}

let database: TestBackendDatabase;
let su: Client;
const kernels: TestKernel[] = [];
const nodes: Clients[] = [];
const closers: Array<() => void> = [];

beforeAll(async () => {
  database = await createBackendDatabase();
  // The embedded database is one session: only the one-node property applies there.
  for (let i = 0; i < (TEST_BACKEND === 'embedded' ? 1 : 2); i++) {
    const kernel = await startTestKernel({ databaseUrl: database.url });
    kernels.push(kernel);
    const options = { address: kernel.address, tenantId: TENANT, maxAttempts: 1, token: await kernel.token({ tenants: [TENANT] }) };
    const clients: Clients = {
      sequences: createSequenceClient(options),
      secrets: createSecretClient(options),
      keymaster: createKeymasterClient(options),
      scheduler: createSchedulerClient(options),
    };
    nodes.push(clients);
    closers.push(...Object.values(clients).map((c) => () => closeKernelClient(c)));
  }
  su = new Client({ connectionString: database.url });
  await su.connect();
  await nodes[0].sequences.createSeries({ series: { seriesId: 'filler', pattern: 'F{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
  await nodes[0].sequences.issueNumber({ seriesId: 'filler' });
}, 120_000);

afterAll(async () => {
  closers.forEach((close) => close());
  await su?.end();
  for (const kernel of kernels) await kernel.stop();
  await database?.close();
});

/**
 * Sends `ops` (each to its node) while every node's commit queue for the tenant is held behind a
 * filler call blocked on a row lock the test holds, so the calls sent to one node form ONE group.
 */
async function sendGrouped<S>(ops: Array<{ op: OpKind<S>; node: number }>, round: Round): Promise<Outcome[]> {
  await su.query('BEGIN');
  await su.query(`SELECT 1 FROM sequence_counter WHERE tenant_id = $1 AND series_id = 'filler' FOR UPDATE`, [TENANT]);
  const used = [...new Set(ops.map((o) => o.node))];
  const fillers = used.map((n) => nodes[n].sequences.issueNumber({ seriesId: 'filler' }));
  await new Promise((r) => setTimeout(r, 60));
  const answers = ops.map(({ op, node }) => op.send(nodes[node], round));
  await new Promise((r) => setTimeout(r, 120));
  await su.query('COMMIT');
  await Promise.all(fillers);
  return Promise.all(answers);
}

async function checkRound<S>(family: Family<S>, picks: Array<{ op: number; node: number }>): Promise<void> {
  const round: Round = { id: `${family.name.split(' ')[0]}-${randomUUID().slice(0, 8)}` };
  await family.setup(nodes[0], round);
  const ops = picks.map((p) => ({ op: family.ops[p.op], node: p.node }));
  const auditBefore = await auditCounts(ops.map((o) => o.op.audit(round)));
  const outcomes = await sendGrouped(ops, round);
  const final = await family.final(nodes[0], round);
  const explanation = sequentialExplanation(
    family,
    ops.map((o) => o.op),
    outcomes,
    final,
  );
  if (!explanation) {
    throw new Error(
      `${family.name}: no sequential order explains the answers ${JSON.stringify(ops.map((o, i) => `${o.op.name}@node${o.node} → ${outcomes[i]}`))} and the final state ${JSON.stringify(final)}`,
    );
  }
  // Exactly one audit entry per successful call (kinds that share an action and resource are counted together).
  const expected = new Map<string, number>();
  ops.forEach((o, i) => {
    const key = auditKey(o.op.audit(round));
    expected.set(key, (expected.get(key) ?? auditBefore.get(key)!) + (outcomes[i].startsWith('OK') ? 1 : 0));
  });
  const after = await auditCounts(ops.map((o) => o.op.audit(round)));
  expect(Object.fromEntries(after)).toEqual(Object.fromEntries(expected));
}

const auditKey = (a: { action: string; resource: string }) => `${a.action} ${a.resource}`;

/** Audit entries per (action, resource). */
async function auditCounts(targets: Array<{ action: string; resource: string }>): Promise<Map<string, number>> {
  const counts = new Map<string, number>();
  for (const target of targets) {
    const { rows } = await su.query(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE tenant_id = $1 AND action LIKE $2 AND resource = $3`, [
      TENANT,
      `%/${target.action}`,
      target.resource,
    ]);
    counts.set(auditKey(target), rows[0].n);
  }
  return counts;
}

const pickArbitrary = (family: Family<unknown>, nodeCount: number) =>
  fc.array(fc.record({ op: fc.integer({ min: 0, max: family.ops.length - 1 }), node: fc.integer({ min: 0, max: nodeCount - 1 }) }), { minLength: 2, maxLength: 5 });

describe('commit groups are serializable', () => {
  for (const family of FAMILIES) {
    test(`one node: ${family.name} — conflicting calls in one group answer as some sequential order`, async () => {
      await fc.assert(
        fc.asyncProperty(pickArbitrary(family, 1), (picks) => checkRound(family, picks)),
        { numRuns: ROUNDS, endOnFailure: true },
      );
    });
  }

  // The embedded database is one session: two nodes there cannot race each other's transactions.
  for (const family of FAMILIES) {
    (TEST_BACKEND === 'embedded' ? test.skip : test)(`two nodes: ${family.name} — racing groups answer as some sequential order`, async () => {
      await fc.assert(
        fc.asyncProperty(pickArbitrary(family, 2), (picks) => checkRound(family, picks)),
        { numRuns: ROUNDS, endOnFailure: true },
      );
    });
  }

  // Each group allocates numbers series by series in key order, so groups on any nodes lock
  // counter rows in one global order: crossed orders of callers cannot deadlock.
  (TEST_BACKEND === 'embedded' ? test.skip : test)('two nodes issuing in crossed series order (A then B, B then A) never deadlock and leave no gap', async () => {
    for (const id of ['cross-a', 'cross-b']) {
      await nodes[0].sequences.createSeries({ series: { seriesId: id, pattern: 'X{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    }
    const deadlocks = async () => (await su.query('SELECT deadlocks::int AS n FROM pg_stat_database WHERE datname = current_database()')).rows[0].n as number;
    const before = await deadlocks();
    const until = Date.now() + 4000;
    const outcomes: Outcome[] = [];
    const caller = async (node: number, order: string[]) => {
      while (Date.now() < until) {
        // Both at once, the first sent first: a group of this node sees them in this order.
        outcomes.push(...(await Promise.all(order.map((seriesId) => outcomeOf(nodes[node].sequences.issueNumber({ seriesId }))))));
      }
    };
    await Promise.all([
      ...Array.from({ length: 6 }, () => caller(0, ['cross-a', 'cross-b'])),
      ...Array.from({ length: 6 }, () => caller(1, ['cross-b', 'cross-a'])),
    ]);
    expect(new Set(outcomes)).toEqual(new Set(['OK']));
    await new Promise((r) => setTimeout(r, 1500)); // backends report their statistics within a second
    expect(await deadlocks()).toBe(before);
    let issued = 0;
    for (const id of ['cross-a', 'cross-b']) {
      const report = (await nodes[0].sequences.getGapReport({ seriesId: id })).gapReport!;
      expect(report.complete).toBe(true);
      issued += report.periods[0].issuedCount;
    }
    expect(issued).toBe(outcomes.length);
  });
});
