/**
 * The typed clients as another service gets them (issue 12 §10): built and packed the way the
 * README says, installed from the tarball into a fresh project under the OS temp directory —
 * nothing there leads back to this repository's sources or node_modules — and used from plain
 * CommonJS against a running kernel. The kernel's own code keeps importing `clients/src`; this
 * file is what proves the package itself works.
 */
import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import { lstat, mkdir, mkdtemp, readFile, readdir, realpath, rm, writeFile } from 'node:fs/promises';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { Status } from 'nice-grpc-common';
import { startTestKernel, type TestKernel } from '../support/test-kernel';

const execFileAsync = promisify(execFile);
const REPO_ROOT = path.resolve(__dirname, '../..');
const PACKAGE_NAME = '@axis-kernel/clients';
const TENANT = 'consumer-tenant';

/**
 * Under `npm test` the environment carries npm's script variables about this repository (its
 * package.json, its prefix, the running lifecycle event). A nested npm working on the consumer
 * project must not see them, so they are dropped; the rest (cache, registry, CA) is kept.
 */
function npmEnvironment(): NodeJS.ProcessEnv {
  const env = { ...process.env };
  for (const key of Object.keys(env)) {
    if (/^npm_(package_|lifecycle_|command$|config_local_prefix$|config_workspaces?$)/.test(key) || key === 'INIT_CWD') {
      delete env[key];
    }
  }
  return env;
}

async function npm(args: string[], cwd: string): Promise<string> {
  const { stdout } = await execFileAsync('npm', args, { cwd, env: npmEnvironment(), maxBuffer: 16 * 1024 * 1024 });
  return stdout;
}

/** Every file under `dir`, as paths relative to it with forward slashes. */
async function filesUnder(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true, withFileTypes: true });
  return entries
    .filter((entry) => entry.isFile())
    .map((entry) => path.relative(dir, path.join(entry.parentPath, entry.name)).split(path.sep).join('/'));
}

/** The module specifiers a built file loads: `require("…")` in JavaScript, `from "…"` / `import("…")` in declarations. */
function specifiersIn(source: string): string[] {
  const found: string[] = [];
  for (const match of source.matchAll(/\brequire\(\s*["']([^"']+)["']\s*\)|\bfrom\s+["']([^"']+)["']|\bimport\(\s*["']([^"']+)["']\s*\)/g)) {
    found.push(match[1] ?? match[2] ?? match[3]);
  }
  return found;
}

