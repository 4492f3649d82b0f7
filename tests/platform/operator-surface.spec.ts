import { execFile } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { promisify } from 'node:util';
import { createFileRegistry, fromBinary, toJson, type Registry } from '@bufbuild/protobuf';
import { anyUnpack, FileDescriptorProtoSchema, type FileDescriptorProto } from '@bufbuild/protobuf/wkt';
import { credentials, makeGenericClientConstructor, Metadata, type ServiceDefinition } from '@grpc/grpc-js';
import { ServerReflectionService } from 'nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_grpc_pb';
import { ServerReflectionRequest, type ServerReflectionResponse } from 'nice-grpc-server-reflection/lib/proto/grpc/reflection/v1/reflection_pb';
import { ErrorInfo } from 'nice-grpc-error-details';
import { CreateKeyRequest } from '../../gen/proto/axis/kernel/keymaster/v1/keymaster_service';
import { Algorithm } from '../../gen/proto/axis/kernel/keymaster/v1/key';
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

  /**
   * What a reflection-driven tool does with a refusal (issue 12 §9). The service file the kernel
   * serves depends on axis/kernel/common/v1/errors.proto and through it on
   * google/rpc/error_details.proto, so a client that knows nothing but reflection resolves the
   * detail types. grpcurl does exactly this. buf curl (1.75) prints the detail types by name but
   * renders their content (`debug`) only for types compiled into the buf binary — it formats
   * errors with connect-go's error writer, which resolves Any through Go's global registry, not
   * through the reflected schema — so today its `value` stays base64 whatever the server serves.
   * The test pins both: buf curl's decoded parts, and the decoding by reflection alone.
   */
  describe('refusals through reflection: ErrorInfo and BadRequest decoded', () => {
    const refuseCreateKey = { key: { keyId: 'kernel.x', algorithm: 'ALGORITHM_ED25519' } };

    test('buf curl prints the refusal with its detail types, and decodes them where it can', async () => {
      const failure = await run(BUF, [
        'curl', '--protocol', 'grpc', '--http2-prior-knowledge',
        '-H', `authorization: Bearer ${token}`, '-H', 'x-tenant-id: ops', '-H', `idempotency-key: ${randomUUID()}`,
        '-d', JSON.stringify(refuseCreateKey), `http://${kernel.address}/axis.kernel.keymaster.v1.KeymasterService/CreateKey`,
      ]).then(
        () => undefined,
        (e: { stderr: string }) => e.stderr,
      );
      const status = JSON.parse(failure!) as { code: string; message: string; details: Array<{ type: string; debug?: Record<string, any> }> };
      expect(status.code).toBe('invalid_argument');
      expect(status.message).toBe('key ids under "kernel." belong to the kernel');
      expect(status.details.map((d) => d.type)).toEqual(['google.rpc.ErrorInfo', 'google.rpc.BadRequest']);
      // When buf curl renders the content (a buf that links the google.rpc types), it must be ours.
      const [info, badRequest] = status.details.map((d) => d.debug);
      if (info) expect(info).toMatchObject({ reason: 'KEY_ID_RESERVED', domain: 'kernel.axis' });
      if (badRequest) expect(badRequest.fieldViolations).toEqual([{ field: 'key.key_id', description: 'must not start with "kernel."' }]);
    });

    test('the service file served by reflection brings google/rpc/error_details.proto, and its types decode the details', async () => {
      const Reflection = makeGenericClientConstructor(ServerReflectionService as unknown as ServiceDefinition, 'ServerReflection');
      const reflection = new Reflection(kernel.address, credentials.createInsecure()) as unknown as {
        serverReflectionInfo(): NodeJS.ReadWriteStream & { write(r: ServerReflectionRequest): boolean; end(): void };
        close(): void;
      };
      const ask = (request: ServerReflectionRequest) =>
        new Promise<FileDescriptorProto[]>((resolve, reject) => {
          const call = reflection.serverReflectionInfo();
          call.on('data', (response: ServerReflectionResponse) => {
            call.end();
            const files = response.getFileDescriptorResponse()?.getFileDescriptorProtoList_asU8() ?? [];
            if (files.length === 0) reject(new Error(response.getErrorResponse()?.getErrorMessage() ?? 'no file'));
            else resolve(files.map((bytes) => fromBinary(FileDescriptorProtoSchema, bytes)));
          });
          call.on('error', reject);
          call.write(request);
        });
      try {
        // Like buf curl and grpcurl: the file of the service, then its dependencies by name.
        const files = new Map<string, FileDescriptorProto>();
        const fetch = async (request: ServerReflectionRequest) => {
          for (const file of await ask(request)) {
            if (files.has(file.name)) continue;
            files.set(file.name, file);
            for (const dependency of file.dependency) if (!files.has(dependency)) await fetch(new ServerReflectionRequest().setFileByFilename(dependency));
          }
        };
        await fetch(new ServerReflectionRequest().setFileContainingSymbol('axis.kernel.keymaster.v1.KeymasterService'));
        expect([...files.keys()]).toEqual(expect.arrayContaining(['axis/kernel/common/v1/errors.proto', 'google/rpc/error_details.proto']));
        // google.rpc.Status itself is served by symbol (the trailer's message).
        await fetch(new ServerReflectionRequest().setFileContainingSymbol('google.rpc.Status'));
        // Dependencies first, as a FileDescriptorSet must list them.
        const ordered: FileDescriptorProto[] = [];
        const place = (file: FileDescriptorProto) => {
          if (ordered.includes(file)) return;
          for (const dependency of file.dependency) place(files.get(dependency)!);
          ordered.push(file);
        };
        for (const file of files.values()) place(file);
        const registry: Registry = createFileRegistry({ $typeName: 'google.protobuf.FileDescriptorSet', file: ordered } as never);

        // The refusal, as any gRPC client receives it: grpc-status-details-bin is binary metadata.
        const refusal = await new Promise<Buffer>((resolve, reject) => {
          const metadata = new Metadata();
          metadata.set('authorization', `Bearer ${token}`);
          metadata.set('x-tenant-id', 'ops');
          metadata.set('idempotency-key', randomUUID());
          const raw = new (makeGenericClientConstructor({}, 'Raw'))(kernel.address, credentials.createInsecure());
          raw.makeUnaryRequest(
            '/axis.kernel.keymaster.v1.KeymasterService/CreateKey',
            (r: CreateKeyRequest) => Buffer.from(CreateKeyRequest.encode(r).finish()),
            (b: Buffer) => b,
            CreateKeyRequest.fromPartial({ key: { keyId: 'kernel.x', algorithm: Algorithm.ALGORITHM_ED25519 } }),
            metadata,
            (error) => {
              raw.close();
              const details = (error as { metadata?: Metadata } | null)?.metadata?.get('grpc-status-details-bin')[0];
              if (Buffer.isBuffer(details)) resolve(details);
              else reject(new Error('no grpc-status-details-bin'));
            },
          );
        });
        const statusType = registry.getMessage('google.rpc.Status')!;
        const status = fromBinary(statusType, refusal) as unknown as { details: Parameters<typeof anyUnpack>[0][] };
        const decoded = status.details.map((any) => {
          const message = anyUnpack(any, registry)!;
          return [message.$typeName, toJson(registry.getMessage(message.$typeName)!, message as never, { registry })];
        });
        expect(decoded).toEqual([
          ['google.rpc.ErrorInfo', { reason: 'KEY_ID_RESERVED', domain: 'kernel.axis', metadata: { trace_id: expect.stringMatching(/^[0-9a-f]{32}$/) } }],
          ['google.rpc.BadRequest', { fieldViolations: [{ field: 'key.key_id', description: 'must not start with "kernel."' }] }],
        ]);
      } finally {
        reflection.close();
      }
    });
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
