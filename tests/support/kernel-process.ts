import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { TEST_MASTER_KEYS } from './test-master-keys';

const ROOT = path.resolve(__dirname, '../..');

/** A kernel node running as its own OS process (for multi-node and crash proofs). */
export interface KernelProcess {
  readonly address: string;
  readonly child: ChildProcess;
  /** Every stdout line (JSON logs) seen so far. */
  readonly output: string[];
  /** Every stderr line (the listening line, banners) seen so far. */
  readonly errors: string[];
  /** SIGTERM and wait for a clean exit; returns the exit code. */
  stop(): Promise<number | null>;
  /** SIGKILL: no clean-up at all. */
  kill(): Promise<void>;
}

/** Spawns `kernel serve` with the given environment and waits for its "AXIS Kernel listening on" line. */
export async function spawnKernel(env: Record<string, string>, timeoutMs = 60_000, args: string[] = []): Promise<KernelProcess> {
  // tsx as a loader inside the one node process (not the tsx CLI, which would run the kernel in
  // a second process and relay signals): SIGTERM and SIGKILL reach the kernel itself.
  const child = spawn(process.execPath, ['--import', 'tsx', path.join(ROOT, 'services/kernel/cli.ts'), 'serve', ...args], {
    cwd: ROOT,
    env: {
      ...process.env,
      KERNEL_GRPC_ADDR: '127.0.0.1:0',
      KERNEL_DATA_DIR: mkdtempSync(path.join(tmpdir(), 'axis-kernel-proc-')),
      LOG_LEVEL: 'info',
      KERNEL_MASTER_KEYS: TEST_MASTER_KEYS,
      ...env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const output: string[] = [];
  const stderr: string[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => output.push(line));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const listening = new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`kernel did not start in ${timeoutMs} ms: ${stderr.join('\n')}`)), timeoutMs);
    createInterface({ input: child.stderr! }).on('line', (line) => {
      stderr.push(line);
      const ready = /^AXIS Kernel listening on (\S+)$/.exec(line);
      if (ready) {
        clearTimeout(timer);
        resolve(ready[1]);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`kernel exited with ${code} before listening: ${stderr.join('\n')}`));
    });
  });
  let address: string;
  try {
    address = await listening;
  } catch (error) {
    child.kill('SIGKILL');
    throw error;
  }
  return {
    address,
    child,
    output,
    errors: stderr,
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
