#!/usr/bin/env node
import { randomUUID } from 'node:crypto';
import { parseArgs } from 'node:util';
import { Client } from 'pg';
import { loadOrCreateDevelopmentSecret } from '../platform/auth/development-secret';
import { mintDevelopmentToken, RESERVED_SUBJECT } from '../platform/auth/token-verifier';
import { ConfigError, loadConfig, type KernelConfig } from '../platform/config';
import { startEmbeddedPostgres } from '../platform/database/embedded-postgres';
import { MIGRATIONS_DIR } from '../platform/migrations/migrate';
import { startKernel } from './kernel';
import { applyMigrations, getMigrationStatus, loadMigrations } from '../platform/migrations/migration-runner';

const USAGE = `kernel — the AXIS Kernel operator CLI

  kernel serve [--print-token]              run a kernel node (embedded PostgreSQL when DATABASE_URL is unset);
                                            prints a development token when it generated its own secret (or asked)
  kernel token --tenant T [--tenant T2] --sub S --scope "a:read b:write" [--ttl 3600]
                                            mint a development token (HS256, KERNEL_AUTH_SECRET or the dev secret)
  kernel migrate status|apply               show or apply SQL migrations (prisma/migrations)
  kernel certify [EVI...]                   run the EVI certification suites
  kernel keys status                        data keys per master-key version (KERNEL_MASTER_KEYS)
  kernel keys rewrap [--batch N]            re-wrap every data key under the active master key (resumable)
  kernel batch watch <id> --tenant T [--address A] [--token TOKEN]
                                            live progress bar of a batch (plain lines when not a terminal)
  kernel audit export --tenant T [--address A] [--token TOKEN] [--from-seq N] [--to-size N] --out FILE
                                            write a tenant's audit log (ExportLog) to a JSON Lines file
  kernel audit verify FILE --key VERIFIER_KEY [--key …] [--key-file FILE]
                                            verify an audit export offline with only the public key(s)
`;

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'serve':
      return serve(loadConfig(), rest);
    case 'token':
      return token(loadConfig(), rest);
    case 'migrate':
      return migrateCommand(loadConfig(), rest[0]);
    case 'keys': {
      const { keysCommand } = await import('./keys-command');
      return keysCommand(loadConfig(), rest);
    }
    case 'certify': {
      const { certify } = await import('../../scripts/certify');
      return certify(rest);
    }
    case 'batch': {
      const { batchCommand } = await import('../batch');
      return batchCommand(loadConfig(), rest);
    }
    case 'audit': {
      const { auditCommand } = await import('../audit');
      return auditCommand(rest, () => loadConfig());
    }
    case undefined:
    case 'help':
    case '--help':
      process.stdout.write(USAGE);
      return 0;
    default:
      process.stderr.write(`unknown command: ${command}\n\n${USAGE}`);
      return 2;
  }
}

async function serve(config: KernelConfig, args: string[]): Promise<number> {
  const { values } = parseArgs({ args, options: { 'print-token': { type: 'boolean', default: false } } });
  // Listen for the signals before anything starts, so a SIGTERM during start-up still stops
  // cleanly (right after start-up completes) instead of killing the process mid-way.
  const signalled = new Promise<string>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  const kernel = await startKernel(config);
  // Always on stderr, whatever LOG_LEVEL says: operators and supervisors wait for this line.
  process.stderr.write(`AXIS Kernel listening on ${kernel.address}\n`);
  // A development token lands in whatever collects stderr: print one only for a kernel running on
  // the secret it generated for itself, or when asked (--print-token, HS256 secrets only).
  const secret = kernel.developmentSecret ?? (values['print-token'] ? config.KERNEL_AUTH_SECRET : undefined);
  if (config.KERNEL_ENV === 'development' && secret) {
    const devToken = await mintDevelopmentToken({
      secret,
      subject: 'developer',
      tenants: ['demo'],
      scope: kernel.scopes.join(' '),
    });
    process.stderr.write(banner(kernel.address, devToken));
  }
  const signal = await signalled;
  kernel.log.info({ signal }, 'shutting down: draining in-flight calls');
  await kernel.stop();
  return 0;
}

