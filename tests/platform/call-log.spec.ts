import { Writable } from 'node:stream';
import { callLog, createLogger } from '../../services/platform/observability/logger';

function capture(level: string) {
  const lines: Array<Record<string, unknown>> = [];
  const destination = new Writable({
    write(chunk, _encoding, done) {
      lines.push(JSON.parse(String(chunk)));
      done();
    },
  });
  return { log: createLogger(level, destination), lines };
}

describe('the per-call logger', () => {
  test('a line carries the call fields and those of every child, and secrets stay redacted', async () => {
    const { log, lines } = capture('info');
    const call = callLog(log, { trace_id: 't'.repeat(32), method: 'x/Y' }).child({ tenant: 'acme', principal: 'p' });
    call.warn({ reason: 'R', token: 'secret-token' }, 'refused');
    await new Promise((r) => setImmediate(r));
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ level: 'warn', msg: 'refused', trace_id: 't'.repeat(32), method: 'x/Y', tenant: 'acme', principal: 'p', reason: 'R', token: '[REDACTED]' });
  });

  test('no pino child is built for a call that writes nothing at an enabled level', () => {
    const { log, lines } = capture('warn');
    const child = jest.spyOn(log, 'child');
    const call = callLog(log, { trace_id: 'a' }).child({ tenant: 'acme' });
    call.info({ anything: 1 }, 'not written at warn');
    call.debug({ anything: 2 }, 'not written either');
    expect(child).not.toHaveBeenCalled();
    call.error({ e: 1 }, 'written');
    expect(child).toHaveBeenCalledTimes(2); // once per level of bindings, on the first line written
    call.error({ e: 2 }, 'written again');
    expect(child).toHaveBeenCalledTimes(2);
    expect(lines.length).toBeLessThanOrEqual(2);
  });
});
