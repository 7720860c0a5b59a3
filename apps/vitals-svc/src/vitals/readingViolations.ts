import { InvalidArgumentError, type FieldViolation } from '@clinical/errors';

/** Violations listed in one error at most: enough to fix a client, small enough for any client's trailer limit. */
export const MAX_LISTED_VIOLATIONS = 25;

/**
 * Collects the field violations of a request's readings. Past
 * MAX_LISTED_VIOLATIONS it only counts, and the error says how many more
 * there were: a batch of 5,000 bad readings must not produce a status
 * trailer larger than clients accept.
 */
export class ReadingViolations {
  private readonly listed: FieldViolation[] = [];
  private unlisted = 0;

  add(field: string, description: string): void {
    if (this.listed.length < MAX_LISTED_VIOLATIONS) {
      this.listed.push({ field, description });
    } else {
      this.unlisted += 1;
    }
  }

  get empty(): boolean {
    return this.listed.length === 0;
  }

  /** @throws InvalidArgumentError with the listed violations (and the count of the others), if any. */
  throwIfAny(): void {
    if (this.listed.length === 0) {
      return;
    }
    const more = this.unlisted > 0 ? [{ field: 'readings', description: `and ${this.unlisted} more violations not listed` }] : [];
    throw new InvalidArgumentError([...this.listed, ...more]);
  }
}
