import { spawn, spawnSync } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { connect, type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Client, Pool, type PoolClient } from 'pg';
import { startEmbeddedPostgres, type EmbeddedPostgres } from '../../services/platform/database/embedded-postgres';

// Everything goes through `pg` over the socket, as the kernel does; these are the PostgreSQL
// features the kernel relies on, so a PGlite upgrade that breaks one fails here first.

const APP_ROLE = 'axis_kernel_app';

/** Fails the test instead of hanging when the shared session is stuck. */
function within<T>(ms: number, promise: Promise<T>, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function inTransaction<T>(pool: Pool, fn: (c: PoolClient) => Promise<T>): Promise<T> {
  const c = await pool.connect();
  try {
    await c.query('BEGIN');
    const result = await fn(c);
    await c.query('COMMIT');
    return result;
  } catch (error) {
    await c.query('ROLLBACK');
    throw error;
  } finally {
    c.release();
  }
}

describe('embedded PostgreSQL in memory', () => {
  let pg: EmbeddedPostgres;
  let pool: Pool;

  beforeAll(async () => {
    pg = await startEmbeddedPostgres({});
    pool = new Pool({ connectionString: pg.url, max: 8 });
    await pool.query(`
      CREATE ROLE ${APP_ROLE} NOLOGIN;
      CREATE TABLE docs (id bigserial PRIMARY KEY, tenant_id text NOT NULL, body text NOT NULL);
      GRANT SELECT, INSERT, UPDATE ON docs TO ${APP_ROLE};
      GRANT USAGE ON SEQUENCE docs_id_seq TO ${APP_ROLE};
      ALTER TABLE docs ENABLE ROW LEVEL SECURITY;
      ALTER TABLE docs FORCE ROW LEVEL SECURITY;
      CREATE POLICY tenant_isolation ON docs
        USING (tenant_id = current_setting('axis.tenant_id', true))
        WITH CHECK (tenant_id = current_setting('axis.tenant_id', true));
      INSERT INTO docs (tenant_id, body) VALUES ('tenant-a', 'a1'), ('tenant-a', 'a2'), ('tenant-b', 'b1');
    `);
  });

  afterAll(async () => {
    await pool?.end();
    await pg?.stop();
  });

  test('the URL is a local postgresql:// URL on a picked port', () => {
    expect(pg.url).toMatch(/^postgresql:\/\/postgres:postgres@127\.0\.0\.1:\d+\/postgres/);
    expect(new URL(pg.url).port).not.toBe('0');
  });

  test('1: 200 concurrent tenant transactions on 8 connections each see their own setting, and all rows land', async () => {
    await pool.query('CREATE TABLE tx_rows (id serial PRIMARY KEY, tenant_id text NOT NULL, seen text)');
    const results = await Promise.all(
      Array.from({ length: 200 }, (_, i) =>
        inTransaction(pool, async (c) => {
          const tenant = `tenant-${i}`;
          await c.query("SELECT set_config('axis.tenant_id', $1, true)", [tenant]);
          await c.query('INSERT INTO tx_rows (tenant_id) VALUES ($1)', [tenant]);
          const { rows } = await c.query<{ seen: string }>("SELECT current_setting('axis.tenant_id', true) AS seen");
          await c.query('UPDATE tx_rows SET seen = $1 WHERE tenant_id = $2', [rows[0]!.seen, tenant]);
          return rows[0]!.seen === tenant;
        }),
      ),
    );
    expect(results.every(Boolean)).toBe(true);
    const { rows } = await pool.query<{ n: number; ok: number }>(
      'SELECT count(*)::int AS n, count(*) FILTER (WHERE seen = tenant_id)::int AS ok FROM tx_rows',
    );
    expect(rows[0]).toEqual({ n: 200, ok: 200 });
    // Transaction-local settings do not survive COMMIT into the shared session.
    const after = await pool.query("SELECT current_setting('axis.tenant_id', true) AS v");
    expect(after.rows[0].v ?? '').toBe('');
  });

  test('1b: messages of a query split over many TCP chunks are not interleaved with other connections', async () => {
    // 300 kB parameters arrive in several chunks; a per-message multiplexer lets other
    // connections' Parse run in between and binds parameters to the wrong statement.
    const big = 'y'.repeat(300_000);
    const results = await Promise.all(
      Array.from({ length: 40 }, async (_, i) => {
        const { rows } =
          i % 2 === 1
            ? await pool.query(`SELECT length($1::text) + ${i} AS v`, [big])
            : await pool.query(`SELECT $1::int * 1000 + ${i} AS v`, [i]);
        return rows[0].v === (i % 2 === 1 ? 300_000 + i : i * 1000 + i);
      }),
    );
    expect(results.filter(Boolean)).toHaveLength(40);
  });

  test('2: transaction-local role switch makes FORCE ROW LEVEL SECURITY filter by tenant, and COMMIT restores the user', async () => {
    const asTenant = (tenant: string) =>
      inTransaction(pool, async (c) => {
        // The kernel's own opening round trip (see Database.transaction).
        await c.query(
          `SELECT set_config('role', '${APP_ROLE}', true), set_config('axis.tenant_id', ${c.escapeLiteral(tenant)}, true)`,
        );
        const who = await c.query('SELECT current_user AS u');
        const docs = await c.query<{ tenant_id: string }>('SELECT tenant_id FROM docs ORDER BY id');
        return { user: who.rows[0].u as string, tenants: docs.rows.map((r) => r.tenant_id) };
      });

    const [a, b, none] = await Promise.all([asTenant('tenant-a'), asTenant('tenant-b'), asTenant('')]);
    expect(a).toEqual({ user: APP_ROLE, tenants: ['tenant-a', 'tenant-a'] });
    expect(b).toEqual({ user: APP_ROLE, tenants: ['tenant-b'] });
    expect(none).toEqual({ user: APP_ROLE, tenants: [] });

    // WITH CHECK rejects writing into another tenant.
    await expect(
      inTransaction(pool, async (c) => {
        await c.query(`SELECT set_config('role', '${APP_ROLE}', true), set_config('axis.tenant_id', 'tenant-a', true)`);
        await c.query("INSERT INTO docs (tenant_id, body) VALUES ('tenant-b', 'smuggled')");
      }),
    ).rejects.toMatchObject({ code: '42501' });

    // The kernel's single round trip form: BEGIN and the role switch in one simple query.
    const c = await pool.connect();
    try {
      await c.query(`BEGIN; SELECT set_config('role', '${APP_ROLE}', true), set_config('axis.tenant_id', 'tenant-b', true)`);
      expect((await c.query('SELECT count(*)::int AS n FROM docs')).rows[0].n).toBe(1);
      await c.query('COMMIT');
      expect((await c.query('SELECT current_user AS u')).rows[0].u).toBe('postgres');
    } finally {
      c.release();
    }
    expect((await pool.query('SELECT current_user AS u, count(*)::int AS n FROM docs GROUP BY 1')).rows).toEqual([{ u: 'postgres', n: 3 }]);
  });

  test('3a: advisory locks – transaction-scoped ones are released at COMMIT; session ones are SHARED by all connections', async () => {
    const advisoryLocks = async (c: { query: Pool['query'] }) =>
      (await c.query("SELECT count(*)::int AS n FROM pg_locks WHERE locktype = 'advisory'")).rows[0].n as number;

    const inside = await inTransaction(pool, async (c) => {
      const first = (await c.query('SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked', ['tenant|method|key'])).rows[0].locked;
      const again = (await c.query('SELECT pg_try_advisory_xact_lock(hashtextextended($1, 0)) AS locked', ['tenant|method|key'])).rows[0].locked;
      return { first, again, held: await advisoryLocks(c) };
    });
    expect(inside).toEqual({ first: true, again: true, held: 1 });
    expect(await advisoryLocks(pool)).toBe(0);

    // Concurrent transactions taking the same xact lock run one after another, so each gets it.
    const concurrent = await Promise.all(
      Array.from({ length: 10 }, () => inTransaction(pool, async (c) => (await c.query('SELECT pg_try_advisory_xact_lock(99) AS l')).rows[0].l as boolean)),
    );
    expect(concurrent.every(Boolean)).toBe(true);

    const a = await pool.connect();
    const b = await pool.connect();
    try {
      await a.query('SELECT pg_advisory_lock(7)');
      expect(await advisoryLocks(a)).toBe(1);
      // On a real server b would get false: PGlite has one session, so b re-enters a's lock.
      expect((await b.query('SELECT pg_try_advisory_lock(7) AS l')).rows[0].l).toBe(true);
      expect((await a.query('SELECT pg_advisory_unlock(7) AS u')).rows[0].u).toBe(true);
      expect((await b.query('SELECT pg_advisory_unlock(7) AS u')).rows[0].u).toBe(true);
      expect(await advisoryLocks(a)).toBe(0);
    } finally {
      a.release();
      b.release();
    }
  });

  test('3b: plpgsql functions, including SECURITY DEFINER ones callable by the app role past RLS', async () => {
    await pool.query(`
      CREATE FUNCTION add_one(n int) RETURNS int LANGUAGE plpgsql AS $$
      BEGIN
        IF n < 0 THEN RAISE EXCEPTION 'negative: %', n USING ERRCODE = '22023'; END IF;
        RETURN n + 1;
      END $$;
      CREATE FUNCTION count_all_docs() RETURNS TABLE (n bigint, runs_as name)
        LANGUAGE plpgsql SECURITY DEFINER SET search_path = public AS $$
      BEGIN
        RETURN QUERY SELECT count(*), current_user FROM docs;
      END $$;
      REVOKE ALL ON FUNCTION count_all_docs() FROM PUBLIC;
      GRANT EXECUTE ON FUNCTION count_all_docs() TO ${APP_ROLE};
    `);
    expect((await pool.query('SELECT add_one($1) AS v', [41])).rows[0].v).toBe(42);
    await expect(pool.query('SELECT add_one(-1)')).rejects.toMatchObject({ code: '22023', message: 'negative: -1' });

    const seen = await inTransaction(pool, async (c) => {
      await c.query(`SELECT set_config('role', '${APP_ROLE}', true), set_config('axis.tenant_id', 'tenant-b', true)`);
      const direct = (await c.query('SELECT count(*)::int AS n FROM docs')).rows[0].n;
      const definer = (await c.query('SELECT n::int, runs_as FROM count_all_docs()')).rows[0];
      const caller = (await c.query('SELECT current_user AS u')).rows[0].u;
      return { direct, definer, caller };
    });
    expect(seen).toEqual({ direct: 1, definer: { n: 3, runs_as: 'postgres' }, caller: APP_ROLE });
  });

  test('3c: pg_current_xact_id(), pg_snapshot_xmin(pg_current_snapshot()), xid8 and (txid, id) row comparisons', async () => {
    await pool.query(`CREATE TABLE outbox (
      txid xid8 NOT NULL DEFAULT pg_current_xact_id(), id bigserial, payload text NOT NULL, PRIMARY KEY (txid, id))`);
    const txids: string[] = [];
    for (const batch of [['e1', 'e2'], ['e3'], ['e4', 'e5']]) {
      txids.push(
        await inTransaction(pool, async (c) => {
          for (const p of batch) await c.query('INSERT INTO outbox (payload) VALUES ($1)', [p]);
          return (await c.query('SELECT pg_current_xact_id()::text AS x')).rows[0].x as string;
        }),
      );
    }
    expect(new Set(txids).size).toBe(3);
    expect(BigInt(txids[1]!)).toBeGreaterThan(BigInt(txids[0]!));

    const types = await pool.query("SELECT pg_typeof(pg_current_xact_id())::text AS a, pg_typeof(pg_snapshot_xmin(pg_current_snapshot()))::text AS b");
    expect(types.rows[0]).toEqual({ a: 'xid8', b: 'xid8' });

    // Keyset paging the way a relay reads the outbox: everything committed below the snapshot's xmin.
    const page = (afterTxid: string, afterId: string) =>
      pool.query<{ txid: string; id: string; payload: string }>(
        `SELECT txid::text, id::text, payload FROM outbox
          WHERE (txid, id) > ($1::xid8, $2) AND txid < pg_snapshot_xmin(pg_current_snapshot())
          ORDER BY txid, id LIMIT 2`,
        [afterTxid, afterId],
      );
    const first = await page('0', '0');
    expect(first.rows.map((r) => r.payload)).toEqual(['e1', 'e2']);
    const last = first.rows[1]!;
    const second = await page(last.txid, last.id);
    expect(second.rows.map((r) => r.payload)).toEqual(['e3', 'e4']);
    const third = await page(second.rows[1]!.txid, second.rows[1]!.id);
    expect(third.rows.map((r) => r.payload)).toEqual(['e5']);

    // A transaction's own snapshot xmin is its own xid, so its uncommitted rows stay invisible to the relay.
    const inFlight = await inTransaction(pool, async (c) => {
      await c.query("INSERT INTO outbox (payload) VALUES ('e6')");
      return (await c.query('SELECT pg_current_xact_id() = pg_snapshot_xmin(pg_current_snapshot()) AS same')).rows[0].same;
    });
    expect(inFlight).toBe(true);
  });

  test('3d: INSERT ... ON CONFLICT DO UPDATE ... RETURNING', async () => {
    await pool.query('CREATE TABLE counters (key text PRIMARY KEY, n int NOT NULL)');
    const upsert = (key: string) =>
      pool.query<{ n: number; inserted: boolean }>(
        `INSERT INTO counters (key, n) VALUES ($1, 1)
         ON CONFLICT (key) DO UPDATE SET n = counters.n + 1
         RETURNING n, (xmax = 0) AS inserted`,
        [key],
      );
    expect((await upsert('k')).rows[0]).toEqual({ n: 1, inserted: true });
    expect((await upsert('k')).rows[0]).toEqual({ n: 2, inserted: false });
    await Promise.all(Array.from({ length: 20 }, () => upsert('hot')));
    expect((await pool.query("SELECT n FROM counters WHERE key = 'hot'")).rows[0].n).toBe(20);
  });

  test('3e: FOR UPDATE SKIP LOCKED hands each concurrent worker a different job', async () => {
    await pool.query("CREATE TABLE jobs (id int PRIMARY KEY, state text NOT NULL DEFAULT 'queued', worker int)");
    await pool.query('INSERT INTO jobs (id) SELECT g FROM generate_series(1, 12) g');
    const claimed = await Promise.all(
      Array.from({ length: 12 }, (_, worker) =>
        inTransaction(pool, async (c) => {
          const { rows } = await c.query<{ id: number }>(
            "SELECT id FROM jobs WHERE state = 'queued' ORDER BY id FOR UPDATE SKIP LOCKED LIMIT 1",
          );
          const id = rows[0]!.id;
          // Within the claiming transaction the row is ours; SKIP LOCKED does not skip our own lock.
          const again = await c.query("SELECT id FROM jobs WHERE id = $1 FOR UPDATE SKIP LOCKED", [id]);
          expect(again.rows).toHaveLength(1);
          await c.query("UPDATE jobs SET state = 'done', worker = $2 WHERE id = $1", [id, worker]);
          return id;
        }),
      ),
    );
    expect(new Set(claimed).size).toBe(12);
    expect((await pool.query("SELECT count(*)::int AS n FROM jobs WHERE state = 'done'")).rows[0].n).toBe(12);
  });

  test('3f: LISTEN/NOTIFY reaches the listening connection, not the notifier', async () => {
    const listener = new Client({ connectionString: pg.url });
    const second = new Client({ connectionString: pg.url });
    await listener.connect();
    await second.connect();
    try {
      const received: Array<{ channel: string; payload?: string }> = [];
      const secondReceived: string[] = [];
      listener.on('notification', (n) => received.push({ channel: n.channel, payload: n.payload }));
      second.on('notification', (n) => secondReceived.push(n.channel));
      await listener.query('LISTEN axis_events');
      await listener.query('LISTEN "MixedCase"');
      await second.query('LISTEN axis_events');

      const notifierNotifications: string[] = [];
      const notifier = await pool.connect();
      notifier.on('notification', (n) => notifierNotifications.push(n.channel));
      try {
        await notifier.query('BEGIN');
        await notifier.query("SELECT pg_notify('axis_events', $1)", ['in-tx']);
        // Nothing is delivered before COMMIT. (Querying on the listener here would deadlock: the
        // notifier's open transaction holds the one session.)
        await new Promise((r) => setTimeout(r, 50));
        expect(received).toEqual([]);
        await notifier.query('COMMIT');
        await notifier.query("NOTIFY axis_events, 'plain'");
        await notifier.query("SELECT pg_notify('MixedCase', 'mixed')");
        await notifier.query("SELECT pg_notify('nobody_listens', 'x')");
      } finally {
        notifier.release();
      }
      // One connection's UNLISTEN must not silence the channel for the other listener.
      await second.query('UNLISTEN axis_events');
      await pool.query("SELECT pg_notify('axis_events', 'after-unlisten')");
      await within(2000, (async () => { while (received.length < 4) await new Promise((r) => setTimeout(r, 10)); })(), 'notification delivery');

      expect(received).toEqual([
        { channel: 'axis_events', payload: 'in-tx' },
        { channel: 'axis_events', payload: 'plain' },
        { channel: 'MixedCase', payload: 'mixed' },
        { channel: 'axis_events', payload: 'after-unlisten' },
      ]);
      expect(secondReceived).toEqual(['axis_events', 'axis_events']);
      expect(notifierNotifications).toEqual([]);
    } finally {
      await listener.end();
      await second.end();
    }
  });

  test('5a: a failed statement inside a transaction, then ROLLBACK, leaves the connection usable', async () => {
    const c = await pool.connect();
    try {
      await c.query('BEGIN');
      await c.query("INSERT INTO docs (tenant_id, body) VALUES ('tenant-z', 'doomed')");
      await expect(c.query('SELECT 1/0')).rejects.toMatchObject({ code: '22012' });
      await expect(c.query('SELECT 1')).rejects.toMatchObject({ code: '25P02' });
      // Other connections wait for the failed transaction instead of running inside it.
      const other = pool.query("SELECT count(*)::int AS n FROM docs WHERE tenant_id = 'tenant-z'");
      await c.query('ROLLBACK');
      expect((await other).rows[0].n).toBe(0);
      expect((await c.query('SELECT 2 AS v')).rows[0].v).toBe(2);
    } finally {
      c.release();
    }
    // Extended-protocol errors outside a transaction (bad parameter) leave things usable too.
    await expect(pool.query('SELECT $1::int AS v', ['not a number'])).rejects.toMatchObject({ code: '22P02' });
    expect((await pool.query('SELECT $1::int AS v', ['3'])).rows[0].v).toBe(3);
  });

  test('5b: a client that disconnects mid-transaction has it rolled back and does not block others', async () => {
    const waiting: Array<Promise<unknown>> = [];
    for (const how of ['destroy', 'end'] as const) {
      const c = new Client({ connectionString: pg.url });
      c.on('error', () => undefined);
      await c.connect();
      await c.query('BEGIN');
      await c.query("INSERT INTO docs (tenant_id, body) VALUES ('tenant-gone', $1)", [how]);
      // Queued behind the open transaction, as a pooled request would be.
      waiting.push(within(5000, pool.query("SELECT count(*)::int AS n FROM docs WHERE tenant_id = 'tenant-gone'"), `query behind ${how}`));
      if (how === 'destroy') (c as unknown as { connection: { stream: Socket } }).connection.stream.destroy();
      else await c.end();
    }
    const counts = await Promise.all(waiting);
    expect(counts.map((r) => (r as { rows: Array<{ n: number }> }).rows[0]!.n)).toEqual([0, 0]);
    expect((await within(5000, pool.query('SELECT current_user AS u, pg_current_xact_id()::text AS x'), 'follow-up')).rows[0].u).toBe('postgres');
  });

  test('5c: a client cut off halfway through an extended-protocol sequence does not get it committed', async () => {
    await pool.query('CREATE TABLE half_sent (v text)');
    for (const sql of ["INSERT INTO half_sent VALUES ('half')", 'SELECT 1/0']) {
      const raw = await RawConnection.open(pg.url);
      // Parse/Bind/Execute with no Sync, then the socket dies.
      await raw.sendAndWaitFor(
        Buffer.concat([parseMessage(sql), bindMessage(), executeMessage(), flushMessage()]),
        sql.startsWith('INSERT') ? 'C' : 'E',
      );
      raw.destroy();
      const { rows } = await within(5000, pool.query('SELECT count(*)::int AS n FROM half_sent'), 'query after half-sent sequence');
      expect(rows[0].n).toBe(0);
    }
    expect((await pool.query("INSERT INTO half_sent VALUES ('whole') RETURNING v")).rows[0].v).toBe('whole');
  });

  test('named prepared statements belong to their connection and go away with it', async () => {
    const a = new Client({ connectionString: pg.url });
    const b = new Client({ connectionString: pg.url });
    await a.connect();
    await b.connect();
    const prepared = async () => (await pool.query('SELECT count(*)::int AS n FROM pg_prepared_statements')).rows[0].n as number;
    try {
      const run = () =>
        Promise.all([
          a.query({ name: 'same-name', text: 'SELECT 1 + $1::int AS v', values: [1] }),
          b.query({ name: 'same-name', text: "SELECT 'b' || $1 AS v", values: ['x'] }),
        ]);
      // The second round binds the statements each connection already parsed.
      for (let round = 0; round < 2; round++) {
        const [ra, rb] = await run();
        expect([ra.rows[0].v, rb.rows[0].v]).toEqual([2, 'bx']);
      }
      expect(await prepared()).toBe(2);
    } finally {
      await a.end();
      await b.end();
    }
    await within(2000, (async () => { while ((await prepared()) > 0) await new Promise((r) => setTimeout(r, 10)); })(), 'statement clean-up');
  });

  test('known difference: session-level SET is shared by every connection (SET LOCAL is not)', async () => {
    const a = await pool.connect();
    const b = await pool.connect();
    try {
      await a.query("SET application_name = 'set-by-a'");
      expect((await b.query('SHOW application_name')).rows[0].application_name).toBe('set-by-a');
      await a.query('RESET application_name');
      await a.query("BEGIN; SET LOCAL application_name = 'local-to-a'");
      const seenByB = b.query('SHOW application_name');
      expect((await a.query('SHOW application_name')).rows[0].application_name).toBe('local-to-a');
      await a.query('COMMIT');
      expect((await seenByB).rows[0].application_name).not.toBe('local-to-a');
    } finally {
      a.release();
      b.release();
    }
  });
});

describe('embedded PostgreSQL on disk', () => {
  let dir: string;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'axis-embedded-pg-'));
  });

  afterAll(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  test('4: data survives a stop and a restart on the same directory', async () => {
    const dataDir = path.join(dir, 'persist');
    const first = await startEmbeddedPostgres({ dataDir });
    const c1 = new Client({ connectionString: first.url });
    await c1.connect();
    await c1.query('CREATE TABLE kept (id int PRIMARY KEY, v text)');
    await c1.query("INSERT INTO kept VALUES (1, 'survives')");
    await c1.end();
    await first.stop();

    const second = await startEmbeddedPostgres({ dataDir });
    try {
      const c2 = new Client({ connectionString: second.url });
      await c2.connect();
      expect((await c2.query('SELECT v FROM kept WHERE id = 1')).rows).toEqual([{ v: 'survives' }]);
      await c2.end();
    } finally {
      await second.stop();
    }
  });

  test('a data directory in use is refused, in this process and in another one; a stale lock is taken over', async () => {
    // The directory test 4 initialised: a fresh one would cost another initdb (~10 s).
    const dataDir = path.join(dir, 'persist');
    const running = await startEmbeddedPostgres({ dataDir });
    try {
      await expect(startEmbeddedPostgres({ dataDir })).rejects.toThrow(/already in use by this process/);

      const script = path.join(dir, 'second-process.ts');
      const modulePath = path.resolve(__dirname, '../../services/platform/database/embedded-postgres');
      await writeFile(
        script,
        `import { startEmbeddedPostgres } from ${JSON.stringify(modulePath)};
         startEmbeddedPostgres({ dataDir: ${JSON.stringify(dataDir)} })
           .then(async (pg) => { await pg.stop(); console.log('OPENED'); })
           .catch((error) => console.log('REFUSED ' + error.message));`,
      );
      const output = await runTsx(script);
      expect(output).toMatch(new RegExp(`^REFUSED the embedded PostgreSQL data directory .* is already in use by process ${process.pid}`));
    } finally {
      await running.stop();
    }

    // A lock left by a process that died is not an obstacle.
    const deadPid = spawnSync(process.execPath, ['-e', '0']).pid!;
    await writeFile(path.join(dataDir, 'axis-embedded-postgres.lock'), `${deadPid}\n`);
    const reopened = await startEmbeddedPostgres({ dataDir });
    await reopened.stop();
  });
});

