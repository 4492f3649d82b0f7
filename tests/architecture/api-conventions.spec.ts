import { execFileSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import {
  createFileRegistry,
  fromBinary,
  getOption,
  type DescExtension,
  type DescField,
  type DescFile,
  type DescMessage,
  type FileRegistry,
} from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { ERROR_DOMAIN } from '../../services/platform/kernel-error';

/**
 * The API conventions of docs/api-conventions.md that `buf lint` cannot check, asserted on the
 * descriptor set the kernel serves (gen/descriptor.binpb): names of time fields, Durations for
 * spans, `<resource>_id` identities, creates that take the resource whole (AIP-133), responses
 * that wrap a resource in a field named after it, and the error-detail import every service
 * carries for reflection. The checker is run on a synthetic bad API too, so it can fail.
 */
const ROOT = path.resolve(__dirname, '../..');
const BUF = path.join(ROOT, 'node_modules/.bin/buf');

const loadSet = (file: string) => createFileRegistry(fromBinary(FileDescriptorSetSchema, readFileSync(file)));

/** Methods whose request need not hold a resource, each with its reason (docs/api-conventions.md). */
const CREATE_EXCEPTIONS: Record<string, string> = {
  // Adds a PENDING version of an existing secret: the input is the new value (bytes), and
  // SecretVersion holds metadata only, all of it output only.
  'axis.kernel.secrets.v1.SecretService.StartRotation': 'adds a version; its input is a value, not a resource',
};

const CREATE_VERBS = ['Create', 'Enqueue', 'Start'];
const RESOURCE_RESPONSE_VERBS = ['Get', 'Create', 'Enqueue', 'Start'];
/** Names that are a span of time whatever their type (`period` alone is a calendar period of a series, a string). */
const DURATION_NAME = /((^|_)(timeout|ttl|retention|eta|wait|backoff_base)|_(window|period|interval|delay|duration))$/;
/** Units in a name: the value is a number of them, which is what Duration replaces. */
const UNIT_SUFFIX = /_(ms|millis|milliseconds|us|micros|ns|nanos|seconds|secs|minutes|mins|hours|days)$/;
const BANNED_ID_NAMES = new Set(['id', 'alias', 'name', 'uid']);

const snake = (typeName: string) => typeName.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toLowerCase();

/** Whether a field is named after a message: its snake_case name or a trailing part of it (`number` for SequenceNumber). */
const namedAfter = (fieldName: string, message: DescMessage) => {
  const full = snake(message.name);
  return full === fieldName || full.endsWith(`_${fieldName}`);
};

const isKernel = (file: DescFile, prefix: string) => file.proto.package.startsWith(prefix) && !file.proto.package.startsWith(`${prefix}common.`);
const isServiceFile = (file: DescFile) => file.services.length > 0;

/**
 * Every breach of the conventions in the API under `prefix`, as "<where>: <rule>" lines. A
 * resource message is a top-level message of a capability's resources file (a file without
 * services); requests and responses live in the service files.
 */
export function apiConventionViolations(registry: FileRegistry, prefix = 'axis.kernel.'): string[] {
  const files = [...registry.files].filter((f) => isKernel(f, prefix));
  const resources = new Map<string, DescMessage>();
  for (const file of files.filter((f) => !isServiceFile(f))) for (const m of file.messages) resources.set(m.typeName, m);
  const problems: string[] = [];
  const fieldsOf = (m: DescMessage): DescField[] => [...m.fields, ...m.nestedMessages.flatMap(fieldsOf)];

  for (const file of files) {
    for (const message of file.messages) {
      for (const field of fieldsOf(message)) {
        const where = `${field.parent.typeName}.${field.name}`;
        const type = field.message?.typeName;
        const isTimestamp = type === 'google.protobuf.Timestamp';
        const isDuration = type === 'google.protobuf.Duration';
        if (field.name.endsWith('_at')) problems.push(`${where}: an instant is a google.protobuf.Timestamp named *_time, not *_at`);
        if (UNIT_SUFFIX.test(field.name)) problems.push(`${where}: a span of time is a google.protobuf.Duration, not a number with its unit in the name`);
        if (isTimestamp && !field.name.endsWith('_time')) problems.push(`${where}: a Timestamp's name ends in _time`);
        if (field.name.endsWith('_time') && !isTimestamp) problems.push(`${where}: a *_time field is a google.protobuf.Timestamp`);
        if (DURATION_NAME.test(field.name) && !isDuration) problems.push(`${where}: a span of time is a google.protobuf.Duration`);
        if (BANNED_ID_NAMES.has(field.name)) problems.push(`${where}: a resource's id is named <resource>_id`);
      }
    }
    for (const service of file.services) {
      for (const method of service.methods) {
        const where = `${service.typeName}.${method.name}`;
        const verb = CREATE_VERBS.find((v) => method.name.startsWith(v));
        const resourceName = verb && method.name.slice(verb.length);
        const resource = resourceName ? resources.get(`${file.proto.package}.${resourceName}`) : undefined;
        if (verb && !CREATE_EXCEPTIONS[where]) {
          if (!resource) {
            problems.push(`${where}: a ${verb}<Resource> method creates a resource message of its package (none is named ${resourceName})`);
          } else {
            const holder = method.input.fields.find((f) => f.fieldKind === 'message' && f.message.typeName === resource.typeName);
            if (!holder) problems.push(`${where}: the request takes the resource in a field of type ${resource.name} (AIP-133)`);
            else if (holder.name !== snake(resource.name)) problems.push(`${where}: the resource field is named ${snake(resource.name)}, not ${holder.name}`);
            const own = new Set(resource.fields.map((f) => f.name));
            for (const f of method.input.fields) {
              if (f !== holder && own.has(f.name)) problems.push(`${where}: ${method.input.name}.${f.name} duplicates a field of ${resource.name}; set it in ${snake(resource.name)}`);
            }
          }
        }
        if (RESOURCE_RESPONSE_VERBS.some((v) => method.name.startsWith(v)) && !CREATE_EXCEPTIONS[where]) {
          const wrapped = method.output.fields.find((f) => f.fieldKind === 'message' && resources.has(f.message.typeName) && namedAfter(f.name, f.message));
          if (!wrapped) problems.push(`${where}: the response holds the resource whole, in a singular field named after it`);
        }
        if (method.name.startsWith('Get')) {
          const id = method.input.fields.find((f) => f.fieldKind === 'scalar' && f.proto.type === 9 /* TYPE_STRING */);
          const wrapped = method.output.fields.find((f) => f.fieldKind === 'message' && resources.has(f.message.typeName));
          if (id && !id.name.endsWith('_id')) problems.push(`${where}: the request names the resource by <resource>_id, not ${id.name}`);
          if (id && wrapped && wrapped.fieldKind === 'message' && !wrapped.message.fields.some((f) => f.name === id.name)) {
            problems.push(`${where}: ${wrapped.message.name} has no ${id.name}, the id the request names it by`);
          }
        }
      }
    }
  }
  return problems;
}

function filesUnder(dir: string): string[] {
  return readdirSync(dir).flatMap((name) => {
    const file = path.join(dir, name);
    return statSync(file).isDirectory() ? filesUnder(file) : [file];
  });
}

describe('API conventions (docs/api-conventions.md)', () => {
  const registry = loadSet(path.join(ROOT, 'gen/descriptor.binpb'));

  test('the kernel API follows them', () => {
    expect(apiConventionViolations(registry)).toEqual([]);
  });

  test('the checker finds every kind of breach in a synthetic bad API', () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'api-conventions-'));
    try {
      mkdirSync(path.join(dir, 'axis/kernel/bad/v1'), { recursive: true });
      writeFileSync(path.join(dir, 'buf.yaml'), 'version: v2\n');
      writeFileSync(
        path.join(dir, 'axis/kernel/bad/v1/thing.proto'),
        `syntax = "proto3";
package axis.kernel.bad.v1;
import "google/protobuf/timestamp.proto";
message Thing {
  string alias = 1;
  int32 timeout_ms = 2;
  google.protobuf.Timestamp run_at = 3;
  google.protobuf.Timestamp created = 4;
  int64 catchup_window = 5;
  string thing_id = 6;
}
`,
      );
      writeFileSync(
        path.join(dir, 'axis/kernel/bad/v1/thing_service.proto'),
        `syntax = "proto3";
package axis.kernel.bad.v1;
import "axis/kernel/bad/v1/thing.proto";
service ThingService {
  rpc CreateThing(CreateThingRequest) returns (CreateThingResponse);
  rpc GetThing(GetThingRequest) returns (GetThingResponse);
  rpc StartWidget(StartWidgetRequest) returns (StartWidgetResponse);
}
message CreateThingRequest { string alias = 1; int32 timeout_ms = 2; }
message CreateThingResponse { Thing thing = 1; }
message GetThingRequest { string alias = 1; }
message GetThingResponse { string alias = 1; string pem = 2; }
message StartWidgetRequest { Thing item = 1; string thing_id = 2; }
message StartWidgetResponse { Thing result = 1; }
`,
      );
      const out = path.join(dir, 'bad.binpb');
      execFileSync(BUF, ['build', dir, '-o', out], { stdio: 'pipe' });
      const problems = apiConventionViolations(loadSet(out));
      const expected = [
        'axis.kernel.bad.v1.Thing.alias: a resource\'s id is named <resource>_id',
        'axis.kernel.bad.v1.Thing.timeout_ms: a span of time is a google.protobuf.Duration, not a number with its unit in the name',
        'axis.kernel.bad.v1.Thing.run_at: an instant is a google.protobuf.Timestamp named *_time, not *_at',
        'axis.kernel.bad.v1.Thing.created: a Timestamp\'s name ends in _time',
        'axis.kernel.bad.v1.Thing.catchup_window: a span of time is a google.protobuf.Duration',
        'axis.kernel.bad.v1.ThingService.CreateThing: the request takes the resource in a field of type Thing (AIP-133)',
        'axis.kernel.bad.v1.ThingService.GetThing: the response holds the resource whole, in a singular field named after it',
        'axis.kernel.bad.v1.ThingService.GetThing: the request names the resource by <resource>_id, not alias',
        'axis.kernel.bad.v1.ThingService.StartWidget: a Start<Resource> method creates a resource message of its package (none is named Widget)',
        'axis.kernel.bad.v1.ThingService.StartWidget: the response holds the resource whole, in a singular field named after it',
      ];
      expect(expected.filter((e) => !problems.includes(e))).toEqual([]);
      // And the requests' flat fields are caught too.
      expect(problems).toContain('axis.kernel.bad.v1.CreateThingRequest.timeout_ms: a span of time is a google.protobuf.Duration, not a number with its unit in the name');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('every kernel service declares the error domain and depends on google/rpc/error_details.proto, so reflection serves the details', () => {
    const domain = registry.getExtension('axis.kernel.common.v1.error_domain') as DescExtension | undefined;
    expect(domain).toBeDefined();
    const dependsOn = (file: DescFile, name: string, seen = new Set<string>()): boolean =>
      file.dependencies.some((d) => d.name === name.replace(/\.proto$/, '') || (!seen.has(d.name) && (seen.add(d.name), dependsOn(d, name, seen))));
    const services = [...registry.files].filter((f) => isKernel(f, 'axis.kernel.')).flatMap((f) => f.services.map((s) => ({ file: f, service: s })));
    expect(services.map((s) => s.service.typeName).sort()).toEqual([
      'axis.kernel.audit.v1.AuditService',
      'axis.kernel.batch.v1.BatchService',
      'axis.kernel.keymaster.v1.KeymasterService',
      'axis.kernel.scheduler.v1.SchedulerService',
      'axis.kernel.secrets.v1.SecretService',
      'axis.kernel.sequences.v1.SequenceService',
      'axis.kernel.traffic.v1.TrafficService',
    ]);
    for (const { file, service } of services) {
      expect([service.typeName, getOption(service as never, domain as never)]).toEqual([service.typeName, ERROR_DOMAIN]);
      expect([file.name, dependsOn(file, 'google/rpc/error_details.proto')]).toEqual([file.name, true]);
    }
    for (const type of ['ErrorInfo', 'BadRequest', 'RetryInfo', 'QuotaFailure', 'PreconditionFailure']) {
      expect(registry.getMessage(`google.rpc.${type}`)).toBeDefined();
    }
  });

  test('the vendored google/rpc/error_details.proto is the package copy, unchanged', () => {
    const vendored = readFileSync(path.join(ROOT, 'proto/google/rpc/error_details.proto'));
    const packaged = readFileSync(path.join(ROOT, 'node_modules/google-proto-files/google/rpc/error_details.proto'));
    expect(vendored.equals(packaged)).toBe(true);
  });

  test('the kernel and its clients read status details with nice-grpc-error-details, never with the generated google/rpc code', () => {
    const offenders = [...filesUnder(path.join(ROOT, 'services')), ...filesUnder(path.join(ROOT, 'clients/src'))]
      .filter((f) => f.endsWith('.ts'))
      .filter((f) => /from ['"][^'"]*gen\/proto\/google\/rpc\//.test(readFileSync(f, 'utf8')));
    expect(offenders).toEqual([]);
  });
});
