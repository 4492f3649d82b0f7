import { auditModule } from '../audit';
import { batchModule } from '../batch';
import { keymasterModule } from '../keymaster';
import type { CapabilityModule, KernelDependencies } from '../platform/capability-module';
import { schedulerModule } from '../scheduler';
import { secretsModule } from '../secrets';
import { sequencesModule } from '../sequences';
import { trafficModule } from '../traffic';

/**
 * The capabilities this kernel serves — the one place to add one (docs/adding-a-capability.md).
 * Each is built from the node's shared dependencies by its own `<capability>-module.ts`; the
 * scheduler also runs every module's system jobs, so it is handed the finished list.
 */
export function capabilityModules(deps: KernelDependencies, options: { runWorkers: boolean }): CapabilityModule[] {
  const modules: CapabilityModule[] = [];
  modules.push(
    sequencesModule(deps),
    schedulerModule(deps, { systemJobs: () => modules.flatMap((m) => m.systemJobs ?? []), runWorkers: options.runWorkers }),
    batchModule(deps),
    keymasterModule(deps),
    auditModule(deps),
    secretsModule(deps),
    trafficModule(deps),
  );
  return modules;
}
