import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { ErrorInfo } from 'nice-grpc-error-details';
import { spawnKernel } from '../support/kernel-process';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

const run = promisify(execFile);
const ROOT = path.resolve(__dirname, '../..');
const BUF = path.join(ROOT, 'node_modules/.bin/buf');

/** What operators use: buf curl through server reflection (grpcurl works the same way), health, and the CLI. */
describe('operator surface', () => {
  let kernel: TestKernel;
  let token: string;

  beforeAll(async () => {
    kernel = await startTestKernel();
    token = await kernel.token({ tenants: ['ops'] });
  });
  afterAll(() => kernel?.stop());

  const bufCurl = async (method: string, body: object, headers: string[] = []) => {
    const { stdout } = await run(BUF, [
      'curl',
      '--protocol',
      'grpc',
      '--http2-prior-knowledge',
      ...headers.flatMap((h) => ['-H', h]),
      '-d',
      JSON.stringify(body),
      `http://${kernel.address}/${method}`,
    ]);
    return JSON.parse(stdout) as Record<string, any>;
  };
  const auth = () => [`authorization: Bearer ${token}`, 'x-tenant-id: ops'];

  test('reflection lists every kernel service with its methods', async () => {
    const { stdout } = await run(BUF, ['curl', '--protocol', 'grpc', '--http2-prior-knowledge', '--list-methods', `http://${kernel.address}`]);
    expect(stdout).toContain('axis.kernel.sequences.v1.SequenceService/IssueNumber');
    expect(stdout).toContain('grpc.health.v1.Health/Check');
  });

  test('buf curl creates a series and issues a number through reflection; JSON enums and timestamps work', async () => {
    const created = await bufCurl(
      'axis.kernel.sequences.v1.SequenceService/CreateSeries',
      { series: { seriesId: 'inv', pattern: 'INV-{YYYY}-{SEQ:5}', resetPolicy: 'RESET_POLICY_YEARLY', timeZone: 'Europe/Berlin' } },
      [...auth(), `idempotency-key: ${randomUUID()}`],
    );
    expect(created.series).toMatchObject({ seriesId: 'inv', resetPolicy: 'RESET_POLICY_YEARLY', startValue: '1' });
    const issued = await bufCurl(
      'axis.kernel.sequences.v1.SequenceService/IssueNumber',
      { seriesId: 'inv', documentTime: '2026-05-04T10:00:00Z', subjectRef: 'order-1' },
      [...auth(), `idempotency-key: ${randomUUID()}`],
    );
    expect(issued.number).toMatchObject({ value: '1', formatted: 'INV-2026-00001', status: 'NUMBER_STATUS_ISSUED' });
  });

  test('errors reach buf curl as a gRPC status with the kernel.axis ErrorInfo', async () => {
    const failure = await run(BUF, [
      'curl', '--protocol', 'grpc', '--http2-prior-knowledge', '-H', `authorization: Bearer ${token}`, '-H', 'x-tenant-id: ops',
      '-d', '{"seriesId":"missing"}', `http://${kernel.address}/axis.kernel.sequences.v1.SequenceService/GetSeries`,
    ]).then(
      () => undefined,
      (e: { stderr: string }) => e.stderr,
    );
    const status = JSON.parse(failure!) as { code: string; details: Array<{ type: string; value: string }> };
    expect(status.code).toBe('not_found');
    expect(status.details.map((d) => d.type)).toEqual(['google.rpc.ErrorInfo']);
    expect(ErrorInfo.decode(Buffer.from(status.details[0].value, 'base64'))).toMatchObject({ reason: 'SERIES_NOT_FOUND', domain: 'kernel.axis' });
  });

  test('the standard health service answers SERVING without credentials', async () => {
    const health = await bufCurl('grpc.health.v1.Health/Check', {});
    expect(health).toEqual({ status: 'SERVING' });
  });

  test('kernel token mints a token the kernel accepts', async () => {
    const { stdout } = await run(process.execPath, [path.join(ROOT, 'node_modules/tsx/dist/cli.mjs'), path.join(ROOT, 'services/kernel/cli.ts'), 'token', '--tenant', 'ops', '--sub', 'operator', '--scope', 'sequences:read'], {
      env: { ...process.env, KERNEL_AUTH_SECRET: kernel.secret, DATABASE_URL: '' },
    });
    const minted = stdout.trim();
    const listed = await bufCurl('axis.kernel.sequences.v1.SequenceService/ListSeries', {}, [`authorization: Bearer ${minted}`, 'x-tenant-id: ops']);
    expect(listed.series.map((s: { seriesId: string }) => s.seriesId)).toEqual(['inv']);
  });

  test('a development token is printed only for a kernel on its own generated secret, or on request', async () => {
    const jwt = /eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+/;
    const printed = async (env: Record<string, string>, args: string[] = []) => {
      const node = await spawnKernel({ DATABASE_URL: kernel.databaseUrl, KERNEL_ENV: 'development', ...env }, 60_000, args);
      await new Promise((r) => setTimeout(r, 300)); // the banner follows the listening line
      await node.stop();
      return jwt.test(node.errors.join('\n')) && node.errors.some((l) => l.includes('Development token'));
    };
    expect(await printed({ KERNEL_AUTH_SECRET: kernel.secret })).toBe(false);
    expect(await printed({ KERNEL_AUTH_SECRET: kernel.secret }, ['--print-token'])).toBe(true);
    expect(await printed({})).toBe(true); // no secret configured: the kernel generates its own
  });
});
