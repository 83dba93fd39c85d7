/**
 * Fetching the bytes of one module (http:, https: or file:), bounded in time
 * and size.
 *
 * @module
 */
import { fileURLToPath } from "node:url";

/** Default time budget of one module fetch. */
export const DEFAULT_FETCH_TIMEOUT_MS = 15_000;
/** Default largest module accepted. */
export const DEFAULT_MAX_MODULE_BYTES = 8 * 1024 * 1024;

/** Options of {@linkcode fetchModule}. */
export interface FetchOptions {
  /** Time budget in ms (default {@linkcode DEFAULT_FETCH_TIMEOUT_MS}). */
  timeoutMs?: number;
  /** Largest accepted module (default {@linkcode DEFAULT_MAX_MODULE_BYTES}). */
  maxBytes?: number;
}

/** A module that could not be fetched; `reason` says why in a few words. */
export class ModuleFetchError extends Error {
  /**
   * @param url the module URL
   * @param reason e.g. `HTTP 404 Not Found`
   */
  constructor(readonly url: string, readonly reason: string, options?: ErrorOptions) {
    super(`cannot fetch ${url}: ${reason}`, options);
    this.name = "ModuleFetchError";
  }
}

/** Fetches the exact bytes of a module. Throws {@linkcode ModuleFetchError}. */
export async function fetchModule(url: string, options: FetchOptions = {}): Promise<Uint8Array> {
  const maxBytes = options.maxBytes ?? DEFAULT_MAX_MODULE_BYTES;
  const timeoutMs = options.timeoutMs ?? DEFAULT_FETCH_TIMEOUT_MS;
  const parsed = new URL(url);
  if (parsed.protocol === "file:") {
    try {
      const bytes = await Deno.readFile(fileURLToPath(parsed));
      if (bytes.length > maxBytes) throw new ModuleFetchError(url, `larger than ${maxBytes} bytes`);
      return bytes;
    } catch (error) {
      if (error instanceof ModuleFetchError) throw error;
      throw new ModuleFetchError(url, (error as Error).message, { cause: error });
    }
  }
  if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
    throw new ModuleFetchError(url, `unsupported scheme ${parsed.protocol}`);
  }
  const signal = AbortSignal.timeout(timeoutMs);
  let response: Response;
  try {
    response = await fetch(parsed, { signal, redirect: "follow" });
  } catch (error) {
    const reason = signal.aborted ? `no answer within ${timeoutMs} ms` : (error as Error).message;
    throw new ModuleFetchError(url, reason, { cause: error });
  }
  try {
    if (!response.ok) {
      throw new ModuleFetchError(url, `HTTP ${response.status} ${response.statusText}`.trim());
    }
    const declared = Number(response.headers.get("content-length"));
    if (Number.isFinite(declared) && declared > maxBytes) {
      throw new ModuleFetchError(url, `larger than ${maxBytes} bytes`);
    }
    const bytes = new Uint8Array(await response.arrayBuffer());
    if (bytes.length > maxBytes) throw new ModuleFetchError(url, `larger than ${maxBytes} bytes`);
    return bytes;
  } catch (error) {
    if (error instanceof ModuleFetchError) throw error;
    const reason = signal.aborted ? `no answer within ${timeoutMs} ms` : (error as Error).message;
    throw new ModuleFetchError(url, reason, { cause: error });
  } finally {
    if (!response.bodyUsed) await response.body?.cancel().catch(() => {});
  }
}