function runTsx(script: string): Promise<string> {
  const tsx = path.resolve(__dirname, '../../node_modules/tsx/dist/cli.mjs');
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [tsx, script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve(out.trim()) : reject(new Error(`tsx exited ${code}: ${err}`))));
  });
}

/** Just enough of the wire protocol to leave a sequence half-sent, which `pg` never does. */
class RawConnection {
  private received = Buffer.alloc(0);
  private waiter: (() => void) | undefined;

  private constructor(private readonly socket: Socket) {
    socket.on('data', (d: Buffer) => {
      this.received = Buffer.concat([this.received, d]);
      this.waiter?.();
    });
    socket.on('error', () => undefined);
  }

  static async open(url: string): Promise<RawConnection> {
    const { hostname, port } = new URL(url);
    const socket = connect(Number(port), hostname);
    await new Promise<void>((resolve, reject) => socket.once('connect', resolve).once('error', reject));
    const raw = new RawConnection(socket);
    const params = Buffer.from('user\0postgres\0database\0postgres\0\0');
    const startup = Buffer.alloc(8);
    startup.writeInt32BE(8 + params.length, 0);
    startup.writeInt32BE(196608, 4);
    await raw.sendAndWaitFor(Buffer.concat([startup, params]), 'Z');
    return raw;
  }

