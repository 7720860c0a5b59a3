import type { FieldValidator } from '@clinical/server-kit';

/** Largest content, serialised as JSON. */
export const MAX_CONTENT_BYTES = 1_048_576;
/** Largest metadata, serialised as JSON. */
export const MAX_METADATA_BYTES = 65_536;

/** Page sizes of document listings. */
export const DOCUMENT_PAGE = { defaultSize: 50, maxSize: 200 };
/**
 * A listing page stops before it would pass this many bytes of JSON (content,
 * metadata and title, as stored), so that it fits a gRPC message (4 MiB by
 * default) and the service's heap; a page always has at least one document.
 */
export const PAGE_BYTE_BUDGET = 3 * 1_048_576;

/** Deepest nesting of content, metadata and their filters (PostgreSQL's own limit is its stack). */
export const MAX_JSON_DEPTH = 32;

/** Checks a document version's title, content and metadata. */
export function validateDocumentBody(
  v: FieldValidator,
  prefix: string,
  body: { title: string; content?: object; metadata?: object },
): void {
  v.string(`${prefix}title`, body.title, { required: true, max: 500 });
  v.jsonDocument(`${prefix}content`, body.content, { maxBytes: MAX_CONTENT_BYTES, maxDepth: MAX_JSON_DEPTH });
  v.jsonDocument(`${prefix}metadata`, body.metadata, { maxBytes: MAX_METADATA_BYTES, maxDepth: MAX_JSON_DEPTH });
}
