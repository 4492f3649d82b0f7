/**
 * Keymaster's public face: what the composition root and other capabilities may use. Everything
 * else in this folder is internal (tests/architecture/dependency-rules.spec.ts enforces it).
 */
export { keymasterModule } from './keymaster-module';
export { KernelKeys, type KernelSignature } from './kernel-keys';
export { RESERVED_ALIAS_PREFIX } from './key-store';
