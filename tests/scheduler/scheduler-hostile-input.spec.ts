import { randomUUID } from 'node:crypto';
import * as fc from 'fast-check';
import { ClientError, createChannel, createClient, Metadata, Status, type Channel } from 'nice-grpc';
import { SchedulerServiceDefinition } from '../../gen/proto/axis/kernel/scheduler/v1/scheduler_service';
import { errorContractBreaches, reasonOf, type Outcome } from '../support/error-contract';
import { describeValue, encodeHostile, hostileRequests, hostileString, loadService, rawMethodDefinitions, type FieldHints, type TsProtoType } from '../support/hostile-requests';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/**
 * Random hostile requests to every SchedulerService RPC (generated from the descriptor set, so a
 * new RPC is covered without a list): each answer is a success or a well-formed kernel.axis error
 * (exactly one ErrorInfo, UPPER_SNAKE reason, trace id) — never INTERNAL — and the kernel stays up.
 * HOSTILE_RUNS sets the runs per method (default 40), HOSTILE_SEED replays a run.
 */
const TENANT = 'sched-fuzz';
const RUNS = Number(process.env.HOSTILE_RUNS ?? 40);
const SEED = process.env.HOSTILE_SEED === undefined ? undefined : Number(process.env.HOSTILE_SEED);
const DESCRIPTORS = loadService(SchedulerServiceDefinition.fullName);

const METHODS = Object.values(SchedulerServiceDefinition.methods).map((m) => ({
  name: m.name,
  path: `/${SchedulerServiceDefinition.fullName}/${m.name}`,
  requestType: m.requestType as unknown as TsProtoType<unknown>,
  responseType: m.responseType as unknown as TsProtoType<unknown>,
  input: DESCRIPTORS.methods.find((d) => d.name === m.name)!.input,
}));

const RAW = rawMethodDefinitions(METHODS);

describe('SchedulerService hostile input', () => {
  let kernel: TestKernel;
  let channel: Channel;
  let client: Record<string, (bytes: Uint8Array, options: object) => Promise<unknown>>;
  let token: string;
  const jobIds: string[] = [];

  beforeAll(async () => {
    kernel = await startTestKernel();
    token = await kernel.token({ tenants: [TENANT] });
    channel = createChannel(kernel.address);
    client = createClient(RAW, channel) as unknown as typeof client;
    const enqueue = METHODS.find((m) => m.name === 'EnqueueJob')!;
    for (let i = 0; i < 3; i++) {
      const outcome = await send(enqueue, enqueue.requestType.encode(enqueue.requestType.fromPartial({ job: { jobType: 'fuzz.job', queue: 'fuzz', payload: { i } } })).finish());
      jobIds.push(((outcome.response as { job: { jobId: string } }).job.jobId));
    }
    const create = METHODS.find((m) => m.name === 'CreateSchedule')!;
    await send(create, create.requestType.encode(create.requestType.fromPartial({ schedule: { scheduleId: 'fuzz', cron: '0 0 1 1 *', timeZone: 'UTC', jobType: 'fuzz.job', overlapPolicy: 1 } })).finish());
  });

  afterAll(async () => {
    channel?.close();
    await kernel?.stop();
  });

  async function send(m: (typeof METHODS)[number], bytes: Uint8Array): Promise<Outcome> {
    let trailer: Metadata | undefined;
    const metadata = Metadata({ authorization: `Bearer ${token}`, 'x-tenant-id': TENANT, 'idempotency-key': randomUUID() });
    try {
      const response = await client[m.name](bytes, { metadata, onTrailer: (t: Metadata) => (trailer = t), signal: AbortSignal.timeout(20_000) });
      return { ok: true, code: Status.OK, response, trailer };
    } catch (error) {
      if (error instanceof ClientError) return { ok: false, code: error.code, trailer };
      throw error;
    }
  }

  const hints = (): FieldHints => ({
    jobId: fc.oneof(fc.constantFrom(...jobIds), fc.uuid(), hostileString()),
    scheduleId: fc.constantFrom('fuzz', 'missing', 'Bad Id', ''),
    jobType: fc.constantFrom('fuzz.job', 'kernel.noop', 'x'),
    queue: fc.constantFrom('fuzz', 'default', ''),
    cron: fc.constantFrom('* * * * *', '*/5 * * * * *', '0 0 30 2 *', '61 * * * *', ''),
    timeZone: fc.constantFrom('UTC', 'Europe/Berlin', 'Mars/Olympus', ''),
    leaseToken: fc.oneof(fc.integer({ min: -5, max: 1000 }), fc.constant(2 ** 53)),
  });

  test.each(METHODS.map((m) => [m.name, m] as const))('%s: every hostile request gets a success or a well-formed error, never INTERNAL', async (name, m) => {
    await fc.assert(
      fc.asyncProperty(hostileRequests(DESCRIPTORS, name, hints()), async (request) => {
        // A long-poll must not hold the property run: cap its wait.
        if (name === 'LeaseJobs') request.partial.wait = undefined;
        const outcome = await send(m, encodeHostile(m.requestType, m.input, request));
        const problems = errorContractBreaches(outcome);
        if (problems.length) throw new Error(`${name} answered ${outcome.ok ? 'OK' : `${Status[outcome.code]} ${reasonOf(outcome)}`}: ${problems.join('; ')}\n  request: ${describeValue(request.partial)}`);
      }),
      { numRuns: RUNS, seed: SEED, plugins: [fc.interruptAfterTimeLimit(40_000)] } as fc.Parameters<unknown>,
    );
  });

  test('the kernel is still up and logged no masked INTERNAL error', async () => {
    const masked = kernel.logs.entries().filter((e) => e.msg === 'unhandled error (masked as INTERNAL)');
    expect(masked.map((e) => `${e.method}: ${JSON.stringify(e.err).slice(0, 300)}`)).toEqual([]);
    const get = METHODS.find((m) => m.name === 'GetJob')!;
    expect((await send(get, get.requestType.encode(get.requestType.fromPartial({ jobId: jobIds[0] })).finish())).ok).toBe(true);
  });
});
