import { PermissionDeniedError } from '@clinical/errors';

/** Roles a token may carry. Each service maps its methods to the roles allowed to call them. */
export const ROLES = ['admin', 'coordinator', 'investigator', 'monitor', 'auditor', 'agent', 'service'] as const;
export type Role = (typeof ROLES)[number];

/** The authenticated caller, from a verified bearer token whose session is live. */
export interface Principal {
  /** User or service id. */
  readonly sub: string;
  readonly roles: readonly Role[];
  /** Site ids the caller may see, or '*' for all. */
  readonly sites: readonly string[] | '*';
  /** Session id, checked against the session store on each call. */
  readonly sid: string;
}

/** True if the caller may see data of `siteId`. */
export function canAccessSite(principal: Principal, siteId: string): boolean {
  return principal.sites === '*' || principal.sites.includes(siteId);
}

/** The caller's site list for SQL filters; undefined means every site. */
export function accessibleSites(principal: Principal): readonly string[] | undefined {
  return principal.sites === '*' ? undefined : principal.sites;
}

/** @throws PermissionDeniedError unless the caller holds one of `roles`. */
export function requireRole(principal: Principal, roles: readonly Role[]): void {
  if (!principal.roles.some((role) => roles.includes(role))) {
    throw new PermissionDeniedError(`requires one of the roles: ${roles.join(', ')}`);
  }
}
