import { z } from 'zod';

/** Stored responses are kept this long (OpenAI keeps them 30 days). */
const defaultRetentionDays = 30;

/** The `responses` section of Gravity's config: where `/v1/responses` keeps stored responses, and how long. */
export const responsesConfigSchema = z
  .strictObject({
    /** Where `responses.sqlite` lives; defaults to `<dataDir>`. */
    directory: z.string().min(1).optional(),
    /** Days a stored response can be retrieved or continued; older ones are deleted. */
    retentionDays: z.number().positive().default(defaultRetentionDays),
    /**
     * `sqlite` (beside this gateway, in `directory`) or `postgres` (the ledger's database, so that a
     * conversation continues on any replica). Unset: the ledger's choice.
     */
    store: z.enum(['sqlite', 'postgres']).optional(),
  })
  .prefault({});

export type ResponsesConfig = z.output<typeof responsesConfigSchema>;
