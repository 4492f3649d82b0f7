import { promises as fs } from 'node:fs';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import path from 'node:path';
import { Worker } from 'node:worker_threads';

/*
 * The embedded PostgreSQL used when DATABASE_URL is unset: PGlite (PostgreSQL compiled to WASM)
 * served over the PostgreSQL wire protocol, so the kernel reaches it through the same `pg` driver
 * path as a real server.
 *
 * PGlite runs in a worker thread: its WASM executes each request synchronously, which would
 * otherwise stall the kernel's event loop for the length of every query; and its CommonJS build
 * loads Node built-ins with dynamic import(), which Jest's module sandbox rejects ("A dynamic import
 * callback was invoked without --experimental-vm-modules").
 *
 * PGlite is ONE backend session. Every socket connection is multiplexed onto it by
 * {@link SharedSession}, which gives one connection the session from the start of a request until
 * the backend is idle again (ReadyForQuery 'I'), so transactions and extended-protocol sequences
 * never interleave. What stays shared, unlike a real server: session-level state (SET without
 * LOCAL, session advisory locks, named prepared statements, temp tables) — only transaction-local
 * state is private to a connection. A connection holding an open transaction blocks every other
 * connection until it ends, so code must never wait on a second connection while in a transaction.
 *
 * The multiplexer of @electric-sql/pglite-socket is not used: it schedules per protocol message
 * and only pins the session inside explicit transaction blocks, so when a connection's
 * Parse/Bind/Execute/Sync arrives in more than one TCP chunk (large parameters) another
 * connection's messages run in between and bind to the wrong unnamed statement.
 */

/** A running embedded PostgreSQL (PGlite behind a wire-protocol socket server). */
export interface EmbeddedPostgres {
  /** A postgresql:// URL for `pg` (any number of pooled connections; they queue for the session). */
  readonly url: string;
  /** Closes every connection, shuts PGlite down (flushing the data directory) and releases its lock. */
  stop(): Promise<void>;
}

/** Where the embedded PostgreSQL keeps its data and where it listens. */
export interface EmbeddedPostgresOptions {
  /** Directory holding the database across restarts; absent keeps it in memory. */
  dataDir?: string;
  /** Interface to listen on; default 127.0.0.1. */
  host?: string;
  /** TCP port; default 0 picks a free one (read it from `url`). */
  port?: number;
  /** Diagnostics (PostgreSQL's own log lines, stalled connections); nothing is printed otherwise. */
  log?: (msg: string) => void;
}

/** Starts PGlite (in `dataDir`, or in memory) and serves it on host:port until `stop()`. */
export async function startEmbeddedPostgres(options: EmbeddedPostgresOptions = {}): Promise<EmbeddedPostgres> {
  const log = options.log ?? (() => undefined);
  const host = options.host ?? '127.0.0.1';
  const dataDir = options.dataDir === undefined ? undefined : path.resolve(options.dataDir);
  const lock = dataDir === undefined ? undefined : await DataDirLock.acquire(dataDir);

  let db: PGliteThread;
  try {
    db = await PGliteThread.open(dataDir, (line) => forwardServerLog(line, log));
  } catch (error) {
    await lock?.release();
    throw error;
  }

  const session = new SharedSession(db, log);
  const server = createServer((socket) => session.accept(socket));
  try {
    await listen(server, options.port ?? 0, host);
  } catch (error) {
    await db.close().catch(() => undefined);
    await lock?.release();
    throw error;
  }
  // A failing accept (EMFILE) must not become an uncaught 'error' that ends the kernel.
  server.on('error', (error) => log(`embedded PostgreSQL: socket server error: ${error.message}`));
  const { port } = server.address() as AddressInfo;
  const urlHost = host.includes(':') ? `[${host}]` : host;

  let stopping: Promise<void> | undefined;
  return {
    url: `postgresql://postgres:postgres@${urlHost}:${port}/postgres?sslmode=disable`,
    stop: () =>
      (stopping ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        try {
          await session.shutdown();
          await closed;
        } finally {
          await lock?.release();
        }
      })()),
  };
}

