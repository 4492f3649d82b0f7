/**
 * Why the migration runner refused or failed. `reason` is a stable UPPER_SNAKE code for callers
 * and tests to branch on; `details` carries the facts (file, version, checksums, SQLSTATE) as
 * strings so that it can be logged or put into ErrorInfo metadata unchanged.
 *
 * Reasons: MIGRATION_DIRECTORY_INVALID, MIGRATION_NAME_INVALID, MIGRATION_SQL_MISSING,
 * MIGRATION_VERSION_DUPLICATE, MIGRATION_OPTIONS_INVALID, MIGRATION_CHECKSUM_MISMATCH,
 * MIGRATION_FILE_MISSING, MIGRATION_OUT_OF_ORDER, MIGRATION_FAILED,
 * MIGRATION_TRANSACTION_ENDED, MIGRATION_LOCK_RELEASE_FAILED.
 */
export class MigrationError extends Error {
  override readonly name = 'MigrationError';

  constructor(
    /** UPPER_SNAKE reason code, e.g. `MIGRATION_CHECKSUM_MISMATCH`. */
    readonly reason: string,
    message: string,
    /** Machine-readable facts about the failure. */
    readonly details: Record<string, string> = {},
    options?: { cause?: unknown },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
  }
}
