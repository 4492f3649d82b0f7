import { Client } from 'pg';
import { closeKernelClient, createKernelClient } from '../../clients/src';
import { AuditServiceDefinition } from '../../gen/proto/axis/kernel/audit/v1/audit_service';
import { adminDatabaseUrl } from '../support/test-database';
import { startTestKernel, TEST_BACKEND, type TestKernel } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

/**
 * The audit log's proofs do not wait for strangers: entries get their positions in the
 * transaction that writes them, so integration needs no server-wide horizon and a transaction
 * held open by anyone else on the server — here in another database — holds no tenant's
 * checkpoints back. (The embedded database serves one database, and one transaction at a time.)
 */
(TEST_BACKEND === 'embedded' ? describe.skip : describe)('audit integration and foreign transactions', () => {
  let kernel: TestKernel;
  let stranger: Client;

  beforeAll(async () => {
    kernel = await startTestKernel();
    stranger = new Client({ connectionString: adminDatabaseUrl });
    await stranger.connect();
  });
  afterAll(async () => {
    await stranger?.query('ROLLBACK').catch(() => undefined);
    await stranger?.end();
    await kernel?.stop();
  });

  test('a write transaction left open in another database of the server does not hold signed checkpoints back', async () => {
    await stranger.query('BEGIN');
    await stranger.query('SELECT pg_current_xact_id()'); // holds the server's xmin horizon back
    const client = createKernelClient(AuditServiceDefinition, { address: kernel.address, tenantId: 'lag', maxAttempts: 1, token: await kernel.token({ tenants: ['lag'] }) });
    try {
      for (let i = 0; i < 20; i++) await client.appendEvents({ events: [{ action: 'lag.Test', resource: `r/${i}` }] });
      await waitFor(async () => {
        const { checkpoint } = await client.getCheckpoint({});
        return checkpoint!.treeSize >= 20;
      }, 10_000);
      // ... and the stranger's transaction is still open.
      const { rows } = await stranger.query('SELECT pg_current_xact_id_if_assigned() IS NOT NULL AS open');
      expect(rows[0].open).toBe(true);
    } finally {
      closeKernelClient(client);
      await stranger.query('ROLLBACK');
    }
  });
});