/**
 * PostgreSQL's own output: errors caused by a client's statement already reach that client, and
 * the rest is the stand-alone backend's prompt chatter, so only server-level lines (start-up,
 * recovery, shut-down, crashes) are worth the kernel's log.
 */
function forwardServerLog(line: string, log: (msg: string) => void): void {
  if (/\b(LOG|FATAL|PANIC):/.test(line) && !line.includes('skipping missing configuration file')) log(`embedded PostgreSQL: ${line.trim()}`);
}

function listen(server: Server, port: number, host: string): Promise<void> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
}

/** What one batch of protocol messages produced. */
interface Execution {
  output: Uint8Array[];
  /** PGlite's own view (IsTransactionBlock), independent of the output stream. */
  inTransaction: boolean;
}

// Plain JavaScript: it runs in the worker under Node's own loader, outside any TypeScript or Jest
// transform. The main thread sends one request at a time.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { PGlite } = require(workerData.pglite);
let db;
const log = (line) => { parentPort.postMessage({ log: line }); return false; };
const ops = {
  async open({ dataDir }) {
    db = await PGlite.create({ dataDir, onStdout: log, onStderr: log });
  },
  async exec({ bytes }) {
    const output = [];
    await db.execProtocolRawStream(bytes, { onRawData: (data) => output.push(new Uint8Array(data)) });
    return { output, inTransaction: db.isInTransaction() };
  },
  async close() {
    await db.close();
  },
};
parentPort.on('message', async ({ id, op, args }) => {
  try {
    const result = await ops[op](args);
    parentPort.postMessage({ id, result }, result ? result.output.map((chunk) => chunk.buffer) : []);
  } catch (error) {
    parentPort.postMessage({ id, error: error instanceof Error ? error.message : String(error) });
  }
});
`;

type WorkerReply = { log: string } | { id: number; result?: Execution; error?: string };

/** PGlite in its worker thread, driven by request/reply messages. */
class PGliteThread {
  private readonly calls = new Map<number, { resolve: (result: Execution | undefined) => void; reject: (error: Error) => void }>();
  private nextCall = 1;
  private dead: Error | undefined;

  private constructor(
    private readonly worker: Worker,
    onLog: (line: string) => void,
  ) {
    worker.on('message', (reply: WorkerReply) => {
      if ('log' in reply) return onLog(reply.log);
      const call = this.calls.get(reply.id);
      this.calls.delete(reply.id);
      if (reply.error !== undefined) call?.reject(new Error(reply.error));
      else call?.resolve(reply.result);
    });
    worker.on('error', (error) => this.die(error));
    worker.on('exit', (code) => this.die(new Error(`the PGlite worker exited (code ${code})`)));
  }

  static async open(dataDir: string | undefined, onLog: (line: string) => void): Promise<PGliteThread> {
    const worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { pglite: require.resolve('@electric-sql/pglite') } });
    const thread = new PGliteThread(worker, onLog);
    try {
      await thread.call('open', { dataDir });
    } catch (error) {
      await worker.terminate();
      throw error;
    }
    return thread;
  }

  async exec(bytes: Buffer): Promise<Execution> {
    return (await this.call('exec', { bytes }))!;
  }

  async close(): Promise<void> {
    try {
      if (!this.dead) await this.call('close', {});
    } finally {
      await this.worker.terminate();
    }
  }

  private call(op: string, args: object): Promise<Execution | undefined> {
    if (this.dead) return Promise.reject(this.dead);
    const id = this.nextCall++;
    return new Promise((resolve, reject) => {
      this.calls.set(id, { resolve, reject });
      this.worker.postMessage({ id, op, args });
    });
  }

  private die(error: Error): void {
    this.dead ??= error;
    for (const call of this.calls.values()) call.reject(error);
    this.calls.clear();
  }
}

const LOCK_FILE = 'axis-embedded-postgres.lock';

/**
 * PGlite does not lock its data directory (a second process opens it happily and the two
 * overwrite each other's pages), so a lock file holding the owner's pid guards it. A file left by
 * a dead process is taken over.
 */
class DataDirLock {
  private constructor(
    private readonly file: string,
    private readonly token: string,
  ) {}

  static async acquire(dataDir: string): Promise<DataDirLock> {
    await fs.mkdir(dataDir, { recursive: true });
    const file = path.join(dataDir, LOCK_FILE);
    const token = `${process.pid}\n`;
    for (let attempt = 0; attempt < 3; attempt++) {
      try {
        await fs.writeFile(file, token, { flag: 'wx' });
        return new DataDirLock(file, token);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code !== 'EEXIST') throw error;
      }
      const holder = Number.parseInt(await fs.readFile(file, 'utf8').catch(() => ''), 10);
      if (Number.isInteger(holder) && holder > 0 && processIsAlive(holder)) {
        const who = holder === process.pid ? 'this process' : `process ${holder}`;
        throw new Error(
          `the embedded PostgreSQL data directory ${dataDir} is already in use by ${who} (lock file ${file}); ` +
            'stop that kernel or use another data directory',
        );
      }
      await fs.rm(file, { force: true });
    }
    throw new Error(`could not lock the embedded PostgreSQL data directory ${dataDir} (lock file ${file})`);
  }

  async release(): Promise<void> {
    // Only remove the file if it is still ours: a stale-lock takeover may have replaced it.
    const content = await fs.readFile(this.file, 'utf8').catch(() => undefined);
    if (content === this.token) await fs.rm(this.file, { force: true });
  }
}

function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
}

// Wire-protocol constants (PostgreSQL protocol 3.0).
const SSL_REQUEST = 80877103;
const GSSENC_REQUEST = 80877104;
const CANCEL_REQUEST = 80877102;
const MAX_STARTUP_LENGTH = 10_000;
/** Frontend messages forwarded to PGlite; it aborts the whole WASM runtime on some others. */
const FORWARDED_TYPES = new Set('BCdcfDEHFPpQS'.split('').map((c) => c.charCodeAt(0)));
const TERMINATE = 'X'.charCodeAt(0);
const QUERY = 'Q'.charCodeAt(0);
const PARSE = 'P'.charCodeAt(0);
const BIND = 'B'.charCodeAt(0);
const DESCRIBE = 'D'.charCodeAt(0);
const CLOSE = 'C'.charCodeAt(0);
const STATEMENT = 'S'.charCodeAt(0);
const READY_FOR_QUERY = 'Z'.charCodeAt(0);
const NOTIFICATION = 'A'.charCodeAt(0);
const IDLE = 'I'.charCodeAt(0);
const STALL_WARNING_MS = 10_000;

/**
 * The one PGlite session and the connections sharing it. A connection "owns" the session from
 * the first message it runs until PGlite's output ends with ReadyForQuery 'I' (idle, no open
 * transaction, no half-done extended-protocol sequence); meanwhile other connections' messages
 * wait. Owning connections that disconnect get their transaction rolled back.
 */
class SharedSession {
  private readonly connections = new Set<ClientConnection>();
  /** Connections with messages waiting for the session, in arrival order. */
  private readonly waiting: ClientConnection[] = [];
  private owner: ClientConnection | undefined;
  /** Whether PGlite's last output ended with ReadyForQuery 'I'. */
  private idle = true;
  private inTransaction = false;
  private running: Promise<void> | undefined;
  private closing = false;
  private failure: Error | undefined;
  /** LISTEN/UNLISTEN ran, so the session's listened channels may differ from the union wanted. */
  private listensChanged = false;
  /** Housekeeping to run on the session between owners, output dropped. */
  private readonly chores: Buffer[] = [];
  private stallTimer: NodeJS.Timeout | undefined;
  private nextId = 1;

  constructor(
    private readonly db: PGliteThread,
    private readonly log: (msg: string) => void,
  ) {}

  accept(socket: Socket): void {
    if (this.closing || this.failure) {
      socket.end(errorResponse('57P03', this.failure ? `the embedded PostgreSQL has failed: ${this.failure.message}` : 'the embedded PostgreSQL is shutting down'));
      return;
    }
    const connection = new ClientConnection(this.nextId++, socket, this);
    this.connections.add(connection);
  }

  /** Called by a connection when it has new complete messages. */
  submit(connection: ClientConnection): void {
    if (connection !== this.owner && !this.waiting.includes(connection)) this.waiting.push(connection);
    this.kick();
  }

  /** Called by a connection when its socket is gone. */
  disconnected(connection: ClientConnection): void {
    this.connections.delete(connection);
    const index = this.waiting.indexOf(connection);
    if (index >= 0) this.waiting.splice(index, 1);
    // Its prepared statements outlive it in the shared session.
    if (connection.statements.size > 0) this.chores.push(closeStatementsMessages(connection.statements));
    this.kick();
  }

  async shutdown(): Promise<void> {
    this.closing = true;
    for (const connection of this.connections) connection.destroy();
    await this.running;
    clearTimeout(this.stallTimer);
    if (!this.failure) {
      try {
        // A transaction left open by a connection that was cut off must not reach the disk.
        if (!this.idle || this.inTransaction) await this.execute(abortMessages(), undefined);
      } catch (error) {
        this.log(`embedded PostgreSQL: rollback before shutdown failed: ${String(error)}`);
      }
    }
    await this.db.close();
  }

  private kick(): void {
    if (this.running || this.closing || this.failure) return;
    this.running = this.drain().finally(() => {
      this.running = undefined;
      if (this.hasRunnable()) this.kick();
    });
  }

  private hasRunnable(): boolean {
    return this.owner ? this.owner.closed || this.owner.hasPending() : this.waiting.length > 0 || this.chores.length > 0;
  }

  private async drain(): Promise<void> {
    try {
      while (!this.closing) {
        if (!this.owner && this.chores.length > 0) {
          await this.execute(this.chores.shift()!, undefined);
          continue;
        }
        const connection = this.next();
        if (!connection) break;
        if (connection.closed) {
          if (connection === this.owner) await this.abandon(connection);
        } else if (connection.hasPending()) {
          await this.runFor(connection);
        }
      }
    } catch (error) {
      this.fail(error instanceof Error ? error : new Error(String(error)));
    }
  }

  private next(): ClientConnection | undefined {
    if (this.owner) {
      if (this.owner.closed || this.owner.hasPending()) return this.owner;
      if (this.waiting.length > 0) this.warnIfStalled(this.owner);
      return undefined;
    }
    return this.waiting.shift();
  }

  private async runFor(connection: ClientConnection): Promise<void> {
    this.owner = connection;
    const batch = connection.takePending();
    if (batch.touchesListen) this.listensChanged = true;
    await this.execute(batch.bytes, connection);
    if (this.idle) this.release(connection);
  }

  /**
   * The owner's socket closed mid-transaction or mid-sequence. A real server would end that
   * backend; here the session lives on, so undo the transaction. ROLLBACK first (a Sync would
   * commit a half-sent implicit transaction), then Sync to leave extended-protocol error state,
   * then ROLLBACK again for an explicit transaction whose ROLLBACK was skipped in that state.
   */
  private async abandon(connection: ClientConnection): Promise<void> {
    await this.execute(abortMessages(), undefined);
    if (this.inTransaction) await this.execute(queryMessage('ROLLBACK'), undefined);
    this.release(connection);
  }

  private release(connection: ClientConnection): void {
    this.owner = undefined;
    clearTimeout(this.stallTimer);
    this.stallTimer = undefined;
    if (!connection.closed && connection.hasPending()) this.waiting.push(connection);
    if (this.listensChanged) this.restoreListens();
  }

  /**
   * LISTEN is per session, so one connection's UNLISTEN (or a LISTEN rolled back) would silence
   * channels other connections still listen on: re-LISTEN the union, which is idempotent.
   */
  private restoreListens(): void {
    this.listensChanged = false;
    const channels = new Set<string>();
    for (const connection of this.connections) for (const channel of connection.listening) channels.add(channel);
    if (channels.size > 0) this.chores.push(queryMessage([...channels].map((c) => `LISTEN ${quoteIdentifier(c)}`).join('; ')));
  }

  /** Runs protocol messages on PGlite, streaming the output to `target` (or dropping it). */
  private async execute(messages: Buffer, target: ClientConnection | undefined): Promise<void> {
    const output = new BackendOutput(
      (bytes) => target?.write(bytes),
      (frame, channel) => this.deliverNotification(frame, channel),
      (ready) => {
        this.idle = ready === IDLE;
      },
    );
    const execution = await this.db.exec(messages);
    this.inTransaction = execution.inTransaction;
    for (const chunk of execution.output) output.push(chunk);
  }

  /**
   * PGlite emits NotificationResponse in the output of whichever connection's statement made the
   * session receive it (usually the notifier's COMMIT), so route it to the connections that
   * LISTENed on the channel instead.
   */
  private deliverNotification(frame: Buffer, channel: string): void {
    for (const connection of this.connections) if (connection.listening.has(channel)) connection.write(frame);
  }

  private warnIfStalled(owner: ClientConnection): void {
    if (this.stallTimer) return;
    this.stallTimer = setTimeout(() => {
      this.stallTimer = undefined;
      if (this.owner !== owner || this.waiting.length === 0) return;
      this.log(
        `embedded PostgreSQL: ${this.waiting.length} connection(s) have waited ${STALL_WARNING_MS / 1000}s for connection #${owner.id}, ` +
          'which holds an open transaction; the embedded database runs one transaction at a time, so waiting on another ' +
          'connection while holding a transaction deadlocks',
      );
    }, STALL_WARNING_MS);
    this.stallTimer.unref();
  }

  private fail(error: Error): void {
    this.failure = error;
    this.log(`embedded PostgreSQL failed: ${error.message}`);
    for (const connection of this.connections) connection.destroy(errorResponse('XX000', `the embedded PostgreSQL has failed: ${error.message}`));
  }
}

