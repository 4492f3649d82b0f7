import { Status } from 'nice-grpc-common';
import { Client } from 'pg';
import { closeKernelClient, createSequenceClient, type SequenceClient } from '../../clients/src';
import { refusal } from '../support/refusal';
import { NumberStatus, ResetPolicy } from '../../gen/proto/axis/kernel/sequences/v1/sequence';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

/** Bad input to SequenceService: precise reasons, and nothing written. */
describe('SequenceService input validation', () => {
  let kernel: TestKernel;
  let client: SequenceClient;

  beforeAll(async () => {
    kernel = await startTestKernel();
    client = createSequenceClient({ address: kernel.address, tenantId: 'val', maxAttempts: 1, token: await kernel.token({ tenants: ['val'] }) });
    await client.createSeries({ series: { seriesId: 'ok', pattern: 'N{SEQ:4}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, startValue: 1, timeZone: 'UTC' } });
  });
  afterAll(async () => {
    closeKernelClient(client);
    await kernel?.stop();
  });

  const base = { seriesId: 'new-series', pattern: 'X-{SEQ:3}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, startValue: 1, timeZone: 'UTC' };

  test.each([
    ['unknown pattern token', { pattern: 'X-{FOO}-{SEQ}' }, 'PATTERN_INVALID', 'series.pattern'],
    ['{SEQ} missing', { pattern: 'INV-{YYYY}' }, 'PATTERN_INVALID', 'series.pattern'],
    ['two {SEQ} tokens', { pattern: '{SEQ}-{SEQ:2}' }, 'PATTERN_INVALID', 'series.pattern'],
    ['{SEQ:0} width', { pattern: '{SEQ:0}' }, 'PATTERN_INVALID', 'series.pattern'],
    ['unbalanced brace', { pattern: 'X-{SEQ' }, 'PATTERN_INVALID', 'series.pattern'],
    ['YEARLY without a year token', { resetPolicy: ResetPolicy.RESET_POLICY_YEARLY }, 'PATTERN_INVALID', 'series.pattern'],
    ['MONTHLY without {MM}', { resetPolicy: ResetPolicy.RESET_POLICY_MONTHLY, pattern: '{YYYY}-{SEQ}' }, 'PATTERN_INVALID', 'series.pattern'],
    ['negative start', { startValue: -1 }, 'FIELD_INVALID', 'series.start_value'],
    ['UNSPECIFIED reset policy', { resetPolicy: ResetPolicy.RESET_POLICY_UNSPECIFIED }, 'ENUM_UNSPECIFIED', 'series.reset_policy'],
    ['unknown enum number', { resetPolicy: 99 }, 'ENUM_UNSPECIFIED', 'series.reset_policy'],
    ['unknown time zone', { timeZone: 'Mars/Olympus_Mons' }, 'TIME_ZONE_UNKNOWN', 'series.time_zone'],
    ['empty time zone', { timeZone: '' }, 'TIME_ZONE_UNKNOWN', 'series.time_zone'],
    ['empty series id', { seriesId: '' }, 'FIELD_INVALID', 'series.series_id'],
    ['oversized series id', { seriesId: 'a'.repeat(64) }, 'FIELD_INVALID', 'series.series_id'],
    ['series id with SQL', { seriesId: "x'; drop table sequence_series;--" }, 'FIELD_INVALID', 'series.series_id'],
    ['oversized pattern', { pattern: `${'x'.repeat(200)}{SEQ}` }, 'PATTERN_INVALID', 'series.pattern'],
    ['ttl over 7 days', { defaultReservationTtl: { seconds: 8 * 86400, nanos: 0 } }, 'FIELD_INVALID', 'series.default_reservation_ttl'],
  ])('CreateSeries refuses %s', async (_name, override, reason, field) => {
    const refused = await refusal(client.createSeries({ series: { ...base, ...override } }));
    expect([refused.code, refused.reason]).toEqual([Status.INVALID_ARGUMENT, reason]);
    expect(refused.fieldViolations.map((v) => v.field)).toContain(field);
  });

  test('CreateSeries without a series, and a duplicate series', async () => {
    expect((await refusal(client.createSeries({}))).code).toBe(Status.INVALID_ARGUMENT);
    const dup = await refusal(client.createSeries({ series: { ...base, seriesId: 'ok' } }));
    expect([dup.code, dup.reason]).toEqual([Status.ALREADY_EXISTS, 'SERIES_EXISTS']);
  });

  test('unknown series answers NOT_FOUND SERIES_NOT_FOUND on every RPC', async () => {
    for (const call of [
      () => client.getSeries({ seriesId: 'nope' }),
      () => client.issueNumber({ seriesId: 'nope' }),
      () => client.reserveNumber({ seriesId: 'nope' }),
      () => client.commitReservation({ seriesId: 'nope', value: 1 }),
      () => client.voidNumber({ seriesId: 'nope', value: 1, reason: 'r' }),
      () => client.listNumbers({ seriesId: 'nope' }),
      () => client.getGapReport({ seriesId: 'nope' }),
    ]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.NOT_FOUND, 'SERIES_NOT_FOUND']);
    }
  });

  test('numbers: unknown value, bad period, oversized subject, bad ttl, bad page token, bad page size', async () => {
    expect((await refusal(client.voidNumber({ seriesId: 'ok', value: 999, reason: 'r' }))).reason).toBe('NUMBER_NOT_FOUND');
    expect((await refusal(client.commitReservation({ seriesId: 'ok', value: 999 }))).reason).toBe('NUMBER_NOT_FOUND');
    expect((await refusal(client.voidNumber({ seriesId: 'ok', period: '20x6', value: 1, reason: 'r' }))).reason).toBe('FIELD_INVALID');
    expect((await refusal(client.issueNumber({ seriesId: 'ok', subjectRef: 's'.repeat(256) }))).reason).toBe('FIELD_INVALID');
    expect((await refusal(client.reserveNumber({ seriesId: 'ok', ttl: { seconds: 0, nanos: 0 } }))).reason).toBe('FIELD_INVALID');
    expect((await refusal(client.listNumbers({ seriesId: 'ok', pageToken: 'garbage!' }))).reason).toBe('PAGE_TOKEN_INVALID');
    expect((await refusal(client.listSeries({ pageToken: 'eyJwIjoxfQ' }))).reason).toBe('PAGE_TOKEN_INVALID');
    expect((await refusal(client.listSeries({ pageSize: 5000 }))).reason).toBe('FIELD_INVALID');
    expect((await refusal(client.listNumbers({ seriesId: 'ok', status: 42 as NumberStatus }))).reason).toBe('FIELD_INVALID');
  });

  test.each([
    ['Pacific/Kiritimati', '9999-12-31T23:00:00Z', 'year 10000 there'],
    ['America/Los_Angeles', '0001-01-01T00:00:00Z', '1 BC there'],
  ])('a document time valid in UTC but outside years 0001-9999 in %s (%s, %s) is refused', async (timeZone, iso) => {
    const seriesId = `edge-${timeZone.toLowerCase().replace(/[^a-z]/g, '-')}`;
    await client.createSeries({ series: { seriesId, pattern: '{YYYY}-{SEQ}', resetPolicy: ResetPolicy.RESET_POLICY_YEARLY, timeZone } });
    for (const call of [() => client.issueNumber({ seriesId, documentTime: new Date(iso) }), () => client.reserveNumber({ seriesId, documentTime: new Date(iso) })]) {
      const refused = await refusal(call());
      expect([refused.code, refused.reason]).toEqual([Status.INVALID_ARGUMENT, 'FIELD_INVALID']);
      expect(refused.fieldViolations.map((v) => v.field)).toEqual(['document_time']);
    }
    expect((await client.getGapReport({ seriesId })).gapReport!.periods).toEqual([]);
  });

  test('a committed number cannot be committed again; a page token from one query is refused by another', async () => {
    const issued = await client.issueNumber({ seriesId: 'ok' });
    const twice = await refusal(client.commitReservation({ seriesId: 'ok', value: issued.number!.value }));
    expect([twice.code, twice.reason]).toEqual([Status.FAILED_PRECONDITION, 'NUMBER_NOT_RESERVED']);
    for (let i = 0; i < 3; i += 1) await client.issueNumber({ seriesId: 'ok' });
    const page = await client.listNumbers({ seriesId: 'ok', pageSize: 2 });
    expect(page.numbers).toHaveLength(2);
    expect(page.nextPageToken).not.toBe('');
    const next = await client.listNumbers({ seriesId: 'ok', pageSize: 2, pageToken: page.nextPageToken });
    expect(next.numbers[0].value).toBe(page.numbers[1].value + 1);
    const crossed = await refusal(client.listNumbers({ seriesId: 'ok', pageSize: 2, pageToken: page.nextPageToken, status: NumberStatus.NUMBER_STATUS_VOIDED }));
    expect(crossed.reason).toBe('PAGE_TOKEN_INVALID');
  });

  test('refused calls write nothing: no series, no numbers, no audit entries beyond the successful calls', async () => {
    const sql = new Client({ connectionString: kernel.databaseUrl });
    await sql.connect();
    try {
      const series = await sql.query(`SELECT series_id FROM sequence_series WHERE tenant_id = 'val' ORDER BY series_id`);
      expect(series.rows.map((r) => r.series_id)).toEqual(['edge-america-los-angeles', 'edge-pacific-kiritimati', 'ok']);
      const audited = await sql.query(`SELECT count(*)::int AS n FROM kernel_audit_event WHERE tenant_id = 'val' AND outcome = 'OK' AND principal <> 'system:kernel'`);
      const numbers = await sql.query(`SELECT count(*)::int AS n FROM sequence_number WHERE tenant_id = 'val'`);
      // One entry per CreateSeries plus one per issued number.
      expect(audited.rows[0].n).toBe(3 + numbers.rows[0].n);
    } finally {
      await sql.end();
    }
  });
});
