/**
 * The master key every test kernel uses unless a test configures its own: kernels that share a
 * database (in-process and spawned) must hold the same key-encryption keys, or the second one
 * is refused at start-up (fingerprint mismatch). A test-only key, committed on purpose.
 */
export const TEST_MASTER_KEY_V1 = 'btuj48SidBj6I5n0qQNvWEDC+hgIpNV2YDUAXeFkcZk=';
export const TEST_MASTER_KEYS = JSON.stringify({ 1: TEST_MASTER_KEY_V1 });
