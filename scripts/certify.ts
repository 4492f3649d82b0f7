import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';

/** The fifteen EVIs of Kernel v1.3, in the order docs/architecture.md#certification lists them. */
export const EVIS = [
  { id: 'EVI055', name: 'Sequence Governance', suite: 'evi055-sequences.spec.ts' },
  { id: 'EVI041', name: 'Keymaster / Signing', suite: 'evi041-keymaster.spec.ts' },
  { id: 'EVI047', name: 'Secrets & Certificate Lifecycle', suite: 'evi047-secrets.spec.ts' },
  { id: 'EVI048', name: 'Audit Immutability (WORM)', suite: 'evi048-audit.spec.ts' },
  { id: 'EVI042', name: 'Scheduler / Heartbeat', suite: 'evi042-scheduler.spec.ts' },
  { id: 'EVI059', name: 'Batch Framework', suite: 'evi059-batch.spec.ts' },
  { id: 'EVI043', name: 'Traffic Governor / Idempotency', suite: 'evi043-traffic.spec.ts' },
  { id: 'EVI044', name: 'Telemetry Propagation', suite: 'evi044-telemetry.spec.ts' },
  { id: 'EVI045', name: 'Schema Migration Governance', suite: 'evi045-migrations.spec.ts' },
  { id: 'EVI058', name: 'Approval Matrix', suite: 'evi058-approvals.spec.ts' },
  { id: 'EVI023', name: 'Privacy Engine', suite: 'evi023-privacy.spec.ts' },
  { id: 'EVI028', name: 'External Auditor / Guest Links', suite: 'evi028-guest-links.spec.ts' },
  { id: 'EVI027', name: 'EventBus / Outbox / Webhooks', suite: 'evi027-events.spec.ts' },
  { id: 'EVI046', name: 'Contract Governance', suite: 'evi046-contracts.spec.ts' },
  { id: 'EVI057', name: 'Intelligence Gateway / AI Proxy', suite: 'evi057-ai-gateway.spec.ts' },
] as const;

const ROOT = path.resolve(__dirname, '..');
const SUITES = path.join(ROOT, 'tests/evi');
const PROOFS = ['A', 'B', 'C', 'D', 'E'];

interface JestAssertion {
  title: string;
  status: 'passed' | 'failed' | 'pending' | 'skipped' | 'todo' | 'disabled';
  failureMessages?: string[];
}
interface JestReport {
  testResults: Array<{ name: string; assertionResults: JestAssertion[]; message: string }>;
}

/**
 * Prints one line per EVI and the seal line. An EVI passes only when each of its five proofs
 * [A]–[E] has a test and every test of its suite passed. Exit code 1 when an implemented EVI
 * fails.
 *
 * Either runs the EVI suites that exist (all, or those named) in one jest run, or — with
 * `--results FILE` — reads the JSON report of a jest run that already included them (CI runs
 * the whole suite once and certifies from its report instead of running the EVIs again).
 */
export function certify(args: string[] = []): number {
  const resultsAt = args.indexOf('--results');
  const resultsFile = resultsAt >= 0 ? args[resultsAt + 1] : undefined;
  if (resultsAt >= 0 && !resultsFile) {
    process.stderr.write('--results needs the path of a jest --json report\n');
    return 2;
  }
  const selection = resultsAt >= 0 ? args.filter((_, i) => i !== resultsAt && i !== resultsAt + 1) : args;
  const wanted = selection.length ? EVIS.filter((e) => selection.map((s) => s.toUpperCase()).includes(e.id)) : EVIS;
  if (selection.length && wanted.length !== selection.length) {
    process.stderr.write(`unknown EVI in ${selection.join(' ')}; known: ${EVIS.map((e) => e.id).join(' ')}\n`);
    return 2;
  }
  const present = wanted.filter((e) => existsSync(path.join(SUITES, e.suite)));
  const results = new Map<string, JestAssertion[]>();
  let runFailure = '';
  const read = (file: string) => {
    const report = JSON.parse(readFileSync(file, 'utf8')) as JestReport;
    for (const result of report.testResults) {
      results.set(path.basename(result.name), result.assertionResults);
      if (result.assertionResults.length === 0 && result.message) runFailure += result.message;
    }
  };
  if (resultsFile) {
    if (!existsSync(resultsFile)) {
      process.stderr.write(`no jest report at ${resultsFile}\n`);
      return 2;
    }
    read(resultsFile);
  } else if (present.length) {
    const dir = mkdtempSync(path.join(tmpdir(), 'axis-certify-'));
    const outputFile = path.join(dir, 'report.json');
    process.stdout.write(`Running ${present.length} EVI suite(s)…\n`);
    const run = spawnSync(
      process.execPath,
      [require.resolve('jest/bin/jest'), '--json', `--outputFile=${outputFile}`, '--runInBand', ...present.map((e) => path.join('tests/evi', e.suite))],
      { cwd: ROOT, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', env: process.env },
    );
    if (existsSync(outputFile)) read(outputFile);
    else runFailure = run.stderr;
    rmSync(dir, { recursive: true, force: true });
  }

  let certified = 0;
  let failed = 0;
  for (const evi of wanted) {
    const assertions = results.get(evi.suite);
    if (!present.includes(evi)) {
      process.stdout.write(`❌ ${evi.id} ${evi.name} — NOT IMPLEMENTED\n`);
      continue;
    }
    const proofsPassed = PROOFS.filter((p) => {
      const proof = assertions?.filter((a) => a.title.startsWith(`[${p}]`)) ?? [];
      return proof.length > 0 && proof.every((a) => a.status === 'passed');
    }).length;
    const allPassed = !!assertions?.length && assertions.every((a) => a.status === 'passed');
    if (proofsPassed === PROOFS.length && allPassed) {
      certified += 1;
      process.stdout.write(`✅ ${evi.id} ${evi.name} — PASS (5/5 proofs)\n`);
    } else {
      failed += 1;
      process.stdout.write(`❌ ${evi.id} ${evi.name} — FAIL (${proofsPassed}/5 proofs)\n`);
      // What failed, so a red line in CI says why without a re-run.
      for (const a of assertions?.filter((x) => x.status === 'failed') ?? []) {
        const why = (a.failureMessages ?? []).join('\n').split('\n').filter((l) => l.trim() && !/^\s+at /.test(l)).slice(0, 12);
        process.stdout.write(`   ✕ ${a.title}\n${why.map((l) => `       ${l}`).join('\n')}\n`);
      }
    }
  }
  if (runFailure && failed) process.stderr.write(`${runFailure.slice(0, 4000)}\n`);
  const total = EVIS.length;
  if (selection.length === 0) {
    process.stdout.write(
      certified === total ? `Kernel v1.3 — SEALED (${total}/${total} EVIs certified)\n` : `Kernel v1.3 — NOT SEALED (${certified}/${total})\n`,
    );
  }
  return failed ? 1 : 0;
}

if (require.main === module) process.exit(certify(process.argv.slice(2)));
