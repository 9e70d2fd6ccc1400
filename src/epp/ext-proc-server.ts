import {
  Server,
  ServerCredentials,
  type ServerDuplexStream,
  type ServerUnaryCall,
  type sendUnaryData,
} from '@grpc/grpc-js';
import { EndpointDirectory } from './endpoint-directory.js';
import type { EndpointPicker, EndpointPickerOptions } from './endpoint-picker.js';
import { ExtProcExchange } from './ext-proc-exchange.js';
import {
  extProcServiceName,
  extProcServices,
  type ProcessingRequest,
  type ProcessingResponse,
  servingStatus,
} from './ext-proc-protocol.js';

/** Health service names the GIE protocol asks for, besides "" (the server as a whole). */
const readinessServices = new Set(['', 'readiness', extProcServiceName]);

/**
 * Starts the Endpoint Picker: one gRPC server with `envoy.service.ext_proc.v3.ExternalProcessor/Process`
 * (one ExtProcExchange per stream) and `grpc.health.v1.Health/Check`. Plaintext: inside a cluster the
 * gateway reaches it over the pod network, and TLS, where wanted, is the mesh's.
 */
export async function startEndpointPicker(options: EndpointPickerOptions): Promise<EndpointPicker> {
  const { config, gateway } = options;
  const endpoints = options.endpoints ?? new EndpointDirectory(config.endpoints);
  const services = extProcServices();
  const server = new Server();
  const open = new Set<ServerDuplexStream<ProcessingRequest, ProcessingResponse>>();
  let closing = false;
  const ready = () => !closing && gateway.ready;

  server.addService(services.extProc, {
    Process: (call: ServerDuplexStream<ProcessingRequest, ProcessingResponse>) => {
      open.add(call);
      call.on('close', () => open.delete(call));
      new ExtProcExchange(call, {
        gateway,
        admission: options.admission,
        endpoints,
        defaultModel: config.models[0] as string,
        bodyLimitBytes: options.bodyLimitBytes,
        log: options.log,
      });
    },
  });
  server.addService(services.health, {
    Check: (
      call: ServerUnaryCall<{ service?: string }, { status: number }>,
      callback: sendUnaryData<unknown>,
    ) => {
      const service = call.request.service ?? '';
      // Liveness: the process answers. Readiness (and the ext_proc service): it also takes requests.
      if (service === 'liveness') callback(null, { status: servingStatus.serving });
      else if (readinessServices.has(service))
        callback(null, { status: ready() ? servingStatus.serving : servingStatus.notServing });
      else callback(null, { status: servingStatus.serviceUnknown });
    },
  });

  const host = config.host.includes(':') && !config.host.startsWith('[') ? `[${config.host}]` : config.host;
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(`${host}:${config.port}`, ServerCredentials.createInsecure(), (error, bound) =>
      error ? reject(error) : resolve(bound),
    ),
  );
  return {
    address: `${host}:${port}`,
    port,
    get ready() {
      return ready();
    },
    close: () => {
      closing = true;
      return new Promise<void>((resolve) => {
        // Open streams are ended rather than waited for: each holds one request Envoy is proxying, and the
        // response goes on without the EPP (Envoy's failure mode for a closed stream).
        for (const call of open) call.end();
        server.tryShutdown(() => resolve());
        setTimeout(() => server.forceShutdown(), 1000).unref();
      });
    },
  };
}
