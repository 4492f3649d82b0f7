import { Status } from 'nice-grpc-common';
import { closeKernelClient, createKernelClient, KernelClientError } from '../../clients/src';
import { TrafficServiceDefinition } from '../../gen/proto/axis/kernel/traffic/v1/traffic_service';
import { clipText } from '../../services/platform/middleware/error-mapping';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/**
 * An error's text travels in the call's trailers, and an HTTP/2 peer refuses a header block
 * beyond its limit: a trailer that cannot be sent leaves the call — and every later call on the
 * connection — hanging until its deadline. Error texts may quote the request (a field path that
 * names a map key), so the error edge clips them. Found by the all-services fuzz: a 60 KB
 * method-cost key in SetPolicy wedged the fuzzer's connection for three deadlines.
 */
describe('error texts are bounded', () => {
  let kernel: TestKernel;

  beforeAll(async () => {
    kernel = await startTestKernel();
  }, 120_000);
  afterAll(async () => {
    await kernel?.stop();
  });

  test('a 400 KB map key is refused at once with clipped texts, and the connection keeps serving', async () => {
    const client = createKernelClient(TrafficServiceDefinition, { address: kernel.address, tenantId: 'big-key', maxAttempts: 1, deadlineMs: 10_000, token: await kernel.token({ tenants: ['big-key'] }) });
    try {
      const key = '\u{1D11E}'.repeat(100_000); // four UTF-8 bytes each
      const started = Date.now();
      const error = await client
        .setPolicy({ policy: { tenantLimit: { requests: 10, period: { seconds: 1, nanos: 0 }, burst: 10 }, methodCosts: { [key]: 1 }, maxInFlight: 10, dailyQuota: 10, configuredDefault: false } })
        .then(() => undefined, (e: unknown) => e);
      expect(Date.now() - started).toBeLessThan(5_000);
      expect(error).toBeInstanceOf(KernelClientError);
      const refused = error as KernelClientError;
      expect([refused.code, refused.reason]).toEqual([Status.INVALID_ARGUMENT, 'FIELD_INVALID']);
      expect(refused.details.length).toBeLessThanOrEqual(512);
      expect(refused.fieldViolations.length).toBeGreaterThan(0);
      for (const violation of refused.fieldViolations) {
        expect(violation.field.length).toBeLessThanOrEqual(200);
        expect(violation.description.length).toBeLessThanOrEqual(200);
      }
      expect(refused.fieldViolations.some((v) => v.field.startsWith('policy.method_costs.') && v.field.endsWith('…'))).toBe(true);
      // The same connection answers the next call at once.
      await expect(client.getPolicy({})).resolves.toMatchObject({ policy: expect.anything() });
    } finally {
      closeKernelClient(client);
    }
  });

  test('clipping never splits a surrogate pair', () => {
    expect(clipText('abc', 5)).toBe('abc');
    expect(clipText('abcdef', 4)).toBe('abc…');
    // 'a' + three U+1D11E (two code units each): cutting at 4 would split the second pair.
    const clipped = clipText(`a${'\u{1D11E}'.repeat(3)}`, 5);
    expect(clipped).toBe(`a\u{1D11E}…`);
    expect(Buffer.from(clipped, 'utf8').toString('utf8')).toBe(clipped);
  });
});
