/** What the gRPC benchmarks share: the bare grpc-js echo server process and a bare unary caller. */
import { spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { Metadata, type Client, type ServiceError } from '@grpc/grpc-js';

const ROOT = path.resolve(__dirname, '..');
const identity = (buffer: Buffer) => buffer;

/** bench/echo-server.ts in its own process, like the kernel. */
export interface EchoProcess {
  readonly address: string;
  /** The echo server's own process (tsx as a loader, not the tsx CLI): its CPU is what it spends. */
  readonly pid: number;
  stop(): Promise<void>;
}

export async function spawnEcho(timeoutMs = 30_000): Promise<EchoProcess> {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'bench/echo-server.ts')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const stderr: string[] = [];
  createInterface({ input: child.stderr! }).on('line', (line) => stderr.push(line));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    await exited;
  };
  try {
    const port = await new Promise<string>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`echo server did not start in ${timeoutMs} ms: ${stderr.join('\n')}`)), timeoutMs);
      createInterface({ input: child.stdout! }).on('line', (line) => {
        const ready = /^ECHO_LISTENING (\d+)$/.exec(line);
        if (ready) {
          clearTimeout(timer);
          resolve(ready[1]);
        }
      });
      void exited.then(() => {
        clearTimeout(timer);
        reject(new Error(`echo server exited before listening: ${stderr.join('\n')}`));
      });
    });
    return { address: `127.0.0.1:${port}`, pid: child.pid!, stop };
  } catch (error) {
    await stop();
    throw error;
  }
}

/**
 * The metadata a bare caller sends the kernel, made per call: bearer token and tenant, and for a
 * mutating RPC a fresh idempotency key each time.
 */
export function kernelMetadata(token: string, tenantId: string, options: { idempotencyKey?: boolean } = {}): () => Metadata {
  return () => {
    const metadata = new Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    metadata.set('x-tenant-id', tenantId);
    if (options.idempotencyKey) metadata.set('idempotency-key', randomUUID());
    return metadata;
  };
}

/** One unary call with identity serializers on a plain grpc-js client. */
export function bareUnary(client: Client, method: string, payload: Buffer, metadata: () => Metadata): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    client.makeUnaryRequest<Buffer, Buffer>(method, identity, identity, payload, metadata(), (error: ServiceError | null, response?: Buffer) =>
      error ? reject(error) : resolve(response!),
    );
  });
}

export function waitForReady(client: Client): Promise<void> {
  return new Promise((resolve, reject) => client.waitForReady(Date.now() + 10_000, (error) => (error ? reject(error) : resolve())));
}

/** Writes the preload that CPU-profiles a process from start to exit; returns its path. */
export function writeProfilerPreload(dir: string): string {
  mkdirSync(dir, { recursive: true });
  const file = path.join(dir, 'cpu-profile.cjs');
  writeFileSync(
    file,
    `const inspector = require('node:inspector');
const fs = require('node:fs');
const session = new inspector.Session();
session.connect();
session.post('Profiler.enable', () => session.post('Profiler.start'));
process.on('exit', () => {
  session.post('Profiler.stop', (error, result) => {
    if (!error) fs.writeFileSync(${JSON.stringify(dir)} + '/kernel-' + process.pid + '.cpuprofile', JSON.stringify(result.profile));
  });
});
`,
  );
  return file;
}

/**
 * Runs `cleanUp` on Ctrl-C / SIGTERM mid-run (children stopped, the benchmark's database dropped)
 * and exits 130; `finish()` runs it at the normal end of the run (unless a signal did already) and
 * removes the handlers.
 */
export function cleanUpOnSignal(cleanUp: () => Promise<unknown>): { finish(): Promise<void> } {
  let interrupted = false;
  const onSignal = (signal: NodeJS.Signals) => {
    if (interrupted) return;
    interrupted = true;
    console.error(`${signal}: stopping`);
    void cleanUp().finally(() => process.exit(130));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    async finish() {
      if (!interrupted) await cleanUp();
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}