/** One client socket: splits its bytes into protocol messages and queues them for the session. */
class ClientConnection {
  /** Channels this connection LISTENs on (as the server names them). */
  readonly listening = new Set<string>();
  /** Its named prepared statements, as named in the session. */
  readonly statements = new Set<string>();
  /** The socket is gone (set on 'close'). */
  closed = false;
  /** No more input is read: Terminate or a protocol violation. */
  private ended = false;
  private started = false;
  private readonly pending: Buffer[] = [];
  private touchesListen = false;
  private inbox: Buffer[] = [];
  private inboxLength = 0;

  constructor(
    readonly id: number,
    private readonly socket: Socket,
    private readonly session: SharedSession,
  ) {
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => this.receive(chunk));
    // Errors (ECONNRESET) always end in 'close', which does the cleanup.
    socket.on('error', () => undefined);
    socket.on('close', () => {
      this.closed = true;
      this.pending.length = 0;
      this.session.disconnected(this);
    });
  }

  hasPending(): boolean {
    return this.pending.length > 0;
  }

  takePending(): { bytes: Buffer; touchesListen: boolean } {
    const taken = { bytes: Buffer.concat(this.pending), touchesListen: this.touchesListen };
    this.pending.length = 0;
    this.touchesListen = false;
    return taken;
  }

  write(bytes: Buffer): void {
    if (!this.socket.destroyed && this.socket.writable) this.socket.write(bytes);
  }

  destroy(lastWords?: Buffer): void {
    if (lastWords && !this.socket.destroyed) this.socket.end(lastWords);
    else this.socket.destroy();
  }

  private receive(chunk: Buffer): void {
    this.inbox.push(chunk);
    this.inboxLength += chunk.length;
    let submitted = false;
    for (;;) {
      const message = this.nextMessage();
      if (message === undefined) break;
      if (message === null) continue;
      this.noteListens(message);
      this.pending.push(this.renameStatement(message));
      submitted = true;
    }
    if (submitted) this.session.submit(this);
  }

  /** The next complete message to forward; null if one was consumed here; undefined if none yet. */
  private nextMessage(): Buffer | null | undefined {
    if (this.ended) return undefined;
    const headerLength = this.started ? 5 : 8;
    if (this.inboxLength < headerLength) return undefined;
    const header = this.peek(headerLength);
    if (!this.started) {
      const length = header.readInt32BE(0);
      const code = header.readInt32BE(4);
      if (length < 8 || length > MAX_STARTUP_LENGTH) return this.violation('invalid startup packet length');
      if (this.inboxLength < length) return undefined;
      const packet = this.take(length);
      if (code === SSL_REQUEST || code === GSSENC_REQUEST) {
        this.write(Buffer.from('N'));
        return null;
      }
      // PGlite has no separate backend to signal, so a cancel request can only be ignored.
      if (code === CANCEL_REQUEST) return this.violation(undefined);
      if (code >>> 16 !== 3) return this.violation(`unsupported frontend protocol ${code >>> 16}.${code & 0xffff}`);
      this.started = true;
      return packet;
    }
    const type = header[0]!;
    const length = header.readInt32BE(1);
    if (length < 4) return this.violation('invalid message length');
    if (this.inboxLength < length + 1) return undefined;
    const message = this.take(length + 1);
    if (type === TERMINATE) {
      this.ended = true;
      this.socket.end();
      return undefined;
    }
    if (!FORWARDED_TYPES.has(type)) return this.violation(`unsupported frontend message type "${String.fromCharCode(type)}"`);
    return message;
  }

  private violation(message: string | undefined): undefined {
    this.ended = true;
    this.inbox = [];
    this.inboxLength = 0;
    if (message) this.socket.end(errorResponse('08P01', message));
    else this.socket.end();
    return undefined;
  }

  private peek(length: number): Buffer {
    if (this.inbox[0]!.length < length) this.inbox = [Buffer.concat(this.inbox)];
    return this.inbox[0]!.subarray(0, length);
  }

  private take(length: number): Buffer {
    if (this.inbox[0]!.length < length) this.inbox = [Buffer.concat(this.inbox)];
    const head = this.inbox[0]!;
    const message = Buffer.from(head.subarray(0, length));
    if (head.length === length) this.inbox.shift();
    else this.inbox[0] = head.subarray(length);
    this.inboxLength -= length;
    return message;
  }

  /**
   * Prepared statements are per session, so two connections preparing the same name (pg's
   * `name:`, drivers that name every statement) would collide: each connection's protocol-level
   * statement names get its own prefix. SQL-level PREPARE/EXECUTE is left alone.
   */
  private renameStatement(message: Buffer): Buffer {
    if (!this.started) return message;
    const type = message[0];
    let at: number;
    if (type === PARSE) at = 5;
    else if (type === BIND) at = message.indexOf(0, 5) + 1;
    else if ((type === DESCRIBE || type === CLOSE) && message[5] === STATEMENT) at = 6;
    else return message;
    const end = message.indexOf(0, at);
    if (end <= at) return message;
    const name = `c${this.id}.${message.toString('utf8', at, end)}`;
    if (type === PARSE) this.statements.add(name);
    else if (type === CLOSE) this.statements.delete(name);
    const renamed = Buffer.concat([message.subarray(0, at), Buffer.from(name, 'utf8'), message.subarray(end)]);
    renamed.writeInt32BE(renamed.length - 1, 1);
    return renamed;
  }

  /** Tracks LISTEN/UNLISTEN in simple queries and Parse messages, for notification routing. */
  private noteListens(message: Buffer): void {
    if (!this.started) return;
    let text: string;
    if (message[0] === QUERY) {
      text = message.toString('utf8', 5, message.length - 1);
    } else if (message[0] === PARSE) {
      const nameEnd = message.indexOf(0, 5);
      text = message.toString('utf8', nameEnd + 1, message.indexOf(0, nameEnd + 1));
    } else {
      return;
    }
    for (const match of text.matchAll(LISTEN_STATEMENT)) {
      this.touchesListen = true;
      const channel = unquoteIdentifier(match[2]!);
      if (match[1]!.toUpperCase() === 'LISTEN') this.listening.add(channel);
      else if (channel === '*') this.listening.clear();
      else this.listening.delete(channel);
    }
  }
}

