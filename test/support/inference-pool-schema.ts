/**
 * The InferencePool (`inference.networking.k8s.io/v1`) as a JSON Schema, for validating rendered
 * manifests where no cluster (and so no CRD) runs. No npm package ships it; this is written from the
 * Gateway API Inference Extension's v1 API reference (field names, required fields, bounds and enums are
 * API facts). Strict about unknown fields, as the API server's strict field validation is.
 */
const port = { type: 'integer', minimum: 1, maximum: 65_535 } as const;
const name = { type: 'string', minLength: 1, maxLength: 253 } as const;

export const inferencePoolSchema = {
  type: 'object',
  required: ['apiVersion', 'kind', 'metadata', 'spec'],
  properties: {
    apiVersion: { const: 'inference.networking.k8s.io/v1' },
    kind: { const: 'InferencePool' },
    metadata: {
      type: 'object',
      required: ['name'],
      properties: {
        name: { type: 'string', pattern: '^[a-z0-9]([-a-z0-9]*[a-z0-9])?$', maxLength: 63 },
        namespace: { type: 'string' },
        labels: { type: 'object', additionalProperties: { type: 'string' } },
        annotations: { type: 'object', additionalProperties: { type: 'string' } },
      },
    },
    spec: {
      type: 'object',
      additionalProperties: false,
      required: ['selector', 'targetPorts', 'endpointPickerRef'],
      properties: {
        // Intentionally as simple as a Service's selector: matchLabels only.
        selector: {
          type: 'object',
          additionalProperties: false,
          required: ['matchLabels'],
          properties: {
            matchLabels: {
              type: 'object',
              minProperties: 1,
              maxProperties: 64,
              additionalProperties: { type: 'string', maxLength: 63 },
            },
          },
        },
        // Each (pod, port) is a separate endpoint; numbers unique.
        targetPorts: {
          type: 'array',
          minItems: 1,
          maxItems: 8,
          uniqueItems: true,
          items: {
            type: 'object',
            additionalProperties: false,
            required: ['number'],
            properties: { number: port },
          },
        },
        appProtocol: { enum: ['http', 'kubernetes.io/h2c'] },
        endpointPickerRef: {
          type: 'object',
          additionalProperties: false,
          required: ['name'],
          properties: {
            group: { type: 'string', maxLength: 253 },
            kind: { type: 'string', minLength: 1, maxLength: 63 },
            name,
            port: {
              type: 'object',
              additionalProperties: false,
              required: ['number'],
              properties: { number: port },
            },
            failureMode: { enum: ['FailOpen', 'FailClose'] },
          },
          // The port is required when the referent is a Service (the default kind).
          if: { anyOf: [{ not: { required: ['kind'] } }, { properties: { kind: { const: 'Service' } } }] },
          // biome-ignore lint/suspicious/noThenProperty: JSON Schema's conditional keyword.
          then: { required: ['name', 'port'] },
        },
      },
    },
  },
} as const;
