import { InvalidArgumentError, type FieldViolation } from '@clinical/errors';
import { checkJsonDocument, isStorableText, UNSTORABLE_TEXT, type JsonDocumentRule } from './jsonDocuments.js';

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

/** A google.type.Date as ts-proto generates it. */
export interface CivilDate {
  readonly year: number;
  readonly month: number;
  readonly day: number;
}

export interface StringRule {
  readonly required?: boolean;
  readonly max: number;
  readonly min?: number;
  readonly pattern?: RegExp;
  readonly patternDescription?: string;
}

/** 'YYYY-MM-DD' of a civil date, or undefined when it is not a real day. */
export function formatCivilDate(date: CivilDate): string | undefined {
  const { year, month, day } = date;
  if (!Number.isInteger(year) || !Number.isInteger(month) || !Number.isInteger(day)) {
    return undefined;
  }
  if (year < 1 || year > 9999 || month < 1 || month > 12 || day < 1) {
    return undefined;
  }
  const probe = new Date(Date.UTC(year, month - 1, day));
  if (probe.getUTCFullYear() !== year || probe.getUTCMonth() !== month - 1 || probe.getUTCDate() !== day) {
    return undefined;
  }
  return `${String(year).padStart(4, '0')}-${String(month).padStart(2, '0')}-${String(day).padStart(2, '0')}`;
}

/** The google.type.Date of a 'YYYY-MM-DD' string. */
export function parseCivilDate(value: string): CivilDate {
  const [year, month, day] = value.split('-').map(Number);
  return { year: year ?? 0, month: month ?? 0, day: day ?? 0 };
}

/** Code points in `text` (a surrogate pair is one character). */
function characterCount(text: string): number {
  let pairs = 0;
  for (let index = 0; index < text.length; index += 1) {
    const unit = text.charCodeAt(index);
    if (unit >= 0xdc00 && unit <= 0xdfff) {
      pairs += 1;
    }
  }
  return text.length - pairs;
}

/** The earliest and latest instants PostgreSQL and ISO 8601 text both spell: years 0001 to 9999. */
const EARLIEST_INSTANT_MS = Date.parse('0001-01-01T00:00:00Z');
const LATEST_INSTANT_MS = Date.parse('9999-12-31T23:59:59.999Z');

/** Today's date in UTC, 'YYYY-MM-DD'. */
export function todayUtc(now = new Date()): string {
  return now.toISOString().slice(0, 10);
}

/**
 * Collects every violation of a request, then throws them together, so a
 * caller fixes everything in one round. Field names are the proto paths
 * callers use (`patient.enrollment_date`, `requests[3].patient.site_id`).
 * Descriptions name the rule, never echo the value.
 */
export class FieldValidator {
  private readonly violations: FieldViolation[] = [];

  add(field: string, description: string): void {
    this.violations.push({ field, description });
  }

  get valid(): boolean {
    return this.violations.length === 0;
  }

  /** Checks a string's length and shape; empty is allowed unless required (and then blank is refused too). */
  string(field: string, value: string, rule: StringRule): void {
    if (value.length === 0 || (rule.required && value.trim() === '')) {
      if (rule.required) {
        this.add(field, value.length === 0 ? 'is required' : 'must not be blank');
      }
      return;
    }
    if (!isStorableText(value)) {
      this.add(field, UNSTORABLE_TEXT);
      return;
    }
    // Characters as PostgreSQL counts them (code points), not UTF-16 units.
    const length = characterCount(value);
    if (length < (rule.min ?? 1)) {
      this.add(field, `must be at least ${rule.min ?? 1} characters`);
    } else if (length > rule.max) {
      this.add(field, `must be at most ${rule.max} characters`);
    } else if (rule.pattern && !rule.pattern.test(value)) {
      this.add(field, rule.patternDescription ?? 'has an invalid format');
    }
  }

  /** Checks a UUID; empty is allowed unless required. */
  uuid(field: string, value: string, required = true): void {
    if (value === '') {
      if (required) {
        this.add(field, 'is required');
      }
    } else if (!UUID.test(value)) {
      this.add(field, 'must be a UUID');
    }
  }

  /** Checks a civil date and its bounds ('YYYY-MM-DD', inclusive); returns its 'YYYY-MM-DD' form. */
  date(
    field: string,
    value: CivilDate | undefined,
    rule: { required?: boolean; min?: string; max?: string },
  ): string | undefined {
    if (!value) {
      if (rule.required) {
        this.add(field, 'is required');
      }
      return undefined;
    }
    const formatted = formatCivilDate(value);
    if (!formatted) {
      this.add(field, 'is not a valid calendar date');
      return undefined;
    }
    if (rule.min && formatted < rule.min) {
      this.add(field, `must not be before ${rule.min}`);
      return undefined;
    }
    if (rule.max && formatted > rule.max) {
      this.add(field, `must not be after ${rule.max}`);
      return undefined;
    }
    return formatted;
  }

  /**
   * Checks an instant (a decoded google.protobuf.Timestamp): a real time in
   * the years 0001 to 9999. Returns it when valid.
   */
  instant(field: string, value: Date | undefined, required = false): Date | undefined {
    if (!value) {
      if (required) {
        this.add(field, 'is required');
      }
      return undefined;
    }
    const ms = value.getTime();
    if (!Number.isFinite(ms)) {
      this.add(field, 'is not a valid timestamp');
      return undefined;
    }
    if (ms < EARLIEST_INSTANT_MS || ms > LATEST_INSTANT_MS) {
      this.add(field, 'must be between 0001-01-01T00:00:00Z and 9999-12-31T23:59:59.999Z');
      return undefined;
    }
    return value;
  }

  /** Checks a number against an inclusive range; `zeroMeansUnset` lets 0 through. */
  number(field: string, value: number, rule: { min: number; max: number; zeroMeansUnset?: boolean; integer?: boolean }): void {
    if (rule.zeroMeansUnset && value === 0) {
      return;
    }
    if (!Number.isFinite(value) || (rule.integer && !Number.isInteger(value))) {
      this.add(field, rule.integer ? 'must be an integer' : 'must be a finite number');
    } else if (value < rule.min || value > rule.max) {
      this.add(field, `must be between ${rule.min} and ${rule.max}`);
    }
  }

  /**
   * Checks a JSON document (a decoded google.protobuf.Struct) that will be
   * stored as jsonb (checkJsonDocument).
   * @returns its JSON text, or undefined when it is absent or invalid.
   */
  jsonDocument(field: string, value: object | undefined, rule: JsonDocumentRule): string | undefined {
    if (value === undefined) {
      return undefined;
    }
    const checked = checkJsonDocument(value, rule);
    if ('problem' in checked) {
      this.add(field, checked.problem);
      return undefined;
    }
    return checked.json;
  }

  /** Checks that an enum value is one of `allowed` (closed set; unknown numbers are refused). */
  oneOf<T>(field: string, value: T, allowed: readonly T[], description = 'has an unsupported value'): void {
    if (!allowed.includes(value)) {
      this.add(field, description);
    }
  }

  /** Checks a list's length. */
  count(field: string, length: number, rule: { min?: number; max: number }): boolean {
    if (length < (rule.min ?? 0)) {
      this.add(field, rule.min === 1 ? 'must not be empty' : `needs at least ${rule.min} entries`);
      return false;
    }
    if (length > rule.max) {
      this.add(field, `must have at most ${rule.max} entries`);
      return false;
    }
    return true;
  }

  /** @throws InvalidArgumentError with every violation collected, if any. */
  throwIfInvalid(): void {
    if (this.violations.length > 0) {
      throw new InvalidArgumentError(this.violations);
    }
  }
}