const LISTEN_STATEMENT = /(?:^|;)\s*(UNLISTEN|LISTEN)\s+("(?:[^"]|"")+"|[^\s;"]+)/gi;

function unquoteIdentifier(identifier: string): string {
  return identifier.startsWith('"') ? identifier.slice(1, -1).replace(/""/g, '"') : identifier.toLowerCase();
}

function quoteIdentifier(identifier: string): string {
  return `"${identifier.replace(/"/g, '""')}"`;
}

/**
 * Splits PGlite's output into backend messages as it streams: everything is passed through
 * except NotificationResponse frames, which are handed over whole for routing; ReadyForQuery
 * status is reported so the session knows when it is idle.
 */
class BackendOutput {
  private readonly header = Buffer.alloc(5);
  private headerFill = 0;
  private type = 0;
  private remaining = 0;
  private inBody = false;
  private status = 0;
  private notification: Buffer[] = [];
  private out: Buffer[] = [];

  constructor(
    private readonly forward: (bytes: Buffer) => void,
    private readonly notify: (frame: Buffer, channel: string) => void,
    private readonly ready: (status: number) => void,
  ) {}

  push(data: Uint8Array): void {
    let i = 0;
    while (i < data.length) {
      if (!this.inBody) {
        const n = Math.min(5 - this.headerFill, data.length - i);
        this.header.set(data.subarray(i, i + n), this.headerFill);
        this.headerFill += n;
        i += n;
        if (this.headerFill < 5) break;
        this.type = this.header[0]!;
        this.remaining = this.header.readInt32BE(1) - 4;
        this.inBody = true;
        this.collect(Buffer.from(this.header));
      } else {
        const n = Math.min(this.remaining, data.length - i);
        if (this.type === READY_FOR_QUERY && n > 0) this.status = data[i]!;
        this.collect(Buffer.from(data.subarray(i, i + n)));
        i += n;
        this.remaining -= n;
      }
      if (this.inBody && this.remaining === 0) this.endFrame();
    }
    this.flush();
  }

