import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * JSON logs on stdout (or a given destination). Per-call loggers are children carrying
 * trace_id, span_id, tenant, principal and method. Known secret-bearing keys are redacted so a
 * careless log line cannot leak a token or secret value.
 */
export function createLogger(level: string, destination?: pino.DestinationStream): Logger {
  return pino(
    {
      level,
      base: { service: 'axis-kernel' },
      timestamp: pino.stdTimeFunctions.isoTime,
      redact: {
        paths: ['authorization', '*.authorization', 'token', '*.token', 'secret', '*.secret', 'password', '*.password', 'value', '*.value'],
        censor: '[REDACTED]',
      },
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}
