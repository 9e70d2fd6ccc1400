import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { ServiceDefinition } from '@grpc/grpc-js';
import { loadSync, type Options } from '@grpc/proto-loader';

/**
 * The ext_proc and gRPC health services as @grpc/grpc-js definitions, loaded once from Gravity's protos
 * (src/epp/proto) and the Envoy, xds and Google protos that @grpc/grpc-js-xds ships. Messages are plain
 * objects with the protos' field names (keepCase), bytes as Buffers, enums and 64-bit numbers as numbers,
 * and unset fields absent (no defaults): `undefined` is how a reader tells "not sent".
 */

/**
 * The protos stay in src/ (tsc does not copy them): from src/epp/ and from dist/epp/ alike this resolves
 * to the repository's src/epp/proto.
 */
const gravityProtoDir = fileURLToPath(new URL('../../src/epp/proto/', import.meta.url));

/** The xds package's bundled protos: Envoy's API, xds/udpa annotations, Google's well-known types, PGV. */
function xdsProtoDirs(): string[] {
  const packageJson = createRequire(import.meta.url).resolve('@grpc/grpc-js-xds/package.json');
  const deps = path.join(path.dirname(packageJson), 'deps');
  return ['envoy-api', 'xds', 'googleapis', 'protoc-gen-validate'].map((dir) => path.join(deps, dir));
}

const loaderOptions: Options = {
  keepCase: true,
  longs: Number,
  enums: Number,
  defaults: false,
  oneofs: false,
  includeDirs: [gravityProtoDir, ...xdsProtoDirs()],
};

function serviceOf(file: string, name: string): ServiceDefinition {
  const definition = loadSync(file, loaderOptions)[name];
  if (definition === undefined || !('Process' in definition || 'Check' in definition))
    throw new Error(`${file} does not define the service ${name}`);
  return definition as unknown as ServiceDefinition;
}

let services: { extProc: ServiceDefinition; health: ServiceDefinition } | undefined;

/** The two services, loaded on first use (the protos are parsed once per process). */
export function extProcServices(): { extProc: ServiceDefinition; health: ServiceDefinition } {
  services ??= {
    extProc: serviceOf('ext_proc_service.proto', 'envoy.service.ext_proc.v3.ExternalProcessor'),
    health: serviceOf('health.proto', 'grpc.health.v1.Health'),
  };
  return services;
}

/** The fully qualified name Envoy and the health protocol use for the ext_proc service. */
export const extProcServiceName = 'envoy.service.ext_proc.v3.ExternalProcessor';

/** ProcessingMode.BodySendMode values as numbers (the snapshot lacks FULL_DUPLEX_STREAMED). */
export const bodySendMode = { none: 0, streamed: 1, buffered: 2, bufferedPartial: 3, fullDuplexStreamed: 4 };

/** grpc.health.v1 serving statuses. */
export const servingStatus = { serving: 1, notServing: 2, serviceUnknown: 3 } as const;

// The messages as @grpc/proto-loader presents them with the options above (only the fields Gravity reads
// or writes; see proto/ext_proc_wire.proto).

export interface HeaderValue {
  key: string;
  value?: string;
  raw_value?: Buffer;
}

export interface HttpHeaders {
  headers?: { headers?: HeaderValue[] };
  end_of_stream?: boolean;
}

export interface HttpBody {
  body?: Buffer;
  end_of_stream?: boolean;
}

/** google.protobuf.Struct as proto-loader decodes and encodes it. */
export interface StructMessage {
  fields?: Record<string, StructValue>;
}

/**
 * google.protobuf.Value. Its fields are camelCase whatever `keepCase` says: protobufjs supplies the
 * well-known Struct types from its own built-in definitions, which are written that way.
 */
export interface StructValue {
  nullValue?: number;
  numberValue?: number;
  stringValue?: string;
  boolValue?: boolean;
  structValue?: StructMessage;
  listValue?: { values?: StructValue[] };
}

export interface ProcessingRequest {
  request_headers?: HttpHeaders;
  response_headers?: HttpHeaders;
  request_body?: HttpBody;
  response_body?: HttpBody;
  request_trailers?: object;
  response_trailers?: object;
  metadata_context?: { filter_metadata?: Record<string, StructMessage> };
  observability_mode?: boolean;
  protocol_config?: { request_body_mode?: number; response_body_mode?: number };
}

export interface HeaderMutation {
  set_headers?: Array<{ header: HeaderValue }>;
  remove_headers?: string[];
}

export interface CommonResponse {
  status?: number;
  header_mutation?: HeaderMutation;
  body_mutation?: { streamed_response?: { body: Buffer; end_of_stream: boolean } };
  clear_route_cache?: boolean;
}

export interface ProcessingResponse {
  request_headers?: { response: CommonResponse };
  response_headers?: { response: CommonResponse };
  request_body?: { response: CommonResponse };
  response_body?: { response: CommonResponse };
  request_trailers?: object;
  response_trailers?: object;
  immediate_response?: {
    status: { code: number };
    headers?: HeaderMutation;
    body?: Buffer;
    details?: string;
  };
  dynamic_metadata?: StructMessage;
}

/** A header's value as Envoy sends it: `raw_value` in current versions, `value` in older ones. */
export function headerValue(header: HeaderValue): string {
  if (header.raw_value !== undefined && header.raw_value.length > 0) return header.raw_value.toString('utf8');
  return header.value ?? '';
}

/** The string list or string in a Struct field (subset hints are lists; a lone string is read as one). */
export function structStrings(value: StructValue | undefined): string[] | undefined {
  if (value === undefined) return undefined;
  if (value.listValue !== undefined)
    return (value.listValue.values ?? []).flatMap((item) =>
      typeof item.stringValue === 'string' ? [item.stringValue] : [],
    );
  if (typeof value.stringValue === 'string') return value.stringValue === '' ? [] : [value.stringValue];
  return [];
}