  private collect(bytes: Buffer): void {
    (this.type === NOTIFICATION ? this.notification : this.out).push(bytes);
  }

  private endFrame(): void {
    this.inBody = false;
    this.headerFill = 0;
    if (this.type === NOTIFICATION) {
      const frame = Buffer.concat(this.notification);
      this.notification = [];
      // Whatever preceded the notification goes out first, as the server sent it.
      this.flush();
      const channelStart = 9;
      this.notify(frame, frame.toString('utf8', channelStart, frame.indexOf(0, channelStart)));
    } else if (this.type === READY_FOR_QUERY) {
      this.ready(this.status);
    } else {
      this.ready(0);
    }
  }

  private flush(): void {
    if (this.out.length === 0) return;
    this.forward(this.out.length === 1 ? this.out[0]! : Buffer.concat(this.out));
    this.out = [];
  }
}

function queryMessage(sql: string): Buffer {
  const text = Buffer.from(`${sql}\0`, 'utf8');
  const header = Buffer.alloc(5);
  header[0] = QUERY;
  header.writeInt32BE(4 + text.length, 1);
  return Buffer.concat([header, text]);
}

const SYNC_MESSAGE = Buffer.from([0x53, 0, 0, 0, 4]);

function closeStatementsMessages(names: Iterable<string>): Buffer {
  const closes = [...names].map((name) => {
    const body = Buffer.from(`S${name}\0`, 'utf8');
    const header = Buffer.alloc(5);
    header[0] = CLOSE;
    header.writeInt32BE(4 + body.length, 1);
    return Buffer.concat([header, body]);
  });
  return Buffer.concat([...closes, SYNC_MESSAGE]);
}

function abortMessages(): Buffer {
  return Buffer.concat([queryMessage('ROLLBACK'), SYNC_MESSAGE]);
}

/** A FATAL ErrorResponse, so clients turned away see why instead of a bare disconnect. */
function errorResponse(sqlState: string, message: string): Buffer {
  const fields = Buffer.from(`SFATAL\0VFATAL\0C${sqlState}\0M${message}\0\0`, 'utf8');
  const header = Buffer.alloc(5);
  header[0] = 'E'.charCodeAt(0);
  header.writeInt32BE(4 + fields.length, 1);
  return Buffer.concat([header, fields]);
}
