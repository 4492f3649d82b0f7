import { randomUUID } from 'node:crypto';
import { Metadata, Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createSequenceClient, type SequenceClient } from '../../clients/src';
import { refusal } from '../support/refusal';
import { NumberStatus, ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { spawnKernel, type KernelProcess } from '../support/kernel-process';
import { createBackendDatabase, startTestKernel, type TestBackendDatabase, type TestKernel } from '../support/test-kernel';
import { waitFor } from '../support/wait-for';

const series = (seriesId: string, overrides: Record<string, unknown> = {}) => ({
  series: {
    seriesId,
    pattern: 'INV-{YYYY}-{SEQ:5}',
    resetPolicy: ResetPolicy.RESET_POLICY_YEARLY,
    startValue: 1,
    timeZone: 'Europe/Berlin',
    ...overrides,
  },
});

describe('EVI055 Sequence Governance (K-M10)', () => {
  let db: TestBackendDatabase;
  let kernel: TestKernel;
  const clients: SequenceClient[] = [];

  beforeAll(async () => {
    db = await createBackendDatabase();
    kernel = await startTestKernel({ databaseUrl: db.url });
  });

  afterAll(async () => {
    clients.forEach(closeKernelClient);
    await kernel?.stop();
    await db?.close();
  });

  const clientFor = async (tenant: string, address = kernel.address) => {
    const client = createSequenceClient({ address, tenantId: tenant, token: await kernel.token({ tenants: [tenant] }) });
    clients.push(client);
    return client;
  };

  test('[A] 64 concurrent callers across two kernel processes issue 5,000 numbers on one series: no duplicates, no gaps', async () => {
    const nodes: KernelProcess[] = await Promise.all(
      [1, 2].map(() => spawnKernel({ DATABASE_URL: db.url, KERNEL_AUTH_SECRET: kernel.secret })),
    );
    try {
      const setup = await clientFor('tenant-a', nodes[0].address);
      await setup.createSeries(series('hot', { pattern: 'HOT-{SEQ:6}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER }));
      const clients = await Promise.all(nodes.map((n) => clientFor('tenant-a', n.address)));

      const total = 5000;
      let next = 0;
      const values: number[] = [];
      const perNode = [0, 0];
      await Promise.all(
        Array.from({ length: 64 }, async (_, caller) => {
          const node = caller % 2;
          while (next < total) {
            next += 1;
            const { number } = await clients[node].issueNumber({ seriesId: 'hot', subjectRef: `doc-${caller}` });
            values.push(number!.value);
            perNode[node] += 1;
          }
        }),
      );

      expect(values).toHaveLength(total);
      expect(new Set(values).size).toBe(total);
      expect(Math.min(...values)).toBe(1);
      expect(Math.max(...values)).toBe(total);
      expect(perNode[0]).toBeGreaterThan(0);
      expect(perNode[1]).toBeGreaterThan(0);
      const report = (await clients[0].getGapReport({ seriesId: 'hot' })).gapReport!;
      expect(report.complete).toBe(true);
      expect(report.periods).toEqual([
        expect.objectContaining({ period: '', firstValue: 1, lastValue: total, issuedCount: total, missingValues: [] }),
      ]);
    } finally {
      await Promise.all(nodes.map((n) => n.stop()));
    }
  });

  test('[B] period reset: documents dated in two different years number independently and format with their year', async () => {
    const client = await clientFor('tenant-b');
    await client.createSeries(series('inv'));
    const issue = (iso: string) => client.issueNumber({ seriesId: 'inv', documentTime: new Date(iso), subjectRef: iso });

    const first2025 = await issue('2025-06-01T10:00:00Z');
    const first2026 = await issue('2026-03-01T10:00:00Z');
    const second2025 = await issue('2025-07-01T10:00:00Z');
    // 23:30 UTC on New Year's Eve is already 2026 in Berlin: the series' time zone decides.
    const newYearBerlin = await issue('2025-12-31T23:30:00Z');

    expect(first2025.number).toMatchObject({ period: '2025', value: 1, formatted: 'INV-2025-00001', documentDate: '2025-06-01' });
    expect(first2026.number).toMatchObject({ period: '2026', value: 1, formatted: 'INV-2026-00001' });
    expect(second2025.number).toMatchObject({ period: '2025', value: 2, formatted: 'INV-2025-00002' });
    expect(newYearBerlin.number).toMatchObject({ period: '2026', value: 2, formatted: 'INV-2026-00002', documentDate: '2026-01-01' });

    await client.createSeries(series('monthly', { pattern: '{YY}{MM}/{SEQ:3}', resetPolicy: ResetPolicy.RESET_POLICY_MONTHLY, timeZone: 'America/New_York' }));
    const jan = await client.issueNumber({ seriesId: 'monthly', documentTime: new Date('2026-02-01T03:00:00Z') });
    const feb = await client.issueNumber({ seriesId: 'monthly', documentTime: new Date('2026-02-01T06:00:00Z') });
    expect(jan.number).toMatchObject({ period: '2026-01', value: 1, formatted: '2601/001' });
    expect(feb.number).toMatchObject({ period: '2026-02', value: 1, formatted: '2602/001' });

    const report = (await client.getGapReport({ seriesId: 'inv' })).gapReport!;
    expect(report.periods.map((p) => [p.period, p.lastValue])).toEqual([
      ['2025', 2],
      ['2026', 2],
    ]);
    expect(report.complete).toBe(true);
  });

  test('[C] void requires a reason, the voided value is never reissued, the gap report accounts for it', async () => {
    const client = await clientFor('tenant-c');
    await client.createSeries(series('void', { pattern: 'V{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER }));
    for (let i = 0; i < 3; i += 1) await client.issueNumber({ seriesId: 'void' });

    for (const reason of ['', '   ']) {
      const refused = await refusal(client.voidNumber({ seriesId: 'void', period: '', value: 2, reason }));
      expect([refused.code, refused.reason]).toEqual([Status.INVALID_ARGUMENT, 'VOID_REASON_REQUIRED']);
    }
    const voided = await client.voidNumber({ seriesId: 'void', period: '', value: 2, reason: 'printed on a damaged form' });
    expect(voided.number).toMatchObject({ value: 2, status: NumberStatus.NUMBER_STATUS_VOIDED, voidReason: 'printed on a damaged form' });
    const again = await refusal(client.voidNumber({ seriesId: 'void', period: '', value: 2, reason: 'twice' }));
    expect([again.code, again.reason]).toEqual([Status.FAILED_PRECONDITION, 'NUMBER_ALREADY_VOIDED']);

    const next = await client.issueNumber({ seriesId: 'void' });
    expect(next.number!.value).toBe(4);

    // A reservation that lapses is voided by the kernel with reason RESERVATION_EXPIRED.
    const reserved = await client.reserveNumber({ seriesId: 'void', ttl: { seconds: 1, nanos: 0 } });
    expect(reserved.number).toMatchObject({ value: 5, status: NumberStatus.NUMBER_STATUS_RESERVED });
    const committed = await client.reserveNumber({ seriesId: 'void', ttl: { seconds: 60, nanos: 0 } });
    await client.commitReservation({ seriesId: 'void', period: '', value: committed.number!.value, subjectRef: 'doc-6' });
    await waitFor(async () => {
      const { numbers } = await client.listNumbers({ seriesId: 'void', status: NumberStatus.NUMBER_STATUS_VOIDED });
      return numbers.some((n) => n.value === 5 && n.voidReason === 'RESERVATION_EXPIRED');
    });
    const late = await refusal(client.commitReservation({ seriesId: 'void', period: '', value: 5 }));
    expect([late.code, late.reason]).toEqual([Status.FAILED_PRECONDITION, 'NUMBER_NOT_RESERVED']);

    const report = (await client.getGapReport({ seriesId: 'void' })).gapReport!;
    expect(report.complete).toBe(true);
    expect(report.periods[0]).toMatchObject({ firstValue: 1, lastValue: 6, issuedCount: 4, voidedCount: 2, reservedCount: 0, missingValues: [] });
  });

  test("[C] the gap report accounts up to each counter, not the highest number left: numbers deleted behind the kernel's back are named, a deleted tail and a period emptied entirely included", async () => {
    const client = await clientFor('tenant-c-deleted');
    await client.createSeries(series('deleted'));
    const issue = (iso: string) => client.issueNumber({ seriesId: 'deleted', documentTime: new Date(iso) });
    for (let i = 0; i < 3; i += 1) await issue('2025-05-01T10:00:00Z');
    for (let i = 0; i < 6; i += 1) await issue('2026-05-01T10:00:00Z');
    // As the superuser (no trigger guards sequence_number): a hole, the tail, and all of 2025.
    const sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
    try {
      const { rowCount } = await sql.query(
        `DELETE FROM sequence_number WHERE tenant_id = 'tenant-c-deleted' AND series_id = 'deleted'
            AND (period = '2025' OR (period = '2026' AND value IN (2, 5, 6)))`,
      );
      expect(rowCount).toBe(6);
    } finally {
      await sql.end();
    }
    const report = (await client.getGapReport({ seriesId: 'deleted' })).gapReport!;
    expect(report.complete).toBe(false);
    expect(report.periods).toEqual([
      expect.objectContaining({ period: '2025', firstValue: 1, lastValue: 3, issuedCount: 0, missingValues: [1, 2, 3] }),
      expect.objectContaining({ period: '2026', firstValue: 1, lastValue: 6, issuedCount: 3, missingValues: [2, 5, 6] }),
    ]);
  });

  test("[D] tenant B cannot read or issue in tenant A's series (NOT_FOUND), and RLS blocks it even for raw SQL under the application role", async () => {
    const tenantA = await clientFor('tenant-d-a');
    const tenantB = await clientFor('tenant-d-b');
    await tenantA.createSeries(series('secret-series'));
    await tenantA.issueNumber({ seriesId: 'secret-series' });

    for (const call of [
      () => tenantB.getSeries({ seriesId: 'secret-series' }),
      () => tenantB.issueNumber({ seriesId: 'secret-series' }),
      () => tenantB.listNumbers({ seriesId: 'secret-series' }),
      () => tenantB.getGapReport({ seriesId: 'secret-series' }),
    ]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.NOT_FOUND, 'SERIES_NOT_FOUND']);
    }
    expect((await tenantB.listSeries({})).series).toEqual([]);
    // A token for tenant B naming tenant A in x-tenant-id is refused outright.
    const forged = await refusal(tenantB.getSeries({ seriesId: 'secret-series' }, { tenantId: 'tenant-d-a' }));
    expect([forged.code, forged.reason]).toEqual([Status.PERMISSION_DENIED, 'TENANT_NOT_ALLOWED']);

    const sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
    try {
      // Who a kernel write really runs as, seen from inside PostgreSQL: a trigger (installed here
      // as the superuser) records the role and the tenant setting of every number row inserted.
      await sql.query(`CREATE TABLE evi055_write_identity (seen_role text, seen_tenant text, series text, value bigint)`);
      await sql.query(`GRANT INSERT ON evi055_write_identity TO PUBLIC`);
      await sql.query(`CREATE FUNCTION evi055_record_write_identity() RETURNS trigger LANGUAGE plpgsql AS $$
                       BEGIN
                         INSERT INTO evi055_write_identity VALUES (current_user, current_setting('axis.tenant_id', true), NEW.series_id, NEW.value);
                         RETURN NEW;
                       END $$`);
      await sql.query(`CREATE TRIGGER evi055_write_identity AFTER INSERT ON sequence_number FOR EACH ROW EXECUTE FUNCTION evi055_record_write_identity()`);
      try {
        await tenantA.issueNumber({ seriesId: 'secret-series' });
        await tenantB.createSeries(series('own-series'));
        await tenantB.issueNumber({ seriesId: 'own-series' });
      } finally {
        await sql.query(`DROP TRIGGER evi055_write_identity ON sequence_number`);
      }
      const { rows: identities } = await sql.query(`SELECT seen_role, seen_tenant, series, value::int FROM evi055_write_identity ORDER BY seen_tenant`);
      expect(identities).toEqual([
        { seen_role: 'axis_kernel_app', seen_tenant: 'tenant-d-a', series: 'secret-series', value: 2 },
        { seen_role: 'axis_kernel_app', seen_tenant: 'tenant-d-b', series: 'own-series', value: 1 },
      ]);

      const asApp = async (tenant: string | null, text: string, params: unknown[] = []) => {
        await sql.query('BEGIN');
        try {
          await sql.query(`SELECT set_config('role', 'axis_kernel_app', true), set_config('axis.tenant_id', $1, true)`, [tenant ?? '']);
          return (await sql.query(text, params)).rows;
        } finally {
          await sql.query('ROLLBACK');
        }
      };
      for (const table of ['sequence_series', 'sequence_counter', 'sequence_number', 'kernel_audit_event', 'kernel_idempotency_record']) {
        expect(await asApp('tenant-d-b', `SELECT * FROM ${table} WHERE tenant_id = 'tenant-d-a'`)).toEqual([]);
        expect(await asApp(null, `SELECT * FROM ${table}`)).toEqual([]);
        expect((await asApp('tenant-d-a', `SELECT count(*)::int AS n FROM ${table} WHERE tenant_id = 'tenant-d-a'`))[0].n).toBeGreaterThan(0);
      }
      await expect(
        asApp('tenant-d-b', `UPDATE sequence_counter SET next_value = 1 WHERE tenant_id = 'tenant-d-a' RETURNING *`),
      ).resolves.toEqual([]);
      await expect(
        asApp('tenant-d-b', `INSERT INTO sequence_series (tenant_id, series_id, display_name, pattern, reset_policy, start_value, time_zone, default_reservation_ttl_seconds)
                             VALUES ('tenant-d-a', 'planted', '', '{SEQ}', 'NEVER', 1, 'UTC', 60)`),
      ).rejects.toMatchObject({ code: '42501' });
    } finally {
      await sql.end();
    }
  });

  test('[E] a retried IssueNumber with the same idempotency key returns the same number and consumes nothing; each issue writes one audit entry with the trace id', async () => {
    const client = await clientFor('tenant-e');
    await client.createSeries(series('idem', { pattern: 'E{SEQ:3}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER }));
    const key = randomUUID();
    const traceId = randomUUID().replace(/-/g, '');
    const metadata = () => Metadata({ traceparent: `00-${traceId}-${'1'.repeat(16)}-01` });

    const trailers: Array<string | undefined> = [];
    const onTrailer = (t: Metadata) => trailers.push(t.get('idempotent-replayed'));
    const first = await client.issueNumber({ seriesId: 'idem', subjectRef: 'doc' }, { idempotencyKey: key, metadata: metadata(), onTrailer });
    const retry = await client.issueNumber({ seriesId: 'idem', subjectRef: 'doc' }, { idempotencyKey: key, metadata: metadata(), onTrailer });
    expect(retry).toEqual(first);
    expect(trailers).toEqual([undefined, 'true']);

    const reused = await refusal(client.issueNumber({ seriesId: 'idem', subjectRef: 'another doc' }, { idempotencyKey: key }));
    expect([reused.code, reused.reason]).toEqual([Status.INVALID_ARGUMENT, 'IDEMPOTENCY_KEY_REUSED']);

    const next = await client.issueNumber({ seriesId: 'idem', subjectRef: 'doc-2' });
    expect(next.number!.value).toBe(first.number!.value + 1);

    const sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
    try {
      const { rows } = await sql.query(
        `SELECT e.action, e.resource, e.outcome, e.idempotency_key, e.principal, e.request_digest FROM kernel_audit_event e
          WHERE e.tenant_id = 'tenant-e' AND e.trace_id = $1`,
        [traceId],
      );
      expect(rows).toEqual([
        {
          action: 'axis.kernel.sequences.v1.SequenceService/IssueNumber',
          resource: 'series/idem/periods/-/numbers/1',
          outcome: 'OK',
          idempotency_key: key,
          principal: 'tester',
          request_digest: expect.stringMatching(/^[0-9a-f]{64}$/),
        },
      ]);
      // Every IssueNumber that changed state has exactly one entry; the replay and the refusal none.
      const issues = await sql.query(
        `SELECT resource FROM kernel_audit_event WHERE tenant_id = 'tenant-e' AND action LIKE '%/IssueNumber' ORDER BY event_id`,
      );
      expect(issues.rows.map((r) => r.resource)).toEqual(['series/idem/periods/-/numbers/1', 'series/idem/periods/-/numbers/2']);
      // The sequencer gives the committed entries their gap-free per-tenant numbers.
      await waitFor(async () => {
        const { rows } = await sql.query(
          `SELECT (SELECT count(*) FROM kernel_audit_event WHERE tenant_id = 'tenant-e')::int AS events,
                  (SELECT count(*) FROM kernel_audit_sequence WHERE tenant_id = 'tenant-e')::int AS sequenced,
                  (SELECT coalesce(max(seq), 0) FROM kernel_audit_sequence WHERE tenant_id = 'tenant-e')::int AS last`,
        );
        return rows[0].events >= 3 && rows[0].sequenced === rows[0].events && rows[0].last === rows[0].events;
      });
    } finally {
      await sql.end();
    }
    expect(kernel.logs.text()).toContain(traceId);
  });
});
