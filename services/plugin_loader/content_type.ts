/**
 * Why Deno could not parse a remote module that is fine on disk: the server
 * sent a `Content-Type` that Deno does not read as the file's language
 * (`python3 -m http.server` serves `.ts` as `text/vnd.trolltech.linguist`,
 * a Qt translation file), so Deno parsed TypeScript as JavaScript and
 * reported `SyntaxError: Expected ',', got ':'`. No I/O except in
 * {@linkcode fetchContentType}.
 *
 * @module
 */

/** Content types Deno reads as TypeScript. */
export const TYPESCRIPT_CONTENT_TYPES: readonly string[] = [
  "application/typescript",
  "text/typescript",
  "application/x-typescript",
  "video/vnd.dlna.mpeg-tts",
  "video/mp2t",
];
/** Content types Deno reads as JavaScript. */
export const JAVASCRIPT_CONTENT_TYPES: readonly string[] = [
  "application/javascript",
  "text/javascript",
  "application/ecmascript",
  "text/ecmascript",
  "application/x-javascript",
  "application/node",
];
/** Content types after which Deno goes by the file's extension. */
export const NEUTRAL_CONTENT_TYPES: readonly string[] = [
  "text/plain",
  "application/octet-stream",
];

const TYPESCRIPT_EXTENSIONS = [".ts", ".mts", ".tsx", ".cts"];

/** The media type of a `Content-Type` header, lower case, without parameters. */
export function mediaTypeOf(contentType: string): string {
  return contentType.split(";")[0].trim().toLowerCase();
}

/**
 * When `contentType` explains a parse failure of `url`, the sentence that
 * says so and what to serve instead; otherwise undefined.
 *
 * @example
 * ```ts
 * import { contentTypeProblem } from "./content_type.ts";
 * const why = contentTypeProblem("http://h/p.ts", "text/vnd.trolltech.linguist");
 * console.assert(why?.includes("application/typescript"));
 * ```
 */
export function contentTypeProblem(url: string, contentType: string | null): string | undefined {
  const path = new URL(url).pathname.toLowerCase();
  const typescript = TYPESCRIPT_EXTENSIONS.some((ext) => path.endsWith(ext));
  const media = contentType === null ? "" : mediaTypeOf(contentType);
  if (NEUTRAL_CONTENT_TYPES.includes(media)) return undefined;
  if (typescript) {
    if (TYPESCRIPT_CONTENT_TYPES.includes(media)) return undefined;
    return `the server sent it as Content-Type ${
      JSON.stringify(contentType ?? "(none)")
    }, which Deno does not read as TypeScript, so it was parsed as JavaScript. ` +
      `Serve .ts files as application/typescript (or text/typescript; text/plain also works), ` +
      `or serve the plugin compiled to .js (see plugins/README.md, "Serving a plugin")`;
  }
  if (path.endsWith(".js") || path.endsWith(".mjs")) {
    if (JAVASCRIPT_CONTENT_TYPES.includes(media)) return undefined;
    return `the server sent it as Content-Type ${
      JSON.stringify(contentType ?? "(none)")
    }, which Deno does not read as JavaScript. Serve .js files as text/javascript ` +
      `(see plugins/README.md, "Serving a plugin")`;
  }
  return undefined;
}

/** The `Content-Type` a server sends for `url` (null when none or unreachable). Bounded in time. */
export async function fetchContentType(url: string, timeoutMs = 10_000): Promise<string | null> {
  try {
    const response = await fetch(url, {
      method: "GET",
      redirect: "follow",
      signal: AbortSignal.timeout(timeoutMs),
    });
    await response.body?.cancel();
    return response.headers.get("content-type");
  } catch {
    return null;
  }
}
