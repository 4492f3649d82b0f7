import { spawn } from 'node:child_process';
import path from 'node:path';
import { closeKernelClient, createBatchClient } from '../../clients/src';
import { startTestKernel, type TestKernel } from '../support/test-kernel';
import { Client } from 'pg';
import { CREATE_EFFECT_TABLE } from './support/test-item-handlers';

const ROOT = path.resolve(__dirname, '../..');
const HANDLER_MODULE = path.resolve(__dirname, 'support/test-item-handlers.ts');

/** Runs the kernel CLI as its own process with stdout a pipe (not a terminal). */
function cli(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'services/kernel/cli.ts'), ...args], {
      cwd: ROOT,
      env: { ...process.env, AXIS_TOKEN: '' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('exit', (code) => resolve({ code, stdout, stderr }));
  });
}

describe('kernel batch watch', () => {
  let kernel: TestKernel;

  beforeAll(async () => {
    kernel = await startTestKernel({ env: { KERNEL_BATCH_HANDLER_MODULES: HANDLER_MODULE, BATCH_TEST_ITEM_DELAY_MS: '1' } });
    const sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
    await sql.query(CREATE_EFFECT_TABLE);
    await sql.end();
  });
  afterAll(() => kernel?.stop());

  test('follows a batch over gRPC to its end; without a terminal it prints plain progress lines and exits 0 on success', async () => {
    const token = await kernel.token({ tenants: ['cli'], scope: 'batch:read batch:write' });
    const client = createBatchClient({ address: kernel.address, tenantId: 'cli', token });
    try {
      await client.startBatch({ batch: { batchId: 'watched', itemType: 'test.slow', chunkSize: 100 }, items: { $case: 'range', value: { start: 0, count: 1500 } } });
      const run = await cli(['batch', 'watch', 'watched', '--tenant', 'cli', '--address', kernel.address, '--token', token]);
      expect(run.stderr).not.toContain('kernel batch watch:');
      expect(run.code).toBe(0);
      expect(run.stdout).not.toMatch(/[\r\x1b]/);
      const lines = run.stdout.trim().split('\n');
      expect(lines[lines.length - 1]).toBe('batch watched: SUCCEEDED');
      expect(lines[lines.length - 2]).toMatch(/^watched 100\.0% 1,500\/1,500 {2}ok 1,500 {2}skipped 0 {2}failed 0$/);
    } finally {
      closeKernelClient(client);
    }
  });

  test('an unknown batch exits 1 naming the reason; bad usage exits 2', async () => {
    const token = await kernel.token({ tenants: ['cli'], scope: 'batch:read' });
    const missing = await cli(['batch', 'watch', 'nope', '--tenant', 'cli', '--address', kernel.address, '--token', token]);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('BATCH_NOT_FOUND');
    expect((await cli(['batch', 'watch'])).code).toBe(2);
  });
});
