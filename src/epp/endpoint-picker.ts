import type { Admission } from '../admission/admission.js';
import type { Gateway } from '../gateway/gateway.js';
import type { EndpointDirectory } from './endpoint-directory.js';
import type { EppConfig } from './epp-config.js';

/** A running Endpoint Picker: Envoy's ext_proc service and gRPC health on one port. */
export interface EndpointPicker {
  /** `host:port` it listens on (the port resolved when 0 was asked for). */
  readonly address: string;
  readonly port: number;
  /** Readiness as the health service reports it: false from the start of a shutdown. */
  readonly ready: boolean;
  /** Stops taking streams and ends those open (Envoy then fails open or closed, as configured). */
  close(): Promise<void>;
}

/** What the server wiring passes in: the settings, and the stages the EPP drives. */
export interface EndpointPickerOptions {
  config: EppConfig & { port: number };
  gateway: Gateway;
  /** The endpoints, where discovery changes them at run time; absent: `config.endpoints`, fixed. */
  endpoints?: EndpointDirectory | undefined;
  admission: Admission;
  /** The bound on a request body (`server.bodyLimitBytes`), as on the HTTP edge. */
  bodyLimitBytes: number;
  log: (message: string, details: Record<string, unknown>) => void;
}
