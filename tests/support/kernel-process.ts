import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';

const ROOT = path.resolve(__dirname, '../..');

/** A kernel node running as its own OS process (for multi-node and crash proofs). */
export interface KernelProcess {
  readonly address: string;
  readonly child: ChildProcess;
  /** Every stdout line (JSON logs) seen so far. */
  readonly output: string[];
  /** SIGTERM and wait for a clean exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no clean-up at all. */
  kill(): Promise<void>;
}

/** Spawns `kernel serve` with the given environment and waits for its "kernel listening" line. */
export async function spawnKernel(env: Record<string, string>, timeoutMs = 60_000): Promise<KernelProcess> {
  const child = spawn(process.execPath, [path.join(ROOT, 'node_modules/tsx/dist/cli.mjs'), path.join(ROOT, 'services/platform/cli.ts'), 'serve'], {
    cwd: ROOT,
    env: {
      ...process.env,
      KERNEL_GRPC_ADDR: '127.0.0.1:0',
      KERNEL_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'axis-kernel-proc-')),
      LOG_LEVEL: 'info',
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const stderr: string[] = [];
  child.stderr!.on('data', (d: Buffer) => stderr.push(d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const address = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kernel did not start in ${timeoutMs} ms: ${stderr.join('')}`)), timeoutMs);
    createInterface({ input: child.stdout! }).on('line', (line) => {
      output.push(line);
      try {
        const entry = JSON.parse(line) as { msg?: string; address?: string };
        if (entry.msg === 'kernel listening' && entry.address) {
          clearTimeout(timer);
          resolve(entry.address);
        }
      } catch {
        // not a log line
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`kernel exited with ${code} before listening: ${stderr.join('')}`));
    });
  });
  return {
    address,
    child,
    output,
    async stop() {
      child.kill('SIGTERM');
      return exited;
    },
    async kill() {
      child.kill('SIGKILL');
      await exited;
    },
  };
}
