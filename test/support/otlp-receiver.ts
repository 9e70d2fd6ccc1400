import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gunzipSync } from 'node:zlib';

/**
 * An OTLP/HTTP traces receiver on loopback, as a collector would be: `POST /v1/traces` with an
 * `ExportTraceServiceRequest` in protobuf, answered 200 with an empty response message. It decodes the
 * spans with a small protobuf reader (below) for the fields tests look at; the OpenTelemetry packages
 * ship no decoder for requests.
 */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  /** '' for a root span. */
  parentSpanId: string;
  traceState: string;
  name: string;
  /** OTLP's SpanKind: 1 internal, 2 server, 3 client. */
  kind: number;
  startTimeUnixNano: bigint;
  endTimeUnixNano: bigint;
  attributes: Record<string, unknown>;
  /** OTLP's StatusCode: 0 unset, 1 ok, 2 error. */
  status: { code: number; message: string };
  resource: Record<string, unknown>;
}

export interface OtlpReceiver {
  /** The traces URL (`…/v1/traces`). */
  url: string;
  spans: ReceivedSpan[];
  /** Each export's content type, in order. */
  contentTypes: string[];
  /**
   * Resolves with the spans of `traceId` once its server span has arrived. Gravity ends that span last,
   * and the batch processor exports in the order spans end, so the rest of the trace came with or before it.
   */
  waitForTrace(traceId: string, timeoutMs?: number): Promise<ReceivedSpan[]>;
  close(): Promise<void>;
}

const serverSpanKind = 2;

export async function startOtlpReceiver(): Promise<OtlpReceiver> {
  const spans: ReceivedSpan[] = [];
  const contentTypes: string[] = [];
  const server: Server = createServer(async (request, response) => {
    const chunks: Buffer[] = [];
    for await (const chunk of request) chunks.push(chunk as Buffer);
    if (request.method !== 'POST' || request.url !== '/v1/traces') {
      response.writeHead(404).end();
      return;
    }
    let body = Buffer.concat(chunks);
    if (request.headers['content-encoding'] === 'gzip') body = gunzipSync(body);
    contentTypes.push(String(request.headers['content-type']));
    spans.push(...decodeExportRequest(body));
    response.writeHead(200, { 'content-type': 'application/x-protobuf' }).end();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/v1/traces`,
    spans,
    contentTypes,
    async waitForTrace(traceId, timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = spans.filter((span) => span.traceId === traceId);
        if (found.some((span) => span.kind === serverSpanKind)) return found;
        if (Date.now() > deadline)
          throw new Error(`trace ${traceId}: no server span after ${timeoutMs} ms (${found.length} spans)`);
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    },
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

/** One protobuf field: its number, and its value by wire type (varint, 64-bit, bytes, 32-bit). */
interface Field {
  number: number;
  varint: bigint;
  bytes: Buffer;
}

function* readFields(buffer: Buffer): Generator<Field> {
  let offset = 0;
  const readVarint = (): bigint => {
    let result = 0n;
    let shift = 0n;
    for (;;) {
      const byte = buffer[offset++] as number;
      result |= BigInt(byte & 0x7f) << shift;
      if ((byte & 0x80) === 0) return result;
      shift += 7n;
    }
  };
  while (offset < buffer.length) {
    const key = Number(readVarint());
    const number = key >>> 3;
    const wireType = key & 7;
    if (wireType === 0) yield { number, varint: readVarint(), bytes: Buffer.alloc(0) };
    else if (wireType === 1) {
      const bytes = buffer.subarray(offset, offset + 8);
      offset += 8;
      yield { number, varint: bytes.readBigUInt64LE(), bytes };
    } else if (wireType === 2) {
      const length = Number(readVarint());
      const bytes = buffer.subarray(offset, offset + length);
      offset += length;
      yield { number, varint: 0n, bytes };
    } else if (wireType === 5) {
      const bytes = buffer.subarray(offset, offset + 4);
      offset += 4;
      yield { number, varint: BigInt(bytes.readUInt32LE()), bytes };
    } else throw new Error(`unexpected protobuf wire type ${wireType}`);
  }
}

/** opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest → its spans. */
function decodeExportRequest(buffer: Buffer): ReceivedSpan[] {
  const spans: ReceivedSpan[] = [];
  for (const resourceSpans of readFields(buffer)) {
    if (resourceSpans.number !== 1) continue;
    let resource: Record<string, unknown> = {};
    const scopeSpansList: Buffer[] = [];
    for (const field of readFields(resourceSpans.bytes)) {
      if (field.number === 1) resource = decodeAttributes(field.bytes, 1);
      else if (field.number === 2) scopeSpansList.push(field.bytes);
    }
    for (const scopeSpans of scopeSpansList)
      for (const field of readFields(scopeSpans))
        if (field.number === 2) spans.push({ ...decodeSpan(field.bytes), resource });
  }
  return spans;
}

function decodeSpan(buffer: Buffer): Omit<ReceivedSpan, 'resource'> {
  const span: Omit<ReceivedSpan, 'resource'> = {
    traceId: '',
    spanId: '',
    parentSpanId: '',
    traceState: '',
    name: '',
    kind: 0,
    startTimeUnixNano: 0n,
    endTimeUnixNano: 0n,
    attributes: {},
    status: { code: 0, message: '' },
  };
  for (const field of readFields(buffer)) {
    switch (field.number) {
      case 1:
        span.traceId = field.bytes.toString('hex');
        break;
      case 2:
        span.spanId = field.bytes.toString('hex');
        break;
      case 3:
        span.traceState = field.bytes.toString('utf8');
        break;
      case 4:
        span.parentSpanId = field.bytes.toString('hex');
        break;
      case 5:
        span.name = field.bytes.toString('utf8');
        break;
      case 6:
        span.kind = Number(field.varint);
        break;
      case 7:
        span.startTimeUnixNano = field.varint;
        break;
      case 8:
        span.endTimeUnixNano = field.varint;
        break;
      case 9: {
        const [key, value] = decodeKeyValue(field.bytes);
        span.attributes[key] = value;
        break;
      }
      case 15:
        for (const status of readFields(field.bytes)) {
          if (status.number === 2) span.status.message = status.bytes.toString('utf8');
          if (status.number === 3) span.status.code = Number(status.varint);
        }
        break;
    }
  }
  return span;
}

/** The repeated KeyValue field `number` of a message. */
function decodeAttributes(buffer: Buffer, number: number): Record<string, unknown> {
  const attributes: Record<string, unknown> = {};
  for (const field of readFields(buffer))
    if (field.number === number) {
      const [key, value] = decodeKeyValue(field.bytes);
      attributes[key] = value;
    }
  return attributes;
}

function decodeKeyValue(buffer: Buffer): [string, unknown] {
  let key = '';
  let value: unknown = null;
  for (const field of readFields(buffer)) {
    if (field.number === 1) key = field.bytes.toString('utf8');
    else if (field.number === 2) value = decodeAnyValue(field.bytes);
  }
  return [key, value];
}

/** AnyValue: string, bool, int64 (as a number), double, or an array of them. */
function decodeAnyValue(buffer: Buffer): unknown {
  for (const field of readFields(buffer)) {
    switch (field.number) {
      case 1:
        return field.bytes.toString('utf8');
      case 2:
        return field.varint !== 0n;
      case 3:
        return Number(BigInt.asIntN(64, field.varint));
      case 4:
        return field.bytes.readDoubleLE();
      case 5:
        return [...readFields(field.bytes)]
          .filter((item) => item.number === 1)
          .map((item) => decodeAnyValue(item.bytes));
    }
  }
  return null;
}
