import type * as grpc from '@grpc/grpc-js';
import type { ProcessingRequest, ProcessingResponse } from '../../src/epp/ext-proc-protocol.js';

/**
 * Envoy's side of an ext_proc stream, for tests of the Endpoint Picker: a stream that sends messages and
 * takes the EPP's answers in order, and the request-headers message Envoy opens each request with.
 */
export type ProcessCall = grpc.ClientDuplexStream<ProcessingRequest, ProcessingResponse>;

/** One ext_proc stream as Envoy holds it: send messages, take the EPP's answers in order. */
export class EnvoyStream {
  private readonly received: ProcessingResponse[] = [];
  private waiting: ((message: ProcessingResponse) => void) | null = null;
  readonly ended: Promise<void>;

  constructor(readonly call: ProcessCall) {
    call.on('data', (message: ProcessingResponse) => {
      const waiter = this.waiting;
      this.waiting = null;
      if (waiter) waiter(message);
      else this.received.push(message);
    });
    this.ended = new Promise((resolve) => {
      call.on('end', () => resolve());
      call.on('error', () => resolve());
    });
  }

  send(message: ProcessingRequest): void {
    this.call.write(message);
  }

  next(timeoutMs = 5000): Promise<ProcessingResponse> {
    const queued = this.received.shift();
    if (queued) return Promise.resolve(queued);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error('no answer from the EPP')), timeoutMs);
      this.waiting = (message) => {
        clearTimeout(timer);
        resolve(message);
      };
    });
  }

  /** Nothing arrives within `ms` (an answer the EPP must hold back). */
  async silentFor(ms: number): Promise<boolean> {
    if (this.received.length > 0) return false;
    await new Promise((resolve) => setTimeout(resolve, ms));
    return this.received.length === 0 && this.waiting === null;
  }

  close(): void {
    this.call.end();
  }
}

export function requestHeaders(
  path: string,
  options: { endOfStream?: boolean; subset?: string[]; authorization?: string; bodyMode?: number } = {},
): ProcessingRequest {
  const list = [
    { key: ':method', raw_value: Buffer.from(options.endOfStream ? 'GET' : 'POST') },
    { key: ':path', raw_value: Buffer.from(path) },
    { key: 'content-type', raw_value: Buffer.from('application/json') },
    ...(options.authorization
      ? [{ key: 'authorization', raw_value: Buffer.from(options.authorization) }]
      : []),
  ];
  return {
    request_headers: { headers: { headers: list }, end_of_stream: options.endOfStream ?? false },
    ...(options.bodyMode !== undefined && {
      protocol_config: { request_body_mode: options.bodyMode, response_body_mode: options.bodyMode },
    }),
    ...(options.subset !== undefined && {
      metadata_context: {
        filter_metadata: {
          'envoy.lb.subset_hint': {
            fields: {
              'x-gateway-destination-endpoint-subset': {
                listValue: { values: options.subset.map((address) => ({ stringValue: address })) },
              },
            },
          },
        },
      },
    }),
  };
}

/** The destination list an answer names (the pick, then its fallbacks), or the status of a refusal. */
export function destinationList(answer: ProcessingResponse): string[] | number {
  if (answer.immediate_response) return answer.immediate_response.status.code;
  const header = answer.request_body?.response?.header_mutation?.set_headers?.find(
    (option) => option.header.key === 'x-gateway-destination-endpoint',
  )?.header;
  return (header?.raw_value?.toString('utf8') || header?.value || '').split(',');
}
