/**
 * A noisy client in its own process (EVI043 [B]): calls GetUsage at a steady rate and prints one
 * JSON line with what was admitted and refused. Its own process, so that its client-side work
 * does not share an event loop with the latencies the test measures. Time is cut into blocks of
 * `blockMs` from `startEpochMs`: it floods during the odd blocks and is idle during the even
 * ones, so the test measures the quiet tenant alone and with the flood interleaved, in one run.
 *
 *   node --import tsx tests/support/traffic-flood.ts <address> <tenant> <token> <perSecond> <startEpochMs> <blockMs> <blocks>
 */
import { createChannel, createClient, Metadata, type ClientError } from 'nice-grpc';
import { TrafficServiceDefinition } from '../../gen/proto/axis/kernel/traffic/v1/traffic_service';

async function main(): Promise<void> {
  const [address, tenant, token, perSecondText, startText, blockText, blocksText] = process.argv.slice(2);
  const perSecond = Number(perSecondText);
  const start = Number(startText);
  const blockMs = Number(blockText);
  const end = start + blockMs * Number(blocksText);
  const channel = createChannel(address);
  const client = createClient(TrafficServiceDefinition, channel);
  const metadata = Metadata({ authorization: `Bearer ${token}`, 'x-tenant-id': tenant });
  const codes: Record<string, number> = {};
  let admitted = 0;
  const calls: Array<Promise<void>> = [];
  let i = 0;
  for (;;) {
    const now = Date.now();
    if (now >= end) break;
    // The i-th call of the flood is due at start + i / perSecond (idle blocks skip their share).
    while (start + (i * 1000) / perSecond <= now) {
      const due = start + (i * 1000) / perSecond;
      i += 1;
      if (Math.floor((due - start) / blockMs) % 2 === 0) continue;
      calls.push(
        client.getUsage({}, { metadata }).then(
          () => void (admitted += 1),
          (error: ClientError) => void (codes[error.code] = (codes[error.code] ?? 0) + 1),
        ),
      );
    }
    await new Promise((resolve) => setTimeout(resolve, 1));
  }
  await Promise.all(calls);
  channel.close();
  process.stdout.write(`${JSON.stringify({ admitted, refused: codes })}\n`);
}

void main();
