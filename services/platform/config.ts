import path from 'node:path';
import { z } from 'zod';

/**
 * The kernel's configuration, read from the environment once at start-up. Zod is the single
 * source of truth for it (law 7): a bad value stops the process with a message naming it.
 */
const durationMs = (fallback: number) => z.coerce.number().int().positive().default(fallback);

const configSchema = z
  .object({
    KERNEL_GRPC_ADDR: z
      .string()
      .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'must be host:port')
      .default('127.0.0.1:50051'),
    DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL')
      .optional(),
    /** Where the runtime connects when it must not use the owner's URL (defaults to DATABASE_URL). */
    KERNEL_APP_DATABASE_URL: z
      .string()
      .regex(/^postgres(ql)?:\/\//, 'must be a postgresql:// URL')
      .optional(),
    KERNEL_DATA_DIR: z.string().min(1).default(path.resolve('.kernel-data')),
    /** `memory` keeps the embedded database in memory (nothing survives a restart). */
    KERNEL_EMBEDDED_STORAGE: z.enum(['disk', 'memory']).default('disk'),
    KERNEL_AUTH_SECRET: z.string().min(32, 'must be at least 32 characters').optional(),
    KERNEL_JWKS_FILE: z.string().min(1).optional(),
    KERNEL_DB_POOL_SIZE: z.coerce.number().int().min(1).max(200).default(10),
    KERNEL_IDEMPOTENCY_RETENTION_HOURS: z.coerce.number().positive().max(24 * 90).default(24),
    /** Per-RPC latency budgets: JSON object of method path (or "*") to milliseconds. */
    KERNEL_RPC_BUDGETS_MS: z
      .string()
      .default('{"*": 250}')
      .transform((text, ctx) => {
        try {
          return z.record(z.string(), z.number().positive()).parse(JSON.parse(text));
        } catch {
          ctx.addIssue({ code: 'custom', message: 'must be a JSON object of method -> milliseconds' });
          return z.NEVER;
        }
      }),
    KERNEL_RESERVATION_SWEEP_MS: durationMs(1000),
    KERNEL_AUDIT_SEQUENCER_MS: durationMs(200),
    KERNEL_SHUTDOWN_GRACE_MS: durationMs(10_000),
    KERNEL_ENV: z.enum(['development', 'production']).default('development'),
    REDIS_URL: z.string().regex(/^rediss?:\/\//, 'must be a redis:// URL').optional(),
    NATS_URL: z.string().regex(/^(nats|tls):\/\//, 'must be a nats:// URL').optional(),
    OTEL_EXPORTER_OTLP_ENDPOINT: z.url().optional(),
    LOG_LEVEL: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  })
  .superRefine((c, ctx) => {
    if (c.KERNEL_ENV === 'production' && !c.KERNEL_JWKS_FILE && !c.KERNEL_AUTH_SECRET) {
      ctx.addIssue({ code: 'custom', path: ['KERNEL_JWKS_FILE'], message: 'production needs KERNEL_JWKS_FILE or KERNEL_AUTH_SECRET' });
    }
  });

export type KernelConfig = z.infer<typeof configSchema>;

/** Thrown for an invalid environment; the message names every offending variable. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Parses the environment (or any record shaped like it) into a validated configuration. */
export function loadConfig(env: Record<string, string | undefined> = process.env): KernelConfig {
  const blankAsUnset = Object.fromEntries(Object.entries(env).filter(([, v]) => v !== undefined && v !== ''));
  const parsed = configSchema.safeParse(blankAsUnset);
  if (!parsed.success) {
    const lines = parsed.error.issues.map((i) => `  ${i.path.join('.') || '(config)'}: ${i.message}`);
    throw new ConfigError(`invalid kernel configuration:\n${lines.join('\n')}`);
  }
  return parsed.data;
}
