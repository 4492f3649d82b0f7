import { Client } from 'pg';
import type { Logger } from '../observability/logger';

type Handler = (payload: string) => void;

/**
 * One LISTEN connection per node, shared by every capability (scheduler wake-ups, cache
 * invalidation). Channels are LISTENed while they have subscribers. A dropped connection is
 * re-established with backoff (100 ms doubling to 5 s) and every channel re-LISTENed; since
 * notifications sent while it was down are lost, `onReconnect` subscribers are told so they can
 * re-read what they cache or poll once. Works on the embedded database too (it relays NOTIFY).
 *
 * Handlers run synchronously on the notification; one that throws is logged, never fatal.
 */
export class NotificationHub {
  private client?: Client;
  private readonly channels = new Map<string, Set<Handler>>();
  private readonly reconnectListeners = new Set<() => void>();
  private stopped = false;
  private started = false;
  private retryTimer?: NodeJS.Timeout;
  private retryMs = 100;
  /** Serialises LISTEN/UNLISTEN and reconnects on the one connection. */
  private tail: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly connectionString: string,
    private readonly log: Logger,
  ) {}

  /** Connects and LISTENs on every channel subscribed so far. Rejects if the first connection fails. */
  async start(): Promise<void> {
    this.started = true;
    await this.connect();
  }

  /** Calls `handler` with each notification's payload on `channel`; returns the unsubscribe function. */
  subscribe(channel: string, handler: Handler): () => void {
    let handlers = this.channels.get(channel);
    if (!handlers) {
      handlers = new Set();
      this.channels.set(channel, handlers);
      this.run((client) => client.query(`LISTEN ${client.escapeIdentifier(channel)}`));
    }
    handlers.add(handler);
    return () => {
      const current = this.channels.get(channel);
      if (!current?.delete(handler) || current.size > 0) return;
      this.channels.delete(channel);
      this.run((client) => client.query(`UNLISTEN ${client.escapeIdentifier(channel)}`));
    };
  }

  /** Called after the connection was lost and re-established (notifications may have been missed). */
  onReconnect(listener: () => void): () => void {
    this.reconnectListeners.add(listener);
    return () => this.reconnectListeners.delete(listener);
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.retryTimer) clearTimeout(this.retryTimer);
    await this.tail.catch(() => undefined);
    const client = this.client;
    this.client = undefined;
    await client?.end().catch(() => undefined);
  }

  private run(statement: (client: Client) => Promise<unknown>): void {
    if (!this.started || this.stopped) return;
    this.tail = this.tail
      .then(() => (this.client ? statement(this.client) : undefined))
      .catch((error) => this.log.warn({ err: error }, 'notification hub: LISTEN/UNLISTEN failed; it is redone on reconnect'));
  }

  private async connect(): Promise<void> {
    const client = new Client({ connectionString: this.connectionString, application_name: 'axis-kernel-listen' });
    client.on('notification', (message) => this.deliver(message.channel, message.payload ?? ''));
    client.on('error', (error) => {
      this.log.error({ err: error }, 'notification hub: connection failed; reconnecting');
      this.lost(client);
    });
    client.on('end', () => this.lost(client));
    await client.connect();
    if (this.stopped) {
      await client.end();
      return;
    }
    this.client = client;
    const names = [...this.channels.keys()];
    if (names.length > 0) await client.query(names.map((c) => `LISTEN ${client.escapeIdentifier(c)}`).join('; '));
    this.retryMs = 100;
  }

  private lost(client: Client): void {
    if (this.client !== client || this.stopped) return;
    this.client = undefined;
    client.end().catch(() => undefined);
    this.scheduleReconnect();
  }

  private scheduleReconnect(): void {
    if (this.stopped) return;
    this.retryTimer = setTimeout(() => {
      this.tail = this.tail
        .then(() => this.connect())
        .then(() => {
          this.log.info('notification hub: reconnected');
          for (const listener of this.reconnectListeners) this.safely(listener);
        })
        .catch((error) => {
          this.log.error({ err: error, retry_ms: this.retryMs }, 'notification hub: reconnect failed; retrying');
          this.retryMs = Math.min(5000, this.retryMs * 2);
          this.scheduleReconnect();
        });
    }, this.retryMs);
    this.retryTimer.unref();
  }

  private deliver(channel: string, payload: string): void {
    for (const handler of this.channels.get(channel) ?? []) this.safely(() => handler(payload));
  }

  private safely(fn: () => void): void {
    try {
      fn();
    } catch (error) {
      this.log.error({ err: error }, 'notification handler failed');
    }
  }
}