function banner(address: string, token: string): string {
  const curl = (method: string, body: string, mutating: boolean) =>
    [
      `npx buf curl --protocol grpc --http2-prior-knowledge \\`,
      `    -H "authorization: Bearer $AXIS_TOKEN" -H "x-tenant-id: demo" \\`,
      ...(mutating ? [`    -H "idempotency-key: $(node -p 'crypto.randomUUID()')" \\`] : []),
      `    -d '${body}' \\`,
      `    http://${address}/axis.kernel.sequences.v1.SequenceService/${method}`,
    ].join('\n');
  return `
gRPC with server reflection and grpc.health.v1 on ${address}

Development token (tenant "demo", 12 h):
  export AXIS_TOKEN=${token}

Create a series, then issue a number (buf curl speaks gRPC through reflection):
  ${curl('CreateSeries', '{"series":{"seriesId":"inv","pattern":"INV-{YYYY}-{SEQ:5}","resetPolicy":"RESET_POLICY_YEARLY","timeZone":"Europe/Berlin"}}', true)}

  ${curl('IssueNumber', '{"seriesId":"inv","subjectRef":"order-1"}', true)}

With grpcurl:
  grpcurl -plaintext -H "authorization: Bearer $AXIS_TOKEN" -H "x-tenant-id: demo" \\
    -d '{"seriesId":"inv"}' ${address} axis.kernel.sequences.v1.SequenceService/GetSeries

Example idempotency key: ${randomUUID()}
`;
}

async function token(config: KernelConfig, args: string[]): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      tenant: { type: 'string', multiple: true },
      sub: { type: 'string' },
      scope: { type: 'string', default: '' },
      ttl: { type: 'string', default: '43200' },
    },
  });
  if (!values.tenant?.length || !values.sub) {
    process.stderr.write('kernel token needs --tenant and --sub\n');
    return 2;
  }
  if (RESERVED_SUBJECT.test(values.sub)) {
    process.stderr.write(`--sub ${values.sub}: system:kernel, operator:… and anonymous are the kernel's own principals; the kernel refuses tokens claiming them\n`);
    return 2;
  }
  const secret = config.KERNEL_AUTH_SECRET ?? loadOrCreateDevelopmentSecret(config.KERNEL_DATA_DIR).secret;
  const ttlSeconds = Number(values.ttl);
  if (!Number.isInteger(ttlSeconds) || ttlSeconds <= 0) {
    process.stderr.write('--ttl must be a positive number of seconds\n');
    return 2;
  }
  process.stdout.write(`${await mintDevelopmentToken({ secret, subject: values.sub, tenants: values.tenant, scope: values.scope, ttlSeconds })}\n`);
  return 0;
}

async function migrateCommand(config: KernelConfig, action: string | undefined): Promise<number> {
  if (action !== 'status' && action !== 'apply') {
    process.stderr.write('usage: kernel migrate status|apply\n');
    return 2;
  }
  const embedded = config.DATABASE_URL
    ? undefined
    : await startEmbeddedPostgres({ dataDir: config.KERNEL_EMBEDDED_STORAGE === 'disk' ? `${config.KERNEL_DATA_DIR}/pgdata` : undefined });
  const client = new Client({ connectionString: config.DATABASE_URL ?? embedded!.url });
  await client.connect();
  try {
    const files = loadMigrations(MIGRATIONS_DIR);
    if (action === 'apply') {
      const { applied } = await applyMigrations(client, files, {
        appliedBy: 'kernel migrate apply',
        onProgress: (e) => process.stdout.write(`${e.state === 'applying' ? '…' : '✔'} ${e.file.directory}${e.durationMs !== undefined ? ` (${e.durationMs} ms)` : ''}\n`),
      });
      process.stdout.write(`${applied.length} migration(s) applied\n`);
      return 0;
    }
    const status = await getMigrationStatus(client, files);
    for (const m of status.applied) process.stdout.write(`applied   ${m.version}\n`);
    for (const m of status.pending) process.stdout.write(`pending   ${m.directory}\n`);
    for (const m of status.mismatched) process.stdout.write(`EDITED    ${m.file.directory} (ledger ${m.appliedChecksum}, file ${m.file.checksum})\n`);
    for (const m of status.missingFiles) process.stdout.write(`MISSING   ${m.version}\n`);
    return status.mismatched.length || status.missingFiles.length ? 1 : 0;
  } finally {
    await client.end();
    await embedded?.stop();
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    process.stderr.write(error instanceof ConfigError ? `${error.message}\n` : `kernel: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
