import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';

/**
 * The repository explains itself: a person who clones it has no product specification beside it,
 * so no source file, proto, script or document may send the reader outside the repository for
 * what a rule means ("../shared", "KERNEL-SPEC"), and every link of the form `docs/….md#anchor`
 * that a comment or document gives must name a file and an anchor that exist.
 */
const ROOT = path.resolve(__dirname, '../..');
const SCANNED = ['services', 'tests', 'scripts', 'bench', 'clients/src', 'proto/axis', 'docs', 'prisma', '.ci'];
const TOP_FILES = ['README.md', 'clients/README.md', 'package.json', 'buf.yaml', 'buf.gen.yaml', 'jest.config.ts'];
const SELF = path.relative(ROOT, __filename);

function files(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    if (statSync(file).isDirectory()) return name === 'node_modules' || name === 'dist' ? [] : files(file);
    return /\.(ts|proto|md|sql|prisma|sh|mjs)$|^run$/.test(name) ? [file] : [];
  });
}

const scanned = [...SCANNED.flatMap((d) => files(path.join(ROOT, d))), ...TOP_FILES.map((f) => path.join(ROOT, f)).filter(existsSync)]
  .map((f) => path.relative(ROOT, f))
  .filter((f) => f !== SELF);

/** Anchors a Markdown file offers: explicit `<a id="…">` and GitHub's slugs of its headings. */
function anchorsOf(file: string): Set<string> {
  const text = readFileSync(path.join(ROOT, file), 'utf8');
  const anchors = new Set<string>();
  for (const m of text.matchAll(/<a\s+(?:id|name)="([^"]+)"/g)) anchors.add(m[1]);
  for (const m of text.matchAll(/^#{1,6}\s+(.+)$/gm)) {
    anchors.add(
      m[1]
        .trim()
        .toLowerCase()
        .replace(/[`*_]/g, '')
        .replace(/[^\p{L}\p{N}\s-]/gu, '')
        .replace(/\s/g, '-'),
    );
  }
  return anchors;
}

test('nothing points outside the repository for what a rule means', () => {
  const outside = scanned.flatMap((file) =>
    readFileSync(path.join(ROOT, file), 'utf8')
      .split('\n')
      .flatMap((line, i) => (/\.\.\/shared|KERNEL-SPEC/.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : [])),
  );
  expect(outside).toEqual([]);
});

test('every docs/….md#anchor reference names a document and an anchor that exist', () => {
  const broken: string[] = [];
  const cache = new Map<string, Set<string>>();
  for (const file of scanned) {
    const text = readFileSync(path.join(ROOT, file), 'utf8');
    for (const m of text.matchAll(/docs\/([\w./-]+\.md)(?:#([\w-]+))?/g)) {
      const target = `docs/${m[1]}`;
      if (!existsSync(path.join(ROOT, target))) {
        broken.push(`${file}: ${m[0]} (no such document)`);
        continue;
      }
      if (m[2] === undefined) continue;
      if (!cache.has(target)) cache.set(target, anchorsOf(target));
      if (!cache.get(target)!.has(m[2])) broken.push(`${file}: ${m[0]} (no such anchor)`);
    }
  }
  expect(broken).toEqual([]);
});
