import { SecretServiceDefinition } from '../../gen/proto/axis/kernel/secrets/v1/secret_service';
import type { CapabilityModule, KernelDependencies } from '../platform/capability-module';
import { secretService } from './secret-service';

/**
 * Secrets (docs/capabilities/secrets.md) as the kernel serves them. AccessSecretVersion answers with a secret value: it
 * needs its own scope, and it is an audited read (its audit entry is durable before it answers;
 * its answer is never stored for replay).
 */
export function secretsModule(deps: KernelDependencies): CapabilityModule {
  return {
    definition: SecretServiceDefinition,
    implementation: secretService(deps.envelope, deps.prismaReads),
    scopes: { AccessSecretVersion: 'secrets:access' },
    auditedReads: ['AccessSecretVersion'],
  };
}
