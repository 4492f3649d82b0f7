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

type LogFn = (fields: object, message?: string) => void;

/**
 * The logger a call carries (`context.log`): the call's fields (trace and span ids, method, then
 * tenant and principal) are bound without building a pino child per call — the child is made
 * only when the call writes a line at an enabled level, which most calls never do (their one
 * closing line is written by the tracing middleware with its fields directly).
 */
export interface CallLog {
  error: LogFn;
  warn: LogFn;
  info: LogFn;
  debug: LogFn;
  child(bindings: Record<string, unknown>): CallLog;
}

export function callLog(parent: Logger, bindings: Record<string, unknown>): CallLog {
  return new LazyCallLog(parent, undefined, bindings);
}

class LazyCallLog implements CallLog {
  private bound?: Logger;

  constructor(
    private readonly root: Logger,
    private readonly parent: LazyCallLog | undefined,
    private readonly bindings: Record<string, unknown>,
  ) {}

  private logger(): Logger {
    return (this.bound ??= (this.parent ? this.parent.logger() : this.root).child(this.bindings));
  }

  error(fields: object, message?: string): void {
    if (this.root.isLevelEnabled('error')) this.logger().error(fields, message);
  }

  warn(fields: object, message?: string): void {
    if (this.root.isLevelEnabled('warn')) this.logger().warn(fields, message);
  }

  info(fields: object, message?: string): void {
    if (this.root.isLevelEnabled('info')) this.logger().info(fields, message);
  }

  debug(fields: object, message?: string): void {
    if (this.root.isLevelEnabled('debug')) this.logger().debug(fields, message);
  }

  child(bindings: Record<string, unknown>): CallLog {
    return new LazyCallLog(this.root, this, bindings);
  }
}
