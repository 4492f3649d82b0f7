import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';

/**
 * The kernel's floors, enforced (docs/architecture.md):
 *   services/kernel     the composition root: the process, the CLI, the list of capabilities;
 *   services/<cap>      one folder per capability; another capability is reached only through
 *                       its public face, services/<cap>/index.ts;
 *   services/platform   the floor everything stands on: it imports no capability and not the root.
 * Generated code (gen/), the typed clients (clients/) and packages may be imported from anywhere.
 */
const ROOT = path.resolve(__dirname, '../..');
const SERVICES = path.join(ROOT, 'services');

interface ImportEdge {
  from: string;
  to: string;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return sourceFiles(file);
    return file.endsWith('.ts') ? [file] : [];
  });
}

/** What a relative import resolves to on disk (a file, or a folder's index.ts). */
function resolve(fromFile: string, specifier: string): string | undefined {
  const base = path.resolve(path.dirname(fromFile), specifier);
  for (const candidate of [`${base}.ts`, path.join(base, 'index.ts'), base]) {
    if (existsSync(candidate) && statSync(candidate).isFile()) return candidate;
  }
  return undefined;
}

function edges(): ImportEdge[] {
  const result: ImportEdge[] = [];
  for (const file of sourceFiles(SERVICES)) {
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName } of importedFiles) {
      if (!fileName.startsWith('.')) continue; // a package
      const target = resolve(file, fileName);
      if (!target) throw new Error(`${path.relative(ROOT, file)} imports ${fileName}, which does not resolve`);
      result.push({ from: path.relative(ROOT, file), to: path.relative(ROOT, target) });
    }
  }
  return result;
}

/** The floor of a file: 'kernel', 'platform', a capability's folder name, or 'outside' (gen, scripts). */
function floorOf(file: string): string {
  const [top, floor] = file.split(path.sep);
  return top === 'services' ? floor : 'outside';
}

const isPublicFace = (file: string) => /^services\/[^/]+\/index\.ts$/.test(file.split(path.sep).join('/'));

function breaches(importEdges: ImportEdge[]): string[] {
  const found: string[] = [];
  for (const { from, to } of importEdges) {
    const source = floorOf(from);
    const target = floorOf(to);
    // Generated code and the typed clients package (operator commands call the kernel with it) are packages.
    if (source === target || target === 'platform' || to.startsWith(`gen${path.sep}`) || to.startsWith(`clients${path.sep}`)) continue;
    if (source === 'platform') {
      found.push(`${from} -> ${to}: the platform imports nothing above it`);
    } else if (target === 'kernel') {
      found.push(`${from} -> ${to}: nothing imports the composition root`);
    } else if (target !== 'outside' && !isPublicFace(to)) {
      found.push(`${from} -> ${to}: another capability is reached through its index.ts only`);
    } else if (target === 'outside' && source !== 'kernel') {
      found.push(`${from} -> ${to}: only the composition root reaches outside services/ (scripts)`);
    }
  }
  return found;
}

describe('dependency rules', () => {
  test('no import goes up a floor or into another capability’s internals', () => {
    expect(breaches(edges())).toEqual([]);
  });

  test('every capability has one public face and one module of the shared shape', () => {
    const capabilities = readdirSync(SERVICES).filter((d) => !['kernel', 'platform'].includes(d) && statSync(path.join(SERVICES, d)).isDirectory());
    for (const capability of capabilities) {
      expect({ capability, index: existsSync(path.join(SERVICES, capability, 'index.ts')) }).toEqual({ capability, index: true });
      const modules = readdirSync(path.join(SERVICES, capability)).filter((f) => f.endsWith('-module.ts'));
      expect({ capability, modules: modules.length }).toEqual({ capability, modules: 1 });
      const text = readFileSync(path.join(SERVICES, capability, modules[0]), 'utf8');
      expect({ capability, shape: /\): CapabilityModule \{/.test(text) }).toEqual({ capability, shape: true });
    }
  });

  test('the checker can fail: each kind of breach is reported', () => {
    const p = (...parts: string[]) => path.join(...parts);
    expect(
      breaches([
        { from: p('services', 'platform', 'kernel-error.ts'), to: p('services', 'audit', 'index.ts') },
        { from: p('services', 'audit', 'audit-key.ts'), to: p('services', 'keymaster', 'key-store.ts') },
        { from: p('services', 'batch', 'batch-module.ts'), to: p('services', 'kernel', 'kernel.ts') },
        { from: p('services', 'audit', 'audit-key.ts'), to: p('services', 'keymaster', 'index.ts') },
        { from: p('services', 'kernel', 'cli.ts'), to: p('scripts', 'certify.ts') },
      ]),
    ).toHaveLength(3);
  });
});
