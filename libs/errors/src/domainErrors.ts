/**
 * Errors the domain speaks in. Handlers and libraries throw these; the server
 * kit's edge layer is the only place that turns them into gRPC statuses.
 * Messages must never carry PHI: ids and field names, never values.
 */

/** One bad field of a request, named by its path (`requests[3].patient.site_id`). */
export interface FieldViolation {
  readonly field: string;
  readonly description: string;
}

/** Base of every error a caller may see. `name` is the class name. */
export abstract class DomainError extends Error {
  protected constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The request is malformed; thrown with every violation found, not just the first. */
export class InvalidArgumentError extends DomainError {
  readonly violations: readonly FieldViolation[];

  constructor(violations: readonly FieldViolation[] | FieldViolation, options?: { cause?: unknown }) {
    const list = Array.isArray(violations) ? violations : [violations as FieldViolation];
    super(list.map((v) => `${v.field}: ${v.description}`).join('; ') || 'invalid argument', options);
    this.violations = list;
  }
}

/** The entity does not exist, or the caller may not know that it does. */
export class NotFoundError extends DomainError {
  constructor(
    readonly entity: string,
    readonly id: string,
    options?: { cause?: unknown },
  ) {
    super(`${entity} ${id} not found`, options);
  }
}

/** A unique key is taken (for example a subject number). */
export class AlreadyExistsError extends DomainError {
  constructor(
    message: string,
    readonly field?: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A concurrency check failed (stale etag, version conflict); the caller may re-read and retry. */
export class AbortedError extends DomainError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The system is not in a state that allows the operation (a forbidden transition, a missing parent). */
export class FailedPreconditionError extends DomainError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The caller is known but its role does not allow the method. */
export class PermissionDeniedError extends DomainError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** No valid credentials: missing, malformed, expired token, or a revoked session. */
export class UnauthenticatedError extends DomainError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}

/** The caller exceeded its rate; it may retry after `retryAfterMs`. */
export class ResourceExhaustedError extends DomainError {
  constructor(
    message: string,
    readonly retryAfterMs: number,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

/** A dependency is down or the service is shutting down; retrying later may succeed. */
export class UnavailableError extends DomainError {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
  }
}
