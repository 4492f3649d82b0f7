/**
 * A remote worker in its own process, for the crash proof (EVI042 [B]):
 *
 *   node --import tsx tests/scheduler/remote-worker.ts <address> <tenant> <token> <queue> <lease-seconds>
 *
 * Leases one job (long-poll), prints `{"jobId":…,"leaseToken":…}` and then "works" forever
 * (heartbeats never sent), so the test can SIGKILL it mid-job.
 */
import { createSchedulerClient } from '../../clients/src';

async function main(): Promise<void> {
  const [address, tenantId, token, queue, leaseSeconds] = process.argv.slice(2);
  const client = createSchedulerClient({ address, tenantId, token, deadlineMs: 60_000 });
  for (;;) {
    const { leases } = await client.leaseJobs({ queue, maxJobs: 1, wait: { seconds: 20, nanos: 0 }, leaseDuration: { seconds: Number(leaseSeconds), nanos: 0 }, workerId: `pid-${process.pid}` });
    if (leases.length === 0) continue;
    process.stdout.write(`${JSON.stringify({ jobId: leases[0].job!.jobId, leaseToken: leases[0].leaseToken, attempt: leases[0].job!.attempt })}\n`);
    await new Promise(() => undefined); // mid-job, forever
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`${String(error)}\n`);
  process.exitCode = 1;
});
