import {
  AbortedError,
  AlreadyExistsError,
  DomainError,
  FailedPreconditionError,
  InvalidArgumentError,
  NotFoundError,
  PermissionDeniedError,
  ResourceExhaustedError,
  UnauthenticatedError,
  UnavailableError,
} from '@clinical/errors';
import { mapDatabaseError } from '@clinical/db';
import type { Logger } from '@clinical/telemetry';
import { isAbortError } from 'abort-controller-x';
import { ServerError, Status, type ServerMiddleware } from 'nice-grpc';
import { BadRequest, ErrorInfo, RetryInfo, RichServerError } from 'nice-grpc-error-details';

const ERROR_DOMAIN = 'clinical.platform';

/** A google.rpc.RetryInfo asking the caller to wait `ms` before retrying. */
export function retryDelay(ms: number): RetryInfo {
  return RetryInfo.fromPartial({
    retryDelay: { seconds: Math.floor(ms / 1_000), nanos: Math.round(ms % 1_000) * 1_000_000 },
  });
}

function errorInfo(reason: string): ErrorInfo {
  return ErrorInfo.fromPartial({ reason, domain: ERROR_DOMAIN });
}

/** The gRPC status of a domain error, with `google.rpc` details where they help the caller. */
function fromDomainError(error: DomainError): RichServerError {
  if (error instanceof InvalidArgumentError) {
    return new RichServerError(Status.INVALID_ARGUMENT, error.message, [
      BadRequest.fromPartial({
        fieldViolations: error.violations.map((violation) => ({
          field: violation.field,
          description: violation.description,
        })),
      }),
    ]);
  }
  if (error instanceof NotFoundError) {
    return new RichServerError(Status.NOT_FOUND, error.message, [errorInfo('NOT_FOUND')]);
  }
  if (error instanceof AlreadyExistsError) {
    return new RichServerError(Status.ALREADY_EXISTS, error.message, [errorInfo('ALREADY_EXISTS')]);
  }
  if (error instanceof AbortedError) {
    return new RichServerError(Status.ABORTED, error.message, [errorInfo('CONCURRENT_MODIFICATION')]);
  }
  if (error instanceof FailedPreconditionError) {
    return new RichServerError(Status.FAILED_PRECONDITION, error.message, [errorInfo('FAILED_PRECONDITION')]);
  }
  if (error instanceof PermissionDeniedError) {
    return new RichServerError(Status.PERMISSION_DENIED, error.message, [errorInfo('PERMISSION_DENIED')]);
  }
  if (error instanceof UnauthenticatedError) {
    return new RichServerError(Status.UNAUTHENTICATED, error.message, [errorInfo('UNAUTHENTICATED')]);
  }
  if (error instanceof ResourceExhaustedError) {
    return new RichServerError(Status.RESOURCE_EXHAUSTED, error.message, [
      errorInfo('RATE_LIMITED'),
      retryDelay(error.retryAfterMs),
    ]);
  }
  if (error instanceof UnavailableError) {
    return new RichServerError(Status.UNAVAILABLE, error.message, [retryDelay(1_000)]);
  }
  return new RichServerError(Status.INTERNAL, 'internal error');
}

/** Quoted fragments of driver messages can echo input values; logs keep only the shape. */
function withoutValues(message: string): string {
  return message.replace(/"[^"]*"|'[^']*'|\([^)]*\)=\([^)]*\)/g, '?');
}

/**
 * The one place where errors become gRPC statuses. Domain errors and mapped
 * database errors get their status and details; cancellations pass through;
 * anything else is a server fault: logged without values, returned as a bare
 * INTERNAL that reveals nothing.
 */
export function edgeErrorMiddleware(logger: Logger): ServerMiddleware {
  return async function* edgeErrors(call, context) {
    try {
      return yield* call.next(call.request, context);
    } catch (error) {
      if (error instanceof ServerError || isAbortError(error)) {
        throw error;
      }
      const domainError = error instanceof DomainError ? error : mapDatabaseError(error);
      if (domainError) {
        throw fromDomainError(domainError);
      }
      const failure = error instanceof Error ? error : new Error(String(error));
      logger.error(
        { method: call.method.path, error: { name: failure.name, message: withoutValues(failure.message), stack: failure.stack?.split('\n').slice(1, 6).join('\n') } },
        'unhandled error',
      );
      throw new ServerError(Status.INTERNAL, 'internal error');
    }
  };
}
