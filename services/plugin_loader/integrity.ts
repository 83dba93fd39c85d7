/**
 * SHA-256 integrity strings in Subresource Integrity form (`sha256-<base64>`).
 *
 * @module
 */

const SRI_PATTERN = /^sha256-([A-Za-z0-9+/]{43}=)$/;

function toBase64(bytes: Uint8Array): string {
  let binary = "";
  for (let i = 0; i < bytes.length; i++) binary += String.fromCharCode(bytes[i]);
  return btoa(binary);
}

function fromBase64(text: string): Uint8Array {
  const binary = atob(text);
  const bytes = new Uint8Array(binary.length);
  for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
  return bytes;
}

/** `<algorithm>-<base64 of the digest of bytes>`, e.g. `sha256-...`. */
async function sriDigest(algorithm: "SHA-256" | "SHA-512", bytes: Uint8Array): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest(algorithm, bytes as BufferSource));
  return `${algorithm.replace("-", "").toLowerCase()}-${toBase64(digest)}`;
}

/** SHA-256 of `bytes` as `sha256-<base64>`. */
export function sha256Integrity(bytes: Uint8Array | string): Promise<string> {
  return sriDigest("SHA-256", typeof bytes === "string" ? new TextEncoder().encode(bytes) : bytes);
}

/** SHA-512 of `bytes` as `sha512-<base64>` (the form of npm's `dist.integrity`). */
export function sha512Integrity(bytes: Uint8Array): Promise<string> {
  return sriDigest("SHA-512", bytes);
}

/** True when `value` is a well-formed `sha256-<base64>` string. */
export function isSha256Integrity(value: unknown): value is string {
  return typeof value === "string" && SRI_PATTERN.test(value);
}

/** The 64 lowercase hex digits of a `sha256-<base64>` string (cache file names). */
export function integrityHex(integrity: string): string {
  const match = SRI_PATTERN.exec(integrity);
  if (!match) throw new TypeError(`not a sha256 integrity string: ${JSON.stringify(integrity)}`);
  return Array.from(fromBase64(match[1]), (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Digest of a whole graph: SHA-256 over the sorted `url integrity` lines,
 * plus a `npm:<name>@<version> <tarball> <integrity>` line per npm package.
 * Any change of any module's bytes (or of the module or package list) changes it.
 */
export function graphIntegrity(
  modules: { url: string; integrity: string }[],
  npm: { name: string; version: string; tarball: string; integrity: string }[] = [],
): Promise<string> {
  const lines = [
    ...modules.map((m) => `${m.url} ${m.integrity}\n`),
    ...npm.map((p) => `npm:${p.name}@${p.version} ${p.tarball} ${p.integrity}\n`),
  ].sort();
  return sha256Integrity(lines.join(""));
}
