// PostgreSQL text and jsonb cannot hold NUL; a lone surrogate cannot be stored as UTF-8.
// eslint-disable-next-line no-control-regex -- NUL is exactly what must be refused
const UNSTORABLE = /\u0000|[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** What is wrong with text PostgreSQL cannot store (NUL, unpaired surrogates). */
export const UNSTORABLE_TEXT = 'must not contain NUL characters or unpaired surrogates';

/** Whether PostgreSQL can store `text` in a text or jsonb column. */
export function isStorableText(text: string): boolean {
  return !UNSTORABLE.test(text);
}

/**
 * Why a JSON document (a google.protobuf.Struct as decoded) cannot be stored
 * in a jsonb column, or undefined when it can: a number JSON cannot spell
 * (NaN, Infinity), text PostgreSQL cannot hold (NUL, unpaired surrogates) in
 * a value or a key, or a value deeper than `maxDepth` (the document itself is
 * at depth 1). Never quotes the document: what is wrong is named, not where
 * or what it holds.
 */
export function jsonDocumentProblem(value: unknown, maxDepth: number): string | undefined {
  // Iterative: a hostile document must not cost a deep recursion here.
  const pending: { value: unknown; depth: number }[] = [{ value, depth: 1 }];
  for (let next = pending.pop(); next; next = pending.pop()) {
    const { value: item, depth } = next;
    if (depth > maxDepth) {
      return `must not nest deeper than ${maxDepth} levels`;
    }
    if (typeof item === 'string') {
      if (!isStorableText(item)) {
        return UNSTORABLE_TEXT;
      }
    } else if (typeof item === 'number') {
      if (!Number.isFinite(item)) {
        return 'must not contain NaN or infinite numbers';
      }
    } else if (item !== null && typeof item === 'object') {
      const entries = Array.isArray(item) ? item.map((element) => ['', element] as const) : Object.entries(item);
      for (const [key, element] of entries) {
        if (!isStorableText(key)) {
          return UNSTORABLE_TEXT;
        }
        pending.push({ value: element, depth: depth + 1 });
      }
    }
  }
  return undefined;
}

/** The limits of a JSON document field. */
export interface JsonDocumentRule {
  readonly maxBytes: number;
  readonly maxDepth: number;
}

/**
 * A JSON document checked for storage: its JSON text, or what is wrong with
 * it (jsonDocumentProblem, or more than `maxBytes` of JSON text).
 */
export function checkJsonDocument(value: object, rule: JsonDocumentRule): { json: string } | { problem: string } {
  const problem = jsonDocumentProblem(value, rule.maxDepth);
  if (problem) {
    return { problem };
  }
  const json = JSON.stringify(value);
  return Buffer.byteLength(json) > rule.maxBytes ? { problem: `must be at most ${rule.maxBytes} bytes as JSON` } : { json };
}