  /** Sends bytes and resolves once a backend message of type `type` has arrived. */
  async sendAndWaitFor(bytes: Buffer, type: string): Promise<void> {
    this.received = Buffer.alloc(0);
    this.socket.write(bytes);
    await within(
      5000,
      new Promise<void>((resolve) => {
        const check = () => {
          for (let i = 0; i + 5 <= this.received.length; i += 1 + this.received.readInt32BE(i + 1)) {
            if (this.received[i] === type.charCodeAt(0)) return resolve();
          }
        };
        this.waiter = check;
        check();
      }),
      `backend message ${type}`,
    );
  }

  destroy(): void {
    this.socket.destroy();
  }
}

function frontendMessage(type: string, body: Buffer): Buffer {
  const header = Buffer.alloc(5);
  header[0] = type.charCodeAt(0);
  header.writeInt32BE(4 + body.length, 1);
  return Buffer.concat([header, body]);
}

const parseMessage = (sql: string) => frontendMessage('P', Buffer.concat([Buffer.from(`\0${sql}\0`), Buffer.alloc(2)]));
const bindMessage = () => frontendMessage('B', Buffer.from([0, 0, 0, 0, 0, 0, 0, 0]));
const executeMessage = () => frontendMessage('E', Buffer.from([0, 0, 0, 0, 0]));
const flushMessage = () => frontendMessage('H', Buffer.alloc(0));
