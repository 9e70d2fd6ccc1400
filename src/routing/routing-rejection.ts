/** The filters left no replica: says which filter removed the last ones, and why. */
export class RoutingRejection extends Error {
  constructor(
    /** The filter that removed the last candidates, e.g. `residency`. */
    readonly filter: string,
    readonly reason: string,
  ) {
    super(reason);
    this.name = 'RoutingRejection';
  }
}