/** The package name a bare specifier belongs to: `@scope/name/sub` → `@scope/name`, `name/sub` → `name`. */
function packageOf(specifier: string): string {
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

// The service's own code, in plain CommonJS: it knows the kernel only through the installed
// package and its environment.
const CONSUMER_SCRIPT = `'use strict';
const { closeKernelClient, createSequenceClient, KernelClientError } = require('@axis-kernel/clients');
const { ResetPolicy } = require('@axis-kernel/clients/proto/axis/kernel/sequences/v1/sequence');

async function main() {
  const sequences = createSequenceClient({
    address: process.env.AXIS_KERNEL_ADDRESS,
    token: process.env.AXIS_TOKEN,
    tenantId: process.env.AXIS_TENANT,
  });
  try {
    const { series } = await sequences.createSeries({
      series: { seriesId: 'invoices', pattern: 'INV-{SEQ:5}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' },
    });
    const { number } = await sequences.issueNumber({ seriesId: 'invoices', subjectRef: 'order/42' });
    let missing;
    try {
      await sequences.getSeries({ seriesId: 'no-such-series' });
      missing = { refused: false };
    } catch (error) {
      missing = {
        refused: true,
        isKernelClientError: error instanceof KernelClientError,
        name: error.name,
        code: error.code,
        reason: error.reason,
        traceId: error.traceId,
      };
    }
    return { resolvedFrom: require.resolve('@axis-kernel/clients'), series, number, missing };
  } finally {
    closeKernelClient(sequences);
  }
}

main().then(
  (result) => process.stdout.write(JSON.stringify(result) + '\\n'),
  (error) => {
    process.stderr.write(String((error && error.stack) || error) + '\\n');
    process.exitCode = 1;
  },
);
`;

// A TypeScript service's view of the same package: the declarations must carry the generated
// message types through the nice-grpc client types (an unresolved type would turn the client
// into \`any\`, and the @ts-expect-error below would then fail as unused).
const CONSUMER_TYPESCRIPT = `import { closeKernelClient, createSequenceClient, KernelClientError, type SequenceClient } from '@axis-kernel/clients';
import { ResetPolicy, type SequenceNumber } from '@axis-kernel/clients/proto/axis/kernel/sequences/v1/sequence';

export async function issue(address: string): Promise<SequenceNumber | undefined> {
  const sequences: SequenceClient = createSequenceClient({ address, token: () => 'token', tenantId: 'acme' });
  try {
    await sequences.createSeries({ series: { seriesId: 'inv', pattern: 'INV-{SEQ:5}', resetPolicy: ResetPolicy.RESET_POLICY_NEVER, timeZone: 'UTC' } });
    const { number } = await sequences.issueNumber({ seriesId: 'inv', subjectRef: 'order/1' }, { deadline: 5_000, idempotencyKey: 'k' });
    // @ts-expect-error the generated SequenceNumber.value is a number
    const formatted: string = number!.value;
    void formatted;
    return number;
  } catch (error) {
    if (error instanceof KernelClientError && error.reason === 'SERIES_NOT_FOUND') return undefined;
    throw error;
  } finally {
    closeKernelClient(sequences);
  }
}
`;

describe('the clients package, installed from its tarball in another project', () => {
  let work: string;
  let consumer: string;
  let installed: string;
  let packedFiles: string[];
  let kernel: TestKernel | undefined;

  beforeAll(async () => {
    // realpath: on some systems the temp directory is itself behind a symlink (macOS /var).
    work = await realpath(await mkdtemp(path.join(tmpdir(), 'axis-clients-package-')));
    consumer = path.join(work, 'consumer');
    installed = path.join(consumer, 'node_modules', ...PACKAGE_NAME.split('/'));

    const install = async () => {
      await npm(['run', '--silent', 'build:clients'], REPO_ROOT);
      const [packed] = JSON.parse(await npm(['pack', './clients', '--pack-destination', work, '--json'], REPO_ROOT)) as Array<{
        filename: string;
        files: Array<{ path: string }>;
      }>;
      packedFiles = packed.files.map((file) => file.path);
      await mkdir(consumer);
      await writeFile(
        path.join(consumer, 'package.json'),
        JSON.stringify({ name: 'axis-clients-consumer', version: '1.0.0', private: true }, null, 2),
      );
      // The tarball's dependencies are in the npm cache since this repository installed them.
      await npm(['install', path.join(work, packed.filename), '--prefer-offline', '--no-audit', '--no-fund'], consumer);
    };
    // The kernel starts while the package builds and installs: the two do not depend on each other.
    const [started] = await Promise.all([startTestKernel(), install()]);
    kernel = started;
  }, 300_000);

  afterAll(async () => {
    await kernel?.stop();
    if (work) await rm(work, { recursive: true, force: true });
  });

  test('the tarball holds the built JavaScript, its declarations and the generated messages — nothing else', () => {
    for (const file of packedFiles) expect(file).toMatch(/^(package\.json|README\.md|dist\/.+\.(js|d\.ts))$/);
    expect(packedFiles).toEqual(
      expect.arrayContaining([
        'dist/clients/src/index.js',
        'dist/clients/src/index.d.ts',
        'dist/gen/proto/axis/kernel/sequences/v1/sequence_service.js',
        'dist/gen/proto/axis/kernel/sequences/v1/sequence_service.d.ts',
        'dist/gen/proto/google/protobuf/timestamp.js',
      ]),
    );
  });

  test('the installed package is a copy that loads nothing outside itself but its declared dependencies', async () => {
    expect((await lstat(installed)).isSymbolicLink()).toBe(false);
    const manifest = JSON.parse(await readFile(path.join(installed, 'package.json'), 'utf8')) as {
      dependencies?: Record<string, string>;
      peerDependencies?: Record<string, string>;
    };
    const declared = new Set([...Object.keys(manifest.dependencies ?? {}), ...Object.keys(manifest.peerDependencies ?? {})]);
    const escaping: string[] = [];
    const undeclared = new Set<string>();
    const files = (await filesUnder(installed)).filter((file) => /\.(js|d\.ts)$/.test(file));
    expect(files).toContain('dist/clients/src/index.js');
    for (const file of files) {
      const source = await readFile(path.join(installed, file), 'utf8');
      for (const specifier of specifiersIn(source)) {
        if (specifier.startsWith('.')) {
          const target = path.resolve(path.dirname(path.join(installed, file)), specifier);
          const inside = target.startsWith(installed + path.sep);
          const exists = ['.js', '.d.ts', '/index.js'].some((suffix) => existsSync(target + suffix));
          if (!inside || !exists) escaping.push(`${file}: ${specifier}`);
        } else if (!specifier.startsWith('node:') && !builtinModules.includes(specifier)) {
          if (!declared.has(packageOf(specifier))) undeclared.add(`${file}: ${specifier}`);
        }
      }
    }
    expect(escaping).toEqual([]);
    expect([...undeclared]).toEqual([]);
  });

  test('a plain CommonJS script of the other project calls the kernel through the package', async () => {
    await writeFile(path.join(consumer, 'call-kernel.js'), CONSUMER_SCRIPT);
    const { stdout } = await execFileAsync(process.execPath, ['call-kernel.js'], {
      cwd: consumer,
      // Only what the script needs: no NODE_PATH or NODE_OPTIONS from the test runner.
      env: {
        PATH: process.env.PATH,
        AXIS_KERNEL_ADDRESS: kernel!.address,
        AXIS_TOKEN: await kernel!.token({ tenants: [TENANT], sub: 'billing-service', scope: 'sequences:read sequences:write' }),
        AXIS_TENANT: TENANT,
      },
    });
    const result = JSON.parse(stdout) as {
      resolvedFrom: string;
      series: Record<string, unknown>;
      number: Record<string, unknown>;
      missing: Record<string, unknown>;
    };

    expect(result.resolvedFrom.startsWith(installed + path.sep)).toBe(true);
    expect(result.series).toMatchObject({ seriesId: 'invoices', pattern: 'INV-{SEQ:5}', resetPolicy: 1, timeZone: 'UTC' });
    expect(result.number).toMatchObject({ seriesId: 'invoices', value: 1, formatted: 'INV-00001', subjectRef: 'order/42' });
    expect(result.missing).toEqual({
      refused: true,
      isKernelClientError: true,
      name: 'KernelClientError',
      code: Status.NOT_FOUND,
      reason: 'SERIES_NOT_FOUND',
      traceId: expect.stringMatching(/^[0-9a-f]{32}$/),
    });
  });

  test('a TypeScript project type-checks against the shipped declarations (node16 and node10 resolution)', async () => {
    await writeFile(path.join(consumer, 'issue.ts'), CONSUMER_TYPESCRIPT);
    // The compiler is this repository's; every type it resolves comes from the consumer project.
    // node16 reads the package's "exports", node10 (still common, the kernel's own setting) its
    // "types" and "typesVersions".
    const tsc = path.join(REPO_ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
    for (const [module, moduleResolution] of [['node16', 'node16'], ['commonjs', 'node10']]) {
      const config = `tsconfig.${moduleResolution}.json`;
      const compilerOptions = { module, moduleResolution, target: 'es2022', strict: true, noEmit: true, skipLibCheck: true, types: [] };
      await writeFile(path.join(consumer, config), JSON.stringify({ compilerOptions, files: ['issue.ts'] }, null, 2));
      const outcome = await execFileAsync(process.execPath, [tsc, '-p', config], { cwd: consumer }).then(
        () => 'no errors',
        (error: { stdout?: string }) => error.stdout ?? String(error),
      );
      expect(`${moduleResolution}: ${outcome}`).toBe(`${moduleResolution}: no errors`);
    }
  });
});
